//! What a training run logs to TensorBoard, and when: the running training loss every
//! `--log-every` batches, the epoch's figures (the columns of `metrics.csv`, the learning
//! rate and the speed) and its pictures, each at the global step (batches trained so far).

use std::path::Path;

use anyhow::Result;
use vae_model::LossSums;

use super::EventWriter;
use crate::image::Picture;
use crate::run::EpochMetrics;

/// The tags of the per-epoch scalars, in the order they are logged, beside the
/// `metrics.csv` column each equals (`None`: not in the file).
pub const EPOCH_TAGS: &[(&str, Option<&str>)] = &[
    ("neg_elbo/train", Some("train_neg_elbo")),
    ("recon/train", Some("train_recon")),
    ("kl/train", Some("train_kl")),
    ("neg_elbo/test", Some("test_neg_elbo")),
    ("recon/test", Some("test_recon")),
    ("kl/test", Some("test_kl")),
    ("objective/train", Some("train_objective")),
    ("kl_weight", Some("kl_weight")),
    ("train_seconds", Some("train_seconds")),
    ("lr", None),
    ("img_per_s", None),
];

/// The running training loss: the -ELBO per image over the batches since the last point.
pub const BATCH_NEG_ELBO: &str = "batch/neg_elbo";
/// The running trained objective (the bound trained, β-weighted) per image, likewise.
pub const BATCH_OBJECTIVE: &str = "batch/objective";
/// Tag of the 8x8 prior samples (the same latent draws every epoch).
pub const SAMPLES: &str = "images/samples";
/// Tag of the test images over their reconstructions.
pub const RECONSTRUCTIONS: &str = "images/reconstructions";

/// The TensorBoard log of one training session (rank 0's).
pub struct RunLog {
    events: EventWriter,
    log_every: usize,
    /// The epoch's running sums at the last running-loss point.
    since: LossSums,
}

impl RunLog {
    /// Starts a new event file in `run_dir`; a resumed session (`resumed_at`: the global
    /// step it continues from) marks its start there.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn start(run_dir: &Path, log_every: usize, resumed_at: Option<usize>) -> Result<Self> {
        let start = resumed_at.map(|s| s as i64 + 1);
        Ok(RunLog {
            events: EventWriter::create(run_dir, start)?,
            log_every,
            since: LossSums::default(),
        })
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        self.events.path()
    }

    /// At the start (or resumed middle) of an epoch whose running sums are `running`.
    pub fn start_epoch(&mut self, running: &LossSums) {
        self.since = *running;
    }

    /// After a batch: `running` holds the epoch's sums so far, `step` the batches trained
    /// in all. Logs the loss since the last point every `log_every` steps.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn batch(&mut self, step: usize, running: &LossSums) -> Result<()> {
        if self.log_every == 0 || !step.is_multiple_of(self.log_every) {
            return Ok(());
        }
        let n = running.images.saturating_sub(self.since.images).max(1) as f64;
        let neg_elbo = (running.recon - self.since.recon + running.kl - self.since.kl) / n;
        let objective = (running.objective - self.since.objective) / n;
        self.since = *running;
        self.events
            .scalars(step as i64, &[(BATCH_NEG_ELBO, neg_elbo), (BATCH_OBJECTIVE, objective)])
    }

    /// At the end of an epoch (`step` batches trained in all): its figures, the learning rate
    /// it trained with, its speed, and its pictures.
    ///
    /// # Errors
    /// When the file cannot be written or a picture encoded.
    pub fn epoch(
        &mut self,
        step: usize,
        m: &EpochMetrics,
        lr: f64,
        images: usize,
        pictures: Option<[&Picture; 2]>,
    ) -> Result<()> {
        let speed = images as f64 / m.train_seconds.max(1e-9);
        let values: Vec<(&str, f64)> = EPOCH_TAGS
            .iter()
            .map(|&(tag, column)| {
                let v = match (tag, column) {
                    ("lr", _) => lr,
                    ("img_per_s", _) => speed,
                    (_, Some(c)) => column_value(m, c),
                    (_, None) => f64::NAN,
                };
                (tag, v)
            })
            .collect();
        self.events.scalars(step as i64, &values)?;
        match pictures {
            Some([samples, recon]) => self
                .events
                .images(step as i64, &[(SAMPLES, samples), (RECONSTRUCTIONS, recon)]),
            None => Ok(()),
        }
    }
}

/// The value of the `metrics.csv` column `column` of `m` (through the file's own table of
/// columns, [`vae_trainer::FIELDS`]).
fn column_value(m: &EpochMetrics, column: &str) -> f64 {
    vae_trainer::FIELDS
        .iter()
        .find(|f| f.name == column)
        .map_or(f64::NAN, |f| (f.get)(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_tag_names_a_metrics_column() {
        for (tag, column) in EPOCH_TAGS {
            if let Some(c) = column {
                assert!(vae_trainer::FIELDS.iter().any(|f| f.name == *c), "{tag}: no column {c}");
            }
        }
    }
}
