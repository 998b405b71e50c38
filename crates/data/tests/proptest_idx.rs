//! Random and mutated bytes never make the reader panic, hang or over-allocate.

use std::path::Path;

use proptest::prelude::*;
use vae_data::idx::{self, Idx, IdxData};

fn valid_file(gzip: bool) -> Vec<u8> {
    let a = Idx {
        dims: vec![3, 4, 5],
        data: IdxData::I16((0..60).collect()),
    };
    idx::encode(&a, gzip, Path::new("x")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = idx::decode(&bytes, Path::new("random"));
    }

    #[test]
    fn random_headers_never_panic(code in any::<u8>(), dims in proptest::collection::vec(any::<u32>(), 0..6), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut b = vec![0, 0, code, dims.len() as u8];
        for d in &dims { b.extend_from_slice(&d.to_be_bytes()); }
        b.extend_from_slice(&tail);
        let _ = idx::decode(&b, Path::new("header"));
    }

    #[test]
    fn mutated_files_never_panic(gzip in any::<bool>(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut b = valid_file(gzip);
        for (i, v) in edits { let i = i.index(b.len()); b[i] = v; }
        let _ = idx::decode(&b, Path::new("mutated"));
        let n = cut.index(b.len());
        let _ = idx::decode(&b[..n], Path::new("cut"));
    }
}
