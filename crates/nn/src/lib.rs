//! Neural-network building blocks on the [`vae_autograd`] tape.
//!
//! * [`Layer`]: the seam models are assembled from (forward, forward with the parameters
//!   detached, named parameters, output width); object safe, so trunks can be
//!   `Box<dyn Layer<T>>`.
//! * [`ParamScope`]: creates parameters on a tape and names them as it does
//!   (`encoder.0.weight`), appending to a [`Named`] list in creation order.
//! * [`Linear`]: a dense layer with PyTorch's `[out, in]` weight layout and default
//!   initialisation; [`Activation`]; [`Mlp`], a stack of them.
//! * [`Adam`], updating parameters in place on the tape; Adam's update is one
//!   SIMD kernel of this crate's ([`adam_kernel`]).

//!
//! ```
//! use ndarray::array;
//! use rand::SeedableRng;
//! use vae_autograd::Tape;
//! use vae_nn::{Adam, AdamConfig, Layer, Linear, Named, Optimizer, ParamScope};
//!
//! // Fit y = 2x - 1 with one dense layer.
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let mut t = Tape::<f64>::new();
//! let mut named = Named::new();
//! let layer = Linear::new(&mut ParamScope::new(&mut t, &mut named).child("fc"), 1, 1, &mut rng);
//! assert_eq!(named[0].0, "fc.weight");
//! let params: Vec<_> = t.params().collect();
//! let mut adam = Adam::new(AdamConfig { lr: 0.05, ..Default::default() }, &t, &params);
//! for _ in 0..2000 {
//!     t.reset();
//!     let x = t.constant(array![[-1.0], [0.0], [1.0], [2.0]].view());
//!     let target = t.constant(array![[-3.0], [-1.0], [1.0], [3.0]].view());
//!     let y = layer.forward(&mut t, x);
//!     let d = t.sub(y, target);
//!     let se = t.square(d);
//!     let loss = t.mean(se);
//!     t.backward(loss);
//!     adam.step(&mut t, &params);
//! }
//! let w = t.value(params[0])[[0, 0]];
//! assert!((w - 2.0).abs() < 1e-3, "{w}");
//! ```
#![warn(missing_docs)]

mod activation;
pub mod adam_kernel;
mod conv;
mod layer;
mod layers;
mod optim;

pub use activation::{Activation, ParseActivationError};
pub use conv::{Conv, ConvGeometry, Layout, Sequential};
pub use layer::{Layer, Named, ParamScope};
pub use layers::{Linear, Mlp};
pub use optim::{Adam, AdamConfig, Optimizer};
