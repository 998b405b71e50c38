//! Typed errors: every variant names the file it is about.

use std::path::PathBuf;

/// Why an IDX file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The gzip stream is corrupt (bad header, bad deflate data, or bad checksum).
    #[error("{path}: corrupt gzip stream: {source}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        source: std::io::Error,
    },
    /// The file is shorter than an IDX header.
    #[error("{path}: too short for an IDX header ({len} bytes)")]
    NoHeader {
        /// The file.
        path: PathBuf,
        /// Its (decompressed) length.
        len: usize,
    },
    /// The first two bytes are not zero: not an IDX file.
    #[error("{path}: not an IDX file (magic {magic:02x?}, expected 00 00 <type> <ndims>)")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The four magic bytes found.
        magic: [u8; 4],
    },
    /// The element type code is not one IDX defines.
    #[error("{path}: unknown IDX element type 0x{code:02x} (expected 08, 09, 0b, 0c, 0d or 0e)")]
    UnknownType {
        /// The file.
        path: PathBuf,
        /// The type byte.
        code: u8,
    },
    /// The header declares no dimensions, or a dimension of size zero.
    #[error("{path}: dimensions {dims:?} are empty or zero")]
    ZeroDimension {
        /// The file.
        path: PathBuf,
        /// The declared dimensions.
        dims: Vec<usize>,
    },
    /// The product of the dimensions overflows.
    #[error("{path}: dimensions {dims:?} overflow when multiplied")]
    Overflow {
        /// The file.
        path: PathBuf,
        /// The declared dimensions.
        dims: Vec<usize>,
    },
    /// The header declares more data than the reader may hold (see `idx::Limits`).
    #[error(
        "{path}: the header declares dimensions {dims:?}, {declared} bytes of data, more than the limit of {limit} bytes; refused before reading the body"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The declared dimensions.
        dims: Vec<usize>,
        /// Declared data bytes.
        declared: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The body ends before the declared size.
    #[error("{path}: truncated: the header declares {expected} data bytes, the file holds {found}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Declared data bytes.
        expected: u64,
        /// Data bytes present.
        found: u64,
    },
    /// Bytes follow the declared data.
    #[error("{path}: trailing data after the {expected} bytes the header declares")]
    TrailingData {
        /// The file.
        path: PathBuf,
        /// Declared data bytes.
        expected: u64,
    },
    /// The data does not match the declared dimensions (writer only).
    #[error("{path}: {len} elements do not fill dimensions {dims:?}")]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The dimensions.
        dims: Vec<usize>,
        /// Elements given.
        len: usize,
    },
}

/// Why a dataset could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A directory or file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A folder of images is not laid out as expected, or its images do not fit together.
    #[error("{path}: {reason}")]
    Folder {
        /// The folder (or the class folder) at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An image file could not be read or decoded, or is too large.
    #[error("{path}: {reason}")]
    Image {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The path holds no dataset this version reads.
    #[error("{path}: {reason}")]
    Unrecognised {
        /// The path.
        path: PathBuf,
        /// What was found, and what is accepted.
        reason: String,
    },
    /// A file of the dataset is not in the directory under any accepted name.
    #[error("{dir}: no {what} file (looked for {tried})")]
    Missing {
        /// The directory searched.
        dir: PathBuf,
        /// Which file (e.g. "train images").
        what: &'static str,
        /// The names tried.
        tried: String,
    },
    /// An IDX file could not be read.
    #[error(transparent)]
    Idx(#[from] IdxError),
    /// A file holds the wrong kind of data (labels where images were expected, ...).
    #[error("{path}: expected {expected}, found {found}")]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// What was expected.
        expected: &'static str,
        /// What the header says.
        found: String,
    },
    /// The train and test images differ in size.
    #[error(
        "{train} holds {}x{} images but {test} holds {}x{} images: the two splits must have the same image size",
        train_size.0, train_size.1, test_size.0, test_size.1
    )]
    ImageSizeMismatch {
        /// The training image file.
        train: PathBuf,
        /// Its image size (rows, cols).
        train_size: (usize, usize),
        /// The test image file.
        test: PathBuf,
        /// Its image size (rows, cols).
        test_size: (usize, usize),
    },
    /// Images and labels of a split differ in count.
    #[error("{images} holds {n_images} images but {labels} holds {n_labels} labels")]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Its count.
        n_images: usize,
        /// The label file.
        labels: PathBuf,
        /// Its count.
        n_labels: usize,
    },
}
