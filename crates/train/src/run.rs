//! A run directory ([`RunDir`]): what a training run writes and what later commands read.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use vae_data::atomic::write_atomic;

/// The model checkpoint.
pub const MODEL: &str = vae_trainer::MODEL_FILE;
/// Everything needed to resume, in one file (so it is replaced in one atomic step): the
/// weights, Adam's moments and step, the position, the metrics so far, and the flags.
pub const STATE: &str = vae_trainer::STATE_FILE;
/// The run's recipe, as JSON.
pub const CONFIG: &str = "config.json";
/// The start of a TensorBoard event file's name (`events.out.tfevents.<time>.<host>`).
pub const EVENTS_PREFIX: &str = "events.out.tfevents.";

/// Whether `name` is an event file's name.
pub fn is_event_file(name: &str) -> bool {
    name.starts_with(EVENTS_PREFIX)
}

/// The metadata key of the recipe in the checkpoints.
pub const TRAIN_CONFIG_KEY: &str = "train.config";
/// The metadata key of a table's columns and standardisation in the checkpoints.
pub const TABLE_KEY: &str = "data.table";
/// One row per epoch.
pub const METRICS: &str = "metrics.csv";
/// 8x8 prior samples.
pub const SAMPLES: &str = "samples.png";
/// Test images over their reconstructions.
pub const RECONSTRUCTIONS: &str = "reconstructions.png";

pub use vae_trainer::EpochMetrics;

/// Where snapshots go, one directory each.
pub const SNAPSHOTS: &str = "snapshots";

/// What a snapshot records besides the model.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Complete epochs.
    pub epochs: usize,
    /// Batches of the next epoch.
    pub batches: usize,
    /// Seconds of training (batches only).
    pub train_seconds: f64,
}

/// Renders metrics as CSV, header included (the columns of [`vae_trainer::FIELDS`]).
pub fn metrics_csv(rows: &[EpochMetrics]) -> String {
    let mut s = EpochMetrics::csv_header() + "\n";
    for m in rows {
        let _ = writeln!(s, "{}", m.csv_row());
    }
    s
}

/// Parses a metrics file written by [`metrics_csv`] (or by an earlier version, whose
/// columns it finds by their names).
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').map(str::trim).collect();
    lines
        .enumerate()
        .map(|(i, line)| {
            EpochMetrics::from_csv(&header, line)
                .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", path.display(), i + 2))
        })
        .collect()
}

/// `runs/<UTC time>` (e.g. `runs/20261123-153012`).
pub fn default_run_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    PathBuf::from("runs").join(format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    ))
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Warns (on stderr) that a checkpoint carries no checksums, so damage cannot be detected.
pub fn warn_unverified(path: &Path) {
    eprintln!(
        "warning: {} carries no checksums (it was written by an older version); its data cannot be verified",
        path.display()
    );
}

/// A run directory's layout: where each of a run's files lies, and the checks and writes
/// that the commands and the Python package share. A view of a path, copied freely.
#[derive(Clone, Copy, Debug)]
pub struct RunDir<'a>(pub &'a Path);

impl<'a> RunDir<'a> {
    /// The directory.
    pub fn path(self) -> &'a Path {
        self.0
    }

    /// The shareable model ([`MODEL`]).
    pub fn model(self) -> PathBuf {
        self.0.join(MODEL)
    }

    /// The training state ([`STATE`]).
    pub fn state(self) -> PathBuf {
        self.0.join(STATE)
    }

    /// The recipe ([`CONFIG`]).
    pub fn config(self) -> PathBuf {
        self.0.join(CONFIG)
    }

    /// The metrics ([`METRICS`]).
    pub fn metrics(self) -> PathBuf {
        self.0.join(METRICS)
    }

    /// The final pictures: prior samples ([`SAMPLES`]) and reconstructions
    /// ([`RECONSTRUCTIONS`]).
    pub fn pictures(self) -> (PathBuf, PathBuf) {
        (self.0.join(SAMPLES), self.0.join(RECONSTRUCTIONS))
    }

    /// The snapshot after `epochs` epochs and `batches` batches of the next:
    /// `snapshots/eEEEEE[-bBBBBB]`, a run directory of its own.
    pub fn snapshot(self, epochs: usize, batches: usize) -> PathBuf {
        let name = match batches {
            0 => format!("e{epochs:06}"),
            b => format!("e{epochs:06}-b{b:06}"),
        };
        self.0.join(SNAPSHOTS).join(name)
    }

    /// Whether it holds a checkpoint (a model or a training state): never overwritten.
    pub fn holds_checkpoint(self) -> bool {
        self.model().exists() || self.state().exists()
    }

    /// Checks that it is a run directory (it holds a model), naming what is missing.
    pub fn require_run(self) -> Result<()> {
        let dir = self.0;
        anyhow::ensure!(dir.is_dir(), "run directory {} does not exist", dir.display());
        anyhow::ensure!(
            self.model().is_file(),
            "{} holds no {MODEL}: not a run directory (train one with `vae-train train --run-dir {}`)",
            dir.display(),
            dir.display()
        );
        Ok(())
    }

    /// Writes the recipe (JSON) atomically.
    pub fn write_config(self, json: &str) -> Result<()> {
        let p = self.config();
        write_atomic(&p, json.as_bytes()).with_context(|| format!("writing {}", p.display()))
    }

    /// Writes the metrics file atomically.
    pub fn write_metrics(self, rows: &[EpochMetrics]) -> Result<()> {
        let p = self.metrics();
        write_atomic(&p, metrics_csv(rows).as_bytes()).with_context(|| format!("writing {}", p.display()))
    }

    /// Reads the metrics file ([`read_metrics`]).
    pub fn read_metrics(self) -> Result<Vec<EpochMetrics>> {
        read_metrics(&self.metrics())
    }

    /// The files a run that never wrote its first checkpoint leaves here (its
    /// configuration, metrics, TensorBoard events, and temporary files of interrupted
    /// writes); empty if there are none.
    pub fn unfinished_files(self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.0) else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                p.is_file() && (name == CONFIG || name == METRICS || name.ends_with(".tmp") || is_event_file(name))
            })
            .collect();
        found.sort();
        found
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn metrics_round_trip() {
        let m = EpochMetrics {
            epoch: 3,
            train_loss: 110.5,
            train_recon: 90.25,
            train_kl: 20.25,
            test_loss: 108.0,
            test_recon: 88.0,
            test_kl: 20.0,
            kl_weight: 1.0,
            train_seconds: 1.5,
            train_objective: 109.75,
        };
        let p = std::env::temp_dir().join(format!("vae-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        RunDir(&p).write_metrics(&[m, m]).unwrap();
        assert_eq!(RunDir(&p).read_metrics().unwrap(), vec![m, m]);
    }
}
