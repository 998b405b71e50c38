//! The flags of `vae-train train` as a view of the run recipe ([`crate::recipe`]): each flag
//! is an `Option` (or a switch) written over a recipe when given, and one line of the
//! `recipe_flags!` table ties it to its setting.

use std::path::PathBuf;

use clap::Args;
use vae_data::ClassLabel;
use vae_model::{Arch, Bound, Likelihood, Prior};
use vae_nn::Activation;
use vae_trainer::{LrSchedule, parse_duration};

use crate::recipe::{ImageSize, RecipeError, RunConfig, SplitMethod};
use crate::session::Launch;

/// The flags that say where the data are and how to read them: `vae-train train` and
/// `vae-train inspect` take them alike.
#[derive(Args, Debug, Clone, Default)]
pub struct DataArgs {
    /// The data: a directory of MNIST IDX files, a folder of PNG/JPEG images
    /// (root/train/<class>/* with root/test/<class>/*, root/<class>/*, or a flat folder), a
    /// .npy array of images (N x H x W [x C], bytes or floats in [0, 1]), an .npz archive
    /// (x_train, y_train, x_test, y_test), or a .csv table with a header row (not given:
    /// $VAE_DATA if set, else the default below if it exists in the current directory, else
    /// the repository's copy).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Image folders: 1 (grey) or 3 (RGB) channels [default: 3 if any image is in colour].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Image folders: resize every image to HEIGHTxWIDTH (e.g. 64x64) [default: the images'
    /// own size, which must be the same for all].
    #[arg(long)]
    pub image_size: Option<ImageSize>,
    /// Data without a test part (image folders, arrays, tables): the share of the images set
    /// aside (seeded) for testing.
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// How that share is drawn: stratified takes it from each class in proportion (where
    /// there are labels).
    #[arg(long, value_enum)]
    pub split: Option<SplitMethod>,
    /// CSV tables: the column holding the labels (integers 0-255, or text classes).
    #[arg(long)]
    pub label_column: Option<String>,
    /// .npz archives: the names of the train images, train labels, test images and test
    /// labels, comma-separated [default: x_train,y_train,x_test,y_test].
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub npz_keys: Option<Vec<String>>,
    /// Refuse any file whose header declares more data than this many bytes (checked
    /// before its body is read, inflated or decoded).
    #[arg(long)]
    pub max_data_bytes: Option<u64>,
}

impl DataArgs {
    /// The data at `path`, read with the defaults.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        DataArgs {
            data: Some(path.into()),
            ..DataArgs::default()
        }
    }
}

/// Flags of `vae-train train`: a view of the run recipe ([`RunConfig`]), which holds every
/// default and rule; a flag not given leaves the recipe's value (the default, or on
/// `--resume` the run's own).
#[derive(Args, Debug, Clone, Default)]
pub struct TrainArgs {
    /// Where the data are and how to read them.
    #[command(flatten)]
    pub source: DataArgs,
    /// Passes over the training set (with --resume: the total to reach, the run's own if not
    /// given).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Adam's learning rate.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// The layers before the dense ones: mlp (none), or conv: and comma-separated
    /// convolutions CHANNELS[kKERNEL][sSTRIDE][pPADDING] (kernel 3, stride 1, "same" padding
    /// by default), each followed by --activation; the decoder mirrors them with transposed
    /// convolutions back to the image's shape. The Keras example's model: --arch
    /// conv:32k3s2,64k3s2 --hidden 16 --latent 2.
    #[arg(long)]
    pub arch: Option<Arch>,
    /// Hidden layer widths of the encoder, comma-separated (the decoder mirrors them; after
    /// convolutions, without the last: z goes straight to the convolutions' shape).
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    pub hidden: Option<Vec<usize>>,
    /// Latent dimensions; a comma-separated list gives several stochastic layers, z1 first
    /// (`--latent 100,50`: q(z1|x) q(z2|z1), p(z2) p(z1|z2) p(x|z1), as in the IWAE paper).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub latent: Option<Vec<usize>>,
    /// Hidden widths of each stochastic layer above the first (its q network; its p network
    /// mirrors them).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub upper_hidden: Option<Vec<usize>>,
    /// The prior of the top stochastic layer: standard (N(0, I)) or vamp[:C], the VampPrior
    /// (Tomczak & Welling 2018): a mixture of the encoder's posteriors at C learned
    /// pseudo-inputs (default 500), `prior.pseudo_inputs` in the checkpoint.
    #[arg(long)]
    pub prior: Option<Prior>,
    /// The bound trained: elbo, or iwae (the importance-weighted bound over --samples).
    #[arg(long)]
    pub objective: Option<Bound>,
    /// Samples of z per image (K): the IWAE bound's K, or the ELBO averaged over K.
    #[arg(long)]
    pub samples: Option<usize>,
    /// The encoder's gradient through the samples alone, with q's parameters held fixed in
    /// its density: DReG (Tucker et al. 2018) for iwae, sticking-the-landing for elbo.
    #[arg(long)]
    pub dreg: bool,
    /// relu, leaky-relu[:SLOPE] (default slope 0.01), sigmoid or tanh.
    #[arg(long)]
    pub activation: Option<Activation>,
    /// Decoder distribution: bernoulli, gaussian (unit variance: the squared-error loss),
    /// gaussian:VARIANCE (fixed), or gaussian-learned (one variance per pixel) [default:
    /// bernoulli for images, gaussian-learned for tables].
    #[arg(long)]
    pub likelihood: Option<Likelihood>,
    /// Learning-rate schedule: constant, iwae (the IWAE paper's stages of 3^i epochs at
    /// lr * 10^(-i/7)), cosine (to 0 over the run's epochs), cosine-time[:DURATION] (to 0
    /// over DURATION of training, by default the --time-budget: the same command fills an
    /// hour on any machine, though the run then depends on its speed) or
    /// exponential[:GAMMA] (lr * GAMMA^epoch, default 0.95).
    #[arg(long)]
    pub lr_schedule: Option<LrSchedule>,
    /// Adam's epsilon (added to the denominator; the IWAE paper uses 1e-4).
    #[arg(long, allow_negative_numbers = true)]
    pub adam_eps: Option<f64>,
    /// Adam's decay of the first moment.
    #[arg(long, allow_negative_numbers = true)]
    pub adam_beta1: Option<f64>,
    /// Adam's decay of the second moment.
    #[arg(long, allow_negative_numbers = true)]
    pub adam_beta2: Option<f64>,
    /// Stop training after this much wall-clock time (e.g. 90s, 60m, 1.5h) with a checkpoint
    /// that `--resume` continues exactly.
    #[arg(long, value_parser = parse_duration)]
    pub time_budget: Option<f64>,
    /// Keep a copy of the model every this much training time (e.g. 10m) and at the end, in
    /// RUN_DIR/snapshots/ (each a run directory `vae-train eval` takes), for learning curves.
    #[arg(long, value_parser = parse_duration)]
    pub snapshot_every: Option<f64>,
    /// Weight of the KL term (β-VAE); 1 is the ELBO.
    #[arg(long, allow_negative_numbers = true)]
    pub beta: Option<f64>,
    /// Epochs over which the KL weight rises linearly from 0 to β (0: no warm-up).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Free bits: minimum KL per latent unit, in nats (0: off).
    #[arg(long, allow_negative_numbers = true)]
    pub free_bits: Option<f64>,
    /// Dynamic binarization: each training pixel drawn as Bernoulli(intensity) every epoch.
    #[arg(long)]
    pub binarize: bool,
    /// Seed of every random stream (initialisation, shuffling, noise).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads [default: every core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Train on the first N training images only.
    #[arg(long)]
    pub subset: Option<usize>,
    /// Leave the images of this class out of the training set (for anomaly detection): its
    /// number or the name the data give it (a class folder, a table's text label; `vae-train
    /// inspect` lists both).
    #[arg(long, visible_alias = "exclude-digit", value_name = "LABEL")]
    pub exclude_label: Option<ClassLabel>,
    /// Magnify the pictures of the run N times [default: enough for tiles of 28 pixels].
    #[arg(long)]
    pub scale: Option<usize>,
    /// Log the running training loss to the run's TensorBoard events every N batches (0: per
    /// epoch only).
    #[arg(long)]
    pub log_every: Option<usize>,
    /// Where to write the run [default: runs/<UTC time>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in this directory exactly where its last checkpoint left off (with
    /// its own recipe; --epochs, --threads, --time-budget, --snapshot-every, --data and
    /// --log-every may be given anew).
    #[arg(long, conflicts_with = "run_dir")]
    pub resume: Option<PathBuf>,
    /// Start afresh in a --run-dir that holds an unfinished run (one that never wrote its
    /// first checkpoint). Never applies to a directory holding a checkpoint.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Testing aid: poison the batch with this global index (0-based) with a NaN.
    #[arg(long, hide = true)]
    pub inject_nan_at: Option<usize>,
}

/// A flag given on the command line, written over a recipe setting.
trait Given<T> {
    fn put(&self, into: &mut T);
}

impl<T: Clone> Given<T> for Option<T> {
    fn put(&self, into: &mut T) {
        if let Some(v) = self {
            *into = v.clone();
        }
    }
}

impl<T: Clone> Given<Option<T>> for Option<T> {
    fn put(&self, into: &mut Option<T>) {
        if self.is_some() {
            into.clone_from(self);
        }
    }
}

impl Given<bool> for bool {
    fn put(&self, into: &mut bool) {
        *into |= *self;
    }
}

/// A recipe value as it would be typed after its flag (`None`: nothing worth showing).
trait AsFlag {
    fn as_flag(&self) -> Option<String>;
}

macro_rules! as_flag_by_display {
    ($($t:ty),*) => {$(
        impl AsFlag for $t {
            fn as_flag(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}
as_flag_by_display!(usize, u64, Activation, LrSchedule, Bound, Arch, Prior, SplitMethod);

impl AsFlag for f64 {
    fn as_flag(&self) -> Option<String> {
        let small = *self != 0.0 && self.abs() < 1e-3;
        Some(if small { format!("{self:e}") } else { self.to_string() })
    }
}

impl AsFlag for Likelihood {
    fn as_flag(&self) -> Option<String> {
        Some(self.spec())
    }
}

impl AsFlag for bool {
    fn as_flag(&self) -> Option<String> {
        None
    }
}

impl AsFlag for PathBuf {
    fn as_flag(&self) -> Option<String> {
        Some(self.display().to_string())
    }
}

impl AsFlag for Vec<usize> {
    fn as_flag(&self) -> Option<String> {
        Some(self.iter().map(usize::to_string).collect::<Vec<_>>().join(","))
    }
}

impl<T> AsFlag for Option<T> {
    fn as_flag(&self) -> Option<String> {
        None
    }
}

/// Each recipe flag beside the setting it sets: the one line a new training flag adds here
/// (its conversion, its `[default: ...]` in `--help`, and its name in error messages).
macro_rules! recipe_flags {
    ($($($flag:ident).+ => $section:ident . $field:ident,)*) => {
        impl TrainArgs {
            /// Writes every flag given over `recipe`.
            pub fn apply(&self, recipe: &mut RunConfig) {
                $(Given::put(&self.$($flag).+, &mut recipe.$section.$field);)*
            }
        }

        /// (flag, recipe field) of every recipe flag.
        const FLAGS: &[(&str, &str)] = &[$((last!($($flag).+), stringify!($field)),)*];

        /// (flag, default as typed) of every recipe flag.
        pub(crate) fn defaults(r: &RunConfig) -> Vec<(&'static str, Option<String>)> {
            vec![$((last!($($flag).+), AsFlag::as_flag(&r.$section.$field)),)*]
        }
    };
}

/// The last name of a field path (`source.data` is `data`), as a string.
macro_rules! last {
    ($name:ident) => {
        stringify!($name)
    };
    ($head:ident . $($rest:ident).+) => {
        last!($($rest).+)
    };
}

recipe_flags! {
    arch => model.arch,
    hidden => model.hidden,
    latent => model.latent,
    upper_hidden => model.upper_hidden,
    prior => model.prior,
    activation => model.activation,
    likelihood => model.likelihood,
    epochs => training.epochs,
    batch_size => training.batch_size,
    lr => training.lr,
    lr_schedule => training.lr_schedule,
    adam_eps => training.adam_eps,
    adam_beta1 => training.adam_beta1,
    adam_beta2 => training.adam_beta2,
    objective => training.objective,
    samples => training.samples,
    dreg => training.dreg,
    beta => training.beta,
    warmup => training.warmup,
    free_bits => training.free_bits,
    binarize => training.binarize,
    seed => training.seed,
    threads => training.threads,
    snapshot_every => training.snapshot_every,
    source.data => data.path,
    source.max_data_bytes => data.max_data_bytes,
    subset => data.subset,
    exclude_label => data.exclude_label,
    source.channels => data.channels,
    source.image_size => data.image_size,
    source.test_fraction => data.test_fraction,
    source.split => data.split,
    source.npz_keys => data.npz_keys,
    source.label_column => data.label_column,
    run_dir => output.run_dir,
    scale => output.scale,
    log_every => output.log_every,
}

/// A recipe error as the command line says it: its settings spelt as flags.
pub fn rendered(e: RecipeError) -> anyhow::Error {
    anyhow::anyhow!(e.render(flag))
}

/// The command-line spelling of a recipe setting (`batch_size` is `--batch-size`, `path`
/// is `--data`).
pub fn flag(field: &str) -> String {
    let name = FLAGS.iter().find(|(_, f)| *f == field).map_or(field, |(flag, _)| flag);
    format!("--{}", name.replace('_', "-"))
}

impl TrainArgs {
    /// The recipe of a new run: the defaults with the flags given written over them, and
    /// without `--data` the default data directory ([`crate::data::default_dir`]).
    pub fn recipe(&self) -> RunConfig {
        let mut r = RunConfig::default();
        self.apply(&mut r);
        if self.source.data.is_none() {
            r.data.path = crate::data::default_dir();
        }
        // `cosine-time` anneals over this run's time budget unless given its own length.
        r.training.lr_schedule = r.training.lr_schedule.for_budget(self.time_budget);
        r
    }

    /// The session options among the flags.
    pub fn launch(&self) -> Launch {
        Launch {
            resume: self.resume.clone(),
            overwrite: self.overwrite,
            time_budget: self.time_budget,
            inject_nan_at: self.inject_nan_at,
        }
    }
}
