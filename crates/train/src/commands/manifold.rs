//! `vae-train manifold`: for a 2-d latent space, the decodings of an n x n grid of points
//! whose coordinates are evenly spaced quantiles of N(0, 1) (Kingma & Welling's figure).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use ndarray::Array2;

use super::{RunArgs, image_shape, output};
use crate::image::{scale_for, tile, write_png};
use crate::stats::inverse_normal_cdf;
use crate::threads::with_threads;

/// Flags of `vae-train manifold`.
#[derive(Args, Debug, Clone)]
pub struct ManifoldArgs {
    /// The run (its latent space must be 2-d).
    #[command(flatten)]
    pub run: RunArgs,
    /// Grid side.
    #[arg(long, default_value_t = 20)]
    pub n: usize,
    /// Magnify the picture N times [default: enough for tiles of at least 28 pixels].
    #[arg(long)]
    pub scale: Option<usize>,
    /// Output PNG [default: RUN_DIR/manifold.png].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The latent point of grid cell (row, col): z1 grows left to right, z2 bottom to top.
pub fn grid_point(row: usize, col: usize, n: usize) -> [f32; 2] {
    let q = |k: usize| inverse_normal_cdf((k as f64 + 0.5) / n as f64) as f32;
    [q(col), q(n - 1 - row)]
}

/// Writes the manifold; returns its path.
pub fn manifold(a: &ManifoldArgs) -> Result<PathBuf> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    let mut run = a.run.load()?;
    let d = run.model.config().top_latent();
    if d != 2 {
        bail!(
            "manifold needs a 2-d (top) latent space, but {} has {d} latent dimensions there (train one with --latent 2, or --latent A,2)",
            run.dir.display()
        );
    }
    let shape = image_shape(&run)?;
    let (h, w) = (shape.height, shape.width);
    let scale = scale_for(a.scale, h, w)?;
    let z = Array2::from_shape_fn((a.n * a.n, 2), |(k, j)| grid_point(k / a.n, k % a.n, a.n)[j]);
    let images = with_threads(a.run.threads, || run.model.decode(z.view()))?;
    let out = output(&run.dir, &a.out, "manifold.png");
    write_png(&out, &tile(images.view(), shape, a.n).upscaled(scale))?;
    Ok(out)
}
