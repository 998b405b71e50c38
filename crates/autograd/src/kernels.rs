//! Elementwise loops that run in parallel chunks above a size threshold, sequentially below.
//! Every element is computed independently, so the result never depends on the thread count.

use ndarray::{Array2, ArrayView2, Zip};

use crate::Float;

/// Below this many elements a loop runs on the calling thread.
const PAR_MIN_LEN: usize = 1 << 15;

/// `out[i] = f(x[i])`.
pub(crate) fn map1<T: Float>(out: &mut Array2<T>, x: ArrayView2<T>, f: impl Fn(T) -> T + Sync + Send) {
    let z = Zip::from(out).and(&x);
    if x.len() >= PAR_MIN_LEN {
        z.par_for_each(|o, &a| *o = f(a));
    } else {
        z.for_each(|o, &a| *o = f(a));
    }
}

/// `out[i] = f(x[i], y[i])`.
pub(crate) fn map2<T: Float>(
    out: &mut Array2<T>,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
    f: impl Fn(T, T) -> T + Sync + Send,
) {
    let z = Zip::from(out).and(&x).and(&y);
    if x.len() >= PAR_MIN_LEN {
        z.par_for_each(|o, &a, &b| *o = f(a, b));
    } else {
        z.for_each(|o, &a, &b| *o = f(a, b));
    }
}

/// `g[i] = f(x[i])` when `first`, `g[i] += f(x[i])` otherwise (gradient accumulation).
pub(crate) fn acc1<T: Float>(g: &mut Array2<T>, first: bool, x: ArrayView2<T>, f: impl Fn(T) -> T + Sync + Send) {
    let z = Zip::from(g).and(&x);
    let body = |o: &mut T, &a: &T| put(o, f(a), first);
    if x.len() >= PAR_MIN_LEN {
        z.par_for_each(body);
    } else {
        z.for_each(body);
    }
}

/// `g[i] (+)= f(x[i], y[i])`.
pub(crate) fn acc2<T: Float>(
    g: &mut Array2<T>,
    first: bool,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
    f: impl Fn(T, T) -> T + Sync + Send,
) {
    let z = Zip::from(g).and(&x).and(&y);
    let body = |o: &mut T, &a: &T, &b: &T| put(o, f(a, b), first);
    if x.len() >= PAR_MIN_LEN {
        z.par_for_each(body);
    } else {
        z.for_each(body);
    }
}

/// `g[i] (+)= f(x[i], y[i], w[i])`.
pub(crate) fn acc3<T: Float>(
    g: &mut Array2<T>,
    first: bool,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
    w: ArrayView2<T>,
    f: impl Fn(T, T, T) -> T + Sync + Send,
) {
    let z = Zip::from(g).and(&x).and(&y).and(&w);
    let body = |o: &mut T, &a: &T, &b: &T, &c: &T| put(o, f(a, b, c), first);
    if x.len() >= PAR_MIN_LEN {
        z.par_for_each(body);
    } else {
        z.for_each(body);
    }
}

/// Writes or accumulates one gradient element.
#[inline(always)]
pub(crate) fn put<T: Float>(dst: &mut T, v: T, first: bool) {
    *dst = if first { v } else { *dst + v };
}

/// `sum_j f(a[j], b[j])`, accumulated in 16 interleaved lanes (so the loop vectorises) and
/// then combined in a fixed order: deterministic, and independent of the thread count.
#[inline(always)]
pub(crate) fn lane_sum2<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    const L: usize = 16;
    let mut acc = [T::zero(); L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for j in 0..L {
            acc[j] = acc[j] + f(xa[j], xb[j]);
        }
    }
    for (j, (&x, &y)) in ra.iter().zip(rb).enumerate() {
        acc[j] = acc[j] + f(x, y);
    }
    acc.iter().fold(T::zero(), |s, &v| s + v)
}

/// `out[i] = f(i)` for every element of a contiguous `out`, in parallel chunks when the work
/// (`work` elements in all) is large enough.
pub(crate) fn fill_indexed<T: Float>(out: &mut Array2<T>, work: usize, f: impl Fn(usize) -> T + Sync + Send) {
    use rayon::prelude::*;
    let out = out.as_slice_mut().expect("a freshly recorded value is contiguous");
    if work >= PAR_MIN_LEN {
        out.par_iter_mut().enumerate().for_each(|(i, o)| *o = f(i));
    } else {
        out.iter_mut().enumerate().for_each(|(i, o)| *o = f(i));
    }
}

/// Calls `f(i, out_row, a_row, b_row)` for every row `i` of three same-shaped,
/// standard-layout matrices, in parallel chunks of rows when they are large. Row slices let
/// the body vectorise where a broadcasting `Zip` would not.
pub(crate) fn rows_acc2<T: Float>(
    out: &mut Array2<T>,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    f: impl Fn(usize, &mut [T], &[T], &[T]) + Sync + Send,
) {
    use rayon::prelude::*;
    let n = a.ncols().max(1);
    let (a, b) = (
        a.to_slice().expect("standard layout"),
        b.to_slice().expect("standard layout"),
    );
    let out = out.as_slice_mut().expect("standard layout");
    let body = |(i, o): (usize, &mut [T])| f(i, o, &a[i * n..(i + 1) * n], &b[i * n..(i + 1) * n]);
    if out.len() >= PAR_MIN_LEN {
        out.par_chunks_mut(n).enumerate().for_each(body);
    } else {
        out.chunks_mut(n).enumerate().for_each(body);
    }
}
