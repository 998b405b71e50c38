//! `vae-train inspect`: what the engine sees at a data path (source, image shape, splits,
//! labels, memory held, time to load), without training.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use crate::flags::{TrainArgs, rendered};
use crate::recipe::ImageSize;

/// Flags of `vae-train inspect` (the data flags of `vae-train train`).
#[derive(Args, Debug, Clone)]
pub struct InspectArgs {
    /// The data (as `vae-train train --data` takes it).
    #[arg(long)]
    pub data: PathBuf,
    /// Image folders: 1 or 3 channels [default: 3 if any image is in colour].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Image folders: resize every image to HEIGHTxWIDTH.
    #[arg(long)]
    pub image_size: Option<ImageSize>,
    /// Without a test split in the data: the share set aside for testing [default: 0.1].
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// .npz archives: X_TRAIN,Y_TRAIN,X_TEST,Y_TEST.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub npz_keys: Option<Vec<String>>,
    /// CSV tables: the column holding the labels.
    #[arg(long)]
    pub label_column: Option<String>,
    /// Refuse files declaring more data than this many bytes.
    #[arg(long)]
    pub max_data_bytes: Option<u64>,
}

/// Opens the data and prints what it holds.
pub fn inspect(a: &InspectArgs) -> Result<()> {
    let recipe = TrainArgs {
        data: Some(a.data.clone()),
        channels: a.channels,
        image_size: a.image_size,
        test_fraction: a.test_fraction,
        npz_keys: a.npz_keys.clone(),
        label_column: a.label_column.clone(),
        max_data_bytes: a.max_data_bytes,
        ..TrainArgs::default()
    }
    .recipe();
    recipe.validate().map_err(rendered)?;
    let started = Instant::now();
    let data = crate::data::open(&a.data, &recipe.open_options())?;
    let seconds = started.elapsed().as_secs_f64();
    let (tr, te) = (&data.train, &data.test);
    let (items, size) = match data.table {
        Some(_) => ("rows", format!("{} columns", tr.pixels())),
        None => ("images", tr.shape.to_string()),
    };
    println!(
        "{}: {} train and {} test {items} of {size}",
        data.source,
        tr.len(),
        te.len()
    );
    let labels = match (&data.classes, &tr.labels) {
        // Each class with the number that flags, score.csv and messages use for it.
        (Some(names), _) => format!(
            "labels: {} classes ({})",
            names.len(),
            vae_data::label::all_numbered(names)
        ),
        (None, Some(_)) => format!("labels: {:?}", tr.classes()),
        (None, None) => "no labels".to_string(),
    };
    let held = tr.images.bytes() + te.images.bytes();
    println!(
        "{labels}; {:.1} MB held ({}), loaded in {seconds:.2} s",
        held as f64 / 1e6,
        match tr.images {
            vae_data::Values::U8(_) => "bytes",
            vae_data::Values::F32(_) => "f32",
        }
    );
    Ok(())
}
