//! `vae-train inspect`: what the engine sees at a data path (source, image shape, splits,
//! labels, memory held, time to load), without training.

use std::time::Instant;

use anyhow::Result;
use clap::Args;

use crate::flags::{DataArgs, TrainArgs, rendered};

/// Flags of `vae-train inspect`: the data flags of `vae-train train`.
#[derive(Args, Debug, Clone)]
pub struct InspectArgs {
    /// Where the data are and how to read them.
    #[command(flatten)]
    pub source: DataArgs,
}

/// Opens the data and prints what it holds.
pub fn inspect(a: &InspectArgs) -> Result<()> {
    let recipe = TrainArgs {
        source: a.source.clone(),
        ..TrainArgs::default()
    }
    .recipe();
    recipe.validate().map_err(rendered)?;
    let started = Instant::now();
    let data = crate::data::open(&recipe.data.path, &recipe.open_options())?;
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
