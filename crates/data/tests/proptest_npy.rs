//! Random and mutated bytes never make the `.npy`, `.npz` or CSV readers panic or hang.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use vae_data::npy::{self, NpyArray, NpyData};
use vae_data::{Limits, table};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vae-data-prop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn valid_npy(fortran: bool) -> Vec<u8> {
    let a = NpyArray {
        shape: vec![3, 4, 5],
        data: NpyData::F32((0..60).map(|i| i as f32).collect()),
    };
    let mut b = npy::encode_npy(&a, Path::new("x")).unwrap();
    if fortran {
        let at = b.windows(5).position(|w| w == b"False").unwrap();
        b.splice(at..at + 5, *b"True ");
    }
    b
}

fn valid_npz(compressed: bool) -> Vec<u8> {
    let x = NpyArray {
        shape: vec![4, 3],
        data: NpyData::U8((0..12).collect()),
    };
    let y = NpyArray {
        shape: vec![4],
        data: NpyData::F64(vec![0.0, 1.0, 2.0, 3.0]),
    };
    let path = tmp(&format!("valid-{compressed}.npz"));
    npy::write_npz(&path, &[("x", &x), ("y", &y)], compressed).unwrap();
    std::fs::read(&path).unwrap()
}

/// Pieces of headers, valid and not, for the header generator.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("'descr'".to_string()),
        Just("'fortran_order'".to_string()),
        Just("'shape'".to_string()),
        Just("'<f4'".to_string()),
        Just("'|u1'".to_string()),
        Just("'>f8'".to_string()),
        Just("'|O'".to_string()),
        Just("True".to_string()),
        Just("False".to_string()),
        Just(": ".to_string()),
        Just(", ".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("\\".to_string()),
        Just("'".to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (0u32..100).prop_map(|n| n.to_string()),
        Just("-1".to_string()),
        Just("3L".to_string()),
        "[ -~]{0,4}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_after_the_magic_never_panic(version in prop_oneof![Just(1u8), Just(2), Just(3), any::<u8>()], tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = b"\x93NUMPY".to_vec();
        b.extend_from_slice(&[version, 0]);
        b.extend_from_slice(&tail);
        let _ = npy::decode_npy(&b, Path::new("random.npy"), &Limits::default());
    }

    #[test]
    fn random_headers_never_panic(pieces in proptest::collection::vec(piece(), 0..30), body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let h = pieces.concat() + "\n";
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&body);
        let _ = npy::decode_npy(&b, Path::new("header.npy"), &Limits::default());
    }

    #[test]
    fn random_shapes_never_panic(descr in prop::sample::select(vec!["|u1", "<f4", ">f4", "<f8", ">f8"]), fortran in any::<bool>(), dims in proptest::collection::vec(prop_oneof![0u64..6, any::<u64>()], 0..5), body in 0usize..600) {
        let shape: Vec<String> = dims.iter().map(|d| format!("{d}, ")).collect();
        let f = if fortran { "True" } else { "False" };
        let h = format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': ({}), }}\n", shape.concat());
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.resize(b.len() + body, 7);
        if let Ok(a) = npy::decode_npy(&b, Path::new("shape.npy"), &Limits::default()) {
            prop_assert_eq!(a.shape.iter().product::<usize>(), a.data.len());
        }
    }

    #[test]
    fn mutated_npy_files_never_panic(fortran in any::<bool>(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut b = valid_npy(fortran);
        for (i, v) in edits { let i = i.index(b.len()); b[i] = v; }
        let _ = npy::decode_npy(&b, Path::new("mutated.npy"), &Limits::default());
        let n = cut.index(b.len());
        let _ = npy::decode_npy(&b[..n], Path::new("cut.npy"), &Limits::default());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mutated_npz_files_never_panic(compressed in any::<bool>(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut b = valid_npz(compressed);
        for (i, v) in edits { let i = i.index(b.len()); b[i] = v; }
        let path = tmp(&format!("mutated-{compressed}.npz"));
        std::fs::write(&path, &b).unwrap();
        let _ = npy::npz_keys(&path);
        let _ = npy::read_npz(&path, &Limits::default(), &["x", "y"]);
        let n = cut.index(b.len());
        std::fs::write(&path, &b[..n]).unwrap();
        let _ = npy::read_npz(&path, &Limits::default(), &["y"]);
    }

    #[test]
    fn random_csv_never_panics(text in "[a-c0-9.,\"\n\r eE+-]{0,200}", label in prop::option::of(prop::sample::select(vec!["a", "b", "zz"]))) {
        let path = tmp("random.csv");
        std::fs::write(&path, &text).unwrap();
        if let Ok(t) = table::read_csv(&path, &Limits::default(), label) {
            prop_assert_eq!(t.values.len(), t.rows * t.columns.len());
            prop_assert!(t.values.iter().all(|v| v.is_finite()));
            if let Some(l) = &t.labels {
                prop_assert_eq!(l.len(), t.rows);
            }
        }
    }

    #[test]
    fn random_csv_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let path = tmp("bytes.csv");
        std::fs::write(&path, &bytes).unwrap();
        let _ = table::read_csv(&path, &Limits::default(), Some("a"));
    }
}
