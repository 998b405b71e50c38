//! `vae-train reconstruct`: the first n test images above their reconstructions (decoded
//! posterior means), optionally also as CSV numbers.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use ndarray::{Axis, concatenate};
use vae_data::atomic::write_atomic;

use super::{RunArgs, image_shape, output};
use crate::image::{scale_for, tile, write_png};
use crate::threads::with_threads;

/// Flags of `vae-train reconstruct`.
#[derive(Args, Debug, Clone)]
pub struct ReconstructArgs {
    /// The run.
    #[command(flatten)]
    pub run: RunArgs,
    /// How many test images (from the first).
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    /// Magnify the picture N times [default: enough for tiles of at least 28 pixels].
    #[arg(long)]
    pub scale: Option<usize>,
    /// Output PNG [default: RUN_DIR/reconstruct.png].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the reconstructions' pixel values (one image a row) to this CSV file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Also write the inputs that were reconstructed (in the data's own units) to this CSV
    /// file, row for row.
    #[arg(long)]
    pub inputs_csv: Option<PathBuf>,
}

/// Writes the picture (and CSV); returns the path of the picture, or for a model of a
/// table, of the CSV (in the table's own units and columns).
pub fn reconstruct(a: &ReconstructArgs) -> Result<PathBuf> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    let mut run = a.run.load()?;
    if let Some(t) = run.table.clone() {
        let Some(csv) = &a.csv else {
            bail!(
                "{}: a model of a table reconstructs rows, not pictures: give --csv FILE",
                run.dir.display()
            );
        };
        let test = a.run.test_set(&run)?;
        let n = a.n.min(test.len());
        let rows = test.images.rows_f32(0..n);
        let mut recon = with_threads(a.run.threads, || run.model.reconstruct(rows.view()))?;
        let mut inputs = rows.to_owned();
        for m in [&mut recon, &mut inputs] {
            for mut row in m.rows_mut() {
                let row = row.as_slice_mut().expect("a standard-layout row");
                t.standardizer.invert(row).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        write_csv(csv, Some(&t.columns), recon.view())?;
        if let Some(p) = &a.inputs_csv {
            write_csv(p, Some(&t.columns), inputs.view())?;
        }
        return Ok(csv.clone());
    }
    let shape = image_shape(&run)?;
    let (h, w) = (shape.height, shape.width);
    let scale = scale_for(a.scale, h, w)?;
    let test = a.run.test_set(&run)?;
    let n = a.n.min(test.len());
    let originals = test.images.rows_f32(0..n);
    let originals = originals.view();
    let recon = with_threads(a.run.threads, || run.model.reconstruct(originals))?;
    let out = output(&run.dir, &a.out, "reconstruct.png");
    let both = concatenate![Axis(0), originals, recon];
    write_png(&out, &tile(both.view(), shape, n).upscaled(scale))?;
    if let Some(csv) = &a.csv {
        write_csv(csv, None, recon.view())?;
    }
    if let Some(p) = &a.inputs_csv {
        write_csv(p, None, originals)?;
    }
    Ok(out)
}

/// Rows of values as CSV, under a header of `columns` if given.
fn write_csv(path: &std::path::Path, columns: Option<&[String]>, rows: ndarray::ArrayView2<f32>) -> Result<()> {
    let mut text = columns.map(|c| c.join(",") + "\n").unwrap_or_default();
    for row in rows.rows() {
        let vals: Vec<String> = row.iter().map(|v| format!("{v:e}")).collect();
        let _ = writeln!(text, "{}", vals.join(","));
    }
    write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}
