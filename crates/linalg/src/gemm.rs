//! `gemm`: shape checks, the parallel block split, and the choice of kernel per block.

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

use std::sync::atomic::{AtomicU8, Ordering};

use crate::Float;
use crate::packed::{Epilogue, packed_gemm};
use crate::simd;
use crate::skinny::{SKINNY_MAX, skinny_gemm};
use crate::team::for_blocks;

/// Which code computes the products wider than the skinny kernel's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The engine's own packed micro-kernels at the SIMD level in force (the default).
    Own,
    /// `matrixmultiply`, the reference (its AVX2 + FMA kernel on x86-64 whatever the level).
    MatrixMultiply,
}

impl Backend {
    /// The name `VAE_GEMM` takes.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Own => "own",
            Backend::MatrixMultiply => "matrixmultiply",
        }
    }
}

/// 0: not chosen yet; else `1 + Backend as u8`.
static BACKEND: AtomicU8 = AtomicU8::new(0);

/// The backend in force: set by [`force_backend`], else `VAE_GEMM=matrixmultiply` picks the
/// reference, else the engine's own kernels.
pub fn backend() -> Backend {
    match BACKEND.load(Ordering::Relaxed) {
        1 => Backend::Own,
        2 => Backend::MatrixMultiply,
        _ => {
            let mm = Backend::MatrixMultiply;
            let b = match std::env::var("VAE_GEMM") {
                Ok(v) if v.trim() == mm.name() => mm,
                _ => Backend::Own,
            };
            force_backend(b);
            b
        }
    }
}

/// Makes every later product use `backend`, process-wide (for benchmarks and tests).
pub fn force_backend(backend: Backend) {
    BACKEND.store(1 + backend as u8, Ordering::Relaxed);
}

/// How a product may use threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallelism {
    /// One thread: the calling one.
    Sequential,
    /// Every thread of the current rayon pool (`rayon::current_num_threads()`).
    Rayon,
}

/// Blocks of `C` are multiples of this many rows (or columns): a multiple of every
/// micro-kernel width of matrixmultiply and of the skinny kernel.
const ALIGN: usize = 16;
/// Below this many flops per thread a split costs more in synchronisation than it gains.
const MIN_FLOPS_PER_PART: usize = 1 << 19;

/// `C = alpha * A * B + beta * C` on every thread of the current rayon pool.
///
/// `A` is m x k, `B` is k x n and `C` is m x n; any of them may be a transposed or otherwise
/// strided view. When `beta` is zero the old contents of `C` are ignored (NaN included).
///
/// # Panics
/// If the shapes do not agree.
pub fn gemm<T: Float>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, c: ArrayViewMut2<T>) {
    gemm_with(Parallelism::Rayon, alpha, a, b, beta, c)
}

/// [`gemm`] with an explicit [`Parallelism`].
///
/// # Panics
/// If the shapes do not agree.
pub fn gemm_with<T: Float>(
    par: Parallelism,
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    c: ArrayViewMut2<T>,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert!(
        k == k2 && c.dim() == (m, n),
        "gemm: shapes {:?} x {:?} -> {:?} do not agree",
        a.dim(),
        b.dim(),
        c.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == T::zero() {
        scale(beta, c);
        return;
    }
    // A product with a short output row and a long output column is computed as its
    // transpose, C^T = B^T A^T, so that the narrow dimension is the skinny kernel's `n`.
    if m <= SKINNY_MAX && n > SKINNY_MAX {
        return gemm_with(par, alpha, b.t(), a.t(), beta, c.reversed_axes());
    }
    let threads = match par {
        Parallelism::Sequential => 1,
        Parallelism::Rayon => rayon::current_num_threads(),
    };
    let parts = plan_parts(m, k, n, threads);
    if n <= SKINNY_MAX {
        return skinny_gemm(parts, alpha, a, b, beta, c);
    }
    if backend() == Backend::Own {
        // The tiles store whole vectors along the rows of C: a column-major C is computed
        // as its transpose.
        let [rsc, csc] = [c.strides()[0], c.strides()[1]];
        if csc != 1 && (rsc == 1 || rsc.abs() < csc.abs()) && m > SKINNY_MAX {
            return packed_gemm(
                simd::level(),
                parts,
                alpha,
                b.t(),
                a.t(),
                beta,
                c.reversed_axes(),
                Epilogue::none(),
            );
        }
        return packed_gemm(simd::level(), parts, alpha, a, b, beta, c, Epilogue::none());
    }
    if m >= n {
        split_rows(parts, alpha, a, b, beta, c);
    } else {
        split_rows(parts, alpha, b.t(), a.t(), beta, c.reversed_axes());
    }
}

/// `C = act(A * B + bias)` on every thread of the current rayon pool, with the 1 x n `bias`
/// broadcast over the rows: a dense layer's forward pass in one sweep over `C`. Where the
/// engine's own kernels compute the product (`n` above 32, a row-major `C`) every element's
/// multiply-add chain starts from its bias and the activation is applied in registers as the
/// tile is stored; elsewhere the product, the bias and the activation are three passes (the
/// same functions, the bias added last). Which of the two depends on the shapes and the
/// backend only, never on the thread count.
///
/// # Panics
/// If the shapes do not agree.
pub fn gemm_bias_act<T: Float>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    bias: &[T],
    act: Option<simd::Unary<T>>,
    mut c: ArrayViewMut2<T>,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert!(
        k == k2 && c.dim() == (m, n) && bias.len() == n,
        "gemm_bias_act: shapes {:?} x {:?} + bias {} -> {:?} do not agree",
        a.dim(),
        b.dim(),
        bias.len(),
        c.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    let fused = backend() == Backend::Own && n > SKINNY_MAX && m > SKINNY_MAX && c.strides()[1] == 1 && k > 0;
    if fused {
        let parts = plan_parts(m, k, n, rayon::current_num_threads());
        let epi = Epilogue { bias: Some(bias), act };
        return packed_gemm(simd::level(), parts, T::one(), a, b, T::zero(), c, epi);
    }
    gemm(T::one(), a, b, T::zero(), c.view_mut());
    let bias = ndarray::ArrayView1::from(bias);
    c.rows_mut()
        .into_iter()
        .for_each(|mut row| row.zip_mut_with(&bias, |x, &b| *x = *x + b));
    if let Some(f) = act {
        if let Some(out) = c.as_slice_mut() {
            T::with_scratch(out.len(), |x| {
                x.copy_from_slice(out);
                crate::elementwise::unary(f, x, out);
            });
        } else {
            let x = c.to_owned();
            let mut y = x.clone();
            crate::elementwise::unary(f, x.as_slice().expect("owned"), y.as_slice_mut().expect("owned"));
            c.assign(&y);
        }
    }
}

/// How many blocks to cut the output into: one per thread, fewer when blocks would be
/// smaller than a kernel-aligned strip or carry too little work to repay the split.
fn plan_parts(m: usize, k: usize, n: usize, threads: usize) -> usize {
    let flops = 2 * m * n * k;
    let min = if crate::team::in_team() {
        MIN_FLOPS_PER_PART / 8
    } else {
        MIN_FLOPS_PER_PART
    };
    let by_work = (flops / min).max(1);
    let by_size = m.max(n).div_ceil(ALIGN);
    threads.min(by_work).min(by_size).max(1)
}

/// Cuts `C` (and `A` with it) into `parts` row blocks, aligned to [`ALIGN`] rows, computed
/// in parallel.
fn split_rows<T: Float>(parts: usize, alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, c: ArrayViewMut2<T>) {
    for_blocks(c, Axis(0), parts, ALIGN, |rows, c| {
        block_gemm(alpha, a.slice(ndarray::s![rows, ..]), b, beta, c)
    });
}

/// One block on the calling thread, by matrixmultiply.
fn block_gemm<T: Float>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, mut c: ArrayViewMut2<T>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let [rsa, csa] = strides(&a.view());
    let [rsb, csb] = strides(&b.view());
    let [rsc, csc] = strides(&c.view());
    crate::fpenv::flush_denormals();
    // SAFETY: the pointers and strides come from live views of the checked shapes; `c` is
    // borrowed mutably, so it cannot overlap `a` or `b`.
    unsafe {
        T::gemm_kernel(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            rsc,
            csc,
        );
    }
}

fn strides<T>(v: &ArrayView2<T>) -> [isize; 2] {
    let s = v.strides();
    [s[0], s[1]]
}

/// `C = beta * C`, with `beta == 0` meaning "overwrite with zeros" (NaN-safe).
fn scale<T: Float>(beta: T, mut c: ArrayViewMut2<T>) {
    if beta == T::zero() {
        c.fill(T::zero());
    } else if beta != T::one() {
        c.mapv_inplace(|x| x * beta);
    }
}
