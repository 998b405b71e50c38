//! Datasets for the VAE engine: one [`Dataset`] type over every source, the file formats
//! (MNIST's IDX, NumPy's `.npy` / `.npz`, CSV tables), and batches.
//!
//! * [`idx`]: read and write IDX files of every element type and any number of dimensions,
//!   plain or gzip-compressed (detected from the first bytes). Untrusted headers are checked
//!   against what the file can hold before anything is allocated.
//! * [`npy`]: read `.npy` files (format 1.0 to 3.0; uint8, float32 and float64 in either
//!   byte order, C or Fortran order) and the named arrays of `.npz` archives (stored or
//!   deflated), and write both. The header is parsed, never evaluated, and its declared size
//!   checked against [`Limits`] before anything is allocated; other dtypes (object, complex,
//!   bool, ...) are refused naming them.
//! * [`table`]: read CSV tables with a header row into f64 values (optionally with a label
//!   column of integers or text classes), refusing text, missing, non-finite or constant
//!   values naming the row and column; and a [`table::Standardizer`] (serde) fitted on the
//!   training rows.
//! * [`Dataset`]: the train and test [`Split`]s found at a path ([`Dataset::open`]), as f32
//!   values in [0, 1] with their [`ImageShape`] and, where the source has them, labels.
//!   Sources: a directory of IDX files (MNIST), a folder of PNG/JPEG images, a `.npy` or
//!   `.npz`, a CSV table; the classes are named where the source names them ([`label`]).
//! * [`Batches`]: seeded shuffling, optional subset, dynamic binarization, into a reused
//!   buffer.
//! * [`atomic`]: every file the project writes, written whole or not at all.
//!
//! Every error names the file (an archive's entry as `archive.npz/key.npy`); no input makes
//! a reader panic.
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

pub mod arrays;
pub mod atomic;
mod batch;
mod dataset;
mod error;
pub mod folder;
pub mod idx;
pub mod label;
pub mod npy;
pub mod table;
pub mod tables;
mod values;

pub use arrays::{Elements, NpzKeys};
pub use batch::{Batch, BatchConfig, Batches, stream_seed};
pub use dataset::{DEFAULT_DIR, Dataset, ImageShape, OpenOptions, Source, Split};
pub use error::{DatasetError, IdxError, NpyError, SizeError, StandardizeError, TableError};
pub use folder::FolderOptions;
pub use idx::Limits;
pub use label::ClassLabel;
pub use npy::{NpyArray, NpyData};
pub use table::{Standardizer, Table};
pub use tables::TableInfo;
pub use values::Values;
