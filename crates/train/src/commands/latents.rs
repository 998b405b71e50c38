//! `vae-train latents`: the test set's latent means as a scatter plot coloured by digit
//! (the first two dimensions of a 2-d latent, else the top two principal components).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use vae_data::atomic::write_atomic;

use super::{RunArgs, output};
use crate::stats::top2;
use crate::svg::{Series, scatter};
use crate::threads::with_threads;

/// Flags of `vae-train latents`.
#[derive(Args, Debug, Clone)]
pub struct LatentsArgs {
    /// The run.
    #[command(flatten)]
    pub run: RunArgs,
    /// Output SVG [default: RUN_DIR/latents.svg].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Writes the plot; returns its path.
pub fn latents(a: &LatentsArgs) -> Result<PathBuf> {
    let mut run = a.run.load()?;
    let (test, names) = a.run.test_data(&run)?;
    let x = test.images.f32();
    let (mu, _) = with_threads(a.run.threads, || run.model.encode(x.view()))?;
    let d = mu.ncols();
    let xy = top2(mu.mapv(f64::from).view());
    let series: Vec<Series> = match &test.labels {
        // One series per label, with a legend naming the class where the data name it.
        Some(labels) => test
            .classes()
            .into_iter()
            .map(|digit| Series {
                name: match names.as_ref().and_then(|n| n.get(digit as usize)) {
                    Some(name) => format!("{digit} {name}"),
                    None => format!("digit {digit}"),
                },
                points: labels
                    .iter()
                    .enumerate()
                    .filter(|&(_, &l)| l == digit)
                    .map(|(i, _)| (xy[[i, 0]], xy[[i, 1]]))
                    .collect(),
            })
            .collect(),
        None => vec![Series {
            name: "test images (unlabelled)".into(),
            points: (0..xy.nrows()).map(|i| (xy[[i, 0]], xy[[i, 1]])).collect(),
        }],
    };
    let (title, xl, yl) = if d <= 2 {
        ("Latent means of the test set", "z1", "z2")
    } else {
        (
            "Latent means of the test set (top two principal components)",
            "PC 1",
            "PC 2",
        )
    };
    let svg = scatter(&format!("{title}, {d}-d latent"), xl, yl, &series);
    let out = output(&run.dir, &a.out, "latents.svg");
    write_atomic(&out, svg.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}
