//! NumPy's `.npy` files and `.npz` archives.
//!
//! A `.npy` file is the magic `\x93NUMPY`, a version (1.0, 2.0 or 3.0), a little-endian
//! header length (u16 for 1.0, u32 after), a header that is a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }`, then the elements.
//! The header is parsed here (never evaluated), and the size it declares is checked against
//! [`Limits`] before anything is allocated for the data.
//!
//! * Element types read: `|u1` (u8), `<f4` / `>f4` (f32) and `<f8` / `>f8` (f64); big-endian
//!   data is converted. Every other dtype is refused naming it (object `|O`, complex, bool,
//!   other integers, strings, structured), with what to save instead.
//! * `fortran_order: True` arrays are transposed into row-major (C) order, so that
//!   [`NpyArray::data`] is always row-major over [`NpyArray::shape`] (this holds the data
//!   twice for a moment).
//! * A file shorter than its header declares, or longer, is refused (declared vs found bytes).
//!
//! An `.npz` file is a zip archive of `.npy` files, one per key (`x_train.npy` for the key
//! `x_train`), stored or deflated. [`read_npz`] reads the keys asked for; each entry is bounded
//! by the same limits, and its decompressed stream is read to at most the header's declared
//! size plus one byte whatever the archive's size fields say.
//!
//! ```
//! use std::path::Path;
//! use vae_data::Limits;
//! use vae_data::npy::{self, NpyArray, NpyData};
//!
//! let a = NpyArray { shape: vec![2, 3], data: NpyData::F32(vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]) };
//! let bytes = npy::encode_npy(&a, Path::new("a.npy")).unwrap();
//! assert_eq!(npy::decode_npy(&bytes, Path::new("a.npy"), &Limits::default()).unwrap(), a);
//! let err = npy::decode_npy(&bytes[..bytes.len() - 1], Path::new("cut.npy"), &Limits::default()).unwrap_err();
//! assert!(err.to_string().starts_with("cut.npy: truncated"));
//! ```

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use zip::ZipArchive;
use zip::result::ZipError;
use zip::write::{SimpleFileOptions, ZipWriter};

use crate::atomic::write_atomic_with;
use crate::{Limits, NpyError, SizeError};

/// The magic string every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The longest header accepted, in bytes. NumPy itself refuses headers over 10,000 bytes
/// by default; the dtypes read here need well under 200.
pub const MAX_HEADER_BYTES: u64 = 64 << 10;

/// Bytes read from the data at a time (a multiple of every element size).
const CHUNK: usize = 64 << 10;

/// The elements of an array, in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    /// `|u1` (uint8).
    U8(Vec<u8>),
    /// `<f4` (float32).
    F32(Vec<f32>),
    /// `<f8` (float64).
    F64(Vec<f64>),
}

impl NpyData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The NumPy `descr` of the element type as written: `|u1`, `<f4` or `<f8`.
    pub fn descr(&self) -> &'static str {
        match self {
            Self::U8(_) => "|u1",
            Self::F32(_) => "<f4",
            Self::F64(_) => "<f8",
        }
    }
    /// Bytes per element.
    pub fn element_size(&self) -> usize {
        match self {
            Self::U8(_) => 1,
            Self::F32(_) => 4,
            Self::F64(_) => 8,
        }
    }
}

/// An n-dimensional array read from (or to be written to) a `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// The sizes of the dimensions, outermost first (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements, in row-major order over `shape`.
    pub data: NpyData,
}

/// The element types read, with the byte order of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dtype {
    U8,
    F32 { big: bool },
    F64 { big: bool },
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::F32 { .. } => 4,
            Dtype::F64 { .. } => 8,
        }
    }
}

/// What the header says.
#[derive(Debug)]
struct Header {
    dtype: Dtype,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Reads a `.npy` file, holding at most its declared data in memory, and refusing a declared
/// size above `limits` before reading the data.
pub fn read_npy(path: impl AsRef<Path>, limits: &Limits) -> Result<NpyArray, NpyError> {
    let path = path.as_ref();
    let io_err = |source| NpyError::Io {
        path: path.into(),
        source,
    };
    let file = fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    // Only a regular file's length is its content's (a pipe reports 0).
    let len = meta.is_file().then_some(meta.len());
    decode_stream(&mut io::BufReader::new(file), len, path, limits, false)
}

/// Decodes a `.npy` file held in memory within `limits`; `path` only names it in errors.
pub fn decode_npy(bytes: &[u8], path: &Path, limits: &Limits) -> Result<NpyArray, NpyError> {
    decode_stream(&mut &bytes[..], Some(bytes.len() as u64), path, limits, false)
}

/// Reads into `buf` until it is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Parses a `.npy` stream: the preamble and header, exactly the declared data, then nothing.
/// `len` is the stream's length when known (a plain file), which lets a wrong size be
/// reported without reading the data; `entry` says the stream is an archive entry (whose
/// read errors mean a damaged entry).
fn decode_stream(
    r: &mut impl Read,
    len: Option<u64>,
    path: &Path,
    limits: &Limits,
    entry: bool,
) -> Result<NpyArray, NpyError> {
    let read_err = |source: io::Error| {
        if entry {
            NpyError::Corrupt {
                path: path.into(),
                source,
            }
        } else {
            NpyError::Io {
                path: path.into(),
                source,
            }
        }
    };
    let truncated = |what, expected: usize, found: usize| NpyError::TruncatedHeader {
        path: path.into(),
        what,
        expected: expected as u64,
        found: found as u64,
    };
    let mut magic = [0u8; 6];
    let n = read_full(r, &mut magic).map_err(read_err)?;
    if magic[..n] != MAGIC[..n] {
        return Err(NpyError::BadMagic {
            path: path.into(),
            found: magic[..n].to_vec(),
        });
    }
    if n < magic.len() {
        return Err(truncated("the magic string", magic.len(), n));
    }
    let mut version = [0u8; 2];
    let n = read_full(r, &mut version).map_err(read_err)?;
    if n < 2 {
        return Err(truncated("the version", 2, n));
    }
    let len_bytes = match version {
        [1, 0] => 2,
        [2, 0] | [3, 0] => 4,
        [major, minor] => {
            return Err(NpyError::UnsupportedVersion {
                path: path.into(),
                major,
                minor,
            });
        }
    };
    let mut field = [0u8; 4];
    let n = read_full(r, &mut field[..len_bytes]).map_err(read_err)?;
    if n < len_bytes {
        return Err(truncated("the header length", len_bytes, n));
    }
    let header_len = u64::from(u32::from_le_bytes(field));
    if header_len > MAX_HEADER_BYTES {
        return Err(NpyError::HeaderTooLong {
            path: path.into(),
            len: header_len,
            max: MAX_HEADER_BYTES,
        });
    }
    let preamble = (MAGIC.len() + 2 + len_bytes) as u64;
    let mut text = vec![0u8; header_len as usize];
    let n = read_full(r, &mut text).map_err(read_err)?;
    if n < text.len() {
        return Err(truncated("the header", text.len(), n));
    }
    let header = parse_header(&text, path)?;
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|c| c.checked_mul(header.dtype.size()).map(|b| (c, b)))
        .filter(|&(_, b)| u64::try_from(b).is_ok());
    let Some((count, bytes)) = count else {
        return Err(NpyError::Size {
            path: path.into(),
            size: SizeError::Overflow { dims: header.shape },
        });
    };
    let expected = bytes as u64;
    let too_large = || NpyError::Size {
        path: path.into(),
        size: SizeError::TooLarge {
            dims: header.shape.clone(),
            declared: expected,
            limit: limits.max_data_bytes,
        },
    };
    if expected > limits.max_data_bytes {
        return Err(too_large());
    }
    if let Some(len) = len {
        let found = len.saturating_sub(preamble + header_len);
        if found < expected {
            return Err(NpyError::Size {
                path: path.into(),
                size: SizeError::Truncated { expected, found },
            });
        }
        if found > expected {
            return Err(NpyError::Size {
                path: path.into(),
                size: SizeError::TrailingData { expected },
            });
        }
    }
    // A known length has been checked: reserve it all. An archive entry's stream is not
    // trusted: the buffer grows with the data that really arrives.
    let reserve_all = len.is_some();
    let body = match header.dtype {
        Dtype::U8 => read_elements(r, count, 1, reserve_all, |b, out| out.extend_from_slice(b)).map(NpyData::U8),
        Dtype::F32 { big } => read_elements(r, count, 4, reserve_all, |b, out| {
            out.extend(b.chunks_exact(4).map(|c| {
                let c = [c[0], c[1], c[2], c[3]];
                if big {
                    f32::from_be_bytes(c)
                } else {
                    f32::from_le_bytes(c)
                }
            }))
        })
        .map(NpyData::F32),
        Dtype::F64 { big } => read_elements(r, count, 8, reserve_all, |b, out| {
            out.extend(b.chunks_exact(8).map(|c| {
                let c = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
                if big {
                    f64::from_be_bytes(c)
                } else {
                    f64::from_le_bytes(c)
                }
            }))
        })
        .map(NpyData::F64),
    };
    let data = match body {
        Ok(d) => d,
        Err(BodyError::Short(found)) => {
            return Err(NpyError::Size {
                path: path.into(),
                size: SizeError::Truncated { expected, found },
            });
        }
        Err(BodyError::Io(e)) => return Err(read_err(e)),
        Err(BodyError::Alloc) => return Err(too_large()),
    };
    // One more byte, or the end of the stream (where an archive entry checks its CRC).
    let mut probe = [0u8; 1];
    if read_full(r, &mut probe).map_err(read_err)? > 0 {
        return Err(NpyError::Size {
            path: path.into(),
            size: SizeError::TrailingData { expected },
        });
    }
    let data = if header.fortran_order {
        fortran_to_c(data, &header.shape).ok_or_else(|| NpyError::Size {
            path: path.into(),
            size: SizeError::Overflow {
                dims: header.shape.clone(),
            },
        })?
    } else {
        data
    };
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

/// Why the data could not be read.
enum BodyError {
    /// The stream ended after this many data bytes.
    Short(u64),
    /// A read failed.
    Io(io::Error),
    /// The buffer could not be allocated.
    Alloc,
}

/// Reads `count` elements of `size` bytes, [`CHUNK`] bytes at a time, decoding each chunk
/// with `decode`. Reserves the whole result up front when `reserve_all`, else grows it (at
/// most doubling, never past `count`) as data arrives.
fn read_elements<T>(
    r: &mut impl Read,
    count: usize,
    size: usize,
    reserve_all: bool,
    decode: impl Fn(&[u8], &mut Vec<T>),
) -> Result<Vec<T>, BodyError> {
    let total = count * size; // checked by the caller
    let mut out: Vec<T> = Vec::new();
    let initial = if reserve_all { count } else { count.min(CHUNK / size) };
    out.try_reserve_exact(initial).map_err(|_| BodyError::Alloc)?;
    let mut buf = vec![0u8; total.min(CHUNK)];
    let mut done = 0usize;
    while done < total {
        let want = (total - done).min(CHUNK);
        let n = read_full(r, &mut buf[..want]).map_err(BodyError::Io)?;
        let whole = n / size;
        if out.capacity() - out.len() < whole {
            let target = (out.capacity().saturating_mul(2)).max(out.len() + whole).min(count);
            out.try_reserve_exact(target - out.len())
                .map_err(|_| BodyError::Alloc)?;
        }
        decode(&buf[..whole * size], &mut out);
        done += n;
        if n < want {
            return Err(BodyError::Short(done as u64));
        }
    }
    Ok(out)
}

/// Column-major elements over `shape` to row-major ones (`None` only if the shape does not
/// match the data, which the reader has already ruled out).
fn fortran_to_c(data: NpyData, shape: &[usize]) -> Option<NpyData> {
    fn t<T: Clone>(v: Vec<T>, shape: &[usize]) -> Option<Vec<T>> {
        use ndarray::ShapeBuilder;
        if shape.len() < 2 {
            return Some(v);
        }
        let view = ndarray::ArrayViewD::from_shape(ndarray::IxDyn(shape).f(), &v).ok()?;
        Some(view.iter().cloned().collect())
    }
    Some(match data {
        NpyData::U8(v) => NpyData::U8(t(v, shape)?),
        NpyData::F32(v) => NpyData::F32(t(v, shape)?),
        NpyData::F64(v) => NpyData::F64(t(v, shape)?),
    })
}

/// A Python literal, as far as `.npy` headers use them.
#[derive(Debug)]
enum Lit {
    Str(String),
    Bool(bool),
    Int(String),
    Null,
    Tuple(Vec<Lit>),
    List(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

impl Lit {
    /// The literal written back as Python (for messages).
    fn render(&self) -> String {
        let seq = |items: &[Lit]| items.iter().map(Lit::render).collect::<Vec<_>>().join(", ");
        match self {
            Lit::Str(s) => format!("'{s}'"),
            Lit::Bool(b) => if *b { "True" } else { "False" }.into(),
            Lit::Int(s) => s.clone(),
            Lit::Null => "None".into(),
            Lit::Tuple(items) => format!("({})", seq(items)),
            Lit::List(items) => format!("[{}]", seq(items)),
            Lit::Dict(items) => {
                let kv: Vec<String> = items
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.render(), v.render()))
                    .collect();
                format!("{{{}}}", kv.join(", "))
            }
        }
    }
}

/// How deeply literals may nest (a header is a dict of a tuple at most; structured dtypes
/// nest a little more before being refused).
const MAX_DEPTH: usize = 32;

/// A recursive-descent parser of the literal subset above.
struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.pos < self.b.len() && self.b[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
    fn value(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        self.ws();
        match self.peek() {
            None => Err("unexpected end".into()),
            Some(b'{') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Lit::Dict(items));
                    }
                    let k = self.value(depth + 1)?;
                    self.ws();
                    if self.peek() != Some(b':') {
                        return Err(format!("expected ':' at byte {}", self.pos));
                    }
                    self.pos += 1;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {}
                        _ => return Err(format!("expected ',' or '}}' at byte {}", self.pos)),
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        return Ok(if open == b'(' {
                            Lit::Tuple(items)
                        } else {
                            Lit::List(items)
                        });
                    }
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(c) if c == close => {}
                        _ => {
                            return Err(format!("expected ',' or '{}' at byte {}", close as char, self.pos));
                        }
                    }
                }
            }
            Some(q @ (b'\'' | b'"')) => {
                self.pos += 1;
                let mut s = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err("unterminated string".into()),
                        Some(b'\\') => {
                            let Some(&c) = self.b.get(self.pos + 1) else {
                                return Err("unterminated string".into());
                            };
                            if c != q && c != b'\\' {
                                s.push(b'\\');
                            }
                            s.push(c);
                            self.pos += 2;
                        }
                        Some(c) if c == q => {
                            self.pos += 1;
                            return Ok(Lit::Str(String::from_utf8_lossy(&s).into_owned()));
                        }
                        Some(c) => {
                            s.push(c);
                            self.pos += 1;
                        }
                    }
                }
            }
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' => {
                let start = self.pos;
                self.pos += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                let digits = String::from_utf8_lossy(&self.b[start..self.pos]).into_owned();
                // Python 2 wrote long integers as `3L`.
                if matches!(self.peek(), Some(b'L' | b'l')) {
                    self.pos += 1;
                }
                if !digits.bytes().any(|c| c.is_ascii_digit()) {
                    return Err(format!("expected a number at byte {start}"));
                }
                Ok(Lit::Int(digits))
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    self.pos += 1;
                }
                match &self.b[start..self.pos] {
                    b"True" => Ok(Lit::Bool(true)),
                    b"False" => Ok(Lit::Bool(false)),
                    b"None" => Ok(Lit::Null),
                    other => Err(format!("unexpected name '{}'", String::from_utf8_lossy(other))),
                }
            }
            Some(c) => Err(format!("unexpected character {:?} at byte {}", c as char, self.pos)),
        }
    }
}

/// Parses and checks the header dict.
fn parse_header(text: &[u8], path: &Path) -> Result<Header, NpyError> {
    let bad = |reason: String| {
        let mut header = String::from_utf8_lossy(text).trim_end().to_string();
        if header.chars().count() > 200 {
            header = header.chars().take(200).collect::<String>() + "...";
        }
        NpyError::BadHeader {
            path: path.into(),
            reason,
            header,
        }
    };
    let mut p = Parser { b: text, pos: 0 };
    let lit = p.value(0).map_err(&bad)?;
    p.ws();
    if p.pos != text.len() {
        return Err(bad(format!("unexpected text after the dict at byte {}", p.pos)));
    }
    let Lit::Dict(items) = lit else {
        return Err(bad("the header is not a dict".into()));
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (k, v) in items {
        let Lit::Str(k) = k else {
            return Err(bad(format!("key {} is not a string", k.render())));
        };
        let slot = match k.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran,
            "shape" => &mut shape,
            _ => return Err(bad(format!("unexpected key '{k}'"))),
        };
        if slot.replace(v).is_some() {
            return Err(bad(format!("key '{k}' appears twice")));
        }
    }
    let (Some(descr), Some(fortran), Some(shape)) = (descr, fortran, shape) else {
        return Err(bad("the keys 'descr', 'fortran_order' and 'shape' are required".into()));
    };
    let fortran_order = match fortran {
        Lit::Bool(b) => b,
        other => return Err(bad(format!("'fortran_order' is {}, not True or False", other.render()))),
    };
    let Lit::Tuple(dims) = shape else {
        return Err(bad(format!("'shape' is {}, not a tuple", shape.render())));
    };
    let shape = dims
        .iter()
        .map(|d| match d {
            Lit::Int(s) if s.starts_with('-') => Err(bad(format!("dimension {s} is negative"))),
            Lit::Int(s) => s
                .trim_start_matches('+')
                .parse::<usize>()
                .map_err(|_| bad(format!("dimension {s} does not fit in {} bits", usize::BITS))),
            other => Err(bad(format!("dimension {} is not an integer", other.render()))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dtype = match descr {
        Lit::Str(s) => parse_descr(&s, path)?,
        other => {
            return Err(NpyError::UnsupportedDtype {
                path: path.into(),
                descr: other.render(),
                reason: format!("structured (record) dtypes; {SUPPORTED}"),
            });
        }
    };
    Ok(Header {
        dtype,
        fortran_order,
        shape,
    })
}

/// What to say about the dtypes that are read.
const SUPPORTED: &str = "the dtypes read are uint8 ('|u1'), float32 ('<f4') and float64 ('<f8'), either byte order";

/// Whether the dtype `descr` (NumPy's `dtype.str`, e.g. `<f4`) is one this reader holds
/// (uint8, float32, float64); if not, why it is refused and what to use instead (`path`
/// names the array).
pub fn check_descr(descr: &str, path: &Path) -> Result<(), NpyError> {
    parse_descr(descr, path).map(|_| ())
}

/// The element type from a `descr` string, or why it is refused.
fn parse_descr(descr: &str, path: &Path) -> Result<Dtype, NpyError> {
    let refuse = |why: &str| NpyError::UnsupportedDtype {
        path: path.into(),
        descr: descr.into(),
        reason: format!("{why}; {SUPPORTED}"),
    };
    let (order, rest) = match descr.as_bytes().first() {
        Some(&c @ (b'<' | b'>' | b'|' | b'=')) => (Some(c), &descr[1..]),
        _ => (None, descr),
    };
    let kind_len = rest
        .bytes()
        .take_while(|c| c.is_ascii_alphabetic() || *c == b'?')
        .count();
    let (kind, size) = rest.split_at(kind_len);
    let size: Option<usize> = if size.is_empty() { None } else { size.parse().ok() };
    let big = match order {
        Some(b'>') => true,
        Some(b'<') => false,
        _ => cfg!(target_endian = "big"),
    };
    match (kind, size) {
        ("u" | "B", Some(1)) | ("B", None) => Ok(Dtype::U8),
        ("f", Some(4)) | ("f", None) if order != Some(b'|') => Ok(Dtype::F32 { big }),
        ("f", Some(8)) | ("d", None) if order != Some(b'|') => Ok(Dtype::F64 { big }),
        ("f", Some(4 | 8)) => Err(refuse("a float needs a byte order ('<' or '>'), not '|'")),
        ("O", _) => Err(refuse(
            "object arrays hold pickled Python objects, which are never loaded; save a numeric array (x.astype(np.float32))",
        )),
        ("c", _) => Err(refuse(
            "complex numbers; save the real part or the magnitude (np.abs(x).astype(np.float32))",
        )),
        ("b" | "?", Some(1) | None) => Err(refuse("booleans; save x.astype(np.uint8)")),
        ("u" | "i" | "b" | "h" | "H" | "l" | "L" | "q" | "Q", _) => Err(refuse(
            "integers other than uint8; save images or labels as x.astype(np.uint8), other values as x.astype(np.float32)",
        )),
        ("f" | "e" | "g", _) => Err(refuse("this float width; save x.astype(np.float32)")),
        ("S" | "U" | "a", _) => Err(refuse("strings")),
        ("V", _) => Err(refuse("void (raw or structured) records")),
        ("M" | "m", _) => Err(refuse("dates and time deltas")),
        _ => Err(refuse("an unknown type code")),
    }
}

/// Encodes an array as a `.npy` file (format 1.0, or 2.0 for a header over 64 KiB);
/// `path` only names it in errors.
pub fn encode_npy(a: &NpyArray, path: &Path) -> Result<Vec<u8>, NpyError> {
    let count = a.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(a.data.len()) {
        return Err(NpyError::ShapeMismatch {
            path: path.into(),
            shape: a.shape.clone(),
            len: a.data.len(),
        });
    }
    let dims: Vec<String> = a.shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        a.data.descr()
    );
    // Padded with spaces and a newline so that the data starts 64-byte aligned, as NumPy
    // does; format 2.0 only if the header does not fit 1.0's u16 length.
    let padded = |preamble: usize| {
        let pad = (64 - (preamble + dict.len() + 1) % 64) % 64;
        let mut h = dict.clone();
        h.extend(std::iter::repeat_n(' ', pad));
        h.push('\n');
        h
    };
    let (version, len_bytes, header) = match padded(MAGIC.len() + 4) {
        h if h.len() <= u16::MAX as usize => (1u8, 2, h),
        _ => (2u8, 4, padded(MAGIC.len() + 6)),
    };
    let preamble = MAGIC.len() + 2 + len_bytes;
    let mut out = Vec::with_capacity(preamble + header.len() + a.data.len() * a.data.element_size());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        let n = u32::try_from(header.len()).map_err(|_| NpyError::Size {
            path: path.into(),
            size: SizeError::Overflow { dims: a.shape.clone() },
        })?;
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    match &a.data {
        NpyData::U8(v) => out.extend_from_slice(v),
        NpyData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    Ok(out)
}

/// Writes a `.npy` file atomically (a temporary file in the same directory, flushed, then
/// renamed over `path`).
pub fn write_npy(path: impl AsRef<Path>, a: &NpyArray) -> Result<(), NpyError> {
    let path = path.as_ref();
    let bytes = encode_npy(a, path)?;
    write_atomic_with(path, |f| f.write_all(&bytes)).map_err(|source| NpyError::Io {
        path: path.into(),
        source,
    })
}

/// The name of the entry holding `key` in an archive, for errors: `archive.npz/key.npy`.
fn entry_path(archive: &Path, name: &str) -> PathBuf {
    archive.join(name)
}

fn open_archive(path: &Path) -> Result<ZipArchive<io::BufReader<fs::File>>, NpyError> {
    let file = fs::File::open(path).map_err(|source| NpyError::Io {
        path: path.into(),
        source,
    })?;
    ZipArchive::new(io::BufReader::new(file)).map_err(|source| zip_err(path, source))
}

fn zip_err(path: &Path, source: ZipError) -> NpyError {
    match source {
        ZipError::Io(source) => NpyError::Io {
            path: path.into(),
            source,
        },
        source => NpyError::Zip {
            path: path.into(),
            source,
        },
    }
}

/// The keys of the arrays in an archive, in the archive's order: the entries' names with
/// `.npy` removed (NumPy's `np.load(path).files`).
fn keys_of<R: Read + Seek>(archive: &ZipArchive<R>) -> Vec<String> {
    archive
        .file_names()
        .filter_map(|n| n.ok())
        .map(|n| n.strip_suffix(".npy").unwrap_or(&n).to_string())
        .collect()
}

/// The keys of the arrays in an `.npz` archive, in the archive's order (as NumPy's
/// `np.load(path).files`), without reading any array.
pub fn npz_keys(path: impl AsRef<Path>) -> Result<Vec<String>, NpyError> {
    Ok(keys_of(&open_archive(path.as_ref())?))
}

/// Reads the arrays named `keys` from an `.npz` archive, in the order of `keys`. A key
/// absent from the archive is refused listing the keys present. Each entry is read as a
/// `.npy` file within `limits` (its declared data size, not the archive's), and no more than
/// its declared data and one byte is ever decompressed.
pub fn read_npz(path: impl AsRef<Path>, limits: &Limits, keys: &[&str]) -> Result<Vec<NpyArray>, NpyError> {
    let path = path.as_ref();
    let mut archive = open_archive(path)?;
    let mut out = Vec::with_capacity(keys.len());
    for &key in keys {
        let with_suffix = format!("{key}.npy");
        let name = if archive.index_for_name(&with_suffix).is_some() {
            with_suffix
        } else if archive.index_for_name(key).is_some() {
            key.to_string()
        } else {
            return Err(NpyError::MissingKey {
                path: path.into(),
                key: key.into(),
                present: keys_of(&archive),
            });
        };
        let entry = entry_path(path, &name);
        let mut file = archive.by_name(&name).map_err(|e| zip_err(&entry, e))?;
        out.push(decode_stream(&mut file, None, &entry, limits, true)?);
    }
    Ok(out)
}

/// Writes an `.npz` archive atomically, one `.npy` entry per `(key, array)`, deflated when
/// `compressed` (as `np.savez_compressed`) or stored (as `np.savez`).
pub fn write_npz(path: impl AsRef<Path>, arrays: &[(&str, &NpyArray)], compressed: bool) -> Result<(), NpyError> {
    let path = path.as_ref();
    let method = if compressed {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let mut failure = None;
    let result = write_atomic_with(path, |f| {
        let mut zip = ZipWriter::new(f);
        for &(key, a) in arrays {
            let name = format!("{key}.npy");
            let bytes = match encode_npy(a, &entry_path(path, &name)) {
                Ok(b) => b,
                Err(e) => {
                    failure = Some(e);
                    return Err(io::Error::other("encoding failed"));
                }
            };
            let options = SimpleFileOptions::default()
                .compression_method(method)
                .large_file(bytes.len() as u64 >= u64::from(u32::MAX));
            let started = zip.start_file(name.as_str(), options).map_err(|e| {
                failure = Some(zip_err(&entry_path(path, &name), e));
                io::Error::other("zip failed")
            });
            started?;
            zip.write_all(&bytes)?;
        }
        zip.finish().map_err(|e| {
            failure = Some(zip_err(path, e));
            io::Error::other("zip failed")
        })?;
        Ok(())
    });
    match (result, failure) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => Err(e),
        (Err(source), None) => Err(NpyError::Io {
            path: path.into(),
            source,
        }),
    }
}
