//! A slow, obviously correct matrix multiply: the yardstick for tests and benchmarks.

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::Float;

/// `C = alpha * A * B + beta * C` by the textbook triple loop, accumulating in `f64`.
///
/// When `beta` is zero, `C`'s old contents are ignored (NaN included), as in BLAS.
///
/// # Panics
/// If the shapes do not agree.
pub fn naive_gemm<T: Float>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, mut c: ArrayViewMut2<T>) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert!(
        k == k2 && c.dim() == (m, n),
        "naive_gemm: shapes {:?} x {:?} -> {:?} do not agree",
        a.dim(),
        b.dim(),
        c.dim()
    );
    let to64 = |x: T| x.to_f64().unwrap_or(f64::NAN);
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += to64(a[[i, p]]) * to64(b[[p, j]]);
            }
            let old = if beta == T::zero() {
                0.0
            } else {
                to64(beta) * to64(c[[i, j]])
            };
            c[[i, j]] = T::c(to64(alpha) * s + old);
        }
    }
}
