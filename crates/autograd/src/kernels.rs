//! Broadcasting elementwise loops for the reductions' backward (small, generic), and `put`,
//! a gradient element's write or accumulation; the hot elementwise kernels are
//! `vae_linalg::elementwise` and the loss kernels `crate::loss_kernels`. Every element is
//! computed independently, so the result never depends on the thread count.

use ndarray::{Array2, ArrayView2, Axis, Zip, s};
use vae_linalg::elementwise::par_min_len;
use vae_linalg::simd::Accum;
use vae_linalg::team::for_blocks;

use crate::Float;

/// Row blocks for a loop over `len` elements: one per thread when it is long enough to
/// split (the hot kernels' threshold), else one.
fn parts(len: usize) -> usize {
    if len >= par_min_len() {
        rayon::current_num_threads()
    } else {
        1
    }
}

/// `g[i] = f(x[i])` or `g[i] += f(x[i])`, as `acc` says (gradient accumulation).
pub(crate) fn acc1<T: Float>(g: &mut Array2<T>, acc: Accum, x: ArrayView2<T>, f: impl Fn(T) -> T + Sync + Send) {
    let body = |o: &mut T, &a: &T| put(o, f(a), acc);
    for_blocks(g.view_mut(), Axis(0), parts(x.len()), 1, |rows, mut g| {
        Zip::from(&mut g).and(&x.slice(s![rows, ..])).for_each(body)
    });
}

/// `g[i] (+)= f(x[i], y[i], w[i])`.
pub(crate) fn acc3<T: Float>(
    g: &mut Array2<T>,
    acc: Accum,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
    w: ArrayView2<T>,
    f: impl Fn(T, T, T) -> T + Sync + Send,
) {
    let body = |o: &mut T, &a: &T, &b: &T, &c: &T| put(o, f(a, b, c), acc);
    for_blocks(g.view_mut(), Axis(0), parts(x.len()), 1, |rows, mut g| {
        Zip::from(&mut g)
            .and(&x.slice(s![rows.clone(), ..]))
            .and(&y.slice(s![rows.clone(), ..]))
            .and(&w.slice(s![rows, ..]))
            .for_each(body)
    });
}

/// Writes or accumulates one gradient element.
#[inline(always)]
pub(crate) fn put<T: Float>(dst: &mut T, v: T, acc: Accum) {
    *dst = match acc {
        Accum::Overwrite => v,
        Accum::Add => *dst + v,
    };
}
