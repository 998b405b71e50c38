//! [`Trainer`]: the loop, its position, evaluation, divergence, and the training-state file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::Distribution;
use vae_data::{BatchConfig, Batches, Split, stream_seed};
use vae_model::checkpoint::{self, CheckpointError, Loaded};
use vae_model::{Bound, ConfigError, LossSums, Objective, Vae, VaeConfig};
use vae_nn::{Adam, AdamConfig, Optimizer};

use crate::{EpochMetrics, LrSchedule};

/// The file holding everything a resume needs (weights, Adam's moments and step, position,
/// metrics, and the caller's metadata), replaced in one atomic step.
pub const STATE_FILE: &str = "training_state.safetensors";
/// The shareable, weights-only checkpoint (PyTorch's tensor names and layout).
pub const MODEL_FILE: &str = "model.safetensors";

/// Salts of the random streams derived from the seed (see `vae_data::stream_seed`).
pub mod salt {
    /// Weight initialisation.
    pub const INIT: u64 = 10;
    /// A training batch's reparameterisation noise.
    pub const NOISE: u64 = 11;
    /// The test evaluation's noise after each epoch.
    pub const TEST_NOISE: u64 = 12;
    /// The one fixed binarization of the test set.
    pub const TEST_BINARIZE: u64 = 13;
    /// The pictures of a finished run.
    pub const PICTURES: u64 = 14;
    /// The training images a VampPrior's pseudo-inputs start from.
    pub const PSEUDO_INPUTS: u64 = 15;
}

/// Images per evaluation batch.
pub const EVAL_BATCH: usize = 1000;

/// How to train (the model's architecture is a [`VaeConfig`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Adam's hyper-parameters (learning rate, betas, epsilon, weight decay).
    pub adam: AdamConfig,
    /// Weight of the KL term (β-VAE); 1 is the ELBO.
    pub beta: f64,
    /// Epochs over which the KL weight rises linearly from 0 to β (0: none).
    pub warmup: f64,
    /// Free bits: minimum KL per latent unit, in nats (0: off).
    pub free_bits: f64,
    /// Dynamic binarization: each training pixel drawn as Bernoulli(intensity) every epoch.
    pub binarize: bool,
    /// Seed of every random stream.
    pub seed: u64,
    /// Train on the first N training images only.
    pub subset: Option<usize>,
    /// How the learning rate (`adam.lr`) changes from epoch to epoch.
    pub schedule: LrSchedule,
    /// The bound trained: the ELBO or the importance-weighted bound.
    pub bound: Bound,
    /// Samples of z per image (K).
    pub samples: usize,
    /// The encoder gradient through the samples alone (DReG for IWAE, STL for the ELBO).
    pub dreg: bool,
}

impl TrainConfig {
    /// The objective at a KL weight.
    pub fn objective(&self, kl_weight: f64) -> Objective {
        Objective {
            kl_weight,
            free_bits: self.free_bits,
            bound: self.bound,
            samples: self.samples,
            dreg: self.dreg,
        }
    }
}

impl Default for TrainConfig {
    /// PyTorch's example: batch 128, Adam lr 1e-3, β = 1, seed 1.
    fn default() -> Self {
        TrainConfig {
            batch_size: 128,
            adam: AdamConfig::default(),
            beta: 1.0,
            warmup: 0.0,
            free_bits: 0.0,
            binarize: false,
            seed: 1,
            subset: None,
            schedule: LrSchedule::Constant,
            bound: Bound::Elbo,
            samples: 1,
            dreg: false,
        }
    }
}

/// Where training stands: whole epochs done, batches done in the next one, and that partial
/// epoch's sums and training seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Position {
    /// Complete epochs (evaluated and recorded).
    pub epochs_done: usize,
    /// Batches done in the epoch after them.
    pub batches_done: usize,
    /// Loss sums of those batches.
    pub partial: LossSums,
    /// Seconds spent on those batches.
    pub partial_seconds: f64,
}

/// What the callback of [`Trainer::run_epoch`] asks for after each batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop after this batch (the position is kept, ready for a checkpoint).
    Stop,
}

/// How [`Trainer::run_epoch`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochEnd {
    /// Every batch of the epoch is done: call [`Trainer::end_epoch`].
    Complete,
    /// The callback asked to stop part-way.
    Stopped,
}

/// The loss of a batch was not finite: the update was not applied.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("the loss is not finite at epoch {epoch}, batch {batch} (reconstruction {}, KL {})", sums.recon, sums.kl)]
pub struct Diverged {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based batch within it.
    pub batch: usize,
    /// The batch's sums.
    pub sums: LossSums,
}

/// Why a training state could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read or is damaged.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// An entry of the metadata is missing or malformed.
    #[error("{path}: {reason}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The collective operations data-parallel training needs, across the processes (ranks)
/// that train one model together: `vae-train` implements it over MPI. Every rank runs the
/// same [`Trainer`] on the same data and seed; each takes its shard of every batch, and one
/// [`Collective::allreduce_sum`] per step adds up the gradients (and the batch's loss sums
/// and stop requests), so that every rank applies the same update.
pub trait Collective {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Replaces `buf` on every rank by the element-wise sum of every rank's `buf`.
    fn allreduce_sum(&mut self, buf: &mut [f32]);
    /// As [`Collective::allreduce_sum`], in f64 (evaluation sums and per-image scores).
    fn allreduce_sum_f64(&mut self, buf: &mut [f64]);
    /// Whether `v` is the same on every rank.
    fn all_equal(&mut self, v: u64) -> bool;
    /// Seconds spent in [`Collective::allreduce_sum`] so far, and its calls (for reports).
    fn allreduce_stats(&self) -> (f64, u64) {
        (0.0, 0)
    }
}

/// The KL weight at fractional epoch `t` (epochs done, counting the current batch).
pub fn kl_weight(beta: f64, warmup: f64, t: f64) -> f64 {
    if warmup > 0.0 {
        beta * (t / warmup).min(1.0)
    } else {
        beta
    }
}

/// A split with every pixel drawn once as Bernoulli(intensity) from `seed` (the fixed test
/// set of a model trained on binarized images).
pub fn binarized(split: &Split, seed: u64) -> Split {
    let mut rng = StdRng::seed_from_u64(seed);
    let images = split
        .images
        .f32()
        .mapv(|p| if rng.random::<f32>() < p { 1.0 } else { 0.0 });
    Split {
        images: images.into(),
        labels: split.labels.clone(),
        shape: split.shape,
    }
}

/// Starts a VampPrior's pseudo-inputs as training images (their grey levels, squeezed into
/// [0.01, 0.99], from the subset if any) drawn by the seed's stream, so that its
/// components begin where the data is; a standard prior has none.
fn seed_pseudo_inputs(model: &mut Vae<f32>, train: &Split, subset: Option<usize>, seed: u64) {
    let n = subset.map_or(train.len(), |s| s.min(train.len()));
    let Some(u) = model.pseudo_inputs_mut() else {
        return;
    };
    if n == 0 {
        return;
    }
    let mut rng = StdRng::seed_from_u64(stream_seed(seed, 0, salt::PSEUDO_INPUTS));
    for mut row in u.rows_mut() {
        let i = rng.random_range(0..n);
        // Inside (0, 1), so that the clipping of a Bernoulli model's pseudo-inputs to
        // [0, 1] leaves every pixel a gradient.
        row.assign(&train.images.rows_f32(i..i + 1).row(0).mapv(|v| 0.01 + 0.98 * v));
    }
}

/// Sums of `model`'s loss over a whole split, in batches of [`EVAL_BATCH`], z sampled from
/// `rng`.
pub fn evaluate(model: &mut Vae<f32>, split: &Split, rng: &mut impl Rng) -> LossSums {
    let mut sums = LossSums::default();
    let n = split.len();
    for start in (0..n).step_by(EVAL_BATCH) {
        let chunk = split.images.rows_f32(start..(start + EVAL_BATCH).min(n));
        sums.add(&model.evaluate(chunk.view(), rng));
    }
    sums
}

/// A VAE in training on a split: model, optimizer, batch stream, position and metrics.
pub struct Trainer<'d> {
    config: TrainConfig,
    model: Vae<f32>,
    params: Vec<vae_autograd::Var>,
    adam: Adam<f32>,
    batches: Batches<'d>,
    position: Position,
    metrics: Vec<EpochMetrics>,
    /// Whether the batch stream is positioned inside `position.epochs_done`.
    started: bool,
    /// The KL weight of the last batch.
    weight: f64,
    poison: Option<usize>,
    /// Data parallelism across processes, if any, and its flat exchange buffer.
    collective: Option<Box<dyn Collective>>,
    flat: Vec<f32>,
    /// A stop asked by the callback, to be agreed on by every rank at the next step.
    stop_asked: bool,
}

impl<'d> Trainer<'d> {
    /// A fresh model (initialised from the seed's stream) to train on `train`.
    pub fn new(model: VaeConfig, config: TrainConfig, train: &'d Split) -> Result<Self, ConfigError> {
        config.objective(1.0).validate(&model)?;
        let mut init = StdRng::seed_from_u64(stream_seed(config.seed, 0, salt::INIT));
        let mut model = Vae::<f32>::new(model, &mut init)?;
        seed_pseudo_inputs(&mut model, train, config.subset, config.seed);
        let params = model.params().to_vec();
        let adam = Adam::new(config.adam, model.tape(), &params);
        let batches = Batches::new(
            train,
            BatchConfig {
                batch_size: config.batch_size,
                shuffle: true,
                seed: config.seed,
                subset: config.subset,
                binarize: config.binarize,
            },
        );
        let weight = kl_weight(config.beta, config.warmup, 0.0);
        Ok(Trainer {
            config,
            model,
            params,
            adam,
            batches,
            position: Position::default(),
            metrics: Vec::new(),
            started: false,
            weight,
            poison: None,
            collective: None,
            flat: Vec::new(),
            stop_asked: false,
        })
    }

    /// Trains data-parallel with the other ranks of `collective`: from now on each step
    /// computes this rank's shard of the batch (rows `rank * n / size ..`), and the gradients
    /// of all ranks are summed before the update. `--batch-size` stays the global batch.
    pub fn set_collective(&mut self, collective: Box<dyn Collective>) {
        self.collective = Some(collective);
    }

    /// The collective, if training is data-parallel.
    pub fn collective_mut(&mut self) -> Option<&mut (dyn Collective + 'static)> {
        self.collective.as_deref_mut()
    }

    /// This process's rank in a data-parallel run (0 without one).
    pub fn rank(&self) -> usize {
        self.collective.as_ref().map_or(0, |c| c.rank())
    }

    /// A checksum of the weights' bits (FNV-1a over every parameter), equal on every rank
    /// of a data-parallel run as long as the ranks agree.
    pub fn weights_checksum(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &p in &self.params {
            for &w in self.model.tape().value(p) {
                h = (h ^ u64::from(w.to_bits())).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }

    /// The training settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The model.
    pub fn model(&self) -> &Vae<f32> {
        &self.model
    }

    /// The model, mutably (to sample or evaluate between epochs).
    pub fn model_mut(&mut self) -> &mut Vae<f32> {
        &mut self.model
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &Adam<f32> {
        &self.adam
    }

    /// Where training stands.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// One row per complete epoch.
    pub fn metrics(&self) -> &[EpochMetrics] {
        &self.metrics
    }

    /// Images in one epoch (the subset, if any).
    pub fn images_per_epoch(&self) -> usize {
        self.batches.images_per_epoch()
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.batches.batches_per_epoch()
    }

    /// The learning rate of the current epoch (the base rate times the schedule's factor).
    pub fn current_lr(&self) -> f64 {
        self.config.adam.lr
            * self
                .config
                .schedule
                .factor(self.position.epochs_done, self.seconds_before_epoch())
    }

    /// Seconds spent on training batches so far, over every session of the run (evaluation
    /// and checkpoints excluded): the clock of the snapshots and of time-based schedules.
    pub fn trained_seconds(&self) -> f64 {
        self.seconds_before_epoch() + self.position.partial_seconds
    }

    /// Seconds spent on the complete epochs: what a time-based schedule's factor for the
    /// current epoch is computed from (so that a run resumed part-way through an epoch
    /// keeps that epoch's rate).
    fn seconds_before_epoch(&self) -> f64 {
        self.metrics.iter().map(|m| m.train_seconds).sum()
    }

    /// Whether the run's time-based schedule has run its course (never, for epoch-based
    /// ones): the run is then complete.
    pub fn schedule_is_over(&self) -> bool {
        self.config.schedule.is_over(self.trained_seconds())
    }

    /// The KL weight of the last batch (β times the warm-up).
    pub fn current_kl_weight(&self) -> f64 {
        self.weight
    }

    /// Testing aid: poisons the batch with this global index (0-based) with a NaN.
    #[doc(hidden)]
    pub fn poison_batch(&mut self, global_batch: Option<usize>) {
        self.poison = global_batch;
    }

    /// Trains on one batch of the current epoch (Adam update included) and returns its sums,
    /// or `Ok(None)` when the epoch has no batch left (then call [`Trainer::end_epoch`]).
    ///
    /// # Errors
    /// [`Diverged`] if the loss is not finite; the update is then not applied, and the
    /// position stays after the last good batch.
    pub fn step(&mut self) -> Result<Option<LossSums>, Diverged> {
        let epoch = self.position.epochs_done;
        if !self.started {
            self.adam.config.lr = self.current_lr();
            self.batches.start_epoch(epoch as u64);
            self.batches.skip_batches(self.position.batches_done);
            self.started = true;
        }
        let n_batches = self.batches.batches_per_epoch();
        let b = self.position.batches_done;
        let Some(batch) = self.batches.next_batch() else {
            return Ok(None);
        };
        let c = &self.config;
        self.weight = kl_weight(c.beta, c.warmup, epoch as f64 + (b + 1) as f64 / n_batches as f64);
        let objective = c.objective(self.weight);
        let mut rng = StdRng::seed_from_u64(stream_seed(stream_seed(c.seed, epoch as u64, salt::NOISE), b as u64, 0));
        let rows = batch.images.nrows();
        // This rank's rows; a single process takes them all.
        let shard = match &self.collective {
            Some(col) => rows * col.rank() / col.size()..rows * (col.rank() + 1) / col.size(),
            None => 0..rows,
        };
        // The noise of the rows before the shard, drawn and dropped, so that every row gets
        // the noise a single process would give it.
        for _ in 0..shard.start * self.model.noise_per_image(objective) {
            let _: f64 = rand_distr::StandardNormal.sample(&mut rng);
        }
        let x = batch.images.slice(ndarray::s![shard.clone(), ..]);
        let mut sums = if shard.is_empty() {
            // A last batch with fewer rows than ranks: this rank adds nothing.
            LossSums::default()
        } else if self.poison == Some(epoch * n_batches + b) && shard.start == 0 {
            let mut poisoned = x.to_owned();
            poisoned[[0, 0]] = f32::NAN;
            self.model.train_step(poisoned.view(), &mut rng, objective)
        } else {
            // One team for the whole forward and backward pass: the pool's threads wait in
            // a spin loop between its ops instead of going to sleep (see vae_linalg::team).
            let model = &mut self.model;
            vae_linalg::team::with_team(|| model.train_step(x, &mut rng, objective))
        };
        if self.collective.is_some() {
            let stop;
            (sums, stop) = self.reduce(sums, shard.len(), rows);
            if stop {
                // Not applied: the stream is positioned afresh by the next step.
                self.started = false;
                return Ok(None);
            }
        }
        if !sums.is_finite() {
            return Err(Diverged {
                epoch: epoch + 1,
                batch: b + 1,
                sums,
            });
        }
        let (adam, model, params) = (&mut self.adam, &mut self.model, &self.params);
        vae_linalg::team::with_team(|| adam.step(model.tape_mut(), params));
        self.position.batches_done += 1;
        self.position.partial.add(&sums);
        Ok(Some(sums))
    }

    /// Sums the shards' gradients (each the gradient of its shard's mean loss, scaled to
    /// its share of the batch), loss sums and stop requests across the ranks in one
    /// allreduce of one flat buffer; writes the summed gradients back. Returns the batch's
    /// sums and whether any rank asked to stop (then the update is not applied).
    fn reduce(&mut self, sums: LossSums, shard_rows: usize, rows: usize) -> (LossSums, bool) {
        let share = shard_rows as f32 / rows as f32;
        let total: usize = self.params.iter().map(|&p| self.model.tape().value(p).len()).sum();
        self.flat.clear();
        self.flat.reserve(total + 5);
        for &p in &self.params {
            match self.model.tape().grad(p) {
                // (An empty shard ran no backward sweep: its gradients are zero, not the
                // last step's.)
                Some(g) if shard_rows > 0 => self.flat.extend(g.iter().map(|&v| v * share)),
                _ => self
                    .flat
                    .extend(std::iter::repeat_n(0.0, self.model.tape().value(p).len())),
            }
        }
        let stop = if self.stop_asked { 1.0 } else { 0.0 };
        self.flat.extend([
            sums.recon as f32,
            sums.kl as f32,
            sums.objective as f32,
            sums.images as f32,
            stop,
        ]);
        let col = self.collective.as_mut().expect("called with a collective");
        col.allreduce_sum(&mut self.flat);
        let mut at = 0;
        for &p in &self.params {
            let n = self.model.tape().value(p).len();
            if let Some(g) = self.model.tape_mut().param_grad_mut(p) {
                g.iter_mut().zip(&self.flat[at..at + n]).for_each(|(g, &v)| *g = v);
            }
            at += n;
        }
        let t = &self.flat[at..];
        let reduced = LossSums {
            recon: f64::from(t[0]),
            kl: f64::from(t[1]),
            objective: f64::from(t[2]),
            images: t[3].round() as usize,
        };
        self.stop_asked = false;
        (reduced, t[4] > 0.0)
    }

    /// Trains on the rest of the current epoch. After each batch, `on_batch` gets the running
    /// sums of the epoch and the images of that batch, and may ask to stop (honoured unless
    /// the epoch is complete anyway).
    ///
    /// # Errors
    /// [`Diverged`] as [`Trainer::step`].
    pub fn run_epoch(&mut self, mut on_batch: impl FnMut(&LossSums, usize) -> Control) -> Result<EpochEnd, Diverged> {
        let start = Instant::now();
        let n_batches = self.batches.batches_per_epoch();
        let result = loop {
            let before = self.position.batches_done;
            match self.step() {
                Err(d) => break Err(d),
                // With a collective, a step can end because some rank asked to stop.
                Ok(None) if self.position.batches_done == before && before < n_batches && self.collective.is_some() => {
                    break Ok(EpochEnd::Stopped);
                }
                Ok(None) => break Ok(EpochEnd::Complete),
                Ok(Some(sums)) => {
                    let stop = on_batch(&self.position.partial, sums.images) == Control::Stop;
                    if stop && self.position.batches_done < n_batches {
                        if self.collective.is_some() {
                            // Every rank stops at the same batch: the request travels with
                            // the next step's allreduce.
                            self.stop_asked = true;
                        } else {
                            break Ok(EpochEnd::Stopped);
                        }
                    }
                }
            }
        };
        self.position.partial_seconds += start.elapsed().as_secs_f64();
        result
    }

    /// Sums of the loss over a whole split, in batches of [`EVAL_BATCH`], z sampled from
    /// `rng`.
    pub fn evaluate(&mut self, split: &Split, rng: &mut impl Rng) -> LossSums {
        evaluate(&mut self.model, split, rng)
    }

    /// Closes a complete epoch: evaluates on `test` (noise from the epoch's own stream),
    /// records and returns the epoch's metrics, and moves the position to the next epoch.
    pub fn end_epoch(&mut self, test: &Split) -> EpochMetrics {
        let epoch = self.position.epochs_done;
        let mut rng = StdRng::seed_from_u64(stream_seed(self.config.seed, epoch as u64, salt::TEST_NOISE));
        let test_sums = self.evaluate(test, &mut rng);
        let p = &self.position;
        let m = EpochMetrics::new(epoch + 1, &p.partial, &test_sums, self.weight, p.partial_seconds);
        self.metrics.push(m);
        self.position = Position {
            epochs_done: epoch + 1,
            ..Position::default()
        };
        self.started = false;
        m
    }

    /// Writes the training state (weights, Adam's moments and step, position, metrics and
    /// `extra` metadata: one file, one atomic rename) to `dir/training_state.safetensors`,
    /// then the shareable model (with `extra` and the position in its metadata) to
    /// `dir/model.safetensors`. A kill at any moment leaves each file whole, and the
    /// training state always consistent with itself.
    pub fn checkpoint(&self, dir: &Path, extra: &HashMap<String, String>) -> Result<(), CheckpointError> {
        let model = &self.model;
        let mut tensors = checkpoint::model_tensors(model);
        for (name, _, _) in &mut tensors {
            name.insert_str(0, "model.");
        }
        for (i, (name, _)) in model.named_params().iter().enumerate() {
            let (m, v) = self.adam.moments(i);
            for (kind, state) in [("adam.m", m), ("adam.v", v)] {
                let shape = vec![state.nrows(), state.ncols()];
                tensors.push((format!("{kind}.{name}"), shape, state.iter().copied().collect()));
            }
        }
        let p = &self.position;
        let mut meta = extra.clone();
        meta.extend(
            [
                ("adam.steps", self.adam.steps.to_string()),
                ("epochs_done", p.epochs_done.to_string()),
                ("batches_done", p.batches_done.to_string()),
                ("partial.images", p.partial.images.to_string()),
                ("partial.recon", format!("{:e}", p.partial.recon)),
                ("partial.kl", format!("{:e}", p.partial.kl)),
                ("partial.objective", format!("{:e}", p.partial.objective)),
                ("partial.seconds", format!("{:e}", p.partial_seconds)),
                (
                    "train.metrics",
                    serde_json::to_string(&self.metrics).expect("metrics serialise"),
                ),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        checkpoint::save_tensors(&dir.join(STATE_FILE), &tensors, meta)?;
        let mut model_meta = extra.clone();
        model_meta.insert("epochs_done".into(), p.epochs_done.to_string());
        model_meta.insert("batches_done".into(), p.batches_done.to_string());
        checkpoint::save(model, &dir.join(MODEL_FILE), model_meta)
    }

    /// Restores the weights, Adam's state, the position and the metrics from a training
    /// state written by [`Trainer::checkpoint`] (read with `vae_model::checkpoint::load_tensors`)
    /// for a model of the same configuration.
    pub fn restore(&mut self, state: &Loaded) -> Result<(), StateError> {
        let path = &state.path;
        let bad = |reason: String| StateError::Metadata {
            path: path.clone(),
            reason,
        };
        let meta = |key: &str| {
            state
                .metadata
                .get(key)
                .ok_or_else(|| bad(format!("no '{key}' in the training state")))
        };
        let num = |key: &str| -> Result<f64, StateError> {
            meta(key)?.parse().map_err(|_| bad(format!("'{key}' is not a number")))
        };
        let mut metrics: Vec<EpochMetrics> =
            serde_json::from_str(meta("train.metrics")?).map_err(|e| bad(format!("invalid 'train.metrics': {e}")))?;
        for m in metrics.iter_mut().filter(|m| m.train_objective.is_nan()) {
            m.train_objective = m.train_loss;
        }
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
        if metrics.len() != position.epochs_done {
            return Err(bad(format!(
                "{} epochs of metrics but the position is after epoch {}",
                metrics.len(),
                position.epochs_done
            )));
        }
        let steps: u64 = meta("adam.steps")?
            .parse()
            .map_err(|_| bad("'adam.steps' is not a number".into()))?;
        let named: Vec<_> = self.model.named_params().to_vec();
        for (i, (name, v)) in named.iter().enumerate() {
            let (r, c) = self.model.tape().dim(*v);
            let shape = self.model.stored_shape(name, (r, c));
            let w = state.shaped(&format!("model.{name}"), &shape, r, c)?;
            self.model.tape_mut().param_mut(*v).assign(&w);
            let (mut m, mut vv) = self.adam.moments_mut(i);
            m.assign(&state.matrix(&format!("adam.m.{name}"), r, c)?);
            vv.assign(&state.matrix(&format!("adam.v.{name}"), r, c)?);
        }
        self.adam.steps = steps;
        self.weight = metrics.last().map_or(self.weight, |m| m.kl_weight);
        self.position = position;
        self.metrics = metrics;
        self.started = false;
        Ok(())
    }
}
