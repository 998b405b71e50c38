//! What a VAE is (architecture, likelihood) and what it is trained for (β, free bits).

use serde::{Deserialize, Serialize};
use vae_nn::Activation;

/// The decoder's distribution over pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Likelihood {
    /// Independent Bernoulli pixels; the decoder outputs logits. Grey levels in [0, 1] are
    /// used as soft targets (binary cross-entropy), as in PyTorch's example.
    Bernoulli,
    /// Independent Gaussian pixels around the decoder's output. `variance: Some(v)` fixes
    /// it (v = 1 is the squared-error loss of many tutorials, as a proper NLL in nats);
    /// `None` learns one log-variance per pixel.
    Gaussian {
        /// The fixed variance, or `None` to learn it.
        variance: Option<f64>,
    },
}

/// The architecture of a VAE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Pixels per image (784 for MNIST).
    pub input: usize,
    /// Hidden layer widths of the encoder; the decoder mirrors them.
    pub hidden: Vec<usize>,
    /// Latent dimensions.
    pub latent: usize,
    /// Nonlinearity after every hidden layer.
    pub activation: Activation,
    /// The decoder's distribution.
    pub likelihood: Likelihood,
}

impl VaeConfig {
    /// PyTorch's example: 784-400-20, ReLU, Bernoulli.
    pub fn reference() -> Self {
        VaeConfig {
            input: 784,
            hidden: vec![400],
            latent: 20,
            activation: Activation::Relu,
            likelihood: Likelihood::Bernoulli,
        }
    }

    /// Checks every size and constant.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.input == 0 {
            return Err(ConfigError("input size must be at least 1".into()));
        }
        if self.latent == 0 {
            return Err(ConfigError("latent size must be at least 1".into()));
        }
        if self.hidden.is_empty() {
            return Err(ConfigError(
                "the hidden layer list is empty: give at least one width, e.g. 400".into(),
            ));
        }
        if self.hidden.contains(&0) {
            return Err(ConfigError(format!(
                "hidden widths must be at least 1, got {:?}",
                self.hidden
            )));
        }
        if let Likelihood::Gaussian { variance: Some(v) } = self.likelihood
            && !(v.is_finite() && v > 0.0)
        {
            return Err(ConfigError(format!(
                "the Gaussian variance must be positive and finite, got {v}"
            )));
        }
        Ok(())
    }
}

/// The training objective's weights: `recon + kl_weight * sum_j max(free_bits, KL_j)`, with
/// `KL_j` the batch mean of latent unit j's KL.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Objective {
    /// Weight of the KL term (β, times the warm-up factor).
    pub kl_weight: f64,
    /// Minimum KL per latent unit in nats (0 disables free bits).
    pub free_bits: f64,
}

impl Default for Objective {
    fn default() -> Self {
        Objective {
            kl_weight: 1.0,
            free_bits: 0.0,
        }
    }
}

/// An invalid configuration, with what is wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl std::fmt::Display for Likelihood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Likelihood::Bernoulli => write!(f, "Bernoulli"),
            Likelihood::Gaussian { variance: Some(v) } => write!(f, "Gaussian (variance {v})"),
            Likelihood::Gaussian { variance: None } => write!(f, "Gaussian (learned variance)"),
        }
    }
}
