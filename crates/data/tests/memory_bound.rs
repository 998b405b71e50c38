//! Reading an IDX file never holds more than its declared data (+1 byte) beyond a small
//! constant, whatever the header claims and whatever follows it: random headers with random
//! declared sizes behind small gzip bodies give a typed error or success, never a panic,
//! and the peak of live heap bytes (counted by this test's allocator) stays below a bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::Compression;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use vae_data::idx::{self, Limits};

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

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// What the reader may use besides the data it keeps: the gzip decoder's window and tables
/// and small buffers.
const OVERHEAD: usize = 1 << 20;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_declared_sizes_behind_small_bodies(
        code in prop::sample::select(vec![0x08u8, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]),
        dims in proptest::collection::vec(prop_oneof![1u32..40, any::<u32>()], 1..4),
        body_len in 0usize..50_000,
        fill in any::<u8>(),
        limit in prop_oneof![Just(Limits::DEFAULT_MAX_DATA_BYTES), 1u64..4_000_000],
    ) {
        let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let mut plain = vec![0, 0, code, dims.len() as u8];
        for d in &dims {
            plain.extend_from_slice(&d.to_be_bytes());
        }
        plain.extend(std::iter::repeat_n(fill, body_len));
        let declared: u64 = dims.iter().map(|&d| d as u64).product::<u64>()
            * [1u64, 1, 2, 4, 4, 8][[0x08u8, 0x09, 0x0B, 0x0C, 0x0D, 0x0E].iter().position(|&c| c == code).unwrap()];
        let limits = Limits { max_data_bytes: limit };
        for bytes in [gz(&plain), plain.clone()] {
            let mut result = None;
            let peak = peak_during(|| {
                result = Some(idx::decode_with(&bytes, Path::new("random.gz"), &limits));
            });
            // Kept: at most the declared size if within the limit (the reserved buffer),
            // plus the typed copy of what was really there.
            let kept = if declared <= limit { declared as usize } else { 0 };
            let bound = kept + 2 * body_len + OVERHEAD;
            prop_assert!(peak <= bound, "peak {peak} bytes > bound {bound} (declared {declared}, limit {limit}, body {body_len})");
            if let Some(Ok(idx)) = result {
                prop_assert_eq!(idx.data.len() as u64 * [1u64, 1, 2, 4, 4, 8][[0x08u8, 0x09, 0x0B, 0x0C, 0x0D, 0x0E].iter().position(|&c| c == code).unwrap()], declared);
            }
        }
    }
}

#[test]
fn four_billion_images_behind_a_body_of_zeros() {
    // The hostile file of the bug report, scaled down: 4,294,967,295 images of 28x28
    // declared, then 64 MiB of zeros (a 64 KiB gzip file). Refused from the header, before
    // inflating: the peak stays far below the body's size.
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    let mut head = vec![0, 0, 0x08, 3];
    for d in [u32::MAX, 28, 28] {
        head.extend_from_slice(&d.to_be_bytes());
    }
    enc.write_all(&head).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        enc.write_all(&zeros).unwrap();
    }
    let file = enc.finish().unwrap();
    drop(zeros);
    let mut result = None;
    let peak = peak_during(|| result = Some(idx::decode(&file, Path::new("bomb.gz"))));
    let e = result.unwrap().unwrap_err();
    assert!(
        e.to_string().contains("bomb.gz") && e.to_string().contains("limit"),
        "{e}"
    );
    assert!(peak < OVERHEAD, "peak {peak} bytes");
}
