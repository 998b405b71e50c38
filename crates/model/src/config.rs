//! What a VAE is (architecture, likelihood) and what it is trained for (β, free bits).

use serde::{Deserialize, Serialize};
use vae_data::ImageShape;
use vae_nn::Activation;

use crate::Arch;

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
    /// Stochastic layers above the first (empty for the classic one-level VAE): level 2
    /// first. Each has q(z_l | z_{l-1}) and p(z_{l-1} | z_l) Gaussian, through MLPs of its
    /// own hidden widths (the prior side mirrors them); p(z_top) is the `prior` (N(0, I) by
    /// default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upper: Vec<LevelConfig>,
    /// The shape of the images, whose values are the `input` (`None`: not recorded, as in
    /// models saved before shapes were; see [`VaeConfig::image_shape`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<ImageShape>,
    /// Convolutions before the dense layers, if any (not recorded for dense models, so
    /// their configuration reads as before).
    #[serde(default, skip_serializing_if = "Arch::is_mlp")]
    pub arch: Arch,
    /// The prior of the top stochastic layer (not recorded when standard, so that earlier
    /// configurations read as before).
    #[serde(default, skip_serializing_if = "Prior::is_standard")]
    pub prior: Prior,
}

/// The prior p(z_top) of the top stochastic layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prior {
    /// The standard normal N(0, I).
    #[default]
    Standard,
    /// The VampPrior (Tomczak & Welling 2018): the mixture `(1/C) sum_c q(z_top | u_c)` of
    /// the encoder's posteriors at C learned pseudo-inputs `u_c` (`prior.pseudo_inputs`,
    /// C x input; clipped to [0, 1] for a Bernoulli decoder, whose inputs are
    /// probabilities). Above the first level, each level of the encoder takes the mean of
    /// the one below, as [`crate::Vae::encode_levels`] does; the components' log-variances
    /// are at least [`crate::PRIOR_LOGVAR_MIN`]. [`crate::Vae::new`] draws
    /// them from N(0.05, 0.01^2) as Tomczak & Welling do (N(0, 0.01^2) for a Gaussian
    /// decoder); the trainer starts them as training images instead.
    Vamp {
        /// The number of pseudo-inputs C.
        components: usize,
    },
}

impl Prior {
    /// The pseudo-inputs of the VampPrior by default (Tomczak & Welling's choice for MNIST).
    pub const DEFAULT_COMPONENTS: usize = 500;

    /// Whether this is the standard normal.
    pub fn is_standard(&self) -> bool {
        *self == Prior::Standard
    }
}

impl std::fmt::Display for Prior {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prior::Standard => write!(f, "standard"),
            Prior::Vamp { components } => write!(f, "vamp:{components}"),
        }
    }
}

impl std::str::FromStr for Prior {
    type Err = String;
    /// `standard` or `vamp[:C]` (C pseudo-inputs, default 500).
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.split_once(':') {
            None if lower == "standard" => Ok(Prior::Standard),
            None if lower == "vamp" => Ok(Prior::Vamp {
                components: Prior::DEFAULT_COMPONENTS,
            }),
            Some(("vamp", c)) => match c.trim().parse::<usize>() {
                Ok(components) if components > 0 => Ok(Prior::Vamp { components }),
                _ => Err(format!(
                    "'{s}': the number of pseudo-inputs C in vamp:C must be a whole number of at least 1"
                )),
            },
            _ => Err(format!(
                "'{s}': expected standard or vamp[:C] (C pseudo-inputs, default 500)"
            )),
        }
    }
}

/// A stochastic layer above the first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelConfig {
    /// Hidden widths of q(z_l | z_{l-1}); p(z_{l-1} | z_l) mirrors them.
    pub hidden: Vec<usize>,
    /// Dimensions of z_l.
    pub latent: usize,
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
            upper: Vec::new(),
            shape: None,
            arch: Arch::Mlp,
            prior: Prior::Standard,
        }
    }

    /// The shape of the model's images: the recorded one, else (models saved before shapes
    /// were recorded) a grey square of `input` pixels if `input` is a square.
    pub fn image_shape(&self) -> Option<ImageShape> {
        self.shape.or_else(|| ImageShape::square_grey(self.input))
    }

    /// Number of stochastic layers.
    pub fn levels(&self) -> usize {
        1 + self.upper.len()
    }

    /// The latent dimensions of every level, bottom (z1) first.
    pub fn latents(&self) -> Vec<usize> {
        std::iter::once(self.latent)
            .chain(self.upper.iter().map(|l| l.latent))
            .collect()
    }

    /// The dimensions of the top level, where the prior is: what is sampled, interpolated
    /// and plotted.
    pub fn top_latent(&self) -> usize {
        self.upper.last().map_or(self.latent, |l| l.latent)
    }

    /// The widths from the input to the top latent, dashed (`784-400-20`; a conv model's
    /// stack after the input, `12288-conv:32k3s2,64k3s2-128`; each upper level's layers and
    /// latent after the one below).
    pub fn widths(&self) -> String {
        let mut widths = vec![self.input.to_string()];
        if !self.arch.is_mlp() {
            widths.push(self.arch.to_string());
        }
        widths.extend(self.hidden.iter().map(ToString::to_string));
        widths.push(self.latent.to_string());
        for l in &self.upper {
            widths.extend(l.hidden.iter().map(ToString::to_string));
            widths.push(l.latent.to_string());
        }
        widths.join("-")
    }

    /// The model in a phrase: `a 784-400-20 VAE (relu, bernoulli decoder)`, with its
    /// stochastic layers and its prior where they are not the default.
    pub fn describe(&self) -> String {
        let levels = match self.levels() {
            1 => String::new(),
            n => format!(", {n} stochastic layers"),
        };
        let prior = match self.prior {
            Prior::Standard => String::new(),
            Prior::Vamp { components } => format!(", VampPrior of {components} pseudo-inputs"),
        };
        format!(
            "a {} VAE ({}, {} decoder{levels}{prior})",
            self.widths(),
            self.activation,
            self.likelihood
        )
    }

    /// Checks every size and constant.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, message: String| Err(ConfigError { field, message });
        if self.input == 0 {
            return err("input", "must be at least 1".into());
        }
        if let Some(shape) = self.shape
            && shape.len() != self.input
        {
            return err(
                "shape",
                format!("{shape} holds {} values, not the {} inputs", shape.len(), self.input),
            );
        }
        if self.latent == 0 {
            return err("latent", "must be at least 1".into());
        }
        if let Arch::Conv { layers } = &self.arch {
            if self.shape.is_none() {
                return err(
                    "arch",
                    "needs the images' shape (height, width, channels): convolutions run on images".into(),
                );
            }
            if let Some(shape) = self.shape {
                crate::arch::ConvPlan::new(shape, layers)?;
            }
        }
        if self.hidden.is_empty() {
            return err("hidden", "is empty: give at least one layer width, e.g. 400".into());
        }
        if self.hidden.contains(&0) {
            return err("hidden", format!("widths must be at least 1, got {:?}", self.hidden));
        }
        for (i, l) in self.upper.iter().enumerate() {
            if l.latent == 0 {
                return err(
                    "upper.latent",
                    format!("must be at least 1 (for each stochastic layer; layer {} has 0)", i + 2),
                );
            }
            if l.hidden.is_empty() || l.hidden.contains(&0) {
                return err(
                    "upper.hidden",
                    format!(
                        "widths must be at least 1, and at least one is needed (stochastic layer {} has {:?})",
                        i + 2,
                        l.hidden
                    ),
                );
            }
        }
        if let Prior::Vamp { components: 0 } = self.prior {
            return err("prior", "needs at least one pseudo-input (vamp:C with C >= 1)".into());
        }
        if let Likelihood::Gaussian { variance: Some(v) } = self.likelihood
            && !(v.is_finite() && v > 0.0)
        {
            return err(
                "likelihood",
                format!("needs a positive, finite Gaussian variance, got {v}"),
            );
        }
        Ok(())
    }
}

/// Which bound on `log p(x)` is maximised, with `log w = log p(x, z) - log q(z | x)` for
/// each of K samples z ~ q(z | x).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The ELBO, `mean_k log w_k` (K samples average the estimate).
    #[default]
    Elbo,
    /// The importance-weighted bound (Burda et al. 2015), `log mean_k w_k`: tighter as K
    /// grows; equals the ELBO at K = 1.
    Iwae,
}

/// The training objective: the bound, its samples per image, the gradient estimator, and the
/// KL's weights. With one level, one sample, the ELBO and the plain estimator, the loss is
/// `recon + kl_weight * sum_j max(free_bits, KL_j)` with the analytic KL (`KL_j` the batch
/// mean of latent unit j's); otherwise `log w = log p(x|z) + kl_weight * (log p(z) -
/// log q(z|x))` by sampling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Objective {
    /// Weight of the KL term (β, times the warm-up factor).
    pub kl_weight: f64,
    /// Minimum KL per latent unit in nats (0 disables free bits; analytic KL only).
    pub free_bits: f64,
    /// The bound.
    pub bound: Bound,
    /// Samples of z per image (K); their decoder passes go through the GEMMs as one
    /// (images x K)-row product.
    pub samples: usize,
    /// The encoder's gradient by the path through z alone, with q's parameters held fixed
    /// in its density: for the IWAE bound with squared normalised weights (DReG, Tucker et
    /// al. 2018), for the ELBO "sticking the landing" (Roeder et al. 2017). Unbiased, lower
    /// variance; the decoder's gradient is unchanged.
    pub dreg: bool,
}

impl Default for Objective {
    fn default() -> Self {
        Objective {
            kl_weight: 1.0,
            free_bits: 0.0,
            bound: Bound::Elbo,
            samples: 1,
            dreg: false,
        }
    }
}

impl Objective {
    /// Whether this objective (for `config`) is the classic one: one level, one sample, the
    /// analytic KL, the plain gradient.
    pub fn is_classic(&self, config: &VaeConfig) -> bool {
        config.upper.is_empty() && config.prior.is_standard() && self.samples <= 1 && !self.dreg
    }

    /// Checks that the pieces fit together.
    pub fn validate(&self, config: &VaeConfig) -> Result<(), ConfigError> {
        let err = |field, message: String| Err(ConfigError { field, message });
        if self.samples == 0 {
            return err("samples", "must be at least 1".into());
        }
        if !(self.free_bits.is_finite() && self.free_bits >= 0.0) {
            return err("free_bits", format!("must be 0 or more nats, got {}", self.free_bits));
        }
        if self.free_bits > 0.0 && !self.is_classic(config) {
            return err(
                "free_bits",
                format!(
                    "acts on the analytic KL of one latent layer trained with one sample: it cannot be combined with {{samples}} {}, {{dreg}}, several {{latent}} layers or a {{prior}} other than standard",
                    self.samples
                ),
            );
        }
        if !(self.kl_weight.is_finite() && self.kl_weight >= 0.0) {
            return err("kl_weight", format!("must be 0 or more, got {}", self.kl_weight));
        }
        Ok(())
    }
}

/// An invalid configuration: the field that is wrong, and what is wrong with it. Other
/// fields the message mentions appear as `{name}`.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field} {}", message.replace(['{', '}'], ""))]
pub struct ConfigError {
    /// The field (`hidden`, `upper.latent`, `samples`, `kl_weight`, ...).
    pub field: &'static str,
    /// What is wrong, to follow the field's name.
    pub message: String,
}

impl std::fmt::Display for Likelihood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Likelihood::Bernoulli => write!(f, "Bernoulli"),
            Likelihood::Gaussian { variance: Some(v) } => write!(f, "Gaussian (variance {v})"),
            Likelihood::Gaussian { variance: None } => write!(f, "Gaussian (learned variance)"),
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bound::Elbo => "elbo",
            Bound::Iwae => "iwae",
        })
    }
}

impl std::str::FromStr for Bound {
    type Err = String;

    /// `elbo` or `iwae`, case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "elbo" => Ok(Bound::Elbo),
            "iwae" => Ok(Bound::Iwae),
            _ => Err(format!("'{s}': expected elbo or iwae")),
        }
    }
}

impl Likelihood {
    /// The spelling [`Likelihood::from_str`](std::str::FromStr) reads back: `bernoulli`,
    /// `gaussian:VARIANCE` or `gaussian-learned`.
    pub fn spec(&self) -> String {
        match self {
            Likelihood::Bernoulli => "bernoulli".into(),
            Likelihood::Gaussian { variance: Some(v) } => format!("gaussian:{v}"),
            Likelihood::Gaussian { variance: None } => "gaussian-learned".into(),
        }
    }
}

impl std::str::FromStr for Likelihood {
    type Err = String;

    /// `bernoulli`, `gaussian` (unit variance; also `mse`), `gaussian:VARIANCE` or
    /// `gaussian-learned`, case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "bernoulli" => Ok(Likelihood::Bernoulli),
            "gaussian" | "mse" => Ok(Likelihood::Gaussian { variance: Some(1.0) }),
            "gaussian-learned" => Ok(Likelihood::Gaussian { variance: None }),
            _ => match lower.strip_prefix("gaussian:").map(str::parse::<f64>) {
                Some(Ok(v)) if v.is_finite() && v > 0.0 => Ok(Likelihood::Gaussian { variance: Some(v) }),
                Some(_) => Err(format!(
                    "'{s}': the variance after 'gaussian:' must be a positive number"
                )),
                None => Err(format!(
                    "'{s}': expected bernoulli, gaussian, gaussian:VARIANCE or gaussian-learned"
                )),
            },
        }
    }
}
