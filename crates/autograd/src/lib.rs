//! A tiny reverse-mode autodiff: a tape of 2-D matrices in creation order.
//!
//! * [`Tape`] records every operation as a node; a [`Var`] is a `Copy` handle to one.
//! * Parameters ([`Tape::param`]) live in the tape for good; everything else is cleared by
//!   [`Tape::reset`], which keeps the buffers so that the next step, building the same graph,
//!   allocates nothing.
//! * [`Tape::backward`] walks the nodes in reverse, accumulating gradients (fan-out adds).
//! * [`gradcheck`] compares the gradients with central finite differences.
//!
//! The engine is generic over [`Float`] (`f32` to train, `f64` to check gradients).

pub mod gradcheck;
mod kernels;
mod ops;
mod tape;

pub use ops::Axis;
pub use tape::{Tape, Var};
pub use vae_linalg::Float;

/// Log-variance is clamped to this range before it is exponentiated (KL, Gaussian NLL).
pub const LOGVAR_RANGE: (f64, f64) = (-30.0, 20.0);
