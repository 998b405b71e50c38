//! Datasets for the VAE engine: one [`Dataset`] type over every source, the IDX file
//! format (MNIST's), and batches.
//!
//! * [`idx`]: read and write IDX files of every element type and any number of dimensions,
//!   plain or gzip-compressed (detected from the first bytes). Untrusted headers are checked
//!   against what the file can hold before anything is allocated.
//! * [`Dataset`]: the train and test [`Split`]s found at a path ([`Dataset::open`]), as f32
//!   values in [0, 1] with their [`ImageShape`] and, where the source has them, labels.
//!   Sources: a directory of IDX files (MNIST) today.
//! * [`Batches`]: seeded shuffling, optional subset, dynamic binarization, into a reused
//!   buffer.

//!
//! ```
//! use std::path::Path;
//! use vae_data::idx::{self, Idx, IdxData};
//!
//! // Two 2x3 "images", gzip-compressed and read back; a header that claims more than the
//! // file holds is an error naming the file, never a panic.
//! let a = Idx { dims: vec![2, 2, 3], data: IdxData::U8((0..12).collect()) };
//! let bytes = idx::encode(&a, true, Path::new("x.gz")).unwrap();
//! assert_eq!(idx::decode(&bytes, Path::new("x.gz")).unwrap(), a);
//! let err = idx::decode(&bytes[..bytes.len() / 2], Path::new("cut.gz")).unwrap_err();
//! assert!(err.to_string().starts_with("cut.gz"));
//! ```
#![warn(missing_docs)]

mod batch;
mod dataset;
mod error;
pub mod folder;
pub mod idx;
mod values;

pub use batch::{Batch, BatchConfig, Batches, stream_seed};
pub use dataset::{DEFAULT_DIR, Dataset, ImageShape, OpenOptions, Source, Split};
pub use error::{DatasetError, IdxError};
pub use folder::FolderOptions;
pub use idx::Limits;
pub use values::Values;
