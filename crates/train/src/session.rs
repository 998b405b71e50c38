//! A training session: the loop over epochs and batches, per-epoch evaluation, checkpoints
//! (with exact resume), snapshots, Ctrl-C and the time budget, divergence, and the pictures
//! of a finished run.
//!
//! Every random draw is a pure function of (seed, epoch, batch): the shuffle of an epoch,
//! the binarization and the reparameterisation noise of a batch each come from their own
//! seeded stream. A checkpoint therefore needs no RNG state, only its position, and a
//! resumed run continues bitwise exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use ndarray::{Array2, Axis, concatenate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vae_data::atomic::write_atomic;
use vae_data::{Dataset, Split, stream_seed};
use vae_model::Vae;
use vae_model::checkpoint;
use vae_trainer::{Collective, Control, EpochEnd, Position, Trainer, salt};

use crate::image::{Picture, scale_for, tile, write_png};
use crate::recipe::RunConfig;
use crate::report::Progress;
use crate::run::{self, EpochMetrics};
use crate::signals::{self, Signal};
use crate::tensorboard::RunLog;

/// How a training session starts and stops (not part of the recipe: not saved).
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// The run to continue, if any.
    pub resume: Option<PathBuf>,
    /// Start afresh in a run directory holding an unfinished run.
    pub overwrite: bool,
    /// Seconds of wall-clock time after which to stop with a checkpoint.
    pub time_budget: Option<f64>,
    /// Testing aid: the global batch to poison with a NaN.
    pub inject_nan_at: Option<usize>,
}

/// A collective to train data-parallel with (see [`vae_trainer::Collective`]).
pub type SharedCollective = Box<dyn Collective + Send>;

/// Training stopped on request (a signal, [`crate::signals`]); the checkpoint is in
/// `run_dir`.
#[derive(Debug)]
pub struct Interrupted {
    /// Where the checkpoint was saved.
    pub run_dir: PathBuf,
    /// The signal that asked to stop (on this rank, or under MPI on another).
    pub signal: Signal,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted ({}): checkpoint saved in {}; continue with `vae-train train --resume {}`",
            self.signal.name(),
            self.run_dir.display(),
            self.run_dir.display()
        )
    }
}

impl std::error::Error for Interrupted {}

/// What a finished run leaves behind.
#[derive(Debug)]
pub struct Outcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// One row per epoch.
    pub metrics: Vec<EpochMetrics>,
}

/// Trains (or resumes, from `state`) the run `recipe` describes on `data` in `run_dir`, in
/// the current thread pool, reporting through `progress`: the session loop.
pub fn run(
    recipe: &RunConfig,
    launch: &Launch,
    data: &Dataset,
    run_dir: &Path,
    state: Option<checkpoint::Loaded>,
    progress: &mut Progress,
    collective: Option<SharedCollective>,
) -> Result<Outcome> {
    let mut go_on = |_: &EpochMetrics, _: usize| Ok(Control::Continue);
    run_observed(recipe, launch, data, run_dir, state, progress, collective, &mut go_on)
}

/// [`run`], calling `on_epoch` with each epoch's metrics and its number of training images
/// once its checkpoint is written (the Python bindings' `on_epoch`): [`Control::Stop`] ends
/// the session there as a finished one, with its pictures; an error ends it with that error.
#[allow(clippy::too_many_arguments, reason = "run's arguments and the hook")]
pub fn run_observed(
    recipe: &RunConfig,
    launch: &Launch,
    data: &Dataset,
    run_dir: &Path,
    state: Option<checkpoint::Loaded>,
    progress: &mut Progress,
    collective: Option<SharedCollective>,
    on_epoch: &mut dyn FnMut(&EpochMetrics, usize) -> Result<Control>,
) -> Result<Outcome> {
    let train_split = crate::data::training_split(recipe, data)?;
    let test_split = crate::data::test_split(recipe, data);
    let mut trainer = Trainer::new(
        recipe.model_config(train_split.shape),
        recipe.train_config(),
        &train_split,
    )?;
    trainer.poison_batch(launch.inject_nan_at);
    let resuming = state.is_some();
    if let Some(state) = &state {
        trainer.restore(state)?;
    }
    let ranks = collective.as_ref().map_or(1, |c| c.size());
    ensure!(
        recipe.training.batch_size >= ranks,
        "--batch-size {} is smaller than the {ranks} ranks: every rank needs at least one image of each batch",
        recipe.training.batch_size
    );
    if let Some(c) = collective {
        trainer.set_collective(c);
    }
    let writer = trainer.rank() == 0;
    let mut quiet = Progress::new(crate::report::Verbosity::Quiet);
    let progress = if writer { progress } else { &mut quiet };
    let config_path = run_dir.join(run::CONFIG);
    if writer {
        write_atomic(&config_path, recipe.to_json().as_bytes())
            .with_context(|| format!("writing {}", config_path.display()))?;
    }
    let epochs = recipe.training.epochs;
    progress.line(&format!(
        "{} {} ({} parameters) on {} {} from {}, testing on {}; {}{} threads, SIMD {}; run directory {}",
        if resuming { "resuming" } else { "training" },
        describe(trainer.model()),
        trainer.model().num_parameters(),
        trainer.images_per_epoch(),
        match &data.table {
            Some(t) => format!("rows of {} columns", t.columns.len()),
            None => format!("images of {}", train_split.shape),
        },
        data.source,
        test_split.len(),
        if ranks > 1 {
            format!("{ranks} ranks x ")
        } else {
            String::new()
        },
        rayon::current_num_threads(),
        vae_linalg::simd::level(),
        run_dir.display()
    ));
    // The recipe, in the training state (what `--resume` reads) and in the shareable model.
    let mut extra = HashMap::from([(run::TRAIN_CONFIG_KEY.to_string(), recipe.to_json())]);
    // A table's columns and standardisation, which every later command applies.
    if let Some(t) = &data.table {
        extra.insert(
            run::TABLE_KEY.to_string(),
            serde_json::to_string(t).expect("serialises"),
        );
    }
    let (started, budget) = (std::time::Instant::now(), launch.time_budget);
    let snapshots = writer.then_some(recipe.training.snapshot_every).flatten();
    let mut next_snapshot = snapshots.map(|every| ((trainer.trained_seconds() / every).floor() + 1.0) * every);
    let per_epoch = trainer.batches_per_epoch();
    let global_step = |p: &Position| p.epochs_done * per_epoch + p.batches_done;
    // TensorBoard: rank 0 logs to a new event file per session; a failure to write it is
    // reported once and ends the logging, never the training.
    let mut board = None;
    if writer {
        let resumed_at = resuming.then(|| global_step(trainer.position()));
        match RunLog::start(run_dir, recipe.output.log_every, resumed_at) {
            Ok(b) => board = Some(b),
            Err(e) => eprintln!("warning: no TensorBoard events for this session: {e:#}"),
        }
    }
    let pictures_seed = stream_seed(recipe.training.seed, 0, salt::PICTURES);
    // A time-based schedule that has come down to 0 completes the run, whatever its epochs.
    while trainer.position().epochs_done < epochs && !trainer.schedule_is_over() {
        let last_good = trainer.position().clone();
        let epoch = last_good.epochs_done + 1;
        progress.start_epoch(epoch, epochs, trainer.images_per_epoch());
        progress.skip(last_good.partial.images);
        if let Some(b) = &mut board {
            b.start_epoch(&last_good.partial);
        }
        let mut step = global_step(&last_good);
        let end = trainer.run_epoch(|running, images| {
            progress.advance(images, running.neg_elbo());
            step += 1;
            if let Some(b) = &mut board
                && let Err(e) = b.batch(step, running)
            {
                eprintln!("warning: TensorBoard logging stopped: {e:#}");
                board = None;
            }
            let out_of_time = budget.is_some_and(|b| started.elapsed().as_secs_f64() >= b);
            if signals::requested().is_some() || out_of_time {
                Control::Stop
            } else {
                Control::Continue
            }
        });
        progress.finish_epoch();
        match end {
            Err(d) => bail!(diverged_message(&d, run_dir, trainer.position())),
            Ok(EpochEnd::Stopped) => {
                if writer {
                    save_checkpoint(run_dir, &trainer, &extra)?;
                    if snapshots.is_some() {
                        write_snapshot(run_dir, &trainer)?;
                    }
                }
                // Every rank stopped at this batch; a signal on any of them is the reason.
                // Agreeing on it after the checkpoint also keeps the other ranks from
                // exiting (and mpirun from ending rank 0) before it is saved.
                let signal = agreed_signal(&mut trainer);
                progress.line(&format!(
                    "stopped after batch {} of epoch {epoch}",
                    trainer.position().batches_done
                ));
                // A stop without a signal is the time budget's (here or on another rank).
                let Some(signal) = signal else {
                    progress.line(&format!(
                        "time budget of {:.0} s reached: checkpoint saved in {}; continue with `vae-train train --resume {}`",
                        budget.unwrap_or(0.0),
                        run_dir.display(),
                        run_dir.display()
                    ));
                    return Ok(Outcome {
                        run_dir: run_dir.to_path_buf(),
                        metrics: trainer.metrics().to_vec(),
                    });
                };
                return Err(Interrupted {
                    run_dir: run_dir.to_path_buf(),
                    signal,
                }
                .into());
            }
            Ok(EpochEnd::Complete) => {
                let images = trainer.position().partial.images;
                let lr = trainer.current_lr();
                let m = trainer.end_epoch(&test_split);
                progress.line(&epoch_line(&m, epochs, images, recipe));
                if let Some(b) = &mut board {
                    // The same prior draws every epoch (those of the final samples.png).
                    let mut rng = StdRng::seed_from_u64(pictures_seed);
                    let logged = pictures(trainer.model_mut(), data, &test_split, recipe.output.scale, &mut rng)
                        .and_then(|pics| {
                            let pics = pics.as_ref().map(|(s, r)| [s, r]);
                            b.epoch(global_step(trainer.position()), &m, lr, images, pics)
                        });
                    if let Err(e) = logged {
                        eprintln!("warning: TensorBoard logging stopped: {e:#}");
                        board = None;
                    }
                }
                let checksum = trainer.weights_checksum();
                if let Some(c) = trainer.collective_mut()
                    && !c.all_equal(checksum)
                {
                    bail!(
                        "rank {}: the weights differ between ranks after epoch {epoch} (checksum {checksum:016x}); \
                         the ranks must run the same binary on the same data",
                        c.rank()
                    );
                }
                if writer {
                    save_checkpoint(run_dir, &trainer, &extra)?;
                    let t = trainer.trained_seconds();
                    if let (Some(every), Some(next)) = (snapshots, next_snapshot)
                        && (t >= next || epoch == epochs || trainer.schedule_is_over())
                    {
                        write_snapshot(run_dir, &trainer)?;
                        next_snapshot = Some(((t / every).floor() + 1.0) * every);
                    }
                }
                // Every rank stops here, or none: a signal that reached some ranks only
                // (or one just now) is agreed on, so that none waits for another.
                if let Some(signal) = agreed_signal(&mut trainer)
                    && epoch < epochs
                {
                    return Err(Interrupted {
                        run_dir: run_dir.to_path_buf(),
                        signal,
                    }
                    .into());
                }
                if on_epoch(&m, images)? == Control::Stop {
                    break;
                }
            }
        }
    }
    if let Some(c) = trainer.collective_mut() {
        let (seconds, calls) = c.allreduce_stats();
        let train_seconds: f64 = trainer.metrics().iter().map(|m| m.train_seconds).sum();
        progress.line(&format!(
            "allreduce: {:.3} ms per step ({calls} steps, {:.1}% of the training time)",
            1e3 * seconds / calls.max(1) as f64,
            100.0 * seconds / train_seconds.max(1e-9)
        ));
    }
    if !writer {
        return Ok(Outcome {
            run_dir: run_dir.to_path_buf(),
            metrics: trainer.metrics().to_vec(),
        });
    }
    let mut pic_rng = StdRng::seed_from_u64(pictures_seed);
    if let Some((samples, recon)) = pictures(
        trainer.model_mut(),
        data,
        &test_split,
        recipe.output.scale,
        &mut pic_rng,
    )? {
        write_png(&run_dir.join(run::SAMPLES), &samples)?;
        write_png(&run_dir.join(run::RECONSTRUCTIONS), &recon)?;
    }
    let metrics = trainer.metrics().to_vec();
    progress.line(&format!(
        "done: test -ELBO {:.2} nats after {} epochs; wrote {}",
        metrics.last().map_or(f64::NAN, |m| m.test_loss),
        metrics.last().map_or(0, |m| m.epoch),
        run_dir.display()
    ));
    Ok(Outcome {
        run_dir: run_dir.to_path_buf(),
        metrics,
    })
}

/// The signal that asked this run to stop: this rank's own, or (under MPI, where every rank
/// takes part in one allreduce here) the first in [`Signal::ALL`] that reached any rank.
fn agreed_signal(trainer: &mut Trainer) -> Option<Signal> {
    let local = signals::requested();
    let Some(c) = trainer.collective_mut() else {
        return local;
    };
    let mut seen = Signal::ALL.map(|s| f64::from(u8::from(local == Some(s))));
    c.allreduce_sum_f64(&mut seen);
    local.or_else(|| {
        Signal::ALL
            .into_iter()
            .zip(seen)
            .find(|(_, n)| *n > 0.0)
            .map(|(s, _)| s)
    })
}

/// Copies the model just saved, and the run's flags, into `snapshots/eEEEEE[-bBBBBB]`: a
/// run directory of its own for `vae-train eval`.
fn write_snapshot(run_dir: &Path, trainer: &Trainer) -> Result<()> {
    let p = trainer.position();
    let name = match p.batches_done {
        0 => format!("e{:06}", p.epochs_done),
        b => format!("e{:06}-b{b:06}", p.epochs_done),
    };
    let dir = run_dir.join(run::SNAPSHOTS).join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in [run::MODEL, run::CONFIG] {
        let from = run_dir.join(file);
        let bytes = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
        write_atomic(&dir.join(file), &bytes).with_context(|| format!("writing {}", dir.join(file).display()))?;
    }
    let info = run::Snapshot {
        epochs: p.epochs_done,
        batches: p.batches_done,
        train_seconds: trainer.trained_seconds(),
    };
    let json = serde_json::to_string_pretty(&info).expect("serialises");
    write_atomic(&dir.join("snapshot.json"), json.as_bytes())
        .with_context(|| format!("writing {}", dir.join("snapshot.json").display()))
}

/// Writes the checkpoint (training state, then model) and the metrics file.
fn save_checkpoint(dir: &Path, trainer: &Trainer, extra: &HashMap<String, String>) -> Result<()> {
    trainer.checkpoint(dir, extra)?;
    run::write_metrics(dir, trainer.metrics())
}

fn describe(model: &Vae<f32>) -> String {
    let c = model.config();
    let mut widths = vec![c.input];
    widths.extend(&c.hidden);
    widths.push(c.latent);
    for l in &c.upper {
        widths.extend(&l.hidden);
        widths.push(l.latent);
    }
    let mut widths: Vec<String> = widths.iter().map(|h| h.to_string()).collect();
    if !c.arch.is_mlp() {
        widths.insert(1, c.arch.to_string());
    }
    let levels = match c.levels() {
        1 => String::new(),
        n => format!(", {n} stochastic layers"),
    };
    let prior = match c.prior {
        vae_model::Prior::Standard => String::new(),
        vae_model::Prior::Vamp { components } => format!(", VampPrior of {components} pseudo-inputs"),
    };
    format!(
        "a {} VAE ({}, {} decoder{levels}{prior})",
        widths.join("-"),
        c.activation,
        c.likelihood
    )
}

fn epoch_line(m: &EpochMetrics, epochs: usize, images: usize, recipe: &RunConfig) -> String {
    // The bound trained, when it is not the ELBO shown.
    let bound = match (recipe.training.objective, recipe.training.samples) {
        (vae_model::Bound::Iwae, k) if k > 1 => format!("  train -IWAE(k={k}) {:8.2}", m.train_objective),
        _ => String::new(),
    };
    format!(
        "epoch {:>2}/{epochs}  train -ELBO {:8.2} (rec {:7.2}, KL {:6.2}){bound}  test -ELBO {:8.2} (rec {:7.2}, KL {:6.2})  {:6.2} s  {:7.0} img/s",
        m.epoch,
        m.train_loss,
        m.train_recon,
        m.train_kl,
        m.test_loss,
        m.test_recon,
        m.test_kl,
        m.train_seconds,
        images as f64 / m.train_seconds.max(1e-9)
    )
}

fn diverged_message(d: &vae_trainer::Diverged, run_dir: &Path, last: &Position) -> String {
    let kept = if last.epochs_done > 0 || last.batches_done > 0 {
        format!(
            "the last good checkpoint (after epoch {}, batch {}) is kept in {}",
            last.epochs_done,
            last.batches_done,
            run_dir.display()
        )
    } else {
        "no checkpoint had been written yet".to_string()
    };
    format!(
        "training diverged at epoch {}, batch {}: the loss is not finite (reconstruction {}, KL {}); {kept}. \
         Try a lower learning rate (e.g. --lr 1e-4) or a KL warm-up (--warmup 5).",
        d.epoch, d.batch, d.sums.recon, d.sums.kl
    )
}

/// The pictures of a run: 8x8 prior samples, and 8 test images over their reconstructions
/// (none for a table).
fn pictures(
    model: &mut Vae<f32>,
    data: &Dataset,
    test: &Split,
    scale: Option<usize>,
    rng: &mut impl Rng,
) -> Result<Option<(Picture, Picture)>> {
    if data.table.is_some() {
        return Ok(None);
    }
    let shape = test.shape;
    let scale = scale_for(scale, shape.height, shape.width)?;
    let samples = model.sample(64, rng);
    let originals = test.images.rows_f32(0..8.min(test.len()));
    let originals = originals.view();
    let recon = model.reconstruct(originals);
    let both: Array2<f32> = concatenate![Axis(0), originals, recon];
    Ok(Some((
        tile(samples.view(), shape, 8).upscaled(scale),
        tile(both.view(), shape, originals.nrows()).upscaled(scale),
    )))
}
