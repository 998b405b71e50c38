//! The direct kernel for products with a narrow output (`n <= 32`), such as a VAE's latent
//! layers (128 x 400 times 400 x 20). matrixmultiply packs the tall operand into panels and
//! pads `n` up to its micro-kernel width, which at these shapes costs as much as the product;
//! this kernel packs only the small `B` (k x n, zero-padded to a multiple of 8 columns) and
//! streams `A` straight from memory, keeping a `MR x NP` block of `C` in registers.

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

use crate::Float;

/// The widest output the skinny kernel takes.
pub(crate) const SKINNY_MAX_N: usize = 32;

/// `C = alpha * A * B + beta * C` for `n <= SKINNY_MAX_N`, with the rows of `C` split into
/// `parts` blocks run in parallel. `B` is packed once, on the calling thread, and shared.
pub(crate) fn skinny_gemm<T: Float>(
    parts: usize,
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    c: ArrayViewMut2<T>,
) {
    let n = b.ncols();
    debug_assert!(n <= SKINNY_MAX_N);
    match n.div_ceil(8) {
        0 | 1 => packed::<T, 8, 8>(parts, alpha, a, b, beta, c),
        2 => packed::<T, 16, 6>(parts, alpha, a, b, beta, c),
        3 => packed::<T, 24, 4>(parts, alpha, a, b, beta, c),
        _ => packed::<T, 32, 4>(parts, alpha, a, b, beta, c),
    }
}

/// Packs `B` into a `k x NP` row-major panel (zero-padded), then runs the row blocks.
fn packed<T: Float, const NP: usize, const MR: usize>(
    parts: usize,
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    c: ArrayViewMut2<T>,
) {
    let k = a.ncols();
    T::with_scratch(k * NP, |panel| {
        for (row, dst) in b.rows().into_iter().zip(panel.chunks_exact_mut(NP)) {
            let (head, tail) = dst.split_at_mut(row.len());
            head.iter_mut().zip(row.iter()).for_each(|(d, &s)| *d = s);
            tail.fill(T::zero());
        }
        split::<T, NP, MR>(parts, alpha, a, panel, beta, c);
    });
}

/// Splits the rows of `A` and `C` into `parts` blocks (multiples of `MR` rows) for rayon.
fn split<T: Float, const NP: usize, const MR: usize>(
    parts: usize,
    alpha: T,
    a: ArrayView2<T>,
    panel: &[T],
    beta: T,
    c: ArrayViewMut2<T>,
) {
    let m = a.nrows();
    if parts <= 1 || m < 2 * MR {
        return run::<T, NP, MR>(alpha, a, panel, beta, c);
    }
    let left = parts / 2;
    let mid = ((m * left / parts).div_ceil(MR) * MR).clamp(1, m - 1);
    let (a1, a2) = a.split_at(Axis(0), mid);
    let (c1, c2) = c.split_at(Axis(0), mid);
    rayon::join(
        || split::<T, NP, MR>(left, alpha, a1, panel, beta, c1),
        || split::<T, NP, MR>(parts - left, alpha, a2, panel, beta, c2),
    );
}

/// Sweeps `A` in blocks of `MR` rows against the packed panel, single-threaded.
fn run<T: Float, const NP: usize, const MR: usize>(
    alpha: T,
    a: ArrayView2<T>,
    panel: &[T],
    beta: T,
    mut c: ArrayViewMut2<T>,
) {
    let m = a.nrows();
    let mut i0 = 0;
    while i0 < m {
        let rows = MR.min(m - i0);
        let mut acc = [[T::zero(); NP]; MR];
        if rows == MR {
            micro::<T, NP, MR>(&a, i0, panel, &mut acc);
        } else {
            for r in 0..rows {
                micro::<T, NP, 1>(&a, i0 + r, panel, (&mut acc[r..r + 1]).try_into().unwrap());
            }
        }
        for (r, acc_row) in acc.iter().enumerate().take(rows) {
            let mut c_row = c.row_mut(i0 + r);
            for (j, cj) in c_row.iter_mut().enumerate() {
                *cj = if beta == T::zero() {
                    alpha * acc_row[j]
                } else {
                    alpha * acc_row[j] + beta * *cj
                };
            }
        }
        i0 += rows;
    }
}

/// `acc[r][:] += sum_p A[i0 + r, p] * panel[p, :]` for `r < MR`.
#[inline(always)]
fn micro<T: Float, const NP: usize, const MR: usize>(
    a: &ArrayView2<T>,
    i0: usize,
    panel: &[T],
    acc: &mut [[T; NP]; MR],
) {
    let k = a.ncols();
    let [rsa, csa] = [a.strides()[0], a.strides()[1]];
    let base = a.as_ptr();
    for (p, brow) in panel.chunks_exact(NP).enumerate().take(k) {
        for (r, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: i0 + r < m and p < k, inside the view `a`.
            let av = unsafe { *base.offset((i0 + r) as isize * rsa + p as isize * csa) };
            for j in 0..NP {
                acc_row[j] = av.fmadd(brow[j], acc_row[j]);
            }
        }
    }
}
