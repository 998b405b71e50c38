//! Broadcasting elementwise loops for the reductions' backward (small, generic); the hot
//! elementwise kernels are `vae_linalg::elementwise`. Every element is computed
//! independently, so the result never depends on the thread count.

use ndarray::{Array2, ArrayView2, Zip};

use crate::Float;

/// Below this many elements a loop runs on the calling thread.
const PAR_MIN_LEN: usize = 1 << 15;

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
