//! The direct kernel for products with a narrow output (`n <= 32`, a VAE's latent layers:
//! 128 x 400 times 400 x 20). matrixmultiply packs both operands into panels and pads `n` to
//! its micro-kernel, which at these shapes costs as much as the product; this kernel packs
//! only `B` (k x n, zero-padded to a whole number of 8-lane vectors), streams `A` straight
//! from memory, and keeps an `MR x NP` block of `C` in registers, written with explicit SIMD
//! (`simd::Vector::mul_add`) at the level in force: 8-lane vectors at every level (n = 20
//! pads to 24, not to AVX-512's 32), with AVX-512's 32 registers allowing taller blocks.
//! (Products with a short inner dimension, 128 x 20 times 20 x 400, stay with matrixmultiply,
//! which measured faster there.)

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use num_traits::Zero;

use crate::Float;
use crate::simd::{self, Kernel, Level, Vector};
use crate::team::for_blocks;

/// The widest output the skinny kernel takes.
pub(crate) const SKINNY_MAX: usize = 32;

/// The width of one packed column block of `B` for an `n`-column product: a whole number of
/// vectors of the level in force, at most [`SKINNY_MAX`].
fn block_width(n: usize) -> usize {
    if n <= SKINNY_MAX { n.div_ceil(8).max(1) * 8 } else { 24 }
}

/// `C = alpha * A * B + beta * C` for `n <= 32` (wider `B` is cut into column blocks), with
/// the rows of `C` split into
/// `parts` blocks run in parallel. `B` is packed once, on the calling thread, and shared.
pub(crate) fn skinny_gemm<T: Float>(
    parts: usize,
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    c: ArrayViewMut2<T>,
) {
    let (k, n) = b.dim();
    let level = simd::level();
    let w = block_width(n);
    let blocks = n.div_ceil(w);
    T::with_scratch(blocks * k * w, |panel| {
        // Block `jb` holds columns jb*w .. jb*w + w of B as k rows of w values.
        for (jb, dst) in panel.chunks_exact_mut(k * w).enumerate() {
            let cols = jb * w..(jb * w + w).min(n);
            for (p, row) in dst.chunks_exact_mut(w).enumerate() {
                let (head, tail) = row.split_at_mut(cols.len());
                for (d, j) in head.iter_mut().zip(cols.clone()) {
                    *d = b[[p, j]];
                }
                tail.fill(T::zero());
            }
        }
        split(level, parts, alpha, a, panel, w, beta, c);
    });
}

/// Cuts the rows of `A` and `C` into `parts` blocks (multiples of 16 rows) run in parallel.
#[allow(clippy::too_many_arguments)]
fn split<T: Float>(
    level: Level,
    parts: usize,
    alpha: T,
    a: ArrayView2<T>,
    panel: &[T],
    w: usize,
    beta: T,
    c: ArrayViewMut2<T>,
) {
    let parts = if a.nrows() < 32 { 1 } else { parts };
    // 8-lane vectors at every level; with AVX-512's 32 registers, taller blocks.
    let wide = level == Level::Avx512;
    for_blocks(c, Axis(0), parts, 16, |rows, c| {
        let a = a.slice(ndarray::s![rows, ..]);
        T::dispatch_narrow_at(
            level,
            Block {
                alpha,
                a,
                panel,
                w,
                beta,
                c,
                wide,
            },
        )
    });
}

/// One row block of the product on the calling thread, at the level in force.
struct Block<'a, T> {
    alpha: T,
    a: ArrayView2<'a, T>,
    panel: &'a [T],
    w: usize,
    beta: T,
    c: ArrayViewMut2<'a, T>,
    /// 32 vector registers (AVX-512) rather than 16.
    wide: bool,
}

impl<T: Float> Kernel<T> for Block<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        // Register blocking per vector width: about 12 accumulators with 16 registers,
        // 24 with AVX-512's 32.
        // Blocks of at most 32 columns in whole vectors of at most 8 lanes (`dispatch_narrow_at`
        // never runs wider vectors): anything else would overrun the panel and the buffers.
        assert!(
            V::LANES <= 8 && self.w.is_multiple_of(V::LANES) && self.w <= SKINNY_MAX,
            "skinny GEMM: {}-column blocks on {}-lane vectors",
            self.w,
            V::LANES
        );
        match (V::LANES, self.w / V::LANES) {
            (8, 1) if self.wide => sweep::<V, 1, 16>(self),
            (8, 2) if self.wide => sweep::<V, 2, 10>(self),
            (8, 3) if self.wide => sweep::<V, 3, 8>(self),
            (8, 4) if self.wide => sweep::<V, 4, 5>(self),
            (8, 1) => sweep::<V, 1, 8>(self),
            (8, 2) => sweep::<V, 2, 6>(self),
            (8, 3) => sweep::<V, 3, 3>(self),
            (8, _) => sweep::<V, 4, 3>(self),
            (_, 8) => sweep::<V, 8, 4>(self),
            (_, 16) => sweep::<V, 16, 4>(self),
            (_, 24) => sweep::<V, 24, 4>(self),
            (_, _) => sweep::<V, 32, 4>(self),
        }
    }
}

/// Sweeps `A` in blocks of `MR` rows against every column block of the panel.
#[inline(always)]
fn sweep<V: Vector, const NV: usize, const MR: usize>(blk: Block<'_, V::E>) {
    let Block {
        alpha,
        a,
        panel,
        w,
        beta,
        mut c,
        ..
    } = blk;
    let (m, k) = a.dim();
    let n = c.ncols();
    assert_eq!(w, NV * V::LANES, "skinny GEMM: block width");
    let zero = V::E::zero();
    for (jb, block) in panel.chunks_exact(k * w).enumerate() {
        let j0 = jb * w;
        let cols = w.min(n - j0);
        let mut i0 = 0;
        while i0 < m {
            let rows = MR.min(m - i0);
            let mut acc = [[V::splat(zero); NV]; MR];
            if rows == MR {
                micro::<V, NV, MR>(&a, i0, block, &mut acc);
            } else {
                for (r, acc_row) in acc.iter_mut().enumerate().take(rows) {
                    let mut one = [[V::splat(zero); NV]; 1];
                    micro::<V, NV, 1>(&a, i0 + r, block, &mut one);
                    *acc_row = one[0];
                }
            }
            let mut out = [zero; 32];
            let [rsc, csc] = [c.strides()[0], c.strides()[1]];
            let cp = c.as_mut_ptr();
            let (va, vb) = (V::splat(alpha), V::splat(beta));
            for (r, acc_row) in acc.iter().enumerate().take(rows) {
                // SAFETY: row i0 + r < m and columns j0 .. j0 + cols < n lie inside `c`.
                let row = unsafe { cp.offset((i0 + r) as isize * rsc + j0 as isize * csc) };
                if csc == 1 && cols == w {
                    // A whole block of a row-contiguous C: vector stores.
                    for (q, v) in acc_row.iter().enumerate() {
                        // SAFETY: q * LANES + LANES <= w = cols, inside the row.
                        unsafe {
                            let p = row.add(q * V::LANES);
                            let out = if beta == zero {
                                va.mul(*v)
                            } else {
                                va.mul(*v).add(vb.mul(V::load(p)))
                            };
                            out.store(p);
                        }
                    }
                    continue;
                }
                for (q, v) in acc_row.iter().enumerate() {
                    // SAFETY: q * LANES + LANES <= w <= 32.
                    unsafe { v.store(out.as_mut_ptr().add(q * V::LANES)) };
                }
                for (j, &v) in out.iter().enumerate().take(cols) {
                    // SAFETY: as above.
                    unsafe {
                        let cj = row.offset(j as isize * csc);
                        *cj = if beta == zero {
                            alpha * v
                        } else {
                            alpha * v + beta * *cj
                        };
                    }
                }
            }
            i0 += rows;
        }
    }
}

/// `acc[r][:] += sum_p A[i0 + r, p] * block[p, :]` for `r < MR`.
#[inline(always)]
fn micro<V: Vector, const NV: usize, const MR: usize>(
    a: &ArrayView2<V::E>,
    i0: usize,
    block: &[V::E],
    acc: &mut [[V; NV]; MR],
) {
    let k = a.ncols();
    let w = NV * V::LANES;
    let [rsa, csa] = [a.strides()[0], a.strides()[1]];
    let base = a.as_ptr();
    for p in 0..k {
        let mut b = [V::splat(V::E::zero()); NV];
        for (q, bq) in b.iter_mut().enumerate() {
            // SAFETY: p < k, so row p of the block holds w = NV * LANES values.
            *bq = unsafe { V::load(block.as_ptr().add(p * w + q * V::LANES)) };
        }
        for (r, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: i0 + r < m and p < k, inside the view `a`.
            let av = V::splat(unsafe { *base.offset((i0 + r) as isize * rsa + p as isize * csa) });
            for q in 0..NV {
                acc_row[q] = av.mul_add(b[q], acc_row[q]);
            }
        }
    }
}
