//! The scalar types the engine computes in (f32 for training, f64 for gradient checks).

use std::cell::RefCell;
use std::fmt::{Debug, Display};
use std::iter::Sum;

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::{Float as NumFloat, FromPrimitive};

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

    /// The logistic function `1 / (1 + exp(-x))`, stable for large |x|. For `f32` a
    /// branch-free polynomial form the compiler vectorises (relative error below 3e-7); for
    /// `f64` the standard library's `exp`.
    #[inline(always)]
    fn sigmoid(self) -> Self {
        let e = (-self.abs()).exp();
        let s = Self::one() / (Self::one() + e);
        if self >= Self::zero() { s } else { e * s }
    }

    /// `ln(1 + exp(x))`, stable for large |x|; vectorisable for `f32` like [`Float::sigmoid`].
    #[inline(always)]
    fn softplus(self) -> Self {
        self.max(Self::zero()) + (-self.abs()).exp().ln_1p()
    }

    /// `self * b + c`, fused when the target has FMA, otherwise a multiply and an add.
    #[inline(always)]
    fn fmadd(self, b: Self, c: Self) -> Self {
        if cfg!(target_feature = "fma") {
            self.mul_add(b, c)
        } else {
            self * b + c
        }
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
        let e = exp_nonpositive_f32(-self.abs());
        let s = 1.0 / (1.0 + e);
        if self >= 0.0 { s } else { e * s }
    }

    #[inline(always)]
    fn softplus(self) -> f32 {
        self.max(0.0) + ln_1p_unit_f32(exp_nonpositive_f32(-self.abs()))
    }
});
impl_float!(f64, matrixmultiply::dgemm, SCRATCH_F64, {});

/// `exp(x)` for `x <= 0`, branch-free so that loops over it vectorise: `x = k ln 2 + r` with
/// |r| <= ln 2 / 2, a degree-7 Taylor polynomial for `e^r` (truncation below 1e-8), and
/// `2^k` built in the exponent bits. Inputs below -87 return about 1e-38 instead of a
/// subnormal or zero.
#[inline(always)]
fn exp_nonpositive_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 0.0);
    let k = (x * std::f32::consts::LOG2_E).round();
    let r = (-k).fmadd(LN2_LO, (-k).fmadd(LN2_HI, x));
    let mut p = 1.0 / 5040.0;
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p.fmadd(r, c);
    }
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// `ln(1 + u)` for `u` in [0, 1], branch-free: `2 atanh(s)` with `s = u / (2 + u)` in
/// [0, 1/3], by its odd series to s^15 (truncation below 2e-9).
#[inline(always)]
fn ln_1p_unit_f32(u: f32) -> f32 {
    let s = u / (2.0 + u);
    let s2 = s * s;
    let mut p = 2.0 / 15.0;
    for c in [2.0 / 13.0, 2.0 / 11.0, 2.0 / 9.0, 2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0, 2.0] {
        p = p.fmadd(s2, c);
    }
    p * s
}

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
