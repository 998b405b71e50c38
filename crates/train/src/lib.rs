//! The `vae-train` command: training runs and what users do with a trained VAE.
//!
//! The binary (`src/main.rs`) only parses arguments; everything it does is here, so that
//! integration tests can run it in-process.

pub mod cli;
pub mod commands;
pub mod image;
pub mod report;
pub mod run;
pub mod stats;
pub mod svg;
pub mod train;
