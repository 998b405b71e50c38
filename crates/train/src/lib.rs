//! The `vae-train` command: training runs and what users do with a trained VAE.
//!
//! The binary (`src/main.rs`) only parses arguments; everything it does is here, so that
//! integration tests can run it in-process.

//!
//! ```
//! use vae_train::recipe::RunConfig;
//!
//! // The defaults are PyTorch's example VAE.
//! let r = RunConfig::default();
//! assert_eq!((r.training.batch_size, r.model.latent.clone(), r.model.hidden.clone()), (128, vec![20], vec![400]));
//! r.validate().unwrap();
//! ```
#![warn(missing_docs)]
// The flags' doc comments are also their `--help` text, written for a terminal: `[:SLOPE]`
// and `<UTC time>` there are not links or HTML.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

pub mod cli;
pub mod commands;
pub mod data;
pub mod flags;
pub mod image;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod observers;
pub mod onnx;
pub mod plan;
pub mod recipe;
pub mod report;
pub mod run;
pub mod session;
pub mod signals;
pub mod stats;
pub mod svg;
pub mod tensorboard;
pub mod threads;
