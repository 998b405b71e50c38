//! CSV tables with a header row, and the standardisation of their columns.
//!
//! [`read_csv`] reads a table whose columns are all numeric except an optional label
//! column. Every value must be a finite number: an empty cell, text, NaN or an infinity is
//! refused naming the row (the line of the file it starts on: the header is row 1) and the
//! column, and so is a row with the wrong number of fields, a column holding one value
//! throughout (it cannot be standardised), duplicate or empty column names, and a file
//! larger than [`Limits`] (checked from its size before reading). Fields are trimmed of
//! surrounding spaces; a UTF-8 byte order mark is skipped.
//!
//! Labels: if every value of the label column is an integer in 0..=255 the values are the
//! labels ([`Table::classes`] is `None`); otherwise the distinct values are classes, sorted
//! (numerically if they are all numbers, else as text), and each label is its class's index.
//!
//! [`Standardizer`] holds per-column means and (population) standard deviations fitted on
//! some rows (the training split's) and maps values to and from standardised units.
//!
//! ```
//! use vae_data::Limits;
//! use vae_data::table::{self, Standardizer};
//!
//! let dir = std::env::temp_dir().join(format!("vae-data-doc-table-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("t.csv");
//! std::fs::write(&path, "a,b,kind\n1,10,cat\n2,20,dog\n3,60,cat\n").unwrap();
//! let t = table::read_csv(&path, &Limits::default(), Some("kind")).unwrap();
//! assert_eq!((t.columns.as_slice(), t.rows), (&["a".to_string(), "b".to_string()][..], 3));
//! assert_eq!(t.labels, Some(vec![0, 1, 0]));
//! assert_eq!(t.classes, Some(vec!["cat".to_string(), "dog".to_string()]));
//!
//! let s = Standardizer::fit_table(&t).unwrap();
//! let mut x: Vec<f32> = t.values.iter().map(|&v| v as f32).collect();
//! s.apply(&mut x).unwrap();
//! s.invert(&mut x).unwrap();
//! assert!((x[5] - 60.0).abs() < 1e-4);
//!
//! std::fs::write(&path, "a,b\n1,2\n3,x\n").unwrap();
//! let err = table::read_csv(&path, &Limits::default(), None).unwrap_err();
//! assert!(err.to_string().ends_with("t.csv: row 3, column 'b': 'x' is not a number"));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Limits, StandardizeError, TableError};

/// A numeric table read from a CSV file.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The names of the feature columns (every column but the label column), in file order.
    pub columns: Vec<String>,
    /// The number of data rows.
    pub rows: usize,
    /// The feature values, row-major: `rows x columns.len()`.
    pub values: Vec<f64>,
    /// One label per row, when a label column was named.
    pub labels: Option<Vec<u8>>,
    /// The class names (index = label) when the label column held text or numbers outside
    /// 0..=255; `None` when its values are the labels themselves (or there is no label).
    pub classes: Option<Vec<String>>,
}

impl Table {
    /// The number of feature columns.
    pub fn width(&self) -> usize {
        self.columns.len()
    }
    /// The features of row `i` (0-based, counting data rows only), if there is one.
    pub fn row(&self, i: usize) -> Option<&[f64]> {
        let w = self.width();
        let start = i.checked_mul(w)?;
        self.values.get(start..start.checked_add(w)?)
    }
    /// The rows' features, in order.
    pub fn iter_rows(&self) -> impl Iterator<Item = &[f64]> {
        self.values.chunks_exact(self.width().max(1))
    }
}

/// Cells longer than this are shortened in messages.
const SHOWN: usize = 40;

fn shown(s: &str) -> String {
    if s.chars().count() > SHOWN {
        s.chars().take(SHOWN).collect::<String>() + "..."
    } else {
        s.to_string()
    }
}

/// A reader that fails once more than `left` bytes have been asked of it (so that a stream
/// whose size was not known up front is still bounded).
struct Capped<R> {
    inner: R,
    left: u64,
    exceeded: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the limit is enough to know.
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.exceeded = true;
            return Err(io::Error::other("file larger than the limit"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads a CSV table with a header row from `path`. Every column is numeric except
/// `label_column`, if given. A file larger than `limits.max_data_bytes` is refused from its
/// size before reading; the values then take at most about four times the file's size
/// (8 bytes per value, 2 bytes per value at the least in the file).
pub fn read_csv(path: impl AsRef<Path>, limits: &Limits, label_column: Option<&str>) -> Result<Table, TableError> {
    let path = path.as_ref();
    let io_err = |source| TableError::Io {
        path: path.into(),
        source,
    };
    let file = fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    let limit = limits.max_data_bytes;
    if meta.is_file() && meta.len() > limit {
        return Err(TableError::TooLarge {
            path: path.into(),
            size: meta.len(),
            limit,
        });
    }
    let capped = Capped {
        inner: io::BufReader::new(file),
        left: limit,
        exceeded: false,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(capped);
    let csv_err = |rdr: &csv::Reader<Capped<io::BufReader<fs::File>>>, source: csv::Error| {
        if rdr.get_ref().exceeded {
            TableError::TooLarge {
                path: path.into(),
                size: limit + 1,
                limit,
            }
        } else {
            TableError::Csv {
                path: path.into(),
                source,
            }
        }
    };
    let header = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(csv_err(&rdr, e)),
    };
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(TableError::Empty {
            path: path.into(),
            what: "no header row",
        });
    }
    let names: Vec<String> = header.iter().map(str::to_string).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(TableError::UnnamedColumn {
                path: path.into(),
                index: i + 1,
            });
        }
        if let Some(first) = seen.insert(name, i) {
            return Err(TableError::DuplicateColumn {
                path: path.into(),
                name: name.clone(),
                first: first + 1,
                second: i + 1,
            });
        }
    }
    let label_at = match label_column {
        None => None,
        Some(l) => match names.iter().position(|n| n == l) {
            Some(i) => Some(i),
            None => {
                return Err(TableError::MissingLabelColumn {
                    path: path.into(),
                    name: l.into(),
                    columns: names,
                });
            }
        },
    };
    let columns: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|&(i, _)| Some(i) != label_at)
        .map(|(_, n)| n.clone())
        .collect();
    if columns.is_empty() {
        return Err(TableError::NoFeatures {
            path: path.into(),
            label: label_column.unwrap_or_default().into(),
        });
    }

    let mut values = Vec::new();
    // Label values interned: each distinct text once, each row an index into `distinct`.
    let mut distinct: Vec<String> = Vec::new();
    let mut index_of: HashMap<String, u16> = HashMap::new();
    let mut label_ids: Vec<u16> = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0usize;
    loop {
        match rdr.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(&rdr, e)),
        }
        rows += 1;
        // For errors: the line the record starts on is its row in the file (the header's
        // is 1), counted from the file itself when it is one.
        let row = || line_of(path, meta.is_file(), record.position(), rows as u64 + 1);
        if record.len() != names.len() {
            return Err(TableError::Ragged {
                path: path.into(),
                row: row(),
                found: record.len(),
                expected: names.len(),
            });
        }
        for (j, cell) in record.iter().enumerate() {
            if cell.is_empty() {
                return Err(TableError::EmptyCell {
                    path: path.into(),
                    row: row(),
                    column: names[j].clone(),
                });
            }
            if Some(j) == label_at {
                let id = match index_of.get(cell) {
                    Some(&id) => id,
                    None => {
                        if distinct.len() == 256 {
                            return Err(TableError::TooManyClasses {
                                path: path.into(),
                                column: names[j].clone(),
                            });
                        }
                        let id = distinct.len() as u16;
                        distinct.push(cell.to_string());
                        index_of.insert(cell.to_string(), id);
                        id
                    }
                };
                label_ids.push(id);
                continue;
            }
            let v: f64 = cell.parse().map_err(|_| TableError::NotANumber {
                path: path.into(),
                row: row(),
                column: names[j].clone(),
                value: shown(cell),
            })?;
            if !v.is_finite() {
                return Err(TableError::NotFinite {
                    path: path.into(),
                    row: row(),
                    column: names[j].clone(),
                    value: shown(cell),
                });
            }
            values.push(v);
        }
    }
    if rows == 0 {
        return Err(TableError::Empty {
            path: path.into(),
            what: "a header row and no data rows",
        });
    }
    let w = columns.len();
    for (j, column) in columns.iter().enumerate() {
        let first = values[j];
        if values.iter().skip(j).step_by(w).all(|&v| v == first) {
            return Err(TableError::ConstantColumn {
                path: path.into(),
                column: column.clone(),
                value: first,
            });
        }
    }
    let (labels, classes) = match label_at {
        None => (None, None),
        Some(_) => {
            let (rank, classes) = order_classes(&distinct);
            (Some(label_ids.iter().map(|&id| rank[id as usize]).collect()), classes)
        }
    };
    Ok(Table {
        columns,
        rows,
        values,
        labels,
        classes,
    })
}

/// The line of the file that the record at `pos` starts on (1-based). The CSV reader's own
/// line count leaves out the blank lines it skips, so on this error path the newlines before
/// the record are counted in the file itself (when it is a regular file, else the reader's
/// count is used).
fn line_of(path: &Path, regular: bool, pos: Option<&csv::Position>, fallback: u64) -> u64 {
    let Some(pos) = pos else {
        return fallback;
    };
    let count = || -> io::Result<u64> {
        let mut r = io::BufReader::new(fs::File::open(path)?);
        let mut buf = vec![0u8; 64 << 10];
        let mut lines = 1;
        let mut left = pos.byte();
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = r.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            left -= n as u64;
        }
        // The position is where the reader started, before the blank lines it skipped.
        for b in r.bytes() {
            match b? {
                b'\n' => lines += 1,
                b'\r' => {}
                _ => break,
            }
        }
        Ok(lines)
    };
    if regular {
        count().unwrap_or(pos.line())
    } else {
        pos.line()
    }
}

/// For each distinct label text (at most 256), its label, and the class names if the texts
/// are not all integers in 0..=255.
fn order_classes(distinct: &[String]) -> (Vec<u8>, Option<Vec<String>>) {
    let numbers: Option<Vec<f64>> = distinct
        .iter()
        .map(|s| s.parse::<f64>().ok().filter(|v| v.is_finite()))
        .collect();
    if let Some(nums) = &numbers
        && nums.iter().all(|&v| v.fract() == 0.0 && (0.0..=255.0).contains(&v))
    {
        return (nums.iter().map(|&v| v as u8).collect(), None);
    }
    let mut order: Vec<usize> = (0..distinct.len()).collect();
    match &numbers {
        Some(nums) => order.sort_by(|&a, &b| nums[a].total_cmp(&nums[b]).then_with(|| distinct[a].cmp(&distinct[b]))),
        None => order.sort_by(|&a, &b| distinct[a].cmp(&distinct[b])),
    }
    let mut rank = vec![0u8; distinct.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r as u8; // at most 256 classes
    }
    (rank, Some(order.iter().map(|&i| distinct[i].clone()).collect()))
}

/// Per-column means and population standard deviations, fitted on some rows, that map
/// values to standardised units (`(x - mean) / std`) and back. Stored in checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Each column's mean.
    pub mean: Vec<f64>,
    /// Each column's population standard deviation (positive).
    pub std: Vec<f64>,
}

impl Standardizer {
    /// Fits on `rows` (each `columns.len()` values long), refusing a column whose standard
    /// deviation is zero, naming it. Computed in one pass (Welford's method) in f64.
    pub fn fit<'a>(rows: impl IntoIterator<Item = &'a [f64]>, columns: &[String]) -> Result<Self, StandardizeError> {
        let w = columns.len();
        if w == 0 {
            return Err(StandardizeError::Invalid {
                reason: "no columns to fit".into(),
            });
        }
        let mut mean = vec![0.0f64; w];
        let mut m2 = vec![0.0f64; w];
        let mut n = 0u64;
        for row in rows {
            if row.len() != w {
                return Err(StandardizeError::Width {
                    width: w,
                    len: row.len(),
                });
            }
            n += 1;
            for ((m, s), &x) in mean.iter_mut().zip(m2.iter_mut()).zip(row) {
                let delta = x - *m;
                *m += delta / n as f64;
                *s += delta * (x - *m);
            }
        }
        if n == 0 {
            return Err(StandardizeError::NoRows);
        }
        let std: Vec<f64> = m2.iter().map(|&s| (s / n as f64).sqrt()).collect();
        if let Some(j) = std.iter().position(|&s| !(s > 0.0 && s.is_finite())) {
            return Err(StandardizeError::ZeroStd {
                column: columns[j].clone(),
                std: std[j],
            });
        }
        Ok(Standardizer { mean, std })
    }

    /// Fits on every row of `table`.
    pub fn fit_table(table: &Table) -> Result<Self, StandardizeError> {
        if table.values.len() != table.rows * table.width() {
            return Err(StandardizeError::Width {
                width: table.width(),
                len: table.values.len(),
            });
        }
        Self::fit(table.iter_rows(), &table.columns)
    }

    /// The number of columns.
    pub fn width(&self) -> usize {
        self.mean.len()
    }

    /// Checks that `mean` and `std` have one entry per column and every `std` is positive
    /// and finite (as [`fit`](Self::fit) makes them; a deserialized one may not be).
    pub fn validate(&self) -> Result<(), StandardizeError> {
        if self.mean.len() != self.std.len() || self.mean.is_empty() {
            return Err(StandardizeError::Invalid {
                reason: format!("{} means and {} standard deviations", self.mean.len(), self.std.len()),
            });
        }
        if let Some((j, s)) = self.std.iter().enumerate().find(|(_, s)| !(**s > 0.0 && s.is_finite())) {
            return Err(StandardizeError::Invalid {
                reason: format!("the standard deviation of column {} is {s}", j + 1),
            });
        }
        if let Some(j) = self.mean.iter().position(|m| !m.is_finite()) {
            return Err(StandardizeError::Invalid {
                reason: format!("the mean of column {} is {}", j + 1, self.mean[j]),
            });
        }
        Ok(())
    }

    fn check(&self, len: usize) -> Result<(), StandardizeError> {
        self.validate()?;
        if !len.is_multiple_of(self.width()) {
            return Err(StandardizeError::Width {
                width: self.width(),
                len,
            });
        }
        Ok(())
    }

    /// Standardises row-major `values` (whole rows of [`width`](Self::width)) in place.
    pub fn apply(&self, values: &mut [f32]) -> Result<(), StandardizeError> {
        self.check(values.len())?;
        for row in values.chunks_exact_mut(self.width()) {
            for ((x, &m), &s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = ((f64::from(*x) - m) / s) as f32;
            }
        }
        Ok(())
    }

    /// Standardises row-major f64 `values` (a [`Table`]'s) into new f32 values, without
    /// rounding the originals to f32 first.
    pub fn standardize(&self, values: &[f64]) -> Result<Vec<f32>, StandardizeError> {
        self.check(values.len())?;
        let w = self.width();
        Ok(values
            .iter()
            .enumerate()
            .map(|(i, &x)| ((x - self.mean[i % w]) / self.std[i % w]) as f32)
            .collect())
    }

    /// Maps standardised row-major `values` back to the original units, in place.
    pub fn invert(&self, values: &mut [f32]) -> Result<(), StandardizeError> {
        self.check(values.len())?;
        for row in values.chunks_exact_mut(self.width()) {
            for ((x, &m), &s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = (f64::from(*x) * s + m) as f32;
            }
        }
        Ok(())
    }
}
