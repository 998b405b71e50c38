//! `vae-train train`: the training loop, per-epoch evaluation, checkpoints (with exact
//! resume), Ctrl-C, divergence, and the pictures of a finished run.
//!
//! Every random draw is a pure function of (seed, epoch, batch): the shuffle of an epoch,
//! the binarization and the reparameterisation noise of a batch each come from their own
//! seeded stream. A checkpoint therefore needs no RNG state, only its position, and a
//! resumed run continues bitwise exactly.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail, ensure};
use ndarray::{Array2, Axis, concatenate, s};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vae_mnist::{DatasetError, IdxError, Limits, Mnist, Split, stream_seed};
use vae_model::Vae;
use vae_model::checkpoint::{self, write_atomic};
use vae_nn::AdamConfig;
use vae_trainer::{Collective, Control, EpochEnd, Position, TrainConfig, Trainer, binarized, salt};
pub use vae_trainer::{EVAL_BATCH, evaluate};

use crate::cli::TrainArgs;
use crate::image::{scale_for, tile, write_png};
use crate::report::Progress;
use crate::run::{self, EpochMetrics};

/// Set (by a Ctrl-C handler) to ask training to stop after the current batch.
pub static INTERRUPT: AtomicBool = AtomicBool::new(false);

/// Training stopped on request; the checkpoint is in `run_dir`.
#[derive(Debug)]
pub struct Interrupted {
    /// Where the checkpoint was saved.
    pub run_dir: PathBuf,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted: checkpoint saved in {}; continue with `vae-train train --resume {}`",
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

/// The seed of the one binarization of the test set, whatever a run's `--seed`: every run on
/// binarized images is evaluated on the same binary test set.
pub const TEST_BINARIZE_SEED: u64 = 1;

/// The test split a run evaluates on (binarized once, with [`TEST_BINARIZE_SEED`], if it
/// trains on binarized images; runs saved before the seed was fixed keep their own).
pub fn test_split<'a>(args: &TrainArgs, mnist: &'a Mnist) -> Cow<'a, Split> {
    if args.binarize {
        let seed = args.test_binarize_seed.unwrap_or(args.seed);
        Cow::Owned(binarized(&mnist.test, stream_seed(seed, 0, salt::TEST_BINARIZE)))
    } else {
        Cow::Borrowed(&mnist.test)
    }
}

/// Runs `f` on a rayon pool of `threads` threads (all cores if `None`) whose workers flush
/// subnormal floats to zero (see `vae_linalg::fpenv`).
pub fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    let pool = vae_linalg::fpenv::thread_pool(threads).context("starting the thread pool")?;
    Ok(pool.install(f))
}

/// Loads MNIST from the directory the flags name within `limits`, saying which flag to fix
/// on failure.
pub fn load_data(dir: &Path, limits: &Limits) -> Result<Mnist> {
    Mnist::load_with(dir, limits).map_err(|e| {
        let hint = if matches!(e, DatasetError::Idx(IdxError::TooLarge { .. })) {
            "raise --max-data-bytes if the file is genuine"
        } else {
            "give the directory holding the IDX files with --data"
        };
        anyhow::Error::new(e).context(format!("loading MNIST from {} ({hint})", dir.display()))
    })
}

/// Trains as `args` says (or resumes the run `args.resume` names), reporting through
/// `progress`.
pub fn train(args: &TrainArgs, progress: &mut Progress) -> Result<Outcome> {
    train_with(args, progress, None)
}

/// A collective to train data-parallel with (see [`vae_trainer::Collective`]).
pub type SharedCollective = Box<dyn Collective + Send>;

/// [`train`], data-parallel across the ranks of `collective` when one is given: every rank
/// trains the same model on its shard of each batch; rank 0 alone writes the run directory
/// and reports.
pub fn train_with(args: &TrainArgs, progress: &mut Progress, collective: Option<SharedCollective>) -> Result<Outcome> {
    let rank = collective.as_ref().map_or(0, |c| c.rank());
    args.validate()?;
    let (args, run_dir, state) = match &args.resume {
        Some(dir) => {
            let (stored, state) = read_resume_state(dir)?;
            let args = TrainArgs {
                epochs: Some(args.epochs.unwrap_or(stored.total_epochs())),
                threads: args.threads.or(stored.threads),
                resume: None,
                inject_nan_at: args.inject_nan_at,
                time_budget: args.time_budget,
                snapshot_every: args.snapshot_every.or(stored.snapshot_every),
                run_dir: Some(dir.clone()),
                ..stored
            };
            (args, dir.clone(), Some(state))
        }
        None => {
            let dir = match (&args.run_dir, &collective) {
                (Some(d), _) => d.clone(),
                (None, None) => run::default_run_dir(),
                (None, Some(_)) => bail!("give --run-dir when training on several ranks (they must agree on it)"),
            };
            if rank == 0 {
                prepare_run_dir(&dir, args.overwrite)?;
            }
            (args.clone(), dir, None)
        }
    };
    args.validate()?;
    let mnist = load_data(&args.data, &args.limits())?;
    let threads = args.threads.or_else(|| {
        // Ranks on one machine share its cores.
        let local = local_ranks();
        (collective.is_some() && local > 1)
            .then(|| (std::thread::available_parallelism().map_or(1, |n| n.get()) / local).max(1))
    });
    with_threads(threads, || {
        train_in_pool(&args, &mnist, &run_dir, state, progress, collective)
    })?
}

/// Ranks of an MPI job on this machine (1 outside one).
fn local_ranks() -> usize {
    std::env::var("OMPI_COMM_WORLD_LOCAL_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Creates the run directory, refusing to overwrite a finished or interrupted run. A run
/// that never wrote its first checkpoint is started afresh only with `overwrite`.
fn prepare_run_dir(dir: &Path, overwrite: bool) -> Result<()> {
    if dir.join(run::MODEL).exists() || dir.join(run::STATE).exists() {
        bail!(
            "{} already holds a trained model; choose another --run-dir, or continue it with --resume {} \
             (nothing was overwritten{})",
            dir.display(),
            dir.display(),
            if overwrite {
                "; --overwrite never applies to a directory holding a checkpoint"
            } else {
                ""
            }
        );
    }
    let leftovers = run::unfinished_files(dir);
    if !leftovers.is_empty() {
        if !overwrite {
            bail!(
                "{} holds a run that never finished its first checkpoint ({}), so there is nothing to \
                 resume; start it again in place with `vae-train train --run-dir {} --overwrite` and your \
                 flags, or choose another --run-dir",
                dir.display(),
                leftovers
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                dir.display()
            );
        }
        for f in &leftovers {
            std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating run directory {}", dir.display()))
}

/// Reads a run's training state (once): its flags, and the file for [`Trainer::restore`].
fn read_resume_state(dir: &Path) -> Result<(TrainArgs, checkpoint::Loaded)> {
    ensure!(dir.is_dir(), "run directory {} does not exist", dir.display());
    let path = dir.join(run::STATE);
    ensure!(
        path.is_file(),
        "{} holds no {}: nothing to resume (the run never finished its first checkpoint); start it \
         again with `vae-train train --run-dir {} --overwrite` and its flags{}",
        dir.display(),
        run::STATE,
        dir.display(),
        if dir.join(run::CONFIG).is_file() {
            format!(" (they are in {})", dir.join(run::CONFIG).display())
        } else {
            String::new()
        }
    );
    let state = checkpoint::load_tensors(&path)?;
    if !state.verified {
        run::warn_unverified(&path);
    }
    let json = state
        .metadata
        .get("train.config")
        .with_context(|| format!("{}: no 'train.config' in the training state", path.display()))?;
    let stored: TrainArgs =
        serde_json::from_str(json).with_context(|| format!("{}: invalid 'train.config'", path.display()))?;
    Ok((stored, state))
}

/// The training settings the flags give.
fn train_config(args: &TrainArgs) -> TrainConfig {
    TrainConfig {
        batch_size: args.batch_size,
        adam: AdamConfig {
            lr: args.lr,
            beta1: args.adam_beta1,
            beta2: args.adam_beta2,
            eps: args.adam_eps,
            ..AdamConfig::default()
        },
        beta: args.beta,
        warmup: args.warmup,
        free_bits: args.free_bits,
        binarize: args.binarize,
        seed: args.seed,
        subset: args.subset,
        schedule: args.lr_schedule.for_epochs(args.total_epochs()),
        bound: args.objective,
        samples: args.samples,
        dreg: args.dreg,
    }
}

fn train_in_pool(
    args: &TrainArgs,
    mnist: &Mnist,
    run_dir: &Path,
    state: Option<checkpoint::Loaded>,
    progress: &mut Progress,
    collective: Option<SharedCollective>,
) -> Result<Outcome> {
    let train_split = match args.exclude_digit {
        Some(d) => {
            let classes = mnist.train.classes();
            ensure!(
                classes.contains(&d),
                "--exclude-digit {d}: no training image has label {d} (labels present: {})",
                list(&classes)
            );
            Cow::Owned(mnist.train.filter(|l| l != d))
        }
        None => Cow::Borrowed(&mnist.train),
    };
    let test_split = test_split(args, mnist);
    let mut trainer = Trainer::new(
        args.model_config(train_split.pixels()),
        train_config(args),
        &train_split,
    )?;
    trainer.poison_batch(args.inject_nan_at);
    let resuming = state.is_some();
    if let Some(state) = &state {
        trainer.restore(state)?;
    }
    let ranks = collective.as_ref().map_or(1, |c| c.size());
    ensure!(
        args.batch_size >= ranks,
        "--batch-size {} is smaller than the {ranks} ranks: every rank needs at least one image of each batch",
        args.batch_size
    );
    if let Some(c) = collective {
        trainer.set_collective(c);
    }
    let writer = trainer.rank() == 0;
    let mut quiet = Progress::new(crate::report::Verbosity::Quiet);
    let progress = if writer { progress } else { &mut quiet };
    let config_path = run_dir.join(run::CONFIG);
    if writer {
        write_atomic(&config_path, config_json(args).as_bytes())
            .with_context(|| format!("writing {}", config_path.display()))?;
    }
    let epochs = args.total_epochs();
    progress.line(&format!(
        "{} {} ({} parameters) on {} images, testing on {}; {}{} threads, SIMD {}; run directory {}",
        if resuming { "resuming" } else { "training" },
        describe(trainer.model()),
        trainer.model().num_parameters(),
        trainer.images_per_epoch(),
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
    // The flags, in the training state (what `--resume` reads) and in the shareable model.
    let extra = HashMap::from([("train.config".to_string(), config_json(args))]);
    let (started, budget) = (std::time::Instant::now(), args.time_budget);
    let snapshots = writer.then_some(args.snapshot_every).flatten();
    let mut next_snapshot = snapshots.map(|every| ((trained_seconds(&trainer) / every).floor() + 1.0) * every);
    while trainer.position().epochs_done < epochs {
        let last_good = trainer.position().clone();
        let epoch = last_good.epochs_done + 1;
        progress.start_epoch(epoch, epochs, trainer.images_per_epoch());
        progress.skip(last_good.partial.images);
        let end = trainer.run_epoch(|running, images| {
            progress.advance(images, running.neg_elbo());
            let out_of_time = budget.is_some_and(|b| started.elapsed().as_secs_f64() >= b);
            if INTERRUPT.load(Ordering::SeqCst) || out_of_time {
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
                progress.line(&format!(
                    "stopped after batch {} of epoch {epoch}",
                    trainer.position().batches_done
                ));
                // A stop without a Ctrl-C is the time budget's (here or on another rank).
                if !INTERRUPT.load(Ordering::SeqCst) {
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
                }
                return Err(Interrupted {
                    run_dir: run_dir.to_path_buf(),
                }
                .into());
            }
            Ok(EpochEnd::Complete) => {
                let images = trainer.position().partial.images;
                let m = trainer.end_epoch(&test_split);
                progress.line(&epoch_line(&m, epochs, images, args));
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
                    let t = trained_seconds(&trainer);
                    if let (Some(every), Some(next)) = (snapshots, next_snapshot)
                        && (t >= next || epoch == epochs)
                    {
                        write_snapshot(run_dir, &trainer)?;
                        next_snapshot = Some(((t / every).floor() + 1.0) * every);
                    }
                }
                // Every rank stops here, or none: a Ctrl-C that reached some ranks only
                // (or one just now) is agreed on, so that none waits for another.
                let mut stop = INTERRUPT.load(Ordering::SeqCst);
                if let Some(c) = trainer.collective_mut() {
                    let mut flag = [f64::from(u8::from(stop))];
                    c.allreduce_sum_f64(&mut flag);
                    stop = flag[0] > 0.0;
                }
                if stop && epoch < epochs {
                    return Err(Interrupted {
                        run_dir: run_dir.to_path_buf(),
                    }
                    .into());
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
    let mut pic_rng = StdRng::seed_from_u64(stream_seed(args.seed, 0, salt::PICTURES));
    write_pictures(run_dir, trainer.model_mut(), &test_split, args.scale, &mut pic_rng)?;
    let metrics = trainer.metrics().to_vec();
    progress.line(&format!(
        "done: test -ELBO {:.2} nats after {} epochs; wrote {}",
        metrics.last().map_or(f64::NAN, |m| m.test_loss),
        epochs,
        run_dir.display()
    ));
    Ok(Outcome {
        run_dir: run_dir.to_path_buf(),
        metrics,
    })
}

/// Seconds spent on training batches so far (evaluation and checkpoints excluded).
fn trained_seconds(trainer: &Trainer) -> f64 {
    trainer.metrics().iter().map(|m| m.train_seconds).sum::<f64>() + trainer.position().partial_seconds
}

/// Where snapshots go, one directory each.
pub const SNAPSHOTS: &str = "snapshots";

/// What a snapshot records besides the model.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Complete epochs.
    pub epochs: usize,
    /// Batches of the next epoch.
    pub batches: usize,
    /// Seconds of training (batches only).
    pub train_seconds: f64,
}

/// Copies the model just saved, and the run's flags, into `snapshots/eEEEEE[-bBBBBB]`: a
/// run directory of its own for `vae-train eval`.
fn write_snapshot(run_dir: &Path, trainer: &Trainer) -> Result<()> {
    let p = trainer.position();
    let name = match p.batches_done {
        0 => format!("e{:06}", p.epochs_done),
        b => format!("e{:06}-b{b:06}", p.epochs_done),
    };
    let dir = run_dir.join(SNAPSHOTS).join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in [run::MODEL, run::CONFIG] {
        let from = run_dir.join(file);
        let bytes = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
        checkpoint::write_atomic(&dir.join(file), &bytes)
            .with_context(|| format!("writing {}", dir.join(file).display()))?;
    }
    let info = Snapshot {
        epochs: p.epochs_done,
        batches: p.batches_done,
        train_seconds: trained_seconds(trainer),
    };
    let json = serde_json::to_string_pretty(&info).expect("serialises");
    checkpoint::write_atomic(&dir.join("snapshot.json"), json.as_bytes())
        .with_context(|| format!("writing {}", dir.join("snapshot.json").display()))
}

/// Writes the checkpoint (training state, then model) and the metrics file.
fn save_checkpoint(dir: &Path, trainer: &Trainer, extra: &HashMap<String, String>) -> Result<()> {
    trainer.checkpoint(dir, extra)?;
    run::write_metrics(dir, trainer.metrics())
}

/// Labels as a comma-separated list.
pub fn list(labels: &[u8]) -> String {
    labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
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
    let widths: Vec<String> = widths.iter().map(|h| h.to_string()).collect();
    let levels = match c.levels() {
        1 => String::new(),
        n => format!(", {n} stochastic layers"),
    };
    format!(
        "a {} VAE ({}, {} decoder{levels})",
        widths.join("-"),
        c.activation,
        c.likelihood
    )
}

fn epoch_line(m: &EpochMetrics, epochs: usize, images: usize, args: &TrainArgs) -> String {
    // The bound trained, when it is not the ELBO shown.
    let bound = match (args.objective, args.samples) {
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

/// The flags as JSON (the run's configuration file).
pub fn config_json(args: &TrainArgs) -> String {
    let resolved = TrainArgs {
        epochs: Some(args.total_epochs()),
        ..args.clone()
    };
    serde_json::to_string_pretty(&resolved).expect("the flags serialise")
}

/// The pictures of a finished run: 8x8 prior samples, and 8 test images over their
/// reconstructions.
fn write_pictures(
    dir: &Path,
    model: &mut Vae<f32>,
    test: &Split,
    scale: Option<usize>,
    rng: &mut impl Rng,
) -> Result<()> {
    let (h, w) = (test.rows, test.cols);
    let scale = scale_for(scale, h, w)?;
    let samples = model.sample(64, rng);
    write_png(&dir.join(run::SAMPLES), &tile(samples.view(), h, w, 8).upscaled(scale))?;
    let originals = test.images.slice(s![..8.min(test.len()), ..]);
    let recon = model.reconstruct(originals);
    let both: Array2<f32> = concatenate![Axis(0), originals, recon];
    write_png(
        &dir.join(run::RECONSTRUCTIONS),
        &tile(both.view(), h, w, originals.nrows()).upscaled(scale),
    )?;
    Ok(())
}
