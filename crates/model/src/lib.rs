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

//!
//! ```
//! use ndarray::Array2;
//! use rand::SeedableRng;
//! use vae_model::{Objective, Vae, VaeConfig};
//! use vae_nn::{Adam, AdamConfig, Optimizer};
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//! let config = VaeConfig { input: 16, hidden: vec![12], latent: 2, ..VaeConfig::reference() };
//! let mut vae = Vae::<f32>::new(config, &mut rng).unwrap();
//! let params = vae.params().to_vec();
//! let mut adam = Adam::new(AdamConfig::default(), vae.tape(), &params);
//! let x = Array2::from_shape_fn((64, 16), |(i, j)| ((i + j) % 2) as f32); // two patterns
//! let first = vae.train_step(x.view(), &mut rng, Objective::default()).neg_elbo();
//! for _ in 0..200 {
//!     vae.train_step(x.view(), &mut rng, Objective::default());
//!     adam.step(vae.tape_mut(), &params);
//! }
//! let last = vae.evaluate(x.view(), &mut rng).neg_elbo();
//! assert!(last < first, "{last} >= {first}");
//! let samples = vae.sample(4, &mut rng); // 4 x 16 Bernoulli means from the prior
//! assert_eq!(samples.dim(), (4, 16));
//! ```
#![warn(missing_docs)]

mod arch;
mod bound;
pub mod checkpoint;
mod config;
mod prior;
mod vae;

pub use arch::{Arch, ConvLayer, ConvPlan};
pub use config::{Bound, ConfigError, LevelConfig, Likelihood, Objective, Prior, VaeConfig};
pub use prior::PRIOR_LOGVAR_MIN;
pub use vae::{LossSums, Step, Vae};
