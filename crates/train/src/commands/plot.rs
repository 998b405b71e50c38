//! `vae-train plot`: the training curves from the run's metrics file, or -log p(x) against
//! minutes of training from evaluated snapshots of one or more runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use vae_data::atomic::write_atomic;

use super::output;
use crate::run::{self, RunDir};
use crate::run::{SNAPSHOTS, Snapshot};
use crate::svg::{Series, lines};

/// Flags of `vae-train plot`.
#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// The run directory.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Output SVG [default: RUN_DIR/curves.svg, or RUN_DIR/nll.svg with --nll].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Plot -log p(x) against minutes of training instead, one line per run, from the runs'
    /// snapshots (`--snapshot-every`) that `vae-train eval` has evaluated.
    #[arg(long)]
    pub nll: bool,
    /// More runs for --nll.
    #[arg(long, num_args = 1.., requires = "nll")]
    pub compare: Vec<PathBuf>,
}

/// Writes the plot; returns its path.
pub fn plot(a: &PlotArgs) -> Result<PathBuf> {
    ensure!(
        a.run_dir.is_dir(),
        "run directory {} does not exist",
        a.run_dir.display()
    );
    if a.nll {
        return plot_nll(a);
    }
    let m = RunDir(&a.run_dir).read_metrics()?;
    ensure!(
        !m.is_empty(),
        "{}: no epochs recorded yet",
        RunDir(&a.run_dir).metrics().display()
    );
    let series = |name: &str, f: fn(&run::EpochMetrics) -> f64| Series {
        name: name.into(),
        points: m.iter().map(|r| (r.epoch as f64, f(r))).collect(),
    };
    let svg = lines(
        "Training curves (nats per image)",
        "epoch",
        "nats",
        &[
            series("train -ELBO", |r| r.train_loss),
            series("test -ELBO", |r| r.test_loss),
            series("train KL", |r| r.train_kl),
            series("test KL", |r| r.test_kl),
        ],
    );
    let out = output(&a.run_dir, &a.out, "curves.svg");
    write_atomic(&out, svg.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

/// One evaluated snapshot: minutes of training, -log p(x), and its k.
fn evaluated_snapshots(run: &Path) -> Result<Vec<(f64, f64, usize)>> {
    let dir = run.join(SNAPSHOTS);
    let entries = std::fs::read_dir(&dir).with_context(|| {
        format!(
            "reading {} (train with --snapshot-every to get snapshots)",
            dir.display()
        )
    })?;
    let mut points = Vec::new();
    for e in entries {
        let snap = e.with_context(|| format!("reading {}", dir.display()))?.path();
        let eval = snap.join("eval.json");
        if !eval.is_file() {
            eprintln!(
                "warning: {} has no eval.json (run `vae-train eval --run-dir {}`); left out",
                snap.display(),
                snap.display()
            );
            continue;
        }
        let info: Snapshot = read_json(&snap.join("snapshot.json"))?;
        let e: serde_json::Value = read_json(&eval)?;
        let (Some(nll), Some(k)) = (e["neg_log_likelihood"].as_f64(), e["k"].as_u64()) else {
            bail!("{}: no neg_log_likelihood and k", eval.display());
        };
        points.push((info.train_seconds / 60.0, nll, k as usize));
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(points)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON of the expected shape", path.display()))
}

fn plot_nll(a: &PlotArgs) -> Result<PathBuf> {
    let mut series = Vec::new();
    let mut ks = Vec::new();
    for run in std::iter::once(&a.run_dir).chain(&a.compare) {
        let points = evaluated_snapshots(run)?;
        ensure!(!points.is_empty(), "{}: no evaluated snapshots", run.display());
        ks.extend(points.iter().map(|p| p.2));
        let name = run
            .file_name()
            .map_or_else(|| run.display().to_string(), |n| n.to_string_lossy().into_owned());
        series.push(Series {
            name,
            points: points.iter().map(|p| (p.0, p.1)).collect(),
        });
    }
    ks.sort_unstable();
    ks.dedup();
    let ks: Vec<String> = ks.iter().map(|k| k.to_string()).collect();
    let svg = lines(
        &format!("Test -log p(x) (IWAE estimate, k = {})", ks.join(", ")),
        "minutes of training",
        "nats",
        &series,
    );
    let out = output(&a.run_dir, &a.out, "nll.svg");
    write_atomic(&out, svg.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}
