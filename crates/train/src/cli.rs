//! Command-line arguments (clap) and their validation.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use vae_mnist::Limits;
use vae_model::{Bound, LevelConfig, Likelihood, VaeConfig};
use vae_nn::Activation;
use vae_trainer::LrSchedule;

use crate::commands;

/// Train and explore variational autoencoders on MNIST.
///
/// With no subcommand, `vae-train` trains (it takes the flags of `vae-train train`).
#[derive(Parser, Debug)]
#[command(name = "vae-train", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: train).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Training flags, when no subcommand is given.
    #[command(flatten)]
    pub train: TrainArgs,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
pub enum Command {
    /// Train a VAE on MNIST (the default).
    Train(TrainArgs),
    /// An n x n grid of images decoded from the prior.
    Sample(commands::sample::SampleArgs),
    /// The first test images above their reconstructions.
    Reconstruct(commands::reconstruct::ReconstructArgs),
    /// Decodings along the path between the latent means of pairs of test images.
    Interpolate(commands::interpolate::InterpolateArgs),
    /// The 2-d latent manifold: decodings of a grid of normal quantiles.
    Manifold(commands::manifold::ManifoldArgs),
    /// Scatter plot of the test set's latent means by digit (SVG).
    Latents(commands::latents::LatentsArgs),
    /// Training curves from the metrics file (SVG).
    Plot(commands::plot::PlotArgs),
    /// Test negative ELBO, importance-sampled -log p(x), active units.
    Eval(commands::eval::EvalArgs),
    /// Per-image anomaly scores to CSV, and the AUROC for one digit.
    Score(commands::score::ScoreArgs),
}

/// Flags of `vae-train train`. Defaults are PyTorch's example: 784-400-20, ReLU, Bernoulli
/// decoder on grey-level pixels, Adam lr 1e-3, batch 128, 10 epochs, seed 1.
#[derive(Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainArgs {
    /// Directory holding the MNIST IDX files.
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
    /// Passes over the training set [default: 10]; with --resume, the total to reach
    /// [default: the run's own].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    pub lr: f64,
    /// Hidden layer widths of the encoder, comma-separated (the decoder mirrors them).
    #[arg(long, default_value = "400", value_delimiter = ',', num_args = 0..)]
    pub hidden: Vec<usize>,
    /// Latent dimensions; a comma-separated list gives several stochastic layers, z1 first
    /// (`--latent 100,50`: q(z1|x) q(z2|z1), p(z2) p(z1|z2) p(x|z1), as in the IWAE paper).
    #[arg(long, default_value = "20", value_delimiter = ',', num_args = 1..)]
    #[serde(deserialize_with = "one_or_many")]
    pub latent: Vec<usize>,
    /// Hidden widths of each stochastic layer above the first (its q network; its p network
    /// mirrors them).
    #[arg(long, default_value = "100,100", value_delimiter = ',', num_args = 1..)]
    #[serde(default = "default_upper_hidden")]
    pub upper_hidden: Vec<usize>,
    /// The bound trained: elbo, or iwae (the importance-weighted bound over --samples).
    #[arg(long, default_value = "elbo", value_parser = parse_bound)]
    #[serde(default)]
    pub objective: Bound,
    /// Samples of z per image (K): the IWAE bound's K, or the ELBO averaged over K.
    #[arg(long, default_value_t = 1)]
    #[serde(default = "one")]
    pub samples: usize,
    /// The encoder's gradient through the samples alone, with q's parameters held fixed in
    /// its density: DReG (Tucker et al. 2018) for iwae, sticking-the-landing for elbo.
    #[arg(long)]
    #[serde(default)]
    pub dreg: bool,
    /// relu, leaky-relu[:SLOPE] (default slope 0.01), sigmoid or tanh.
    #[arg(long, default_value = "relu")]
    pub activation: Activation,
    /// Decoder distribution: bernoulli, gaussian (unit variance: the squared-error loss),
    /// gaussian:VARIANCE (fixed), or gaussian-learned (one variance per pixel).
    #[arg(long, default_value = "bernoulli", value_parser = parse_likelihood)]
    pub likelihood: Likelihood,
    /// Learning-rate schedule: constant, iwae (the IWAE paper's stages of 3^i epochs at
    /// lr * 10^(-i/7)), cosine (to 0 over the run's epochs) or exponential[:GAMMA] (lr *
    /// GAMMA^epoch, default 0.95).
    #[arg(long, default_value = "constant")]
    #[serde(default = "constant_schedule")]
    pub lr_schedule: LrSchedule,
    /// Adam's epsilon (added to the denominator; the IWAE paper uses 1e-4).
    #[arg(long, default_value_t = 1e-8, allow_negative_numbers = true)]
    #[serde(default = "default_eps")]
    pub adam_eps: f64,
    /// Adam's decay of the first moment.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    #[serde(default = "default_beta1")]
    pub adam_beta1: f64,
    /// Adam's decay of the second moment.
    #[arg(long, default_value_t = 0.999, allow_negative_numbers = true)]
    #[serde(default = "default_beta2")]
    pub adam_beta2: f64,
    /// Stop training after this much wall-clock time (e.g. 90s, 60m, 1.5h) with a checkpoint
    /// that `--resume` continues exactly.
    #[arg(long, value_parser = parse_duration)]
    #[serde(skip)]
    pub time_budget: Option<f64>,
    /// Keep a copy of the model every this much training time (e.g. 10m) and at the end, in
    /// RUN_DIR/snapshots/ (each a run directory `vae-train eval` takes), for learning curves.
    #[arg(long, value_parser = parse_duration)]
    #[serde(default)]
    pub snapshot_every: Option<f64>,
    /// Weight of the KL term (β-VAE); 1 is the ELBO.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub beta: f64,
    /// Epochs over which the KL weight rises linearly from 0 to β (0: no warm-up).
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Free bits: minimum KL per latent unit, in nats (0: off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub free_bits: f64,
    /// Dynamic binarization: each training pixel drawn as Bernoulli(intensity) every epoch.
    #[arg(long)]
    pub binarize: bool,
    /// Seed of every random stream (initialisation, shuffling, noise).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Train on the first N training images only.
    #[arg(long)]
    pub subset: Option<usize>,
    /// Leave the images with this label out of the training set (for anomaly detection).
    #[arg(long)]
    pub exclude_digit: Option<u8>,
    /// Refuse any IDX file whose header declares more data than this many bytes (checked
    /// before its body is read or inflated).
    #[arg(long, default_value_t = Limits::DEFAULT_MAX_DATA_BYTES)]
    #[serde(default = "default_max_data_bytes")]
    pub max_data_bytes: u64,
    /// Magnify the pictures of the run N times [default: enough for tiles of 28 pixels].
    #[arg(long)]
    #[serde(default)]
    pub scale: Option<usize>,
    /// Where to write the run (default: runs/<UTC time>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in this directory exactly where its last checkpoint left off (with
    /// its own configuration; --epochs and --threads may be given anew).
    #[arg(long, conflicts_with = "run_dir")]
    #[serde(skip)]
    pub resume: Option<PathBuf>,
    /// Start afresh in a --run-dir that holds an unfinished run (one that never wrote its
    /// first checkpoint). Never applies to a directory holding a checkpoint.
    #[arg(long, conflicts_with = "resume")]
    #[serde(skip)]
    pub overwrite: bool,
    /// The seed of the test set's one binarization: fixed for every new run; absent from
    /// runs saved before it was (they used their --seed).
    #[arg(skip = Some(crate::train::TEST_BINARIZE_SEED))]
    #[serde(default)]
    pub test_binarize_seed: Option<u64>,
    /// Testing aid: poison the batch with this global index (0-based) with a NaN.
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub inject_nan_at: Option<usize>,
}

fn default_upper_hidden() -> Vec<usize> {
    vec![100, 100]
}

fn one() -> usize {
    1
}

/// A number (runs saved before several levels existed) or a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(usize),
        Many(Vec<usize>),
    }
    Ok(match serde::Deserialize::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

fn parse_bound(s: &str) -> Result<Bound, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "elbo" => Ok(Bound::Elbo),
        "iwae" => Ok(Bound::Iwae),
        _ => Err(format!("'{s}': expected elbo or iwae")),
    }
}

fn constant_schedule() -> LrSchedule {
    LrSchedule::Constant
}

fn default_eps() -> f64 {
    1e-8
}

fn default_beta1() -> f64 {
    0.9
}

fn default_beta2() -> f64 {
    0.999
}

/// `90s`, `60m`, `1.5h` or plain seconds, as seconds.
fn parse_duration(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("'{s}': expected a duration like 90s, 60m or 1.5h")),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v * scale),
        _ => Err(format!("'{s}': expected a positive duration like 90s, 60m or 1.5h")),
    }
}

fn default_max_data_bytes() -> u64 {
    Limits::DEFAULT_MAX_DATA_BYTES
}

/// Epochs when --epochs is not given.
pub const DEFAULT_EPOCHS: usize = 10;

fn parse_likelihood(s: &str) -> Result<Likelihood, String> {
    let lower = s.trim().to_ascii_lowercase();
    match lower.as_str() {
        "bernoulli" => Ok(Likelihood::Bernoulli),
        "gaussian" | "mse" => Ok(Likelihood::Gaussian { variance: Some(1.0) }),
        "gaussian-learned" => Ok(Likelihood::Gaussian { variance: None }),
        _ => match lower.strip_prefix("gaussian:").map(str::parse::<f64>) {
            Some(Ok(v)) if v.is_finite() && v > 0.0 => Ok(Likelihood::Gaussian { variance: Some(v) }),
            Some(_) => Err(format!(
                "'{s}': the variance after 'gaussian:' must be a positive number"
            )),
            None => Err(format!(
                "'{s}': expected bernoulli, gaussian, gaussian:VARIANCE or gaussian-learned"
            )),
        },
    }
}

impl TrainArgs {
    /// Rejects values that are out of range, naming the flag.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == Some(0) {
            bail!("--epochs must be at least 1");
        }
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be a positive number, got {}", self.lr);
        }
        if self.hidden.is_empty() {
            bail!("--hidden is empty: give at least one layer width, e.g. --hidden 400");
        }
        if self.hidden.contains(&0) {
            bail!("--hidden widths must be at least 1, got {:?}", self.hidden);
        }
        if self.latent.is_empty() || self.latent.contains(&0) {
            bail!(
                "--latent must be at least 1 (for each stochastic layer), got {:?}",
                self.latent
            );
        }
        if self.latent.len() > 1 && (self.upper_hidden.is_empty() || self.upper_hidden.contains(&0)) {
            bail!("--upper-hidden widths must be at least 1, got {:?}", self.upper_hidden);
        }
        if self.samples == 0 {
            bail!("--samples must be at least 1");
        }
        if self.free_bits > 0.0 && (self.samples > 1 || self.dreg || self.latent.len() > 1) {
            bail!(
                "--free-bits acts on the analytic KL of one latent layer trained with one sample: it cannot be combined with --samples {}, --dreg or --latent {:?}",
                self.samples,
                self.latent
            );
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            bail!("--beta must be 0 or more, got {}", self.beta);
        }
        if !(self.warmup.is_finite() && self.warmup >= 0.0) {
            bail!("--warmup must be 0 or more epochs, got {}", self.warmup);
        }
        if !(self.free_bits.is_finite() && self.free_bits >= 0.0) {
            bail!("--free-bits must be 0 or more nats, got {}", self.free_bits);
        }
        if self.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        if self.subset == Some(0) {
            bail!("--subset must be at least 1 image");
        }
        if !(self.adam_eps.is_finite() && self.adam_eps > 0.0) {
            bail!("--adam-eps must be a positive number, got {}", self.adam_eps);
        }
        for (flag, b) in [("--adam-beta1", self.adam_beta1), ("--adam-beta2", self.adam_beta2)] {
            if !(0.0..1.0).contains(&b) {
                bail!("{flag} must be in [0, 1), got {b}");
            }
        }
        if self.max_data_bytes == 0 {
            bail!("--max-data-bytes must be at least 1");
        }
        crate::image::scale_for(self.scale, 1, 1)?;
        Ok(())
    }

    /// The number of epochs to reach.
    pub fn total_epochs(&self) -> usize {
        self.epochs.unwrap_or(DEFAULT_EPOCHS)
    }

    /// The reading limits these flags set.
    pub fn limits(&self) -> Limits {
        Limits {
            max_data_bytes: self.max_data_bytes,
        }
    }

    /// The model architecture these flags describe, for images of `input` pixels.
    pub fn model_config(&self, input: usize) -> VaeConfig {
        VaeConfig {
            input,
            hidden: self.hidden.clone(),
            latent: self.latent[0],
            activation: self.activation,
            likelihood: self.likelihood,
            upper: self.latent[1..]
                .iter()
                .map(|&latent| LevelConfig {
                    hidden: self.upper_hidden.clone(),
                    latent,
                })
                .collect(),
        }
    }
}

impl Default for TrainArgs {
    fn default() -> Self {
        Cli::parse_from(["vae-train"]).train
    }
}
