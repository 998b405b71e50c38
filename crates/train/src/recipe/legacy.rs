//! The flat layout earlier versions saved: the `vae-train train` flags as one JSON object
//! (with the defaults of fields that appeared over time), read and converted into the recipe.

use std::path::PathBuf;

use serde::Deserialize;
use vae_data::ClassLabel;
use vae_model::{Bound, Likelihood};
use vae_nn::Activation;
use vae_trainer::LrSchedule;

use super::{DataRecipe, ModelRecipe, OutputRecipe, RunConfig, TrainingRecipe};

/// The flags as runs saved them before the recipe had sections.
#[derive(Deserialize)]
pub(super) struct FlatFlags {
    data: PathBuf,
    epochs: Option<usize>,
    batch_size: usize,
    lr: f64,
    hidden: Vec<usize>,
    #[serde(deserialize_with = "one_or_many")]
    latent: Vec<usize>,
    #[serde(default = "default_upper_hidden")]
    upper_hidden: Vec<usize>,
    #[serde(default)]
    objective: Bound,
    #[serde(default = "one")]
    samples: usize,
    #[serde(default)]
    dreg: bool,
    activation: Activation,
    likelihood: Likelihood,
    #[serde(default = "constant")]
    lr_schedule: LrSchedule,
    #[serde(default = "default_eps")]
    adam_eps: f64,
    #[serde(default = "default_beta1")]
    adam_beta1: f64,
    #[serde(default = "default_beta2")]
    adam_beta2: f64,
    #[serde(default)]
    snapshot_every: Option<f64>,
    beta: f64,
    warmup: f64,
    free_bits: f64,
    binarize: bool,
    seed: u64,
    threads: Option<usize>,
    subset: Option<usize>,
    exclude_digit: Option<u8>,
    #[serde(default = "default_max_data_bytes")]
    max_data_bytes: u64,
    #[serde(default)]
    scale: Option<usize>,
    run_dir: Option<PathBuf>,
    /// Absent from runs saved before the test binarization's seed was fixed.
    #[serde(default)]
    test_binarize_seed: Option<u64>,
}

// The values these fields had before they were saved: the flags' defaults of the day.
fn default_upper_hidden() -> Vec<usize> {
    vec![100, 100]
}
fn one() -> usize {
    1
}
fn constant() -> LrSchedule {
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
fn default_max_data_bytes() -> u64 {
    vae_data::Limits::DEFAULT_MAX_DATA_BYTES
}

/// A number (runs saved before several levels existed) or a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(usize),
        Many(Vec<usize>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

impl From<FlatFlags> for RunConfig {
    fn from(f: FlatFlags) -> Self {
        RunConfig {
            model: ModelRecipe {
                arch: Default::default(),
                hidden: f.hidden,
                latent: f.latent,
                upper_hidden: f.upper_hidden,
                activation: f.activation,
                likelihood: Some(f.likelihood),
                prior: Default::default(),
            },
            training: TrainingRecipe {
                epochs: f.epochs.unwrap_or(TrainingRecipe::default().epochs),
                batch_size: f.batch_size,
                lr: f.lr,
                lr_schedule: f.lr_schedule,
                adam_eps: f.adam_eps,
                adam_beta1: f.adam_beta1,
                adam_beta2: f.adam_beta2,
                objective: f.objective,
                samples: f.samples,
                dreg: f.dreg,
                beta: f.beta,
                warmup: f.warmup,
                free_bits: f.free_bits,
                binarize: f.binarize,
                seed: f.seed,
                threads: f.threads,
                snapshot_every: f.snapshot_every,
            },
            data: DataRecipe {
                path: f.data,
                max_data_bytes: f.max_data_bytes,
                subset: f.subset,
                exclude_label: f.exclude_digit.map(ClassLabel::Number),
                split: super::SplitMethod::Random,
                test_binarize_seed: f.test_binarize_seed,
                ..DataRecipe::default()
            },
            output: OutputRecipe {
                run_dir: f.run_dir,
                scale: f.scale,
                ..OutputRecipe::default()
            },
            ..RunConfig::default()
        }
    }
}
