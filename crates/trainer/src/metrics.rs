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
