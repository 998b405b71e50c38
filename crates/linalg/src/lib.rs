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

pub mod elementwise;
mod float;
mod gemm;
mod reference;
pub mod simd;
mod skinny;

pub use float::Float;
pub use gemm::{Parallelism, gemm, gemm_with};
pub use reference::naive_gemm;
