//! Reading a `.npy` file or an `.npz` entry never holds more than its declared data beyond a
//! small constant, whatever the header claims: an archive entry's buffer grows with the data
//! that really arrives, and a plain file's declared size is checked against its length before
//! anything is reserved. The peak of live heap bytes is counted by this test's allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use vae_data::npy;
use vae_data::{Limits, NpyError, SizeError};
use zip::write::{SimpleFileOptions, ZipWriter};

/// Tracks live heap bytes and their peak.
struct Peak;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grow(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::SeqCst) + n;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        grow(new_size);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

/// Tests of this file run one at a time, so that the peak is one reader's.
static SERIAL: Mutex<()> = Mutex::new(());

/// The peak of live heap bytes above the level at the start, while `f` runs.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst) - base
}

/// What a reader may use besides the data it keeps: the zip directory, the inflater's window
/// and tables, the chunk buffer and the first reservation.
const OVERHEAD: usize = 1 << 20;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vae-data-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn npy_bytes(descr: &str, shape: &[u64], body_len: usize, fill: u8) -> Vec<u8> {
    let dims: String = shape.iter().map(|d| format!("{d}, ")).collect();
    let h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}\n");
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.resize(b.len() + body_len, fill);
    b
}

fn zip_one(path: &Path, name: &str, bytes: &[u8], deflate: bool) {
    let mut z = ZipWriter::new(std::fs::File::create(path).unwrap());
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    z.start_file(name, SimpleFileOptions::default().compression_method(method))
        .unwrap();
    std::io::Write::write_all(&mut z, bytes).unwrap();
    z.finish().unwrap();
}

#[test]
fn an_entry_declaring_almost_the_limit_behind_a_small_body() {
    // 1.9 GB declared (within the default 2 GiB limit), 1000 bytes present.
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = npy_bytes("<f4", &[475_000_000], 1000, 0);
    for deflate in [false, true] {
        let path = tmp(&format!("liar-{deflate}.npz"));
        zip_one(&path, "x.npy", &b, deflate);
        let mut result = None;
        let peak = peak_during(|| result = Some(npy::read_npz(&path, &Limits::default(), &["x"])));
        let e = result.unwrap().unwrap_err();
        assert!(
            matches!(
                e,
                NpyError::Size {
                    size: SizeError::Truncated {
                        expected: 1_900_000_000,
                        found: 1000,
                        ..
                    },
                    ..
                }
            ),
            "{e}"
        );
        assert!(peak < OVERHEAD, "peak {peak} bytes");
    }
    // A plain file: refused from its length before any reservation.
    let mut result = None;
    let peak = peak_during(|| result = Some(npy::decode_npy(&b, Path::new("liar.npy"), &Limits::default())));
    assert!(matches!(
        result.unwrap(),
        Err(NpyError::Size {
            size: SizeError::Truncated { .. },
            ..
        })
    ));
    assert!(peak < OVERHEAD, "peak {peak} bytes");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn random_declared_sizes_behind_small_bodies(
        descr in prop::sample::select(vec!["|u1", "<f4", ">f8"]),
        shape in proptest::collection::vec(prop_oneof![1u64..40, 1u64..100_000_000], 1..4),
        body_len in 0usize..300_000,
        limit in prop_oneof![Just(Limits::DEFAULT_MAX_DATA_BYTES), 1u64..4_000_000],
        deflate in any::<bool>(),
    ) {
        let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let b = npy_bytes(descr, &shape, body_len, 1);
        let path = tmp("random.npz");
        zip_one(&path, "x.npy", &b, deflate);
        let limits = Limits { max_data_bytes: limit };
        let declared = shape.iter().try_fold(if descr == "|u1" { 1u64 } else if descr == "<f4" { 4 } else { 8 }, |a, &d| a.checked_mul(d)).unwrap_or(u64::MAX);
        let mut result = None;
        let peak = peak_during(|| result = Some(npy::read_npz(&path, &limits, &["x"])));
        // Kept: the typed data really present, at most doubled by the growth of its buffer.
        let bound = 2 * body_len.min(declared as usize) + OVERHEAD;
        prop_assert!(peak <= bound, "peak {peak} > bound {bound} (declared {declared}, limit {limit}, body {body_len})");
        let mut plain = None;
        let peak = peak_during(|| plain = Some(npy::decode_npy(&b, Path::new("random.npy"), &limits)));
        prop_assert!(peak <= bound, "plain: peak {peak} > bound {bound}");
        if let (Some(Ok(a)), Some(Ok(p))) = (result, plain) {
            prop_assert_eq!(a, vec![p]);
        }
    }
}
