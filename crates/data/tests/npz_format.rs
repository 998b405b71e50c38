//! `.npz` archives: round trips stored and deflated, keys, and refusals (a missing key, an
//! entry too large, a lying or damaged entry, a file that is not a zip).

use std::io::Write;
use std::path::PathBuf;

use vae_data::npy::{self, NpyArray, NpyData};
use vae_data::{Limits, NpyError, SizeError};
use zip::write::{SimpleFileOptions, ZipWriter};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vae-data-npz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn mnist_like() -> (NpyArray, NpyArray, NpyArray, NpyArray) {
    let x = |n: usize| NpyArray {
        shape: vec![n, 4, 4],
        data: NpyData::U8((0..n * 16).map(|i| (i * 7 % 256) as u8).collect()),
    };
    let y = |n: usize| NpyArray {
        shape: vec![n],
        data: NpyData::U8((0..n).map(|i| (i % 10) as u8).collect()),
    };
    (x(5), y(5), x(3), y(3))
}

/// An archive with entries written as given (name, bytes, deflated).
fn zip_of(path: &PathBuf, entries: &[(&str, &[u8], bool)]) {
    let mut z = ZipWriter::new(std::fs::File::create(path).unwrap());
    for &(name, bytes, deflate) in entries {
        let method = if deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        z.start_file(name, SimpleFileOptions::default().compression_method(method))
            .unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

#[test]
fn round_trips_stored_and_deflated() {
    let (xt, yt, xs, ys) = mnist_like();
    for compressed in [false, true] {
        let path = tmp(&format!("mnist-{compressed}.npz"));
        npy::write_npz(
            &path,
            &[("x_train", &xt), ("y_train", &yt), ("x_test", &xs), ("y_test", &ys)],
            compressed,
        )
        .unwrap();
        assert_eq!(
            npy::npz_keys(&path).unwrap(),
            ["x_train", "y_train", "x_test", "y_test"]
        );
        let got = npy::read_npz(&path, &Limits::default(), &["y_test", "x_train"]).unwrap();
        assert_eq!(got, vec![ys.clone(), xt.clone()]);
    }
}

#[test]
fn a_missing_key_lists_the_keys_present() {
    let (xt, yt, _, _) = mnist_like();
    let path = tmp("partial.npz");
    npy::write_npz(&path, &[("x_train", &xt), ("y_train", &yt)], true).unwrap();
    let e = npy::read_npz(&path, &Limits::default(), &["x_train", "x_test"]).unwrap_err();
    assert!(matches!(&e, NpyError::MissingKey { key, .. } if key == "x_test"), "{e}");
    let s = e.to_string();
    assert!(s.starts_with(&path.display().to_string()), "{s}");
    assert!(
        s.ends_with("no array named 'x_test' in the archive (it holds: x_train, y_train)"),
        "{s}"
    );
}

#[test]
fn entries_are_bounded_by_their_declared_size() {
    let a = NpyArray {
        shape: vec![100, 10],
        data: NpyData::F32(vec![0.5; 1000]),
    };
    let path = tmp("big.npz");
    npy::write_npz(&path, &[("x", &a)], true).unwrap();
    let small = Limits { max_data_bytes: 3999 };
    let e = npy::read_npz(&path, &small, &["x"]).unwrap_err();
    assert!(
        matches!(
            e,
            NpyError::Size {
                size: SizeError::TooLarge {
                    declared: 4000,
                    limit: 3999,
                    ..
                },
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().starts_with(&path.join("x.npy").display().to_string()),
        "{e}"
    );
    assert!(npy::read_npz(&path, &Limits { max_data_bytes: 4000 }, &["x"]).is_ok());
}

#[test]
fn a_header_declaring_a_trillion_elements_inside_an_archive_is_refused() {
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    let h = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000, 1000000), }\n";
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(&[0; 100]);
    let path = tmp("huge.npz");
    zip_of(&path, &[("x_train.npy", &b, true)]);
    let e = npy::read_npz(&path, &Limits::default(), &["x_train"]).unwrap_err();
    assert!(
        matches!(
            e,
            NpyError::Size {
                size: SizeError::TooLarge {
                    declared: 1_000_000_000_000,
                    ..
                },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_bomb_after_a_small_header_is_read_no_further_than_declared() {
    // A valid 2x2 array followed by 64 MiB of zeros (about 64 KiB deflated): refused as
    // trailing data after reading the four declared bytes and one more.
    let mut b = npy::encode_npy(
        &NpyArray {
            shape: vec![2, 2],
            data: NpyData::U8(vec![1, 2, 3, 4]),
        },
        &tmp("x"),
    )
    .unwrap();
    b.resize(b.len() + (64 << 20), 0);
    let path = tmp("bomb.npz");
    zip_of(&path, &[("x.npy", &b, true)]);
    drop(b);
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    let t = std::time::Instant::now();
    let e = npy::read_npz(&path, &Limits::default(), &["x"]).unwrap_err();
    assert!(
        matches!(
            e,
            NpyError::Size {
                size: SizeError::TrailingData { expected: 4, .. },
                ..
            }
        ),
        "{e}"
    );
    // Inflating 64 MiB would take far longer than stopping after a few bytes.
    assert!(t.elapsed().as_millis() < 2000, "{:?}", t.elapsed());
}

#[test]
fn truncated_entries_and_damaged_archives_are_refused() {
    let a = NpyArray {
        shape: vec![64],
        data: NpyData::F64((0..64).map(f64::from).collect()),
    };
    let full = npy::encode_npy(&a, &tmp("x")).unwrap();
    let path = tmp("cut.npz");
    zip_of(&path, &[("x.npy", &full[..full.len() - 8], true)]);
    let e = npy::read_npz(&path, &Limits::default(), &["x"]).unwrap_err();
    assert!(
        matches!(
            e,
            NpyError::Size {
                size: SizeError::Truncated {
                    expected: 512,
                    found: 504,
                    ..
                },
                ..
            }
        ),
        "{e}"
    );

    // Not a zip at all.
    let path = tmp("plain.npz");
    std::fs::write(&path, &full).unwrap();
    let e = npy::read_npz(&path, &Limits::default(), &["x"]).unwrap_err();
    assert!(matches!(e, NpyError::Zip { .. }), "{e}");
    assert!(e.to_string().starts_with(&path.display().to_string()), "{e}");

    // Damaged deflate data or checksum inside a valid directory.
    let path = tmp("damaged.npz");
    npy::write_npz(&path, &[("x", &a)], true).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // The local header is 30 bytes plus the name ("x.npy"); damage the compressed data.
    for b in &mut bytes[40..60] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let e = npy::read_npz(&path, &Limits::default(), &["x"]).unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with(&path.display().to_string()), "{s}");
    assert!(
        matches!(
            e,
            NpyError::Corrupt { .. } | NpyError::BadMagic { .. } | NpyError::BadHeader { .. }
        ),
        "{s}"
    );

    let e = npy::npz_keys(tmp("absent.npz")).unwrap_err();
    assert!(
        matches!(e, NpyError::Io { .. }) && e.to_string().contains("absent.npz"),
        "{e}"
    );
}

#[test]
fn a_stored_entry_with_a_bad_checksum_is_refused() {
    let a = NpyArray {
        shape: vec![8],
        data: NpyData::U8((0..8).collect()),
    };
    let path = tmp("crc.npz");
    npy::write_npz(&path, &[("x", &a)], false).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    // The last data byte of the only entry sits just before the central directory.
    let cd = bytes.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    assert!(cd < n);
    bytes[cd - 1] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let e = npy::read_npz(&path, &Limits::default(), &["x"]).unwrap_err();
    assert!(matches!(e, NpyError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("crc.npz/x.npy: corrupt archive entry"), "{e}");
}
