//! `vae-train interpolate`: decodings along the line (or great circle) between the latent
//! means of pairs of test images, one pair a row.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use ndarray::{Array1, Array2, ArrayView1};

use super::{RunArgs, image_shape, output};
use crate::image::{scale_for, tile, write_png};
use crate::threads::with_threads;

/// Flags of `vae-train interpolate`.
#[derive(Args, Debug, Clone)]
pub struct InterpolateArgs {
    /// The run.
    #[command(flatten)]
    pub run: RunArgs,
    /// Pairs of test-image indices, e.g. `0-1,2-3` (one row each).
    #[arg(long, default_value = "0-1,2-3,4-5,6-7")]
    pub pairs: String,
    /// Images per row, both ends included.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Follow the great circle (spherical interpolation) instead of the straight line.
    #[arg(long)]
    pub spherical: bool,
    /// Magnify the picture N times [default: enough for tiles of at least 28 pixels].
    #[arg(long)]
    pub scale: Option<usize>,
    /// Output PNG [default: RUN_DIR/interpolate.png].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Parses `a-b,c-d` into index pairs.
pub fn parse_pairs(s: &str) -> Result<Vec<(usize, usize)>> {
    s.split(',')
        .map(|p| {
            let (a, b) = p
                .trim()
                .split_once('-')
                .with_context(|| format!("--pairs: '{p}' is not of the form A-B"))?;
            Ok((
                a.trim()
                    .parse()
                    .with_context(|| format!("--pairs: '{a}' is not an index"))?,
                b.trim()
                    .parse()
                    .with_context(|| format!("--pairs: '{b}' is not an index"))?,
            ))
        })
        .collect()
}

/// The point at fraction `t` from `a` to `b`: on the line, or on the great circle through
/// them (falling back to the line when they are nearly parallel).
pub fn interpolate(a: ArrayView1<f32>, b: ArrayView1<f32>, t: f32, spherical: bool) -> Array1<f32> {
    if spherical {
        let (na, nb) = (a.dot(&a).sqrt(), b.dot(&b).sqrt());
        let cos = (a.dot(&b) / (na * nb).max(f32::MIN_POSITIVE)).clamp(-1.0, 1.0);
        let omega = cos.acos();
        if omega.sin().abs() > 1e-6 {
            let s = omega.sin();
            return &a * (((1.0 - t) * omega).sin() / s) + &b * ((t * omega).sin() / s);
        }
    }
    &a * (1.0 - t) + &b * t
}

/// Writes the strip; returns its path.
pub fn run(a: &InterpolateArgs) -> Result<PathBuf> {
    if a.steps < 2 {
        bail!("--steps must be at least 2");
    }
    let pairs = parse_pairs(&a.pairs)?;
    let mut run = a.run.load()?;
    let shape = image_shape(&run)?;
    let (h, w) = (shape.height, shape.width);
    let scale = scale_for(a.scale, h, w)?;
    let test = a.run.test_set(&run)?;
    if let Some(&(i, j)) = pairs.iter().find(|&&(i, j)| i.max(j) >= test.len()) {
        bail!(
            "--pairs: {i}-{j} is out of range (the test set has {} images)",
            test.len()
        );
    }
    let d = run.model.config().top_latent();
    let images = with_threads(a.run.threads, || {
        let (mu, _) = run.model.encode(test.images.f32().view());
        let mut z = Array2::<f32>::zeros((pairs.len() * a.steps, d));
        for (r, &(i, j)) in pairs.iter().enumerate() {
            for k in 0..a.steps {
                let t = k as f32 / (a.steps - 1) as f32;
                z.row_mut(r * a.steps + k)
                    .assign(&interpolate(mu.row(i), mu.row(j), t, a.spherical));
            }
        }
        run.model.decode(z.view())
    })?;
    let out = output(&run.dir, &a.out, "interpolate.png");
    write_png(&out, &tile(images.view(), shape, a.steps).upscaled(scale))?;
    Ok(out)
}
