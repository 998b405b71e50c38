//! `vae`: a from-scratch variational autoencoder engine for the CPU.
//!
//! This facade re-exports the workspace crates; see `ARCHITECTURE.md` for the map.

//!
//! ```
//! use vae::autograd::Tape;
//!
//! let mut t = Tape::<f32>::new();
//! let x = t.constant(ndarray::array![[-1.0f32, 2.0]].view());
//! let y = t.relu(x);
//! assert_eq!(t.value(y), &ndarray::array![[0.0f32, 2.0]]);
//! ```
#![warn(missing_docs)]

pub use vae_autograd as autograd;
pub use vae_data as data;
pub use vae_linalg as linalg;
pub use vae_model as model;
pub use vae_nn as nn;
pub use vae_train as train;
pub use vae_trainer as trainer;
