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
    /// The declared size does not fit the limit or the bytes the file holds.
    #[error("{path}: {size}")]
    Size {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        size: SizeError,
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

/// A header's declared size against the reader's limit and the bytes the file holds: the
/// refusals the IDX and `.npy` readers share (each wraps it with the file's name).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The product of the dimensions overflows.
    #[error("dimensions {dims:?} overflow when multiplied")]
    Overflow {
        /// The declared dimensions.
        dims: Vec<usize>,
    },
    /// The header declares more data than the reader may hold (see `idx::Limits`).
    #[error(
        "the header declares dimensions {dims:?}, {declared} bytes of data, more than the limit of {limit} bytes; refused before reading the body"
    )]
    TooLarge {
        /// The declared dimensions.
        dims: Vec<usize>,
        /// Declared data bytes.
        declared: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The data end before the declared size.
    #[error("truncated: the header declares {expected} data bytes, the file holds {found}")]
    Truncated {
        /// Declared data bytes.
        expected: u64,
        /// Data bytes present.
        found: u64,
    },
    /// Bytes follow the declared data.
    #[error("trailing data after the {expected} bytes the header declares")]
    TrailingData {
        /// Declared data bytes.
        expected: u64,
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
    /// A file was found and read, but what it holds cannot be used as it is (values out of
    /// range, an empty or misshapen array, columns that do not match the model): the
    /// message says what to change in it.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to change.
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
    /// A NumPy file could not be read.
    #[error(transparent)]
    Npy(#[from] NpyError),
    /// A CSV table could not be read.
    #[error(transparent)]
    Table(#[from] TableError),
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

/// Why a `.npy` file or an `.npz` archive (or one of its entries) could not be read or
/// written. An entry of an archive is named `archive.npz/key.npy`.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not start with the `.npy` magic `\x93NUMPY`.
    #[error("{path}: not a .npy file (the first bytes are {found:02x?}, expected 93 4e 55 4d 50 59, \"\\x93NUMPY\")")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first bytes found (up to six).
        found: Vec<u8>,
    },
    /// The format version is not 1.0, 2.0 or 3.0.
    #[error("{path}: .npy format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are)")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// The file ends inside the magic, the version, the header length or the header.
    #[error("{path}: truncated .npy header: {what} needs {expected} bytes, the file holds {found}")]
    TruncatedHeader {
        /// The file.
        path: PathBuf,
        /// Which part was cut short.
        what: &'static str,
        /// Bytes that part needs.
        expected: u64,
        /// Bytes of it present.
        found: u64,
    },
    /// The header length field declares more than the reader accepts.
    #[error("{path}: the .npy header declares a header of {len} bytes, more than the {max} accepted")]
    HeaderTooLong {
        /// The file.
        path: PathBuf,
        /// Declared header length.
        len: u64,
        /// The most accepted.
        max: u64,
    },
    /// The header is not the dict literal `{'descr': ..., 'fortran_order': ..., 'shape': (...)}`.
    #[error("{path}: malformed .npy header: {reason} (header: {header})")]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// The header text (shortened if long).
        header: String,
    },
    /// The element type is not one this reader holds (u8, f32, f64).
    #[error("{path}: dtype '{descr}' is not supported: {reason}")]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The `descr` of the header.
        descr: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The declared size does not fit the limit or the bytes the file holds.
    #[error("{path}: {size}")]
    Size {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        size: SizeError,
    },
    /// An entry of an archive is damaged (bad deflate data or checksum).
    #[error("{path}: corrupt archive entry: {source}")]
    Corrupt {
        /// The entry (`archive.npz/key.npy`).
        path: PathBuf,
        /// What the decoder reported.
        source: std::io::Error,
    },
    /// The archive is not a zip file the reader can open.
    #[error("{path}: not a readable .npz (zip) archive: {source}")]
    Zip {
        /// The archive.
        path: PathBuf,
        /// What the zip reader reported.
        source: zip::result::ZipError,
    },
    /// The archive holds no array under a requested key.
    #[error(
        "{path}: no array named '{key}' in the archive (it holds: {})",
        list_or_none(present)
    )]
    MissingKey {
        /// The archive.
        path: PathBuf,
        /// The key asked for.
        key: String,
        /// The keys present.
        present: Vec<String>,
    },
    /// The data does not match the shape (writer only).
    #[error("{path}: {len} elements do not fill shape {shape:?}")]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The shape.
        shape: Vec<usize>,
        /// Elements given.
        len: usize,
    },
}

/// Why a CSV table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CSV itself is malformed (invalid UTF-8, for one).
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// What the CSV reader reported.
        source: csv::Error,
    },
    /// The file is larger than the reader may hold.
    #[error("{path}: the file holds {size} bytes, more than the limit of {limit} bytes; refused before reading")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (or the bytes read before stopping).
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// No header row, or a header and no data rows.
    #[error("{path}: empty table: {what}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: &'static str,
    },
    /// A header cell is empty.
    #[error(
        "{path}: column {index} of the header has no name (an index written by pandas' to_csv? write with index=False)"
    )]
    UnnamedColumn {
        /// The file.
        path: PathBuf,
        /// Its position, 1-based.
        index: usize,
    },
    /// Two header cells hold the same name.
    #[error("{path}: the header names column '{name}' twice (columns {first} and {second})")]
    DuplicateColumn {
        /// The file.
        path: PathBuf,
        /// The name.
        name: String,
        /// First position, 1-based.
        first: usize,
        /// Second position, 1-based.
        second: usize,
    },
    /// The label column asked for is not in the header.
    #[error("{path}: no label column '{name}' (the columns are: {})", columns.join(", "))]
    MissingLabelColumn {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The header's columns.
        columns: Vec<String>,
    },
    /// Every column is the label column: nothing to learn from.
    #[error("{path}: no feature columns besides the label column '{label}'")]
    NoFeatures {
        /// The file.
        path: PathBuf,
        /// The label column.
        label: String,
    },
    /// A row has a different number of fields than the header.
    #[error("{path}: row {row} has {found} fields, the header has {expected}")]
    Ragged {
        /// The file.
        path: PathBuf,
        /// The row, 1-based, the header being row 1.
        row: u64,
        /// Fields in the row.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },
    /// A cell of a numeric column is not a number.
    #[error("{path}: row {row}, column '{column}': '{value}' is not a number")]
    NotANumber {
        /// The file.
        path: PathBuf,
        /// The row, 1-based, the header being row 1.
        row: u64,
        /// The column's name.
        column: String,
        /// The cell (shortened if long).
        value: String,
    },
    /// A cell is empty (a missing value).
    #[error("{path}: row {row}, column '{column}': empty cell (missing values are not supported: fill or drop them)")]
    EmptyCell {
        /// The file.
        path: PathBuf,
        /// The row, 1-based, the header being row 1.
        row: u64,
        /// The column's name.
        column: String,
    },
    /// A cell holds NaN or an infinity (or a number too large for f64).
    #[error("{path}: row {row}, column '{column}': '{value}' is not a finite number")]
    NotFinite {
        /// The file.
        path: PathBuf,
        /// The row, 1-based, the header being row 1.
        row: u64,
        /// The column's name.
        column: String,
        /// The cell (shortened if long).
        value: String,
    },
    /// A feature column holds one value in every row.
    #[error(
        "{path}: column '{column}' holds the same value ({value}) in every row: it cannot be standardised (drop it)"
    )]
    ConstantColumn {
        /// The file.
        path: PathBuf,
        /// The column's name.
        column: String,
        /// Its value.
        value: f64,
    },
    /// The label column holds more distinct text classes than a u8 label can index.
    #[error("{path}: label column '{column}' holds more than 256 distinct values, too many classes for u8 labels")]
    TooManyClasses {
        /// The file.
        path: PathBuf,
        /// The label column.
        column: String,
    },
}

/// Why a [`Standardizer`](crate::table::Standardizer) could not be fitted or applied.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum StandardizeError {
    /// No rows to fit on.
    #[error("no rows to fit the standardisation on")]
    NoRows,
    /// A column has zero (or non-finite) standard deviation.
    #[error("column '{column}' has standard deviation {std} over the rows fitted: it cannot be standardised")]
    ZeroStd {
        /// The column's name.
        column: String,
        /// Its standard deviation.
        std: f64,
    },
    /// The values do not come in rows of the standardizer's width.
    #[error("{len} values are not whole rows of {width} columns")]
    Width {
        /// The row width expected (columns).
        width: usize,
        /// Values (or row length) given.
        len: usize,
    },
    /// The standardizer itself is inconsistent (as deserialized): `mean` and `std` differ in
    /// length, or a `std` is not positive and finite.
    #[error("invalid standardizer: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
}

fn list_or_none(keys: &[String]) -> String {
    if keys.is_empty() {
        "no arrays".to_string()
    } else {
        keys.join(", ")
    }
}
