//! The scalar types the engine computes in (f32 for training, f64 for gradient checks).

use std::cell::RefCell;
use std::fmt::{Debug, Display};
use std::iter::Sum;

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::{Float as NumFloat, FromPrimitive};

use crate::simd::Scalar;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point scalar the engine is generic over: `f32` or `f64`.
pub trait Float:
    NumFloat
    + LinalgScalar
    + ScalarOperand
    + FromPrimitive
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + sealed::Sealed
    + crate::simd::Dispatch
    + 'static
{
    /// Single-threaded strided GEMM `C = alpha*A*B + beta*C` (`A` is m x k, `B` k x n).
    ///
    /// # Safety
    /// The pointers and strides must describe valid, non-overlapping matrices of the given
    /// sizes; when `beta` is zero `C` may hold anything (even NaN) and is overwritten.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_kernel(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// Runs `f` on this thread's scratch buffer, grown to at least `len` elements. The buffer
    /// is kept between calls, so a steady state of equal-sized calls allocates nothing.
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;

    /// Converts an `f64` constant to this type (rounding to nearest for `f32`).
    fn c(x: f64) -> Self;

    /// The logistic function `1 / (1 + exp(-x))`, stable for large |x|. For `f32` the
    /// polynomial form of the SIMD kernels (relative error below 3e-7, the same bits at
    /// every level); for `f64` the standard library's `exp`.
    #[inline(always)]
    fn sigmoid(self) -> Self {
        let e = (-self.abs()).exp();
        let s = Self::one() / (Self::one() + e);
        if self >= Self::zero() { s } else { e * s }
    }

    /// `ln(1 + exp(x))`, stable for large |x|; for `f32` as the SIMD kernels compute it.
    #[inline(always)]
    fn softplus(self) -> Self {
        self.max(Self::zero()) + (-self.abs()).exp().ln_1p()
    }
}

macro_rules! impl_float {
    ($t:ty, $kernel:path, $scratch:ident, { $($fast:tt)* }) => {
        thread_local! {
            static $scratch: RefCell<Vec<$t>> = const { RefCell::new(Vec::new()) };
        }

        impl Float for $t {
            #[inline]
            unsafe fn gemm_kernel(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                // SAFETY: forwarded from the caller's contract.
                unsafe { $kernel(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
            }

            fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                $scratch.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut buf) => {
                        if buf.len() < len {
                            buf.resize(len, 0.0);
                        }
                        f(&mut buf[..len])
                    }
                    // Re-entered on the same thread (never in the engine itself): use a
                    // fresh buffer rather than fail.
                    Err(_) => f(&mut vec![0.0; len]),
                })
            }

            #[inline(always)]
            fn c(x: f64) -> Self {
                x as $t
            }

            $($fast)*
        }
    };
}

impl_float!(f32, matrixmultiply::sgemm, SCRATCH_F32, {
    #[inline(always)]
    fn sigmoid(self) -> f32 {
        crate::simd::sigmoid(Scalar(self)).0
    }

    #[inline(always)]
    fn softplus(self) -> f32 {
        crate::simd::softplus(Scalar(self)).0
    }
});
impl_float!(f64, matrixmultiply::dgemm, SCRATCH_F64, {});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_f32_sigmoid_and_softplus_match_f64() {
        let mut worst = (0.0f64, 0.0f64);
        // Relative error where the results are normal f32 numbers (|x| <= 80).
        for i in -160_000..=160_000 {
            let x = i as f32 * 5e-4;
            let xd = x as f64;
            let sig = 1.0 / (1.0 + (-xd).exp());
            let sp = xd.max(0.0) + (-xd.abs()).exp().ln_1p();
            let e_sig = ((Float::sigmoid(x) as f64 - sig) / sig).abs();
            let e_sp = ((Float::softplus(x) as f64 - sp) / sp).abs();
            worst = (worst.0.max(e_sig), worst.1.max(e_sp));
        }
        assert!(worst.0 < 3e-7 && worst.1 < 3e-7, "relative errors {worst:?}");
        // Far tails: tiny (not subnormal) where exact would be smaller, no NaN, no overflow.
        assert!(Float::sigmoid(-100.0f32) < 1e-37 && Float::softplus(-100.0f32) < 1e-37);
        for x in [-1e30f32, -200.0, -88.0, 88.0, 200.0, 1e30] {
            assert!(Float::sigmoid(x).is_finite() && Float::softplus(x).is_finite(), "{x}");
        }
        assert_eq!(Float::softplus(100.0f32), 100.0);
        assert_eq!(Float::sigmoid(100.0f32), 1.0);
    }
}
