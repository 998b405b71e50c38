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
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use ndarray::{Array2, Axis, concatenate, s};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vae_mnist::{BatchConfig, Batches, DatasetError, IdxError, Limits, Mnist, Split, stream_seed};
use vae_model::checkpoint::{self, write_atomic};
use vae_model::{LossSums, Objective, Vae};
use vae_nn::{Adam, AdamConfig, Optimizer};

use crate::cli::TrainArgs;
use crate::image::{scale_for, tile, write_png};
use crate::report::Progress;
use crate::run::{self, EpochMetrics};

/// Salts of the random streams derived from the seed (see `vae_mnist::stream_seed`).
mod salt {
    pub const INIT: u64 = 10;
    pub const NOISE: u64 = 11;
    pub const TEST_NOISE: u64 = 12;
    pub const TEST_BINARIZE: u64 = 13;
    pub const PICTURES: u64 = 14;
}

/// Images per evaluation batch.
pub const EVAL_BATCH: usize = 1000;

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

/// Where training stands: whole epochs done, batches done in the next one, and that partial
/// epoch's sums and seconds.
#[derive(Clone, Debug, Default)]
struct Position {
    epochs_done: usize,
    batches_done: usize,
    partial: LossSums,
    partial_seconds: f64,
}

/// The KL weight at fractional epoch `t` (epochs done, counting the current batch).
pub fn kl_weight(beta: f64, warmup: f64, t: f64) -> f64 {
    if warmup > 0.0 {
        beta * (t / warmup).min(1.0)
    } else {
        beta
    }
}

/// The RNG of one batch's reparameterisation noise.
fn batch_rng(seed: u64, epoch: usize, batch: usize) -> StdRng {
    StdRng::seed_from_u64(stream_seed(
        stream_seed(seed, epoch as u64, salt::NOISE),
        batch as u64,
        0,
    ))
}

/// Draws a fixed binarization of a split (for evaluating a model trained on binarized data).
fn binarized(split: &Split, seed: u64) -> Split {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = split.clone();
    out.images
        .mapv_inplace(|p| if rng.random::<f32>() < p { 1.0 } else { 0.0 });
    out
}

/// The test split a run evaluates on (binarized once, with a fixed seed, if it trains on
/// binarized images).
pub fn test_split<'a>(args: &TrainArgs, mnist: &'a Mnist) -> Cow<'a, Split> {
    if args.binarize {
        Cow::Owned(binarized(&mnist.test, stream_seed(args.seed, 0, salt::TEST_BINARIZE)))
    } else {
        Cow::Borrowed(&mnist.test)
    }
}

/// Sums of the loss over a whole split, in batches of [`EVAL_BATCH`], z sampled.
pub fn evaluate(model: &mut Vae<f32>, split: &Split, rng: &mut impl Rng) -> LossSums {
    let mut sums = LossSums::default();
    for chunk in split.images.axis_chunks_iter(Axis(0), EVAL_BATCH) {
        sums.add(&model.evaluate(chunk, rng));
    }
    sums
}

/// Runs `f` on a rayon pool of `threads` threads (all cores if `None`).
pub fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .context("starting the thread pool")?;
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
    args.validate()?;
    let (args, run_dir, resume) = match &args.resume {
        Some(dir) => {
            let (stored, position, metrics) = read_resume_state(dir)?;
            let args = TrainArgs {
                epochs: Some(args.epochs.unwrap_or(stored.total_epochs())),
                threads: args.threads.or(stored.threads),
                resume: None,
                inject_nan_at: args.inject_nan_at,
                run_dir: Some(dir.clone()),
                ..stored
            };
            (args, dir.clone(), Some((position, metrics)))
        }
        None => {
            let dir = args.run_dir.clone().unwrap_or_else(run::default_run_dir);
            prepare_run_dir(&dir, args.overwrite)?;
            (args.clone(), dir, None)
        }
    };
    args.validate()?;
    let mnist = load_data(&args.data, &args.limits())?;
    with_threads(args.threads, || {
        train_in_pool(&args, &mnist, &run_dir, resume, progress)
    })?
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

/// Reads a run's training state: its flags, position and metrics.
fn read_resume_state(dir: &Path) -> Result<(TrainArgs, Position, Vec<EpochMetrics>)> {
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
    let meta = |key: &str| -> Result<&String> {
        state
            .metadata
            .get(key)
            .with_context(|| format!("{}: no '{key}' in the training state", path.display()))
    };
    let num = |key: &str| -> Result<f64> {
        meta(key)?
            .parse()
            .with_context(|| format!("{}: '{key}' is not a number", path.display()))
    };
    let stored: TrainArgs = serde_json::from_str(meta("train.config")?)
        .with_context(|| format!("{}: invalid 'train.config'", path.display()))?;
    let metrics: Vec<EpochMetrics> = serde_json::from_str(meta("train.metrics")?)
        .with_context(|| format!("{}: invalid 'train.metrics'", path.display()))?;
    let position = Position {
        epochs_done: num("epochs_done")? as usize,
        batches_done: num("batches_done")? as usize,
        partial: LossSums {
            images: num("partial.images")? as usize,
            recon: num("partial.recon")?,
            kl: num("partial.kl")?,
            objective: num("partial.objective")?,
        },
        partial_seconds: num("partial.seconds")?,
    };
    ensure!(
        metrics.len() == position.epochs_done,
        "{}: {} epochs of metrics but the position is after epoch {}",
        path.display(),
        metrics.len(),
        position.epochs_done
    );
    Ok((stored, position, metrics))
}

/// Restores the weights and the optimizer's state from a run's training state.
fn restore(dir: &Path, model: &mut Vae<f32>, adam: &mut Adam<f32>) -> Result<()> {
    let path = dir.join(run::STATE);
    let state = checkpoint::load_tensors(&path)?;
    let named: Vec<_> = model.named_params().to_vec();
    for (i, (name, v)) in named.iter().enumerate() {
        let (r, c) = model.tape().dim(*v);
        *model.tape_mut().param_mut(*v) = state.matrix(&format!("model.{name}"), r, c)?;
        let (mut m, mut v) = adam.moments_mut(i);
        m.assign(&state.matrix(&format!("adam.m.{name}"), r, c)?);
        v.assign(&state.matrix(&format!("adam.v.{name}"), r, c)?);
    }
    adam.steps = state
        .metadata
        .get("adam.steps")
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{}: missing 'adam.steps'", path.display()))?;
    Ok(())
}

fn train_in_pool(
    args: &TrainArgs,
    mnist: &Mnist,
    run_dir: &Path,
    resume: Option<(Position, Vec<EpochMetrics>)>,
    progress: &mut Progress,
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
    let config = args.model_config(train_split.pixels());
    let mut init_rng = StdRng::seed_from_u64(stream_seed(args.seed, 0, salt::INIT));
    let mut model = Vae::<f32>::new(config, &mut init_rng)?;
    let params = model.params().to_vec();
    let adam_cfg = AdamConfig {
        lr: args.lr,
        ..Default::default()
    };
    let mut adam = Adam::new(adam_cfg, model.tape(), &params);
    let (mut position, mut metrics) = resume.clone().unwrap_or_default();
    if resume.is_some() {
        restore(run_dir, &mut model, &mut adam)?;
    }
    let mut batches = Batches::new(
        &train_split,
        BatchConfig {
            batch_size: args.batch_size,
            shuffle: true,
            seed: args.seed,
            subset: args.subset,
            binarize: args.binarize,
        },
    );
    let config_path = run_dir.join(run::CONFIG);
    write_atomic(&config_path, config_json(args).as_bytes())
        .with_context(|| format!("writing {}", config_path.display()))?;
    let epochs = args.total_epochs();
    progress.line(&format!(
        "{} {} ({} parameters) on {} images, testing on {}; {} threads, SIMD {}; run directory {}",
        if resume.is_some() { "resuming" } else { "training" },
        describe(&model),
        model.num_parameters(),
        batches.images_per_epoch(),
        test_split.len(),
        rayon::current_num_threads(),
        vae_linalg::simd::level(),
        run_dir.display()
    ));
    let n_batches = batches.batches_per_epoch();
    for epoch in position.epochs_done..epochs {
        batches.start_epoch(epoch as u64);
        batches.skip_batches(position.batches_done);
        progress.start_epoch(epoch + 1, epochs, batches.images_per_epoch());
        progress.skip(position.partial.images);
        let mut sums = position.partial;
        let mut weight = kl_weight(args.beta, args.warmup, epoch as f64);
        let start = Instant::now();
        let mut b = position.batches_done;
        while let Some(batch) = batches.next_batch() {
            weight = kl_weight(args.beta, args.warmup, epoch as f64 + (b + 1) as f64 / n_batches as f64);
            let objective = Objective {
                kl_weight: weight,
                free_bits: args.free_bits,
            };
            let mut rng = batch_rng(args.seed, epoch, b);
            let step = if args.inject_nan_at == Some(epoch * n_batches + b) {
                let mut poisoned = batch.images.to_owned();
                poisoned[[0, 0]] = f32::NAN;
                model.train_step(poisoned.view(), &mut rng, objective)
            } else {
                model.train_step(batch.images, &mut rng, objective)
            };
            b += 1;
            if !step.is_finite() {
                progress.finish_epoch();
                bail!(diverged_message(epoch + 1, b, &step, run_dir, &position));
            }
            adam.step(model.tape_mut(), &params);
            sums.add(&step);
            progress.advance(step.images, sums.neg_elbo());
            if INTERRUPT.load(Ordering::SeqCst) && b < n_batches {
                progress.finish_epoch();
                position = Position {
                    epochs_done: epoch,
                    batches_done: b,
                    partial: sums,
                    partial_seconds: position.partial_seconds + start.elapsed().as_secs_f64(),
                };
                save_checkpoint(run_dir, &model, &adam, args, &position, &metrics)?;
                progress.line(&format!("stopped after batch {b} of epoch {}", epoch + 1));
                return Err(Interrupted {
                    run_dir: run_dir.to_path_buf(),
                }
                .into());
            }
        }
        let seconds = position.partial_seconds + start.elapsed().as_secs_f64();
        progress.finish_epoch();
        let mut test_rng = StdRng::seed_from_u64(stream_seed(args.seed, epoch as u64, salt::TEST_NOISE));
        let test = evaluate(&mut model, &test_split, &mut test_rng);
        let m = EpochMetrics::new(epoch + 1, &sums, &test, weight, seconds);
        progress.line(&epoch_line(&m, epochs, sums.images));
        metrics.push(m);
        position = Position {
            epochs_done: epoch + 1,
            ..Position::default()
        };
        save_checkpoint(run_dir, &model, &adam, args, &position, &metrics)?;
        if INTERRUPT.load(Ordering::SeqCst) && epoch + 1 < epochs {
            return Err(Interrupted {
                run_dir: run_dir.to_path_buf(),
            }
            .into());
        }
    }
    let mut pic_rng = StdRng::seed_from_u64(stream_seed(args.seed, 0, salt::PICTURES));
    write_pictures(run_dir, &mut model, &test_split, args.scale, &mut pic_rng)?;
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

/// Labels as a comma-separated list.
pub fn list(labels: &[u8]) -> String {
    labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
}

fn describe(model: &Vae<f32>) -> String {
    let c = model.config();
    let hidden: Vec<String> = c.hidden.iter().map(|h| h.to_string()).collect();
    format!(
        "a {}-{}-{} VAE ({}, {} decoder)",
        c.input,
        hidden.join("-"),
        c.latent,
        c.activation,
        c.likelihood
    )
}

fn epoch_line(m: &EpochMetrics, epochs: usize, images: usize) -> String {
    format!(
        "epoch {:>2}/{epochs}  train -ELBO {:8.2} (rec {:7.2}, KL {:6.2})  test -ELBO {:8.2} (rec {:7.2}, KL {:6.2})  {:6.2} s  {:7.0} img/s",
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

fn diverged_message(epoch: usize, batch: usize, step: &LossSums, run_dir: &Path, last: &Position) -> String {
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
        "training diverged at epoch {epoch}, batch {batch}: the loss is not finite (reconstruction {}, KL {}); {kept}. \
         Try a lower learning rate (e.g. --lr 1e-4) or a KL warm-up (--warmup 5).",
        step.recon, step.kl
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

/// Saves the training state (weights, Adam, position, metrics, flags: one file, one atomic
/// rename), then the shareable model, then the metrics file. A kill at any moment leaves
/// each file whole, and the training state always consistent with itself.
fn save_checkpoint(
    dir: &Path,
    model: &Vae<f32>,
    adam: &Adam<f32>,
    args: &TrainArgs,
    pos: &Position,
    metrics: &[EpochMetrics],
) -> Result<()> {
    let mut tensors = checkpoint::model_tensors(model);
    for (name, _, _) in &mut tensors {
        name.insert_str(0, "model.");
    }
    for (i, (name, _)) in model.named_params().iter().enumerate() {
        let (m, v) = adam.moments(i);
        for (kind, state) in [("adam.m", m), ("adam.v", v)] {
            let shape = vec![state.nrows(), state.ncols()];
            tensors.push((format!("{kind}.{name}"), shape, state.iter().copied().collect()));
        }
    }
    let meta: HashMap<String, String> = [
        ("adam.steps", adam.steps.to_string()),
        ("epochs_done", pos.epochs_done.to_string()),
        ("batches_done", pos.batches_done.to_string()),
        ("partial.images", pos.partial.images.to_string()),
        ("partial.recon", format!("{:e}", pos.partial.recon)),
        ("partial.kl", format!("{:e}", pos.partial.kl)),
        ("partial.objective", format!("{:e}", pos.partial.objective)),
        ("partial.seconds", format!("{:e}", pos.partial_seconds)),
        ("train.config", config_json(args)),
        (
            "train.metrics",
            serde_json::to_string(metrics).expect("metrics serialise"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    checkpoint::save_tensors(&dir.join(run::STATE), &tensors, meta)?;
    let model_meta = HashMap::from([
        ("epochs_done".to_string(), pos.epochs_done.to_string()),
        ("batches_done".to_string(), pos.batches_done.to_string()),
        ("vae.train".to_string(), config_json(args)),
    ]);
    checkpoint::save(model, &dir.join(run::MODEL), model_meta)?;
    run::write_metrics(dir, metrics)?;
    Ok(())
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
