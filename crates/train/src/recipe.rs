//! The run recipe: everything a training run is made of (model, training, data, output), in
//! one place. It is the single source of the defaults, of the validation (each error names
//! the setting it is about, and a front end renders that name as its own: `--batch-size` on
//! the command line), of what is saved (`config.json` and the checkpoints' `train.config`),
//! and of what a resume may change. The command line (`crate::cli`) only fills it in.

mod legacy;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vae_data::{ClassLabel, FolderOptions, ImageShape, Limits, NpzKeys, OpenOptions};
use vae_model::{Arch, Bound, ConfigError, LevelConfig, Likelihood, Objective, Prior, VaeConfig};
use vae_nn::{Activation, AdamConfig};
use vae_trainer::{LrSchedule, TrainConfig};

/// The version of the saved layout (`config.json`): 2 is the sectioned recipe; files without
/// a `format` are the flat flags of earlier versions, still read (see [`RunConfig::from_json`]).
pub const FORMAT: u32 = 2;

/// The seed of the test set's one binarization, whatever a run's seed: every run on
/// binarized images is evaluated on the same binary test set.
pub const TEST_BINARIZE_SEED: u64 = 1;

/// A training run's whole recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The layout version, [`FORMAT`].
    pub format: u32,
    /// The network.
    pub model: ModelRecipe,
    /// The optimisation.
    pub training: TrainingRecipe,
    /// Where the images come from, and which of them are used.
    pub data: DataRecipe,
    /// What the run writes.
    pub output: OutputRecipe,
}

/// The network: PyTorch's example (784-400-20, ReLU, Bernoulli) by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelRecipe {
    /// Convolutions before the dense layers (`mlp`: none).
    pub arch: Arch,
    /// Hidden widths of the encoder (the decoder mirrors them).
    pub hidden: Vec<usize>,
    /// Latent dimensions of each stochastic layer, z1 first.
    pub latent: Vec<usize>,
    /// Hidden widths of each stochastic layer above the first.
    pub upper_hidden: Vec<usize>,
    /// The nonlinearity after every hidden layer.
    pub activation: Activation,
    /// The decoder's distribution (`None`: by the data, Bernoulli for images, a Gaussian
    /// of learned variance for tables; resolved when training starts).
    pub likelihood: Option<Likelihood>,
    /// The prior of the top stochastic layer.
    pub prior: Prior,
}

/// The optimisation: batch 128, Adam at 1e-3, the ELBO, 10 epochs, seed 1 by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingRecipe {
    /// Passes over the training set (the total, counting those of earlier sessions).
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// How the learning rate changes from epoch to epoch.
    pub lr_schedule: LrSchedule,
    /// Adam's epsilon.
    pub adam_eps: f64,
    /// Adam's decay of the first moment.
    pub adam_beta1: f64,
    /// Adam's decay of the second moment.
    pub adam_beta2: f64,
    /// The bound trained.
    pub objective: Bound,
    /// Samples of z per image (K).
    pub samples: usize,
    /// The encoder's gradient through the samples alone (DReG, or sticking-the-landing).
    pub dreg: bool,
    /// Weight of the KL term.
    pub beta: f64,
    /// Epochs over which the KL weight rises from 0 to β.
    pub warmup: f64,
    /// Minimum KL per latent unit, in nats.
    pub free_bits: f64,
    /// Dynamic binarization of the training images.
    pub binarize: bool,
    /// Seed of every random stream.
    pub seed: u64,
    /// Worker threads (every core if `None`).
    pub threads: Option<usize>,
    /// Seconds of training between snapshots of the model.
    pub snapshot_every: Option<f64>,
}

/// The data: the shipped MNIST, whole, by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataRecipe {
    /// Where the dataset is (for IDX files, their directory).
    pub path: PathBuf,
    /// Files declaring more data than this many bytes are refused before they are read.
    pub max_data_bytes: u64,
    /// Train on the first N training images only.
    pub subset: Option<usize>,
    /// Leave the images of this class (a number, or a name the data give) out of the
    /// training set. Runs saved before classes had names call it `exclude_digit`.
    #[serde(alias = "exclude_digit")]
    pub exclude_label: Option<ClassLabel>,
    /// The seed of the test set's one binarization (`None` in runs saved before it was
    /// fixed: they used their own seed).
    pub test_binarize_seed: Option<u64>,
    /// Image folders: 1 (grey) or 3 (RGB) channels (`None`: 3 if any image is in colour).
    pub channels: Option<usize>,
    /// Image folders: resize every image to this size (`None`: their own, all the same).
    pub image_size: Option<ImageSize>,
    /// Image folders without a test folder: the share of the images tested on.
    pub test_fraction: f64,
    /// The seed of that share.
    pub split_seed: u64,
    /// How that share is drawn: from each class in proportion, or from all the images at
    /// once (runs saved before the split was recorded: their recipe has no `split`).
    #[serde(default = "SplitMethod::recorded_before")]
    pub split: SplitMethod,
    /// `.npz` archives: the names of the train images, train labels, test images and test
    /// labels (`None`: Keras' `x_train`, `y_train`, `x_test`, `y_test`).
    pub npz_keys: Option<Vec<String>>,
    /// CSV tables: the column holding the labels, if any.
    pub label_column: Option<String>,
}

/// How a source without a test part sets its test share aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SplitMethod {
    /// The share of each class (by its labels; without labels, the same as `random`).
    Stratified,
    /// The share of all the images at once, whatever their class.
    Random,
}

impl std::fmt::Display for SplitMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SplitMethod::Stratified => "stratified",
            SplitMethod::Random => "random",
        })
    }
}

impl SplitMethod {
    /// The split of runs saved before the method was recorded.
    fn recorded_before() -> Self {
        SplitMethod::Random
    }
}

/// An image size, `HxW` (e.g. `64x64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl std::str::FromStr for ImageSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}': expected HEIGHTxWIDTH, e.g. 64x64");
        let (h, w) = s
            .trim()
            .to_ascii_lowercase()
            .split_once('x')
            .map(|(h, w)| (h.trim().to_string(), w.trim().to_string()))
            .ok_or_else(bad)?;
        match (h.parse::<usize>(), w.parse::<usize>()) {
            (Ok(height), Ok(width)) if height > 0 && width > 0 => Ok(ImageSize { height, width }),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for ImageSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.height, self.width)
    }
}

/// What the run writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputRecipe {
    /// The run directory (`runs/<UTC time>` if `None`).
    pub run_dir: Option<PathBuf>,
    /// Magnification of the run's pictures (enough for 28-pixel tiles if `None`).
    pub scale: Option<usize>,
    /// The running training loss goes to the TensorBoard events every this many batches
    /// (0: per epoch only).
    pub log_every: usize,
}

impl Default for OutputRecipe {
    fn default() -> Self {
        OutputRecipe {
            run_dir: None,
            scale: None,
            // PyTorch's example VAE logs every 10 batches (its --log-interval).
            log_every: 10,
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            format: FORMAT,
            model: ModelRecipe::default(),
            training: TrainingRecipe::default(),
            data: DataRecipe::default(),
            output: OutputRecipe::default(),
        }
    }
}

impl Default for ModelRecipe {
    fn default() -> Self {
        let m = VaeConfig::reference();
        ModelRecipe {
            arch: m.arch,
            hidden: m.hidden,
            latent: vec![m.latent],
            upper_hidden: vec![100, 100],
            activation: m.activation,
            likelihood: None,
            prior: m.prior,
        }
    }
}

impl Default for TrainingRecipe {
    fn default() -> Self {
        let t = TrainConfig::default();
        TrainingRecipe {
            epochs: 10,
            batch_size: t.batch_size,
            lr: t.adam.lr,
            lr_schedule: t.schedule,
            adam_eps: t.adam.eps,
            adam_beta1: t.adam.beta1,
            adam_beta2: t.adam.beta2,
            objective: t.bound,
            samples: t.samples,
            dreg: t.dreg,
            beta: t.beta,
            warmup: t.warmup,
            free_bits: t.free_bits,
            binarize: t.binarize,
            seed: t.seed,
            threads: None,
            snapshot_every: None,
        }
    }
}

impl Default for DataRecipe {
    fn default() -> Self {
        DataRecipe {
            path: PathBuf::from(vae_data::DEFAULT_DIR),
            max_data_bytes: Limits::DEFAULT_MAX_DATA_BYTES,
            subset: None,
            exclude_label: None,
            test_binarize_seed: Some(TEST_BINARIZE_SEED),
            channels: None,
            image_size: None,
            test_fraction: FolderOptions::default().test_fraction,
            split_seed: FolderOptions::default().seed,
            split: SplitMethod::Stratified,
            npz_keys: None,
            label_column: None,
        }
    }
}

/// A setting out of range, or settings that do not fit together.
#[derive(Clone, Debug, PartialEq)]
pub struct RecipeError {
    /// The setting, by its field name (`batch_size`, `latent`, ...).
    pub field: String,
    /// What is wrong, to follow the setting's name; other settings it mentions appear as
    /// `{name}`, for [`RecipeError::render`] to spell.
    pub message: String,
}

impl RecipeError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        RecipeError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The message with every setting spelt by `name` (e.g. as a flag, `--batch-size`).
    pub fn render(&self, name: impl Fn(&str) -> String) -> String {
        let mut out = format!("{} ", name(&self.field));
        let mut rest = self.message.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else { break };
            out.push_str(&rest[..open]);
            out.push_str(&name(&rest[open + 1..open + close]));
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }
}

impl std::fmt::Display for RecipeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(str::to_string))
    }
}

impl std::error::Error for RecipeError {}

/// The recipe's name for a setting the model's own checks name.
fn recipe_field(model_field: &'static str) -> &'static str {
    match model_field {
        "upper.latent" => "latent",
        "upper.hidden" => "upper_hidden",
        "kl_weight" => "beta",
        other => other,
    }
}

impl From<ConfigError> for RecipeError {
    fn from(e: ConfigError) -> Self {
        RecipeError {
            field: recipe_field(e.field).to_string(),
            message: e.message,
        }
    }
}

/// Settings a resumed run may take anew; every other one stays as the run was trained.
pub const RESUMABLE: &[&str] = &[
    "epochs",
    "threads",
    "snapshot_every",
    "path",
    "max_data_bytes",
    "run_dir",
    "log_every",
];

impl RunConfig {
    /// Checks every setting and how they fit together; the error names the first setting
    /// that is wrong.
    pub fn validate(&self) -> Result<(), RecipeError> {
        let (m, t, d) = (&self.model, &self.training, &self.data);
        let at_least_one = |field, v: usize| (v == 0).then(|| RecipeError::new(field, "must be at least 1"));
        if let Some(e) = at_least_one("epochs", t.epochs).or_else(|| at_least_one("batch_size", t.batch_size)) {
            return Err(e);
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return Err(RecipeError::new(
                "lr",
                format!("must be a positive number, got {}", t.lr),
            ));
        }
        if t.lr_schedule.seconds() == Some(0.0) {
            return Err(RecipeError::new(
                "lr_schedule",
                "cosine-time anneals the learning rate over the time budget: give {time_budget} (e.g. 60m), or the length itself as cosine-time:60m",
            ));
        }
        if m.latent.is_empty() || m.latent.contains(&0) {
            return Err(RecipeError::new(
                "latent",
                format!("must be at least 1 (for each stochastic layer), got {:?}", m.latent),
            ));
        }
        // The architecture is checked against the data's shape when it is known
        // (`settle_for`).
        let model = VaeConfig {
            arch: Arch::Mlp,
            ..self.model_config(ImageShape::grey(1, 1))
        };
        model.validate()?;
        self.objective(t.beta).validate(&model)?;
        if !(t.warmup.is_finite() && t.warmup >= 0.0) {
            return Err(RecipeError::new(
                "warmup",
                format!("must be 0 or more epochs, got {}", t.warmup),
            ));
        }
        if let Some(e) = t.threads.and_then(|n| at_least_one("threads", n)) {
            return Err(e);
        }
        if d.subset == Some(0) {
            return Err(RecipeError::new("subset", "must be at least 1 image"));
        }
        if !(t.adam_eps.is_finite() && t.adam_eps > 0.0) {
            return Err(RecipeError::new(
                "adam_eps",
                format!("must be a positive number, got {}", t.adam_eps),
            ));
        }
        for (field, b) in [("adam_beta1", t.adam_beta1), ("adam_beta2", t.adam_beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(RecipeError::new(field, format!("must be in [0, 1), got {b}")));
            }
        }
        if let Some(c) = d.channels
            && c != 1
            && c != 3
        {
            return Err(RecipeError::new("channels", format!("must be 1 or 3, got {c}")));
        }
        if !(0.0..1.0).contains(&d.test_fraction) {
            return Err(RecipeError::new(
                "test_fraction",
                format!("must be at least 0 and below 1, got {}", d.test_fraction),
            ));
        }
        if let Some(k) = &d.npz_keys
            && (k.len() != 4 || k.iter().any(|k| k.trim().is_empty()))
        {
            return Err(RecipeError::new(
                "npz_keys",
                format!("takes four names, X_TRAIN,Y_TRAIN,X_TEST,Y_TEST, got {k:?}"),
            ));
        }
        if d.max_data_bytes == 0 {
            return Err(RecipeError::new("max_data_bytes", "must be at least 1"));
        }
        if let Some(s) = self.output.scale {
            crate::image::check_scale(s).map_err(|m| RecipeError::new("scale", m))?;
        }
        if let Some(s) = t.snapshot_every
            && !(s.is_finite() && s > 0.0)
        {
            return Err(RecipeError::new("snapshot_every", "must be a positive duration"));
        }
        Ok(())
    }

    /// The model these settings describe, for images of `shape`.
    pub fn model_config(&self, shape: ImageShape) -> VaeConfig {
        let m = &self.model;
        VaeConfig {
            input: shape.len(),
            shape: Some(shape),
            arch: m.arch.clone(),
            hidden: m.hidden.clone(),
            latent: m.latent.first().copied().unwrap_or(0),
            activation: m.activation,
            likelihood: m.likelihood.unwrap_or(Likelihood::Bernoulli),
            prior: m.prior,
            upper: m
                .latent
                .iter()
                .skip(1)
                .map(|&latent| LevelConfig {
                    hidden: m.upper_hidden.clone(),
                    latent,
                })
                .collect(),
        }
    }

    fn objective(&self, kl_weight: f64) -> Objective {
        let t = &self.training;
        Objective {
            kl_weight,
            free_bits: t.free_bits,
            bound: t.objective,
            samples: t.samples,
            dreg: t.dreg,
        }
    }

    /// Settles what depends on the data: the likelihood when not chosen (Bernoulli for
    /// images, a Gaussian of learned variance for tables), and refuses what cannot apply
    /// to it.
    pub fn settle_for(&mut self, data: &vae_data::Dataset) -> Result<(), RecipeError> {
        let table = data.table.is_some();
        self.model.likelihood.get_or_insert(if table {
            Likelihood::Gaussian { variance: None }
        } else {
            Likelihood::Bernoulli
        });
        if table && !self.model.arch.is_mlp() {
            return Err(RecipeError::new(
                "arch",
                "convolutions run on images: a table's rows are vectors (use mlp)",
            ));
        }
        self.model_config(data.train.shape).validate()?;
        if table && self.training.binarize {
            return Err(RecipeError::new(
                "binarize",
                "draws pixels as Bernoulli(intensity): it applies to images in [0, 1], not to the standardised columns of a table",
            ));
        }
        Ok(())
    }

    /// The training loop's settings.
    pub fn train_config(&self) -> TrainConfig {
        let t = &self.training;
        TrainConfig {
            batch_size: t.batch_size,
            adam: AdamConfig {
                lr: t.lr,
                beta1: t.adam_beta1,
                beta2: t.adam_beta2,
                eps: t.adam_eps,
                ..AdamConfig::default()
            },
            beta: t.beta,
            warmup: t.warmup,
            free_bits: t.free_bits,
            binarize: t.binarize,
            seed: t.seed,
            subset: self.data.subset,
            schedule: t.lr_schedule.for_epochs(t.epochs),
            bound: t.objective,
            samples: t.samples,
            dreg: t.dreg,
        }
    }

    /// The reading limits of the data.
    pub fn limits(&self) -> Limits {
        Limits {
            max_data_bytes: self.data.max_data_bytes,
        }
    }

    /// How to open the data.
    pub fn open_options(&self) -> OpenOptions {
        let d = &self.data;
        OpenOptions {
            limits: self.limits(),
            folder: FolderOptions {
                channels: d.channels,
                size: d.image_size.map(|s| (s.height, s.width)),
                test_fraction: d.test_fraction,
                seed: d.split_seed,
                stratified: d.split == SplitMethod::Stratified,
            },
            npz_keys: match d.npz_keys.as_deref() {
                Some([a, b, c, e]) => NpzKeys {
                    x_train: a.clone(),
                    y_train: b.clone(),
                    x_test: c.clone(),
                    y_test: e.clone(),
                },
                _ => NpzKeys::default(),
            },
            label_column: d.label_column.clone(),
            standardizer: None,
        }
    }

    /// The recipe as saved (`config.json`, and `train.config` in the checkpoints).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the recipe serialises")
    }

    /// Reads a saved recipe: this layout, or the flat flags that runs of earlier versions
    /// saved (converted).
    pub fn from_json(text: &str) -> Result<RunConfig, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        if value.get("format").is_some() {
            serde_json::from_value(value)
        } else {
            Ok(serde_json::from_value::<legacy::FlatFlags>(value)?.into())
        }
    }

    /// The recipe of a resumed run: `requested` (this recipe with the new session's settings
    /// written over it) if it changes only [`RESUMABLE`] settings; otherwise the first
    /// other setting it changes is the error.
    pub fn resumed(&self, requested: RunConfig) -> Result<RunConfig, RecipeError> {
        let (old, new) = (leaves(self), leaves(&requested));
        for ((field, was), (_, now)) in old.iter().zip(&new) {
            if was != now && !RESUMABLE.contains(&field.as_str()) {
                return Err(RecipeError::new(
                    field.clone(),
                    format!(
                        "{now}: a resumed run keeps the settings it was trained with ({was} in its config.json); \
                         only {{epochs}}, {{threads}}, {{snapshot_every}}, {{time_budget}}, {{path}}, {{max_data_bytes}} and {{log_every}} may be given anew"
                    ),
                ));
            }
        }
        Ok(requested)
    }
}

/// The recipe's settings as (field name, JSON value), in a fixed order.
fn leaves(r: &RunConfig) -> Vec<(String, serde_json::Value)> {
    let v = serde_json::to_value(r).expect("the recipe serialises");
    let mut out = Vec::new();
    for section in ["model", "training", "data", "output"] {
        if let Some(serde_json::Value::Object(fields)) = v.get(section) {
            out.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_round_trip() {
        let r = RunConfig::default();
        r.validate().unwrap();
        assert_eq!(RunConfig::from_json(&r.to_json()).unwrap(), r);
        let shape = ImageShape::grey(28, 28);
        assert_eq!(
            r.model_config(shape),
            VaeConfig {
                shape: Some(shape),
                ..VaeConfig::reference()
            }
        );
        assert_eq!(r.train_config(), TrainConfig::default());
    }

    #[test]
    fn errors_name_the_setting() {
        let mut r = RunConfig::default();
        r.training.free_bits = 1.0;
        r.training.samples = 2;
        let e = r.validate().unwrap_err();
        assert_eq!(e.field, "free_bits");
        let flag = e.render(|f| format!("--{}", f.replace('_', "-")));
        assert!(flag.starts_with("--free-bits "), "{flag}");
        assert!(flag.contains("--samples"), "{flag}");
        let mut r = RunConfig::default();
        r.model.upper_hidden = vec![0];
        r.model.latent = vec![20, 10];
        assert_eq!(r.validate().unwrap_err().field, "upper_hidden");
    }

    #[test]
    fn a_resume_changes_only_what_it_may() {
        let r = RunConfig::default();
        let mut more = r.clone();
        more.training.epochs = 20;
        more.training.threads = Some(1);
        assert_eq!(r.resumed(more.clone()), Ok(more));
        let mut other = r.clone();
        other.training.lr = 0.01;
        let e = r.resumed(other).unwrap_err();
        assert_eq!(e.field, "lr");
        assert!(e.message.contains("0.001"), "{}", e.message);
    }
}
