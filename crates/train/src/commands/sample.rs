//! `vae-train sample`: an n x n grid of images decoded from the prior.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{RunArgs, image_shape, output};
use crate::image::{scale_for, tile, write_png};
use crate::threads::with_threads;

/// Flags of `vae-train sample`.
#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    /// The run.
    #[command(flatten)]
    pub run: RunArgs,
    /// Grid side: n x n samples.
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    /// Seed of the prior draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Magnify the picture N times [default: enough for tiles of at least 28 pixels].
    #[arg(long)]
    pub scale: Option<usize>,
    /// Output PNG [default: RUN_DIR/sample.png].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Writes the grid; returns its path.
pub fn sample(a: &SampleArgs) -> Result<PathBuf> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    let mut run = a.run.load()?;
    let shape = image_shape(&run)?;
    let (h, w) = (shape.height, shape.width);
    let scale = scale_for(a.scale, h, w)?;
    let out = output(&run.dir, &a.out, "sample.png");
    let images = with_threads(a.run.threads, || {
        run.model.sample(a.n * a.n, &mut StdRng::seed_from_u64(a.seed))
    })?;
    write_png(&out, &tile(images.view(), shape, a.n).upscaled(scale))?;
    Ok(out)
}
