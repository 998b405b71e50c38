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
    ($t:ty, $kernel:path, $scratch:ident) => {
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
        }
    };
}

impl_float!(f32, matrixmultiply::sgemm, SCRATCH_F32);
impl_float!(f64, matrixmultiply::dgemm, SCRATCH_F64);
