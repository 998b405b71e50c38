//! The subcommands that work on a saved run: each loads the run directory, computes, and
//! writes its output beside the run's files.

pub mod completions;
pub mod eval;
pub mod export;
pub mod inspect;
pub mod interpolate;
pub mod latents;
pub mod manifold;
pub mod plot;
pub mod reconstruct;
pub mod sample;
pub mod score;
pub mod train;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use vae_data::{ImageShape, Limits, Split};
use vae_model::Vae;
use vae_model::checkpoint;
use vae_trainer::Collective;

use crate::data::test_split;
use crate::recipe::RunConfig;
use crate::run::{self, RunDir};

/// Flags every run command takes.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The run directory (as written by `vae-train train`).
    #[arg(long)]
    pub run_dir: PathBuf,
    /// The data (as `vae-train train --data` takes it) [default: the data the run was trained
    /// on; if it is gone, $VAE_DATA, or for the default data/mnist the repository's copy].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Worker threads [default: every core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Refuse any file whose header declares more data than this many bytes [default: the
    /// run's own].
    #[arg(long)]
    pub max_data_bytes: Option<u64>,
}

/// A trained run: its model and the recipe it was trained with.
pub struct Run {
    /// The run directory.
    pub dir: PathBuf,
    /// The trained model.
    pub model: Vae<f32>,
    /// The recipe (from `config.json`, in this layout or an earlier one).
    pub config: RunConfig,
    /// The table the model was trained on, if it was (its columns and standardisation).
    pub table: Option<vae_data::TableInfo>,
}

impl RunArgs {
    /// Loads the model and configuration of the run.
    pub fn load(&self) -> Result<Run> {
        if self.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        let dir = RunDir(&self.run_dir);
        dir.require_run()?;
        let model_path = dir.model();
        let (model, meta) = checkpoint::load::<f32>(&model_path)?;
        if !meta.contains_key(checkpoint::CHECKSUM_KEY) {
            run::warn_unverified(&model_path);
        }
        let cfg_path = dir.config();
        let text = std::fs::read_to_string(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?;
        let config = RunConfig::from_json(&text)
            .with_context(|| format!("{}: not a valid run configuration", cfg_path.display()))?;
        let table = crate::data::stored_table(&meta, &model_path)?;
        Ok(Run {
            dir: self.run_dir.clone(),
            model,
            config,
            table,
        })
    }

    /// The test split the run was evaluated on (binarized the same way, if it was).
    pub fn test_set(&self, run: &Run) -> Result<Split> {
        Ok(self.test_data(run)?.0)
    }

    /// [`RunArgs::test_set`], with the names of the classes its labels index where the data
    /// name them.
    pub fn test_data(&self, run: &Run) -> Result<(Split, Option<Vec<String>>)> {
        let dir = &match &self.data {
            Some(d) => d.clone(),
            None => crate::data::locate(&run.config.data.path),
        };
        let mut opts = run.config.open_options();
        opts.standardizer = run.table.as_ref().map(|t| t.standardizer.clone());
        opts.limits = Limits {
            max_data_bytes: self.max_data_bytes.unwrap_or(run.config.data.max_data_bytes),
        };
        let data = crate::data::open(dir, &opts)?;
        let pixels = run.model.config().input;
        if data.test.pixels() != pixels {
            bail!(
                "{}: images have {} pixels but the model expects {pixels}",
                dir.display(),
                data.test.pixels()
            );
        }
        let split = match test_split(&run.config, &data) {
            Cow::Borrowed(s) => s.clone(),
            Cow::Owned(s) => s,
        };
        Ok((split, data.classes))
    }
}

/// Test images are evaluated in blocks of this many, each with its own random stream, so
/// that `eval` and `score` give the same results however the blocks are shared among MPI
/// ranks.
pub const BLOCK: usize = 100;

/// The blocks of `n` images this rank evaluates (all of them without a collective).
pub fn my_blocks(n: usize, collective: &Option<&mut dyn Collective>) -> std::ops::Range<usize> {
    let blocks = n.div_ceil(BLOCK);
    match collective {
        Some(c) => blocks * c.rank() / c.size()..blocks * (c.rank() + 1) / c.size(),
        None => 0..blocks,
    }
}

/// The images of block `b` of `n`.
pub fn block_rows(b: usize, n: usize) -> std::ops::Range<usize> {
    b * BLOCK..((b + 1) * BLOCK).min(n)
}

/// The random stream of block `b` for `purpose`.
pub fn block_rng(seed: u64, b: usize, purpose: u64) -> rand::rngs::StdRng {
    <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(vae_data::stream_seed(seed, b as u64, purpose))
}

/// Whether this process writes the results (rank 0, or no collective).
pub fn is_writer(collective: &Option<&mut dyn Collective>) -> bool {
    collective.as_ref().is_none_or(|c| c.rank() == 0)
}

/// The shape of the run's images, for drawing (models saved before shapes were recorded:
/// grey squares); a model of a table has none.
pub fn image_shape(run: &Run) -> Result<ImageShape> {
    if let Some(t) = &run.table {
        bail!(
            "{} was trained on a table ({} columns: {}), which has no images to draw; `reconstruct --csv FILE` writes its reconstructed rows",
            run.dir.display(),
            t.columns.len(),
            t.columns.join(", ")
        );
    }
    let c = run.model.config();
    match c.image_shape() {
        Some(s) if s.channels == 1 || s.channels == 3 => Ok(s),
        Some(s) => bail!("the model's images are {s}: only grey and RGB images can be drawn"),
        None => bail!(
            "the model's {}-value images have no recorded shape and are not square; cannot draw them",
            c.input
        ),
    }
}

/// `given`, or `name` inside the run directory.
pub fn output(run: &Path, given: &Option<PathBuf>, name: &str) -> PathBuf {
    given.clone().unwrap_or_else(|| run.join(name))
}
