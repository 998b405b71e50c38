//! A tiny reverse-mode autodiff: a tape of 2-D matrices in creation order.
//!
//! * [`Tape`] records every operation as a node; a [`Var`] is a `Copy` handle to one.
//! * Parameters ([`Tape::param`]) live in the tape for good; everything else is cleared by
//!   [`Tape::reset`], which keeps the buffers so that the next step, building the same graph,
//!   allocates nothing.
//! * [`Tape::backward`] walks the nodes in reverse, accumulating gradients (fan-out adds).
//! * [`gradcheck`] compares the gradients with central finite differences.
//! * [`loss_kernels`]: the SIMD kernels of the loss ops (Bernoulli and Gaussian negative
//!   log-likelihoods, KL), written over `vae_linalg::simd` as `vae-linalg`'s own kernels are.
//!
//! The engine is generic over [`Float`] (`f32` to train, `f64` to check gradients).

//!
//! ```
//! use ndarray::array;
//! use vae_autograd::Tape;
//!
//! let mut t = Tape::<f64>::new();
//! let w = t.param(array![[1.0, -2.0]]);            // a 1 x 2 parameter
//! let x = t.constant(array![[3.0], [4.0]].view());   // 2 x 1 data
//! let y = t.matmul(w, x);                            // 1 x 1: 3 - 8 = -5
//! let loss = t.square(y);
//! let loss = t.sum(loss);                            // 25
//! t.backward(loss);
//! assert_eq!(t.scalar(loss), 25.0);
//! // d(loss)/dw = 2 y x^T = [-30, -40]
//! assert_eq!(t.grad(w).unwrap(), &array![[-30.0, -40.0]]);
//! ```
#![warn(missing_docs)]

pub mod gradcheck;
mod kernels;
pub mod loss_kernels;
mod ops;
mod tape;

pub use ops::custom::CustomOp;
pub use ops::{Axis, ConvGeometry, DenseAct};
pub use tape::{Tape, Var};
pub use vae_linalg::Float;

/// Log-variance is clamped to this range before it is exponentiated (KL, Gaussian NLL).
pub const LOGVAR_RANGE: (f64, f64) = (-30.0, 20.0);
