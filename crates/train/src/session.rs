//! A training session: the loop over epochs and batches and per-epoch evaluation, with what
//! watches it (progress, TensorBoard, checkpoints with exact resume, snapshots, Ctrl-C and
//! the time budget, the ranks' agreement) as [`Observer`]s; divergence, and the pictures of
//! a finished run.
//!
//! Every random draw is a pure function of (seed, epoch, batch): the shuffle of an epoch,
//! the binarization and the reparameterisation noise of a batch each come from their own
//! seeded stream. A checkpoint therefore needs no RNG state, only its position, and a
//! resumed run continues bitwise exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail, ensure};
use ndarray::{Array2, Axis, concatenate};
use rand::Rng;
use vae_data::{Dataset, Split, stream_seed};
use vae_model::Vae;
use vae_model::checkpoint;
use vae_trainer::{Collective, Control, EpochEnd, Position, Trainer, salt};

use crate::image::{Picture, scale_for, tile};
use crate::observers::{
    Board, Checkpoints, EpochDone, FinalPictures, Lines, Observer, SameWeights, StopRequests, global_step,
};
use crate::recipe::RunConfig;
use crate::report::Progress;
use crate::run::{self, EpochMetrics, RunDir};
use crate::signals::{self, Signal};

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
    run_observed(recipe, launch, data, run_dir, state, progress, collective, Vec::new())
}

/// [`run`] with `more` observers after the session's own (the Python package's `on_epoch`,
/// [`OnEpoch`]): a [`Control::Stop`] from one after an epoch ends the session there as a
/// finished one, with its pictures; an error ends it with that error.
#[allow(clippy::too_many_arguments, reason = "run's arguments and the observers")]
pub fn run_observed(
    recipe: &RunConfig,
    launch: &Launch,
    data: &Dataset,
    run_dir: &Path,
    state: Option<checkpoint::Loaded>,
    progress: &mut Progress,
    collective: Option<SharedCollective>,
    more: Vec<Box<dyn Observer + '_>>,
) -> Result<Outcome> {
    let train_split = crate::data::training_split(recipe, data)?;
    let test_split = crate::data::test_split(recipe, data);
    let ranks = collective.as_ref().map_or(1, |c| c.size());
    let resuming = state.is_some();
    let mut trainer = start_trainer(recipe, launch, &train_split, state, collective)?;
    let writer = trainer.rank() == 0;
    if writer {
        RunDir(run_dir).write_config(&recipe.to_json())?;
        progress.line(&start_line(
            &trainer,
            resuming,
            data,
            &train_split,
            test_split.len(),
            ranks,
            run_dir,
        ));
    }
    let started = std::time::Instant::now();
    // Rank 0 reports and writes; every rank agrees on the weights and on stopping.
    let sources = (data, &*test_split);
    let mut observers = match writer {
        true => reporters(progress, recipe, run_dir, sources, &trainer, resuming),
        false => Vec::new(),
    };
    if trainer.collective_mut().is_some() {
        observers.push(Box::new(SameWeights));
    }
    if writer {
        observers.push(Box::new(Checkpoints::new(
            run_dir,
            recipe,
            &trainer,
            checkpoint_metadata(recipe, data),
        )));
    }
    observers.push(Box::new(StopRequests {
        started,
        budget: launch.time_budget,
        epochs: recipe.training.epochs,
        run_dir,
    }));
    observers.extend(more.into_iter().map(|o| -> Box<dyn Observer + '_> { o }));
    if let Some(stop) = train_loop(
        &mut trainer,
        &test_split,
        recipe.training.epochs,
        &mut observers,
        run_dir,
    )? {
        return stop.outcome(&mut trainer, &mut observers, run_dir, launch.time_budget);
    }
    for o in observers.iter_mut() {
        o.end_run(&mut trainer)?;
    }
    let done = done_line(trainer.metrics(), run_dir);
    observers.iter_mut().for_each(|o| o.line(&done));
    Ok(Outcome {
        run_dir: run_dir.to_path_buf(),
        metrics: trainer.metrics().to_vec(),
    })
}

/// The last line of a finished run.
fn done_line(metrics: &[EpochMetrics], run_dir: &Path) -> String {
    let last = metrics.last();
    format!(
        "done: test -ELBO {:.2} nats after {} epochs; wrote {}",
        last.map_or(f64::NAN, |m| m.test_loss),
        last.map_or(0, |m| m.epoch),
        run_dir.display()
    )
}

/// Rank 0's observers that report (in this order: at the end, the allreduce's figures,
/// then the pictures, then the last line): the lines, the final pictures, TensorBoard.
fn reporters<'a>(
    progress: &'a mut Progress,
    recipe: &'a RunConfig,
    run_dir: &'a Path,
    sources: (&'a Dataset, &'a Split),
    trainer: &Trainer,
    resuming: bool,
) -> Vec<Box<dyn Observer + 'a>> {
    let seed = stream_seed(recipe.training.seed, 0, salt::PICTURES);
    let scale = recipe.output.scale;
    vec![
        Box::new(Lines { progress, recipe }),
        Box::new(FinalPictures {
            run_dir,
            sources,
            scale,
            seed,
        }),
        Box::new(Board::start(run_dir, recipe, trainer, resuming, sources, seed)),
    ]
}

/// The trainer of `recipe` on `train`, restored from `state` (a resumed run), training
/// data-parallel with `collective` if given.
fn start_trainer<'d>(
    recipe: &RunConfig,
    launch: &Launch,
    train: &'d Split,
    state: Option<checkpoint::Loaded>,
    collective: Option<SharedCollective>,
) -> Result<Trainer<'d>> {
    let mut trainer = Trainer::new(recipe.model_config(train.shape), recipe.train_config(), train)?;
    trainer.poison_batch(launch.inject_nan_at);
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
    Ok(trainer)
}

/// The epochs: each epoch's batches, then its evaluation, each step reported to the
/// observers in order. Returns how the run stopped mid-epoch, if it did; a diverged loss
/// or an observer's error ends it with an error.
fn train_loop(
    trainer: &mut Trainer,
    test: &Split,
    epochs: usize,
    observers: &mut [Box<dyn Observer + '_>],
    run_dir: &Path,
) -> Result<Option<Stopped>> {
    // A time-based schedule that has come down to 0 completes the run, whatever its epochs.
    while trainer.position().epochs_done < epochs && !trainer.schedule_is_over() {
        let last_good = trainer.position().clone();
        observers.iter_mut().for_each(|o| o.start_epoch(trainer));
        let mut step = global_step(trainer);
        let end = trainer.run_epoch(|running, images| {
            step += 1;
            let asks = observers.iter_mut().map(|o| o.batch(step, running, images));
            asks.fold(Control::Continue, |c, a| if a == Control::Stop { a } else { c })
        });
        observers.iter_mut().for_each(|o| o.end_batches());
        match end {
            Err(d) => bail!(diverged_message(&d, run_dir, trainer.position())),
            Ok(EpochEnd::Stopped) => {
                for o in observers.iter_mut() {
                    o.stopped(trainer)?;
                }
                return Ok(Some(Stopped {
                    epoch: last_good.epochs_done + 1,
                }));
            }
            Ok(EpochEnd::Complete) => {
                let images = trainer.position().partial.images;
                let lr = trainer.current_lr();
                let metrics = trainer.end_epoch(test);
                let mut done = EpochDone {
                    trainer,
                    metrics: &metrics,
                    images,
                    lr,
                };
                let mut control = Control::Continue;
                for o in observers.iter_mut() {
                    if o.end_epoch(&mut done)? == Control::Stop {
                        control = Control::Stop;
                    }
                }
                if control == Control::Stop {
                    break;
                }
            }
        }
    }
    Ok(None)
}

/// A run stopped after a batch of epoch `epoch`, its checkpoint saved.
struct Stopped {
    epoch: usize,
}

impl Stopped {
    /// Every rank stopped at this batch; a signal on any of them is the reason (an
    /// [`Interrupted`] error), else the time budget (here or on another rank): a run that
    /// ends as finished. Agreeing on it after the checkpoint also keeps the other ranks
    /// from exiting (and mpirun from ending rank 0) before it is saved.
    fn outcome(
        self,
        trainer: &mut Trainer,
        observers: &mut [Box<dyn Observer + '_>],
        run_dir: &Path,
        budget: Option<f64>,
    ) -> Result<Outcome> {
        let signal = agreed_signal(trainer);
        let mut say = |text: &str| observers.iter_mut().for_each(|o| o.line(text));
        let batches = trainer.position().batches_done;
        say(&format!("stopped after batch {batches} of epoch {}", self.epoch));
        let Some(signal) = signal else {
            say(&format!(
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
        Err(Interrupted {
            run_dir: run_dir.to_path_buf(),
            signal,
        }
        .into())
    }
}

/// The checkpoint's metadata: the recipe (what `--resume` reads, also in the shareable
/// model) and a table's columns and standardisation, which every later command applies.
pub fn checkpoint_metadata(recipe: &RunConfig, data: &Dataset) -> HashMap<String, String> {
    let mut extra = HashMap::from([(run::TRAIN_CONFIG_KEY.to_string(), recipe.to_json())]);
    if let Some(t) = &data.table {
        extra.insert(
            run::TABLE_KEY.to_string(),
            serde_json::to_string(t).expect("serialises"),
        );
    }
    extra
}

/// The session's first line: the model, the data, the threads and the run directory.
fn start_line(
    trainer: &Trainer,
    resuming: bool,
    data: &Dataset,
    train: &Split,
    tests: usize,
    ranks: usize,
    run_dir: &Path,
) -> String {
    format!(
        "{} {} ({} parameters) on {} {} from {}, testing on {tests}; {}{} threads, SIMD {}; run directory {}",
        if resuming { "resuming" } else { "training" },
        trainer.model().config().describe(),
        trainer.model().num_parameters(),
        trainer.images_per_epoch(),
        match &data.table {
            Some(t) => format!("rows of {} columns", t.columns.len()),
            None => format!("images of {}", train.shape),
        },
        data.source,
        if ranks > 1 {
            format!("{ranks} ranks x ")
        } else {
            String::new()
        },
        rayon::current_num_threads(),
        vae_linalg::simd::level(),
        run_dir.display()
    )
}

/// The signal that asked this run to stop: this rank's own, or (under MPI, where every rank
/// takes part in one allreduce here) the first in [`Signal::ALL`] that reached any rank.
pub(crate) fn agreed_signal(trainer: &mut Trainer) -> Option<Signal> {
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

pub(crate) fn epoch_line(m: &EpochMetrics, epochs: usize, images: usize, recipe: &RunConfig) -> String {
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
pub(crate) fn pictures(
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
