//! The variational autoencoder (Kingma & Welling, 2014) on the engine's tape.
//!
//! * [`VaeConfig`]: architecture and likelihood; [`Objective`]: β, and free bits.
//! * [`Vae`]: encoder MLP to (mu, logvar), the reparameterisation `z = mu + exp(logvar/2) eps`,
//!   decoder MLP to logits (Bernoulli) or means (Gaussian); training steps, evaluation,
//!   encoding, decoding, sampling from the prior, importance-sampled log-likelihood.
//! * [`checkpoint`]: safetensors files in PyTorch's layout, with the configuration in the
//!   header, written atomically.
//!
//! Losses are reported as the field reports them: the negative ELBO summed over pixels and
//! latent units and divided by the number of images, in nats.

pub mod checkpoint;
mod config;
mod vae;

pub use config::{ConfigError, Likelihood, Objective, VaeConfig};
pub use vae::{LossSums, Step, Vae};
