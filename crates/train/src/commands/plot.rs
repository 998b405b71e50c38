//! `vae-train plot`: the training curves from the run's metrics file.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use clap::Args;
use vae_model::checkpoint::write_atomic;

use super::output;
use crate::run::{self, read_metrics};
use crate::svg::{Series, lines};

/// Flags of `vae-train plot`.
#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// The run directory.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Output SVG [default: RUN_DIR/curves.svg].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Writes the plot; returns its path.
pub fn plot(a: &PlotArgs) -> Result<PathBuf> {
    ensure!(
        a.run_dir.is_dir(),
        "run directory {} does not exist",
        a.run_dir.display()
    );
    let m = read_metrics(&a.run_dir.join(run::METRICS))?;
    ensure!(
        !m.is_empty(),
        "{}: no epochs recorded yet",
        a.run_dir.join(run::METRICS).display()
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
