//! The `.npy` reader and writer: round trips, the three format versions, byte orders,
//! Fortran order, and every refusal, each naming the file.

use std::path::{Path, PathBuf};

use vae_data::npy::{self, NpyArray, NpyData};
use vae_data::{Limits, NpyError, SizeError};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vae-data-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A `.npy` file with the given version, header text and data bytes (the header is padded
/// with a newline only; alignment is not required of readers).
fn raw(version: u8, header: &str, body: &[u8]) -> Vec<u8> {
    let mut b = b"\x93NUMPY".to_vec();
    b.extend_from_slice(&[version, 0]);
    let h = format!("{header}\n");
    if version == 1 {
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        b.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(body);
    b
}

fn dict(descr: &str, fortran: bool, shape: &str) -> String {
    let f = if fortran { "True" } else { "False" };
    format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {shape}, }}")
}

fn decode(bytes: &[u8], name: &str) -> Result<NpyArray, NpyError> {
    npy::decode_npy(bytes, Path::new(name), &Limits::default())
}

fn err(bytes: &[u8], name: &str) -> NpyError {
    let e = decode(bytes, name).unwrap_err();
    assert!(e.to_string().starts_with(name), "{e}");
    e
}

#[test]
fn round_trips_through_files() {
    let arrays = [
        NpyArray {
            shape: vec![2, 3, 4],
            data: NpyData::U8((0..24).collect()),
        },
        NpyArray {
            shape: vec![5, 2],
            data: NpyData::F32((0..10).map(|i| i as f32 * 0.25 - 1.0).collect()),
        },
        NpyArray {
            shape: vec![3],
            data: NpyData::F64(vec![f64::MIN_POSITIVE, -0.0, 1e300]),
        },
        NpyArray {
            shape: vec![],
            data: NpyData::F32(vec![7.5]),
        },
        NpyArray {
            shape: vec![0, 28, 28],
            data: NpyData::U8(vec![]),
        },
    ];
    for (i, a) in arrays.iter().enumerate() {
        let path = tmp(&format!("round{i}.npy"));
        npy::write_npy(&path, a).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // As NumPy writes them: format 1.0, the data 64-byte aligned, the header ending in '\n'.
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(bytes[9 + hlen], b'\n');
        assert_eq!(&npy::read_npy(&path, &Limits::default()).unwrap(), a);
    }
}

#[test]
fn the_header_numpy_writes_is_read() {
    // Byte for byte what np.save(f, np.arange(6, dtype=np.uint8).reshape(2, 3)) writes.
    let mut b = b"\x93NUMPY\x01\x00v\x00".to_vec();
    let h = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }";
    b.extend_from_slice(h.as_bytes());
    b.extend(std::iter::repeat_n(b' ', 118 - h.len() - 1));
    b.push(b'\n');
    b.extend(0..6u8);
    let a = decode(&b, "np.npy").unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, NpyData::U8((0..6).collect()));
}

#[test]
fn versions_two_and_three_are_read() {
    let body: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    for v in [2, 3] {
        let a = decode(&raw(v, &dict("<f4", false, "(2,)"), &body), "v.npy").unwrap();
        assert_eq!(a.data, NpyData::F32(vec![1.5, -2.0]));
    }
    // Version 3.0 allows UTF-8 in the header; spacing and quoting may vary.
    let h = "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2,)}";
    assert_eq!(decode(&raw(3, h, &body), "v3.npy").unwrap().shape, vec![2]);
    let e = err(&raw(4, &dict("<f4", false, "(2,)"), &body), "v4.npy");
    assert!(
        matches!(e, NpyError::UnsupportedVersion { major: 4, minor: 0, .. }),
        "{e}"
    );
    let mut b = raw(1, &dict("<f4", false, "(2,)"), &body);
    b[7] = 1;
    assert!(err(&b, "v11.npy").to_string().contains("version 1.1 is not supported"));
}

#[test]
fn python2_long_integers_are_read() {
    let a = decode(&raw(1, &dict("|u1", false, "(2L, 1L)"), &[3, 4]), "py2.npy").unwrap();
    assert_eq!(a.shape, vec![2, 1]);
}

#[test]
fn big_endian_floats_are_converted() {
    let xs = [1.0f32, -0.5, 3.25];
    let body: Vec<u8> = xs.iter().flat_map(|x| x.to_be_bytes()).collect();
    let a = decode(&raw(1, &dict(">f4", false, "(3,)"), &body), "be.npy").unwrap();
    assert_eq!(a.data, NpyData::F32(xs.to_vec()));
    let ys = [1e-300f64, 2.5];
    let body: Vec<u8> = ys.iter().flat_map(|x| x.to_be_bytes()).collect();
    let a = decode(&raw(1, &dict(">f8", false, "(2,)"), &body), "be8.npy").unwrap();
    assert_eq!(a.data, NpyData::F64(ys.to_vec()));
}

#[test]
fn fortran_order_is_transposed_to_row_major() {
    // The 2x3 matrix [[0, 1, 2], [3, 4, 5]] in column-major order.
    let a = decode(&raw(1, &dict("|u1", true, "(2, 3)"), &[0, 3, 1, 4, 2, 5]), "f.npy").unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, NpyData::U8(vec![0, 1, 2, 3, 4, 5]));
    // 2x3x4, element (i, j, k) = 12i + 4j + k, stored with i varying fastest.
    let mut body = Vec::new();
    for k in 0..4 {
        for j in 0..3 {
            for i in 0..2 {
                body.extend_from_slice(&((12 * i + 4 * j + k) as f64).to_le_bytes());
            }
        }
    }
    let a = decode(&raw(1, &dict("<f8", true, "(2, 3, 4)"), &body), "f3.npy").unwrap();
    assert_eq!(a.data, NpyData::F64((0..24).map(f64::from).collect()));
}

#[test]
fn a_header_declaring_a_trillion_elements_is_refused_before_reading() {
    let e = err(&raw(1, &dict("|u1", false, "(1000000, 1000000)"), &[0; 64]), "huge.npy");
    match &e {
        NpyError::Size {
            size:
                SizeError::TooLarge {
                    declared,
                    limit,
                    dims: shape,
                    ..
                },
            ..
        } => {
            assert_eq!(*declared, 1_000_000_000_000);
            assert_eq!(*limit, Limits::DEFAULT_MAX_DATA_BYTES);
            assert_eq!(shape, &vec![1_000_000, 1_000_000]);
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("more than the limit"), "{e}");
    // Within a smaller limit too.
    let small = Limits { max_data_bytes: 10 };
    let e = npy::decode_npy(
        &raw(1, &dict("<f4", false, "(3,)"), &[0; 12]),
        Path::new("l.npy"),
        &small,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            NpyError::Size {
                size: SizeError::TooLarge {
                    declared: 12,
                    limit: 10,
                    ..
                },
                ..
            }
        ),
        "{e}"
    );
    let e = err(
        &raw(1, &dict("<f8", false, "(4294967296, 4294967296)"), &[]),
        "over.npy",
    );
    assert!(
        matches!(
            e,
            NpyError::Size {
                size: SizeError::Overflow { .. },
                ..
            }
        ),
        "{e}"
    );
    let e = err(
        &raw(1, &dict("<f8", false, "(99999999999999999999999,)"), &[]),
        "big.npy",
    );
    assert!(e.to_string().contains("does not fit"), "{e}");
}

#[test]
fn refused_dtypes_are_named() {
    for (descr, says) in [
        ("|O", "object arrays"),
        ("<c8", "complex"),
        ("<c16", "complex"),
        ("|b1", "booleans"),
        ("<i8", "integers other than uint8"),
        ("|i1", "integers other than uint8"),
        ("<u2", "integers other than uint8"),
        ("<f2", "float width"),
        ("<U5", "strings"),
        ("|S3", "strings"),
        ("<M8[ns]", "dates"),
        ("|f4", "byte order"),
        ("<z9", "unknown type code"),
    ] {
        let e = err(&raw(1, &dict(descr, false, "(1,)"), &[0; 16]), "dt.npy");
        let s = e.to_string();
        assert!(matches!(e, NpyError::UnsupportedDtype { .. }), "{s}");
        assert!(
            s.contains(&format!("dtype '{descr}'")) && s.contains(says),
            "{descr}: {s}"
        );
        assert!(s.contains("'|u1'"), "{s}");
    }
    let h = "{'descr': [('x', '<f4'), ('y', '<f4')], 'fortran_order': False, 'shape': (1,), }";
    let e = err(&raw(1, h, &[0; 8]), "rec.npy");
    assert!(e.to_string().contains("structured"), "{e}");
    assert!(e.to_string().contains("[('x', '<f4'), ('y', '<f4')]"), "{e}");
}

#[test]
fn truncated_and_trailing_data_are_refused() {
    let good = raw(1, &dict("<f4", false, "(2, 3)"), &[0; 24]);
    let e = err(&good[..good.len() - 5], "cut.npy");
    assert!(
        matches!(
            e,
            NpyError::Size {
                size: SizeError::Truncated {
                    expected: 24,
                    found: 19,
                    ..
                },
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("declares 24 data bytes, the file holds 19"),
        "{e}"
    );
    let mut long = good.clone();
    long.push(0);
    let e = err(&long, "long.npy");
    assert!(
        matches!(
            e,
            NpyError::Size {
                size: SizeError::TrailingData { expected: 24, .. },
                ..
            }
        ),
        "{e}"
    );
    // The same through a file on disk.
    let path = tmp("cut.npy");
    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    let e = npy::read_npy(&path, &Limits::default()).unwrap_err();
    assert!(e.to_string().starts_with(&path.display().to_string()), "{e}");
    assert!(
        matches!(
            e,
            NpyError::Size {
                size: SizeError::Truncated { found: 23, .. },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn damaged_preambles_and_headers_are_refused() {
    let good = raw(1, &dict("<f4", false, "(2,)"), &[0; 8]);
    for cut in [0, 3, 6, 7, 9, 20] {
        let e = err(&good[..cut], "short.npy");
        assert!(matches!(e, NpyError::TruncatedHeader { .. }), "{cut}: {e}");
    }
    let e = err(b"PK\x03\x04 not an npy", "zip.npy");
    assert!(matches!(e, NpyError::BadMagic { .. }), "{e}");
    assert!(e.to_string().contains("not a .npy file"), "{e}");
    let mut b = b"\x93NUMPY\x02\x00".to_vec();
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    let e = err(&b, "longhdr.npy");
    assert!(matches!(e, NpyError::HeaderTooLong { .. }), "{e}");
    for (h, says) in [
        ("{'descr': '<f4', 'shape': (2,), }", "required"),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
            "unexpected key 'extra'",
        ),
        (
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
            "twice",
        ),
        ("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", "fortran_order"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", "not a tuple"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", "negative"),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': ('2',)}",
            "not an integer",
        ),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", "expected"),
        ("{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}", "expected"),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk",
            "after the dict",
        ),
        ("__import__('os').system('true')", "unexpected name"),
        ("[1, 2]", "not a dict"),
        ("", "unexpected end"),
        (&"(".repeat(100), "nested too deeply"),
    ] {
        let e = err(&raw(1, h, &[0; 8]), "hdr.npy");
        assert!(matches!(e, NpyError::BadHeader { .. }), "{h}: {e}");
        assert!(e.to_string().contains(says), "{h}: {e}");
    }
}

#[test]
fn the_writer_refuses_a_shape_the_data_does_not_fill() {
    let a = NpyArray {
        shape: vec![2, 2],
        data: NpyData::U8(vec![1, 2, 3]),
    };
    let e = npy::write_npy(tmp("bad.npy"), &a).unwrap_err();
    assert!(matches!(e, NpyError::ShapeMismatch { len: 3, .. }), "{e}");
    assert!(!tmp("bad.npy").exists());
}

#[test]
fn a_missing_file_is_named() {
    let e = npy::read_npy(tmp("absent.npy"), &Limits::default()).unwrap_err();
    assert!(
        matches!(e, NpyError::Io { .. }) && e.to_string().contains("absent.npy"),
        "{e}"
    );
}
