//! `vae-train train`: the training loop, per-epoch evaluation, checkpoints and pictures.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ndarray::{Array2, Axis, concatenate, s};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vae_mnist::{BatchConfig, Batches, Mnist, Split, stream_seed};
use vae_model::checkpoint::{self, write_atomic};
use vae_model::{LossSums, Objective, Vae};
use vae_nn::{Adam, AdamConfig, Optimizer};

use crate::cli::TrainArgs;
use crate::image::{tile, write_png};
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

/// What a finished run leaves behind.
#[derive(Debug)]
pub struct Outcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// One row per epoch.
    pub metrics: Vec<EpochMetrics>,
}

/// The KL weight at fractional epoch `t` (epochs done, counting the current batch).
pub fn kl_weight(beta: f64, warmup: f64, t: f64) -> f64 {
    if warmup > 0.0 {
        beta * (t / warmup).min(1.0)
    } else {
        beta
    }
}

/// Draws a fixed binarization of a split (for evaluating a model trained on binarized data).
fn binarized(split: &Split, seed: u64) -> Split {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = split.clone();
    out.images
        .mapv_inplace(|p| if rng.random::<f32>() < p { 1.0 } else { 0.0 });
    out
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

/// Trains as `args` says, reporting through `progress`.
pub fn train(args: &TrainArgs, progress: &mut Progress) -> Result<Outcome> {
    args.validate()?;
    let mnist = Mnist::load(&args.data).with_context(|| {
        format!(
            "loading MNIST from {} (give the directory holding the IDX files with --data)",
            args.data.display()
        )
    })?;
    let run_dir = args.run_dir.clone().unwrap_or_else(run::default_run_dir);
    prepare_run_dir(&run_dir)?;
    with_threads(args.threads, || train_in_pool(args, &mnist, &run_dir, progress))?
}

/// Creates the run directory, refusing to overwrite a finished or interrupted run.
fn prepare_run_dir(dir: &Path) -> Result<()> {
    if dir.join(run::MODEL).exists() {
        bail!(
            "{} already holds a trained model; choose another --run-dir (nothing was overwritten)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating run directory {}", dir.display()))
}

fn train_in_pool(args: &TrainArgs, mnist: &Mnist, run_dir: &Path, progress: &mut Progress) -> Result<Outcome> {
    let train_split = match args.exclude_digit {
        Some(d) => Cow::Owned(mnist.train.filter(|l| l != d)),
        None => Cow::Borrowed(&mnist.train),
    };
    let test_split = if args.binarize {
        Cow::Owned(binarized(&mnist.test, stream_seed(args.seed, 0, salt::TEST_BINARIZE)))
    } else {
        Cow::Borrowed(&mnist.test)
    };
    let config = args.model_config(train_split.pixels());
    let mut init_rng = StdRng::seed_from_u64(stream_seed(args.seed, 0, salt::INIT));
    let mut model = Vae::<f32>::new(config, &mut init_rng)?;
    let params = model.params().to_vec();
    let adam_cfg = AdamConfig {
        lr: args.lr,
        ..Default::default()
    };
    let mut adam = Adam::new(adam_cfg, model.tape(), &params);
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
    write_atomic(&run_dir.join(run::CONFIG), config_json(args).as_bytes())
        .with_context(|| format!("writing {}", run_dir.join(run::CONFIG).display()))?;
    progress.line(&format!(
        "training {} ({} parameters) on {} images, testing on {}; run directory {}",
        describe(&model),
        model.num_parameters(),
        batches.images_per_epoch(),
        test_split.len(),
        run_dir.display()
    ));
    let n_batches = batches.batches_per_epoch();
    let mut metrics = Vec::new();
    for epoch in 0..args.epochs {
        batches.start_epoch(epoch as u64);
        let mut rng = StdRng::seed_from_u64(stream_seed(args.seed, epoch as u64, salt::NOISE));
        progress.start_epoch(epoch + 1, args.epochs, batches.images_per_epoch());
        let mut sums = LossSums::default();
        let mut weight = kl_weight(args.beta, args.warmup, epoch as f64);
        let start = Instant::now();
        let mut b = 0;
        while let Some(batch) = batches.next_batch() {
            b += 1;
            weight = kl_weight(args.beta, args.warmup, epoch as f64 + b as f64 / n_batches as f64);
            let objective = Objective {
                kl_weight: weight,
                free_bits: args.free_bits,
            };
            let step = model.train_step(batch.images, &mut rng, objective);
            if !step.is_finite() {
                progress.finish_epoch();
                bail!(diverged_message(epoch + 1, b, &step, run_dir, epoch));
            }
            adam.step(model.tape_mut(), &params);
            sums.add(&step);
            progress.advance(step.images, sums.neg_elbo());
        }
        let seconds = start.elapsed().as_secs_f64();
        progress.finish_epoch();
        let mut test_rng = StdRng::seed_from_u64(stream_seed(args.seed, epoch as u64, salt::TEST_NOISE));
        let test = evaluate(&mut model, &test_split, &mut test_rng);
        let m = EpochMetrics::new(epoch + 1, &sums, &test, weight, seconds);
        progress.line(&epoch_line(&m, args.epochs, sums.images));
        metrics.push(m);
        save_checkpoint(run_dir, &model, &adam, args, epoch + 1)?;
        run::write_metrics(run_dir, &metrics)?;
    }
    let mut pic_rng = StdRng::seed_from_u64(stream_seed(args.seed, 0, salt::PICTURES));
    write_pictures(run_dir, &mut model, &test_split, &mut pic_rng)?;
    progress.line(&format!(
        "done: test -ELBO {:.2} nats after {} epochs; wrote {}",
        metrics.last().map_or(f64::NAN, |m| m.test_loss),
        args.epochs,
        run_dir.display()
    ));
    Ok(Outcome {
        run_dir: run_dir.to_path_buf(),
        metrics,
    })
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

fn diverged_message(epoch: usize, batch: usize, step: &LossSums, run_dir: &Path, epochs_done: usize) -> String {
    let kept = if epochs_done > 0 {
        format!(
            "the last good checkpoint (epoch {epochs_done}) is kept in {}",
            run_dir.join(run::MODEL).display()
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
    let v = serde_json::json!({
        "data": args.data,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "hidden": args.hidden,
        "latent": args.latent,
        "activation": args.activation,
        "likelihood": args.likelihood,
        "beta": args.beta,
        "warmup": args.warmup,
        "free_bits": args.free_bits,
        "binarize": args.binarize,
        "seed": args.seed,
        "threads": args.threads,
        "subset": args.subset,
        "exclude_digit": args.exclude_digit,
    });
    serde_json::to_string_pretty(&v).expect("JSON")
}

/// Saves the optimizer state, then the model (each atomically), stamped with the epoch.
fn save_checkpoint(dir: &Path, model: &Vae<f32>, adam: &Adam<f32>, args: &TrainArgs, epochs_done: usize) -> Result<()> {
    let stamp = |m: &mut HashMap<String, String>| {
        m.insert("epochs_done".into(), epochs_done.to_string());
    };
    let names: Vec<&str> = model.named_params().iter().map(|(n, _)| n.as_str()).collect();
    let mut tensors = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for (kind, state) in [("m", &adam.m[i]), ("v", &adam.v[i])] {
            tensors.push((
                format!("{kind}.{name}"),
                vec![state.nrows(), state.ncols()],
                state.iter().copied().collect(),
            ));
        }
    }
    let mut meta = HashMap::new();
    meta.insert("adam.steps".into(), adam.steps.to_string());
    stamp(&mut meta);
    checkpoint::save_tensors(&dir.join(run::OPTIMIZER), &tensors, meta)?;
    let mut meta = HashMap::new();
    stamp(&mut meta);
    meta.insert("vae.train".into(), config_json(args));
    checkpoint::save(model, &dir.join(run::MODEL), meta)?;
    Ok(())
}

/// The pictures of a finished run: 8x8 prior samples, and 8 test images over their
/// reconstructions.
fn write_pictures(dir: &Path, model: &mut Vae<f32>, test: &Split, rng: &mut impl Rng) -> Result<()> {
    let (h, w) = (test.rows, test.cols);
    let samples = model.sample(64, rng);
    write_png(&dir.join(run::SAMPLES), &tile(samples.view(), h, w, 8))?;
    let originals = test.images.slice(s![..8.min(test.len()), ..]);
    let recon = model.reconstruct(originals);
    let both: Array2<f32> = concatenate![Axis(0), originals, recon];
    write_png(
        &dir.join(run::RECONSTRUCTIONS),
        &tile(both.view(), h, w, originals.nrows()),
    )?;
    Ok(())
}
