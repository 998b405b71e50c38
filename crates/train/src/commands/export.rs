//! `vae-train export`: the run's model as two ONNX files, `encoder.onnx` and `decoder.onnx`
//! ([`crate::onnx`]), for onnxruntime, browsers and mobile runtimes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use prost::Message;
use vae_data::atomic::write_atomic;
use vae_model::checkpoint;

use crate::run::{self, RunDir};

/// Flags of `vae-train export`.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// The run directory (as written by `vae-train train`).
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Where to write encoder.onnx and decoder.onnx [default: the run directory].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Writes both files; returns their paths.
pub fn export(a: &ExportArgs) -> Result<Vec<PathBuf>> {
    RunDir(&a.run_dir).require_run()?;
    let model_path = RunDir(&a.run_dir).model();
    let (model, meta) = checkpoint::load::<f32>(&model_path)?;
    if !meta.contains_key(checkpoint::CHECKSUM_KEY) {
        run::warn_unverified(&model_path);
    }
    let graphs = crate::onnx::export(&model).with_context(|| format!("exporting {}", model_path.display()))?;
    let dir = a.out.clone().unwrap_or_else(|| a.run_dir.clone());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut wrote = Vec::new();
    for (name, m) in [("encoder.onnx", &graphs.encoder), ("decoder.onnx", &graphs.decoder)] {
        let path = dir.join(name);
        write_atomic(&path, &m.encode_to_vec()).with_context(|| format!("writing {}", path.display()))?;
        wrote.push(path);
    }
    Ok(wrote)
}
