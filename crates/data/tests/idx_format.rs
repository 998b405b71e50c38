//! IDX round trips for every element type and rank, and one test per hostile input.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use vae_data::idx::{self, Idx, IdxData};
use vae_data::{IdxError, Limits, SizeError};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vae-data-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn data_for(code: u8, n: usize) -> IdxData {
    match code {
        0x08 => IdxData::U8((0..n).map(|i| (i * 37 % 256) as u8).collect()),
        0x09 => IdxData::I8((0..n).map(|i| (i as i64 * 37 % 256 - 128) as i8).collect()),
        0x0B => IdxData::I16((0..n).map(|i| (i as i32 * 4099 - 30000) as i16).collect()),
        0x0C => IdxData::I32((0..n).map(|i| i as i32 * -1_000_003).collect()),
        0x0D => IdxData::F32((0..n).map(|i| i as f32 * -0.37 + 1e-3).collect()),
        _ => IdxData::F64((0..n).map(|i| (i as f64).sin() * 1e300).collect()),
    }
}

#[test]
fn round_trip_every_type_and_rank() {
    for code in [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E] {
        for dims in [vec![7], vec![3, 5], vec![2, 3, 4], vec![2, 1, 3, 2]] {
            let n = dims.iter().product();
            let a = Idx {
                dims: dims.clone(),
                data: data_for(code, n),
            };
            for gzip in [false, true] {
                let p = tmp(&format!("rt-{code}-{}-{gzip}", dims.len()));
                idx::write(&p, &a, gzip).unwrap();
                let bytes = std::fs::read(&p).unwrap();
                assert_eq!(bytes.starts_with(&[0x1f, 0x8b]), gzip);
                assert_eq!(idx::read(&p).unwrap(), a, "type {code:#x} dims {dims:?} gzip {gzip}");
            }
        }
    }
}

/// Writes `bytes` to a fresh file and reads it back as IDX.
fn read_bytes(name: &str, bytes: &[u8]) -> (PathBuf, Result<Idx, IdxError>) {
    let p = tmp(name);
    std::fs::write(&p, bytes).unwrap();
    let r = idx::read(&p);
    (p, r)
}

fn header(code: u8, dims: &[u32]) -> Vec<u8> {
    let mut h = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        h.extend_from_slice(&d.to_be_bytes());
    }
    h
}

fn names(err: &IdxError, p: &Path) {
    assert!(
        err.to_string().contains(&p.display().to_string()),
        "{err} does not name {}",
        p.display()
    );
}

#[test]
fn wrong_magic() {
    let (p, r) = read_bytes("magic", b"PK\x03\x04 not an idx file");
    let e = r.unwrap_err();
    assert!(matches!(e, IdxError::BadMagic { .. }), "{e}");
    names(&e, &p);
}

#[test]
fn unknown_type_code() {
    let mut b = header(0x07, &[2]);
    b.extend_from_slice(&[1, 2]);
    let (p, r) = read_bytes("type", &b);
    let e = r.unwrap_err();
    assert!(matches!(e, IdxError::UnknownType { code: 0x07, .. }), "{e}");
    names(&e, &p);
}

#[test]
fn zero_dimension() {
    let (_, r) = read_bytes("zero", &header(0x08, &[3, 0, 4]));
    assert!(matches!(r.unwrap_err(), IdxError::ZeroDimension { .. }));
    let (_, r) = read_bytes("nodims", &header(0x08, &[]));
    assert!(matches!(r.unwrap_err(), IdxError::ZeroDimension { .. }));
}

#[test]
fn absurd_dimensions_in_a_small_file() {
    // Four billion 28x28 images claimed by a 1 KiB gzip file: refused from the header alone,
    // before the body is inflated or anything is allocated for it.
    let mut body = header(0x08, &[4_000_000_000, 28, 28]);
    body.extend(std::iter::repeat_n(0u8, 1024));
    let (p, r) = read_bytes("absurd.gz", &gz(&body));
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            IdxError::Size {
                size: SizeError::TooLarge {
                    declared: 3_136_000_000_000,
                    limit: Limits::DEFAULT_MAX_DATA_BYTES,
                    ..
                },
                ..
            }
        ),
        "{e}"
    );
    names(&e, &p);
    let (_, r) = read_bytes("absurd", &body);
    assert!(matches!(
        r.unwrap_err(),
        IdxError::Size {
            size: SizeError::TooLarge {
                declared: 3_136_000_000_000,
                ..
            },
            ..
        }
    ));
}

#[test]
fn a_declared_size_within_the_limit_but_not_present() {
    // 100 MB declared, 1 KiB present: the plain file is refused from its length, the gzip
    // one when its stream ends.
    let mut body = header(0x08, &[100_000, 1000]);
    body.extend(std::iter::repeat_n(0u8, 1024));
    for (name, bytes) in [("short", body.clone()), ("short.gz", gz(&body))] {
        let (_, r) = read_bytes(name, &bytes);
        assert!(
            matches!(
                r.unwrap_err(),
                IdxError::Size {
                    size: SizeError::Truncated {
                        expected: 100_000_000,
                        found: 1024,
                        ..
                    },
                    ..
                }
            ),
            "{name}"
        );
    }
}

#[test]
fn a_lower_limit_is_enforced() {
    let mut b = header(0x08, &[10, 10]);
    b.extend(std::iter::repeat_n(7u8, 100));
    let limits = Limits { max_data_bytes: 99 };
    let e = idx::decode_with(&gz(&b), Path::new("tight.gz"), &limits).unwrap_err();
    assert!(
        matches!(
            e,
            IdxError::Size {
                size: SizeError::TooLarge {
                    declared: 100,
                    limit: 99,
                    ..
                },
                ..
            }
        ),
        "{e}"
    );
    let ok = idx::decode_with(&gz(&b), Path::new("fits.gz"), &Limits { max_data_bytes: 100 }).unwrap();
    assert_eq!(ok.dims, vec![10, 10]);
}

#[test]
fn dimension_product_overflows() {
    let (_, r) = read_bytes("overflow", &header(0x0E, &[u32::MAX, u32::MAX, u32::MAX]));
    assert!(matches!(
        r.unwrap_err(),
        IdxError::Size {
            size: SizeError::Overflow { .. },
            ..
        }
    ));
}

#[test]
fn truncated_body() {
    let mut b = header(0x0C, &[4]);
    b.extend_from_slice(&[0; 15]);
    let (_, r) = read_bytes("trunc", &b);
    assert!(matches!(
        r.unwrap_err(),
        IdxError::Size {
            size: SizeError::Truncated {
                expected: 16,
                found: 15,
                ..
            },
            ..
        }
    ));
    let (_, r) = read_bytes("trunc.gz", &gz(&b));
    assert!(matches!(
        r.unwrap_err(),
        IdxError::Size {
            size: SizeError::Truncated {
                expected: 16,
                found: 15,
                ..
            },
            ..
        }
    ));
    // A header cut short.
    let (_, r) = read_bytes("short", &[0, 0, 8]);
    assert!(matches!(r.unwrap_err(), IdxError::NoHeader { .. }));
}

#[test]
fn trailing_garbage() {
    let mut b = header(0x08, &[2]);
    b.extend_from_slice(&[1, 2, 3]);
    let (_, r) = read_bytes("trail", &b);
    assert!(matches!(
        r.unwrap_err(),
        IdxError::Size {
            size: SizeError::TrailingData { expected: 2, .. },
            ..
        }
    ));
    let (_, r) = read_bytes("trail.gz", &gz(&b));
    assert!(matches!(
        r.unwrap_err(),
        IdxError::Size {
            size: SizeError::TrailingData { expected: 2, .. },
            ..
        }
    ));
}

#[test]
fn corrupt_gzip_stream() {
    let mut b = header(0x08, &[64]);
    b.extend((0..64).map(|i| i as u8));
    let mut z = gz(&b);
    // Damage the checksum trailer: the data decodes but the CRC disagrees.
    let n = z.len();
    z[n - 6] ^= 0xff;
    let (p, r) = read_bytes("crc.gz", &z);
    let e = r.unwrap_err();
    assert!(matches!(e, IdxError::Gzip { .. }), "{e}");
    names(&e, &p);
    // Damage the deflate stream itself.
    let mut z = gz(&b);
    for byte in &mut z[12..20] {
        *byte = 0xff;
    }
    let (_, r) = read_bytes("deflate.gz", &z);
    let e = r.unwrap_err();
    assert!(matches!(e, IdxError::Gzip { .. }), "{e}");
    // Only the gzip magic.
    let (_, r) = read_bytes("magiconly.gz", &[0x1f, 0x8b]);
    assert!(matches!(r.unwrap_err(), IdxError::Gzip { .. }));
    // Garbage after a complete gzip member.
    let mut z = gz(&b);
    z.extend_from_slice(b"garbage");
    let (_, r) = read_bytes("after.gz", &z);
    assert!(matches!(r.unwrap_err(), IdxError::Gzip { .. }));
}

#[test]
fn missing_file_names_it() {
    let p = tmp("does-not-exist");
    let e = idx::read(&p).unwrap_err();
    assert!(matches!(e, IdxError::Io { .. }));
    names(&e, &p);
}

#[test]
fn writer_rejects_a_shape_that_does_not_fit() {
    let a = Idx {
        dims: vec![2, 2],
        data: IdxData::U8(vec![1, 2, 3]),
    };
    assert!(matches!(
        idx::write(tmp("bad"), &a, false),
        Err(IdxError::ShapeMismatch { .. })
    ));
}
