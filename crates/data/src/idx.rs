//! The IDX format: a big-endian header `00 00 <type> <ndims>`, `ndims` u32 sizes, then the
//! elements in row-major order. Files may be gzip-compressed; compression is detected from the
//! first two bytes (1f 8b), never from the name.

use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::path::Path;

use byteorder::{BigEndian, ByteOrder, ReadBytesExt, WriteBytesExt};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::{IdxError, SizeError};

/// The element types IDX defines, with their type codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementType {
    /// Unsigned byte (0x08).
    U8,
    /// Signed byte (0x09).
    I8,
    /// Big-endian i16 (0x0B).
    I16,
    /// Big-endian i32 (0x0C).
    I32,
    /// Big-endian f32 (0x0D).
    F32,
    /// Big-endian f64 (0x0E).
    F64,
}

impl ElementType {
    /// The type from its code, if IDX defines it.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x08 => Self::U8,
            0x09 => Self::I8,
            0x0B => Self::I16,
            0x0C => Self::I32,
            0x0D => Self::F32,
            0x0E => Self::F64,
            _ => return None,
        })
    }
    /// The type code.
    pub fn code(self) -> u8 {
        match self {
            Self::U8 => 0x08,
            Self::I8 => 0x09,
            Self::I16 => 0x0B,
            Self::I32 => 0x0C,
            Self::F32 => 0x0D,
            Self::F64 => 0x0E,
        }
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::I16 => 2,
            Self::I32 | Self::F32 => 4,
            Self::F64 => 8,
        }
    }
}

/// The elements of an IDX array, in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub enum IdxData {
    /// 0x08.
    U8(Vec<u8>),
    /// 0x09.
    I8(Vec<i8>),
    /// 0x0B.
    I16(Vec<i16>),
    /// 0x0C.
    I32(Vec<i32>),
    /// 0x0D.
    F32(Vec<f32>),
    /// 0x0E.
    F64(Vec<f64>),
}

impl IdxData {
    /// The element type.
    pub fn element_type(&self) -> ElementType {
        match self {
            Self::U8(_) => ElementType::U8,
            Self::I8(_) => ElementType::I8,
            Self::I16(_) => ElementType::I16,
            Self::I32(_) => ElementType::I32,
            Self::F32(_) => ElementType::F32,
            Self::F64(_) => ElementType::F64,
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An n-dimensional IDX array.
#[derive(Clone, Debug, PartialEq)]
pub struct Idx {
    /// The sizes of the dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The elements.
    pub data: IdxData,
}

/// The parsed header of an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Element type.
    pub element_type: ElementType,
    /// Dimensions.
    pub dims: Vec<usize>,
}

impl Header {
    /// Bytes of element data the header declares, checked for overflow.
    fn data_bytes(&self, path: &Path) -> Result<u64, IdxError> {
        if self.dims.is_empty() || self.dims.contains(&0) {
            return Err(IdxError::ZeroDimension {
                path: path.into(),
                dims: self.dims.clone(),
            });
        }
        self.dims
            .iter()
            .try_fold(self.element_type.size() as u64, |acc, &d| acc.checked_mul(d as u64))
            .filter(|&b| usize::try_from(b).is_ok())
            .ok_or_else(|| IdxError::Size {
                path: path.into(),
                size: SizeError::Overflow {
                    dims: self.dims.clone(),
                },
            })
    }
}

/// How much an untrusted file may make the reader allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest element data (in bytes, as the header declares it) a file may hold. A
    /// header declaring more is refused before anything is read past it or inflated.
    pub max_data_bytes: u64,
}

impl Limits {
    /// The default bound on a file's data: 2 GiB (MNIST's largest file holds 47 MB).
    pub const DEFAULT_MAX_DATA_BYTES: u64 = 2 << 30;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_data_bytes: Self::DEFAULT_MAX_DATA_BYTES,
        }
    }
}

/// Reads an IDX file, plain or gzip-compressed, within the default [`Limits`].
pub fn read(path: impl AsRef<Path>) -> Result<Idx, IdxError> {
    read_with(path, &Limits::default())
}

/// Reads an IDX file, plain or gzip-compressed, holding at most the header's declared data
/// size (+1 byte to detect trailing data) in memory, and refusing a declared size above
/// `limits` before reading (or inflating) the body.
pub fn read_with(path: impl AsRef<Path>, limits: &Limits) -> Result<Idx, IdxError> {
    let path = path.as_ref();
    let io_err = |source| IdxError::Io {
        path: path.into(),
        source,
    };
    let file = fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    // Only a regular file's length is its content's (a pipe reports 0).
    let len = meta.is_file().then_some(meta.len());
    decode_reader(io::BufReader::new(file), len, path, limits)
}

/// Decodes an IDX file held in memory, within the default [`Limits`]; `path` only names it
/// in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Idx, IdxError> {
    decode_with(bytes, path, &Limits::default())
}

/// Decodes an IDX file held in memory within `limits`; `path` only names it in errors.
pub fn decode_with(bytes: &[u8], path: &Path, limits: &Limits) -> Result<Idx, IdxError> {
    decode_reader(bytes, Some(bytes.len() as u64), path, limits)
}

/// Decodes from a buffered reader of the whole file (`len` bytes long when known).
fn decode_reader(mut r: impl BufRead, len: Option<u64>, path: &Path, limits: &Limits) -> Result<Idx, IdxError> {
    let start = r.fill_buf().map_err(|source| IdxError::Io {
        path: path.into(),
        source,
    })?;
    if start.starts_with(&[0x1f, 0x8b]) {
        decode_stream(Counted::new(MultiGzDecoder::new(r)), None, path, limits, true)
    } else {
        decode_stream(Counted::new(r), len, path, limits, false)
    }
}

/// A reader that counts the bytes it has delivered and remembers whether it failed (so that
/// the end of the data can be told from a damaged stream).
struct Counted<R> {
    inner: R,
    count: u64,
    failed: bool,
}

impl<R> Counted<R> {
    fn new(inner: R) -> Self {
        Counted {
            inner,
            count: 0,
            failed: false,
        }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.failed = true)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Parses a (decompressed) IDX stream: the header, then exactly the declared data, then
/// nothing. `len` is the stream's length when known (a plain file), which lets a wrong size
/// be reported without reading the body; `gzip` says how to name read errors.
fn decode_stream<R: Read>(
    mut r: Counted<R>,
    len: Option<u64>,
    path: &Path,
    limits: &Limits,
    gzip: bool,
) -> Result<Idx, IdxError> {
    let read_err = |source: io::Error| {
        if gzip {
            IdxError::Gzip {
                path: path.into(),
                source,
            }
        } else {
            IdxError::Io {
                path: path.into(),
                source,
            }
        }
    };
    let header = match read_header(&mut r, path, |e, read, failed| {
        if e.kind() == io::ErrorKind::UnexpectedEof && !failed {
            IdxError::NoHeader {
                path: path.into(),
                len: read as usize,
            }
        } else {
            read_err(e)
        }
    }) {
        Ok(h) => h,
        Err(e) => return Err(blame_stream(&mut r, e, gzip, path)),
    };
    let expected = match header.data_bytes(path) {
        Ok(n) if n > limits.max_data_bytes => Err(IdxError::Size {
            path: path.into(),
            size: SizeError::TooLarge {
                dims: header.dims.clone(),
                declared: n,
                limit: limits.max_data_bytes,
            },
        }),
        other => other,
    }
    .map_err(|e| blame_stream(&mut r, e, gzip, path))?;
    if let Some(len) = len {
        let found = len.saturating_sub(r.count);
        if found < expected {
            return Err(IdxError::Size {
                path: path.into(),
                size: SizeError::Truncated { expected, found },
            });
        }
        if found > expected {
            return Err(IdxError::Size {
                path: path.into(),
                size: SizeError::TrailingData { expected },
            });
        }
    }
    let mut body = Vec::new();
    body.try_reserve_exact(expected as usize).map_err(|_| IdxError::Size {
        path: path.into(),
        size: SizeError::TooLarge {
            dims: header.dims.clone(),
            declared: expected,
            limit: limits.max_data_bytes,
        },
    })?;
    // The reserved capacity is only touched as data really arrives.
    (&mut r).take(expected).read_to_end(&mut body).map_err(read_err)?;
    let found = body.len() as u64;
    if found < expected {
        return Err(IdxError::Size {
            path: path.into(),
            size: SizeError::Truncated { expected, found },
        });
    }
    // One more byte, or the end of the stream (where gzip checks its CRC).
    let mut probe = [0u8; 1];
    let more = loop {
        match r.read(&mut probe) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other.map_err(read_err)?,
        }
    };
    if more > 0 {
        return Err(IdxError::Size {
            path: path.into(),
            size: SizeError::TrailingData { expected },
        });
    }
    Ok(Idx {
        data: convert(header.element_type, &body),
        dims: header.dims,
    })
}

/// Decompressed bytes inspected after a bad header, to tell a damaged gzip stream (which
/// is reported as such) from an intact one holding a bad header.
const CORRUPTION_PROBE: u64 = 64 << 20;

/// The error to report for a bad header `e`: for gzip, a damaged stream if the next
/// [`CORRUPTION_PROBE`] bytes (read through a fixed buffer, never kept) show it to be one.
fn blame_stream(r: &mut impl Read, e: IdxError, gzip: bool, path: &Path) -> IdxError {
    if gzip
        && !matches!(e, IdxError::Gzip { .. })
        && let Err(source) = io::copy(&mut r.take(CORRUPTION_PROBE), &mut io::sink())
    {
        return IdxError::Gzip {
            path: path.into(),
            source,
        };
    }
    e
}

/// Reads the header from `r`; `err` turns a read error (with the bytes read so far, and
/// whether the underlying stream failed) into
/// the error to report (`UnexpectedEof` without a failed read means the header is cut short).
fn read_header<R: Read>(
    r: &mut Counted<R>,
    path: &Path,
    err: impl Fn(io::Error, u64, bool) -> IdxError,
) -> Result<Header, IdxError> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(|e| err(e, r.count, r.failed))?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(IdxError::BadMagic {
            path: path.into(),
            magic,
        });
    }
    let element_type = ElementType::from_code(magic[2]).ok_or(IdxError::UnknownType {
        path: path.into(),
        code: magic[2],
    })?;
    let mut dims = Vec::with_capacity(magic[3] as usize);
    for _ in 0..magic[3] {
        let d = r.read_u32::<BigEndian>().map_err(|e| err(e, r.count, r.failed))?;
        dims.push(d as usize);
    }
    Ok(Header { element_type, dims })
}

/// Big-endian bytes to typed elements (the length is a checked multiple of the size).
fn convert(t: ElementType, b: &[u8]) -> IdxData {
    let n = b.len() / t.size();
    match t {
        ElementType::U8 => IdxData::U8(b.to_vec()),
        ElementType::I8 => IdxData::I8(b.iter().map(|&x| x as i8).collect()),
        ElementType::I16 => {
            let mut v = vec![0; n];
            BigEndian::read_i16_into(b, &mut v);
            IdxData::I16(v)
        }
        ElementType::I32 => {
            let mut v = vec![0; n];
            BigEndian::read_i32_into(b, &mut v);
            IdxData::I32(v)
        }
        ElementType::F32 => {
            let mut v = vec![0.0; n];
            BigEndian::read_f32_into(b, &mut v);
            IdxData::F32(v)
        }
        ElementType::F64 => {
            let mut v = vec![0.0; n];
            BigEndian::read_f64_into(b, &mut v);
            IdxData::F64(v)
        }
    }
}

/// Encodes an array as IDX bytes, gzip-compressed when `gzip`.
pub fn encode(idx: &Idx, gzip: bool, path: &Path) -> Result<Vec<u8>, IdxError> {
    let expected = idx.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if idx.dims.is_empty() || idx.dims.len() > 255 || expected != Some(idx.data.len()) {
        return Err(IdxError::ShapeMismatch {
            path: path.into(),
            dims: idx.dims.clone(),
            len: idx.data.len(),
        });
    }
    let mut out = Vec::with_capacity(4 + 4 * idx.dims.len() + idx.data.len() * idx.data.element_type().size());
    out.extend_from_slice(&[0, 0, idx.data.element_type().code(), idx.dims.len() as u8]);
    for &d in &idx.dims {
        let d = u32::try_from(d).map_err(|_| IdxError::Size {
            path: path.into(),
            size: SizeError::Overflow { dims: idx.dims.clone() },
        })?;
        out.write_u32::<BigEndian>(d).expect("writing to a Vec");
    }
    match &idx.data {
        IdxData::U8(v) => out.extend_from_slice(v),
        IdxData::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        IdxData::I16(v) => v.iter().for_each(|&x| out.write_i16::<BigEndian>(x).expect("Vec")),
        IdxData::I32(v) => v.iter().for_each(|&x| out.write_i32::<BigEndian>(x).expect("Vec")),
        IdxData::F32(v) => v.iter().for_each(|&x| out.write_f32::<BigEndian>(x).expect("Vec")),
        IdxData::F64(v) => v.iter().for_each(|&x| out.write_f64::<BigEndian>(x).expect("Vec")),
    }
    if !gzip {
        return Ok(out);
    }
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(&out).expect("writing to a Vec");
    Ok(enc.finish().expect("writing to a Vec"))
}

/// Writes an IDX file atomically ([`crate::atomic::write_atomic`]), gzip-compressed when
/// `gzip`.
pub fn write(path: impl AsRef<Path>, idx: &Idx, gzip: bool) -> Result<(), IdxError> {
    let path = path.as_ref();
    let bytes = encode(idx, gzip, path)?;
    crate::atomic::write_atomic(path, &bytes).map_err(|source| IdxError::Io {
        path: path.into(),
        source,
    })
}
