//! The subcommands that work on a saved run: each loads the run directory, computes, and
//! writes its output beside the run's files.

pub mod eval;
pub mod interpolate;
pub mod latents;
pub mod manifold;
pub mod plot;
pub mod reconstruct;
pub mod sample;
pub mod score;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use vae_mnist::{Limits, Split};
use vae_model::Vae;
use vae_model::checkpoint;

use crate::cli::TrainArgs;
use crate::run;
use crate::train::{load_data, test_split};

/// Flags every run command takes.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The run directory (as written by `vae-train train`).
    #[arg(long)]
    pub run_dir: PathBuf,
    /// MNIST directory [default: the one the run was trained on].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Worker threads [default: every core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Refuse IDX files declaring more data than this many bytes [default: the run's own].
    #[arg(long)]
    pub max_data_bytes: Option<u64>,
}

/// A trained run: its model and the flags it was trained with.
pub struct Run {
    /// The run directory.
    pub dir: PathBuf,
    /// The trained model.
    pub model: Vae<f32>,
    /// The training flags (from `config.json`).
    pub config: TrainArgs,
}

impl RunArgs {
    /// Loads the model and configuration of the run.
    pub fn load(&self) -> Result<Run> {
        if self.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        run::require_run(&self.run_dir)?;
        let model_path = self.run_dir.join(run::MODEL);
        let (model, meta) = checkpoint::load::<f32>(&model_path)?;
        if !meta.contains_key(checkpoint::CHECKSUM_KEY) {
            run::warn_unverified(&model_path);
        }
        let cfg_path = self.run_dir.join(run::CONFIG);
        let text = std::fs::read_to_string(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?;
        let config: TrainArgs = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid run configuration", cfg_path.display()))?;
        Ok(Run {
            dir: self.run_dir.clone(),
            model,
            config,
        })
    }

    /// The test split the run was evaluated on (binarized the same way, if it was).
    pub fn test_set(&self, run: &Run) -> Result<Split> {
        let dir = self.data.as_ref().unwrap_or(&run.config.data);
        let limits = Limits {
            max_data_bytes: self.max_data_bytes.unwrap_or(run.config.max_data_bytes),
        };
        let mnist = load_data(dir, &limits)?;
        let pixels = run.model.config().input;
        if mnist.test.pixels() != pixels {
            bail!(
                "{}: images have {} pixels but the model expects {pixels}",
                dir.display(),
                mnist.test.pixels()
            );
        }
        Ok(match test_split(&run.config, &mnist) {
            Cow::Borrowed(s) => s.clone(),
            Cow::Owned(s) => s,
        })
    }
}

/// The side of the model's square images (28 for MNIST), for tiling.
pub fn image_side(model: &Vae<f32>) -> Result<usize> {
    let n = model.config().input;
    let side = (n as f64).sqrt().round() as usize;
    if side * side != n {
        bail!("the model's {n}-pixel images are not square; cannot draw them");
    }
    Ok(side)
}

/// `given`, or `name` inside the run directory.
pub fn output(run: &Path, given: &Option<PathBuf>, name: &str) -> PathBuf {
    given.clone().unwrap_or_else(|| run.join(name))
}
