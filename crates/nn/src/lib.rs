//! Neural-network building blocks on the [`vae_autograd`] tape.
//!
//! * [`Linear`]: a dense layer with PyTorch's `[out, in]` weight layout and default
//!   initialisation; [`Activation`]; [`Mlp`], a stack of them.
//! * [`Adam`] and [`Sgd`], updating parameters in place on the tape.
//! * Parameters are addressable by name ([`Named`]), e.g. `encoder.0.weight`.

mod activation;
mod layers;
mod optim;

pub use activation::{Activation, ParseActivationError};
pub use layers::{Linear, Mlp, Named};
pub use optim::{Adam, AdamConfig, Optimizer, Sgd};
