//! The performance core of the VAE engine: a general matrix multiply
//! `C = alpha * op(A) * op(B) + beta * C` over strided `ndarray` views.
//!
//! A transposed operand is a stride swap (`a.t()`), never a copy. Products are computed by
//! the engine's own packed micro-kernels at the SIMD level in force (AVX-512F, AVX2 + FMA or
//! portable), their output cut into blocks that the threads of the current rayon pool claim
//! ([`team`]); products with a narrow output (`n <= 32`, the latent layers of a VAE) take a
//! register-blocked kernel that packs only the small operand. `matrixmultiply` is the
//! reference backend ([`force_backend`], `VAE_GEMM=matrixmultiply`). [`gemm_bias_act`] is a
//! dense layer in one product. Every engine thread flushes subnormal floats to zero
//! ([`fpenv`]).
//!
//! Every element of `C` is one multiply-add chain over `k` in order whatever the thread
//! count, so results are bitwise identical for 1 or many threads.

//!
//! Elementwise kernels (`elementwise`, written over `simd::Vector`) run at the SIMD level
//! detected at run time or forced with `VAE_SIMD` (see [`simd`]). This crate holds the
//! generic ones (activations, binary ops, bias, column sums) and what other crates write
//! theirs with: `simd::Vector`, `Kernel` and `dispatch`, the lanewise loops (`simd::zip`,
//! `simd::lane_sum`, [`lanewise!`]), `simd::Accum`, and the splitting across threads
//! (`elementwise::split`, `elementwise::chunk_len`, [`team`]). The loss kernels live beside
//! the loss ops in `vae-autograd`, Adam's beside the optimizer in `vae-nn`.
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

mod aligned;
pub mod conv;
pub mod elementwise;
mod float;
pub mod fpenv;
mod gemm;
mod packed;
mod reference;
pub mod simd;
mod skinny;
pub mod team;

pub use aligned::CacheAligned;
pub use float::Float;
pub use gemm::{Backend, Parallelism, backend, force_backend, gemm, gemm_bias_act, gemm_with};
pub use reference::naive_gemm;
