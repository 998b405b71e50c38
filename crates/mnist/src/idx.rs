//! The IDX format: a big-endian header `00 00 <type> <ndims>`, `ndims` u32 sizes, then the
//! elements in row-major order. Files may be gzip-compressed; compression is detected from the
//! first two bytes (1f 8b), never from the name.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use byteorder::{BigEndian, ByteOrder, ReadBytesExt, WriteBytesExt};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::IdxError;

/// Deflate cannot expand data by more than about 1032:1: decompression stops there.
const MAX_GZIP_RATIO: u64 = 1100;

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
            .ok_or_else(|| IdxError::Overflow {
                path: path.into(),
                dims: self.dims.clone(),
            })
    }
}

/// Reads an IDX file, plain or gzip-compressed.
pub fn read(path: impl AsRef<Path>) -> Result<Idx, IdxError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|source| IdxError::Io {
        path: path.into(),
        source,
    })?;
    decode(&bytes, path)
}

/// Decodes an IDX file held in memory; `path` only names it in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Idx, IdxError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        decode_gzip(bytes, path)
    } else {
        decode_plain(bytes, path)
    }
}

/// Reads the header from `r`; `UnexpectedEof` means the header is cut short.
fn read_header(r: &mut impl Read, path: &Path, map: impl Fn(io::Error) -> IdxError) -> Result<Header, IdxError> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(&map)?;
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
        dims.push(r.read_u32::<BigEndian>().map_err(&map)? as usize);
    }
    Ok(Header { element_type, dims })
}

fn header_eof(path: &Path, len: usize) -> impl Fn(io::Error) -> IdxError + '_ {
    move |_| IdxError::NoHeader { path: path.into(), len }
}

fn decode_plain(bytes: &[u8], path: &Path) -> Result<Idx, IdxError> {
    let mut r = bytes;
    let header = read_header(&mut r, path, header_eof(path, bytes.len()))?;
    let expected = header.data_bytes(path)?;
    let found = r.len() as u64;
    if found < expected {
        return Err(IdxError::Truncated {
            path: path.into(),
            expected,
            found,
        });
    }
    if found > expected {
        return Err(IdxError::TrailingData {
            path: path.into(),
            expected,
        });
    }
    Ok(Idx {
        data: convert(header.element_type, r),
        dims: header.dims,
    })
}

fn decode_gzip(bytes: &[u8], path: &Path) -> Result<Idx, IdxError> {
    // Decompress everything first, so that a damaged stream is reported as such (its
    // checksum is only checked at the end), then parse as a plain file. Memory grows only as
    // data really decompresses, and never past what deflate can expand the file to.
    let cap = (bytes.len() as u64).saturating_mul(MAX_GZIP_RATIO);
    let isize_hint = bytes.len().checked_sub(4).map_or(0, |at| {
        u32::from_le_bytes(bytes[at..].try_into().expect("4 bytes")) as u64
    });
    let mut out = Vec::with_capacity(isize_hint.min(cap) as usize);
    MultiGzDecoder::new(bytes)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|source| IdxError::Gzip {
            path: path.into(),
            source,
        })?;
    decode_plain(&out, path)
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
        let d = u32::try_from(d).map_err(|_| IdxError::Overflow {
            path: path.into(),
            dims: idx.dims.clone(),
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

/// Writes an IDX file atomically (a temporary file in the same directory, flushed, then
/// renamed over `path`), gzip-compressed when `gzip`.
pub fn write(path: impl AsRef<Path>, idx: &Idx, gzip: bool) -> Result<(), IdxError> {
    let path = path.as_ref();
    let bytes = encode(idx, gzip, path)?;
    let io_err = |source| IdxError::Io {
        path: path.into(),
        source,
    };
    let tmp = temp_name(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}
