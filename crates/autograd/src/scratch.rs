//! A per-thread buffer for the partial sums of the ops that reduce in fixed pieces.

use std::cell::RefCell;

use crate::Float;

thread_local! {
    /// The calling thread's per-piece partial sums, grown as needed and kept.
    static PARTIALS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` elements of the calling thread's partial-sum buffer (grown to fit,
/// never shrunk: no allocation once warm). The contents are whatever the last user left.
pub(crate) fn with_partials<T: Float, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    // f32 and f64 (the only `Float`s) fit u64's alignment and accept any bit pattern.
    const { assert!(std::mem::align_of::<T>() <= 8 && std::mem::size_of::<T>() <= 8) };
    let words = (len * std::mem::size_of::<T>()).div_ceil(8);
    PARTIALS.with(|c| {
        let mut held = c.try_borrow_mut();
        let mut own = Vec::new();
        let buf: &mut Vec<u64> = match held.as_deref_mut() {
            Ok(b) => b,
            Err(_) => &mut own,
        };
        if buf.len() < words {
            buf.resize(words, 0);
        }
        // SAFETY: `buf` holds at least `len` T's worth of initialised, aligned bytes.
        f(unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<T>(), len) })
    })
}
