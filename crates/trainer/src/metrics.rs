//! One epoch's figures.

use vae_model::LossSums;

/// One epoch's figures, per image, in nats.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Training negative ELBO (averaged over the epoch's batches, as PyTorch reports it).
    pub train_loss: f64,
    /// Training reconstruction NLL.
    pub train_recon: f64,
    /// Training KL.
    pub train_kl: f64,
    /// Test negative ELBO over the whole test set, z sampled.
    pub test_loss: f64,
    /// Test reconstruction NLL.
    pub test_recon: f64,
    /// Test KL.
    pub test_kl: f64,
    /// KL weight at the end of the epoch (β times warm-up).
    pub kl_weight: f64,
    /// Seconds spent training (not evaluating).
    pub train_seconds: f64,
    /// The training objective (the negative bound trained, β-weighted), averaged over the
    /// epoch's batches: the negative IWAE bound for `--objective iwae`. (NaN when read
    /// from a state saved before it was recorded; [`crate::Trainer::restore`] then puts
    /// `train_loss` in its place, as the metrics file's reader does.)
    #[serde(default = "nan")]
    pub train_objective: f64,
}

impl EpochMetrics {
    /// Figures from the epoch's sums.
    pub fn new(epoch: usize, train: &LossSums, test: &LossSums, kl_weight: f64, train_seconds: f64) -> Self {
        EpochMetrics {
            epoch,
            train_loss: train.neg_elbo(),
            train_recon: train.recon_per_image(),
            train_kl: train.kl_per_image(),
            test_loss: test.neg_elbo(),
            test_recon: test.recon_per_image(),
            test_kl: test.kl_per_image(),
            kl_weight,
            train_seconds,
            train_objective: train.objective / train.images.max(1) as f64,
        }
    }
}

fn nan() -> f64 {
    f64::NAN
}

/// One column of the metrics file: its name, how to read it from [`EpochMetrics`] and write
/// it back, and its decimals. [`FIELDS`] is the one table of the file's columns (header,
/// rows, and parsing by header name go through it).
#[derive(Clone, Copy)]
pub struct Field {
    /// The column's name in the header.
    pub name: &'static str,
    /// The value of a row.
    pub get: fn(&EpochMetrics) -> f64,
    /// Sets the value in a row.
    pub set: fn(&mut EpochMetrics, f64),
    /// Decimals written.
    pub decimals: usize,
}

macro_rules! fields {
    ($($name:literal => $field:ident, $decimals:literal;)*) => {
        /// Every column of the metrics file, in the file's order.
        #[allow(clippy::unnecessary_cast, reason = "one cast for the counts and the floats alike")]
        pub const FIELDS: &[Field] = &[$(Field {
            name: $name,
            get: |m| m.$field as f64,
            set: |m, v| m.$field = v as _,
            decimals: $decimals,
        },)*];
    };
}

fields! {
    "epoch" => epoch, 0;
    "train_neg_elbo" => train_loss, 6;
    "train_recon" => train_recon, 6;
    "train_kl" => train_kl, 6;
    "test_neg_elbo" => test_loss, 6;
    "test_recon" => test_recon, 6;
    "test_kl" => test_kl, 6;
    "kl_weight" => kl_weight, 6;
    "train_seconds" => train_seconds, 4;
    "train_objective" => train_objective, 6;
}

impl EpochMetrics {
    /// The metrics file's header line (without the newline).
    pub fn csv_header() -> String {
        FIELDS.iter().map(|f| f.name).collect::<Vec<_>>().join(",")
    }

    /// This epoch as a line of the metrics file (without the newline).
    pub fn csv_row(&self) -> String {
        FIELDS
            .iter()
            .map(|f| format!("{:.*}", f.decimals, (f.get)(self)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A row of the metrics file whose header is `header`; columns it lacks are NaN, except
    /// `train_objective` (absent from files written before it was recorded), which takes
    /// the training -ELBO. `Err` says what is wrong.
    pub fn from_csv(header: &[&str], row: &str) -> Result<Self, String> {
        let values: Vec<&str> = row.split(',').map(str::trim).collect();
        if values.len() != header.len() {
            return Err(format!("{} fields, the header has {}", values.len(), header.len()));
        }
        let mut m = EpochMetrics {
            epoch: 0,
            train_loss: f64::NAN,
            train_recon: f64::NAN,
            train_kl: f64::NAN,
            test_loss: f64::NAN,
            test_recon: f64::NAN,
            test_kl: f64::NAN,
            kl_weight: f64::NAN,
            train_seconds: f64::NAN,
            train_objective: f64::NAN,
        };
        for (name, v) in header.iter().zip(values) {
            let Some(f) = FIELDS.iter().find(|f| f.name == *name) else {
                return Err(format!("unknown column '{name}'"));
            };
            let v: f64 = v
                .parse()
                .map_err(|_| format!("'{v}' in column '{name}' is not a number"))?;
            (f.set)(&mut m, v);
        }
        if !header.contains(&"epoch") {
            return Err("no 'epoch' column".into());
        }
        if m.train_objective.is_nan() {
            m.train_objective = m.train_loss;
        }
        Ok(m)
    }
}
