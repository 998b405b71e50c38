//! MNIST for the VAE engine: the IDX file format, the dataset, and batches.
//!
//! * [`idx`]: read and write IDX files of every element type and any number of dimensions,
//!   plain or gzip-compressed (detected from the first bytes). Untrusted headers are checked
//!   against what the file can hold before anything is allocated.
//! * [`Mnist`]: the train and test splits found in a directory, as f32 pixels in [0, 1].
//! * [`Batches`]: seeded shuffling, optional subset, dynamic binarization, into a reused
//!   buffer.

mod batch;
mod dataset;
mod error;
pub mod idx;

pub use batch::{Batch, BatchConfig, Batches, stream_seed};
pub use dataset::{Mnist, Split};
pub use error::{DatasetError, IdxError};
pub use idx::Limits;
