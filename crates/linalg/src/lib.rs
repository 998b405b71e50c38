//! The performance core of the VAE engine: a general matrix multiply
//! `C = alpha * op(A) * op(B) + beta * C` over strided `ndarray` views.
//!
//! A transposed operand is a stride swap (`a.t()`), never a copy. Large products are split
//! into kernel-aligned blocks of `C` across rayon's thread pool, each block computed by
//! single-threaded `matrixmultiply` (its own threading is never enabled, so rayon owns every
//! thread). Products with a narrow output (`n <= 32`, the latent layers of a VAE) take a
//! direct register-blocked kernel instead, which avoids packing the tall operand.
//!
//! Every element of `C` is reduced over `k` in the same order whatever the thread count, so
//! results are bitwise identical for 1 or many threads.

//!
//! Elementwise kernels (`elementwise`, written over `simd::Vector`) run at the SIMD level
//! detected at run time or forced with `VAE_SIMD` (see [`simd`]).
//!
//! ```
//! use ndarray::array;
//! use vae_linalg::{gemm, simd};
//!
//! let a = array![[1.0f32, 2.0], [3.0, 4.0]];
//! let b = array![[5.0f32, 6.0], [7.0, 8.0]];
//! let mut c = ndarray::Array2::zeros((2, 2));
//! gemm(1.0, a.view(), b.t(), 0.0, c.view_mut()); // C = A B^T: a stride swap, no copy
//! assert_eq!(c, array![[17.0, 23.0], [39.0, 53.0]]);
//! println!("kernels run at {}", simd::level());
//! ```
#![warn(missing_docs)]

pub mod elementwise;
mod float;
pub mod fpenv;
mod gemm;
mod packed;
mod reference;
pub mod simd;
mod skinny;
pub mod team;

pub use float::Float;
pub use gemm::{Backend, Parallelism, backend, force_backend, gemm, gemm_bias_act, gemm_with};
pub use reference::naive_gemm;
