//! The top level's prior: the standard normal or the VampPrior, as a density on the tape
//! and as a sampler.

use ndarray::Array2;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use vae_autograd::{Float, Var};

use crate::vae::Vae;
use crate::{Likelihood, Prior};

/// The least log-variance of a VampPrior component (standard deviation 0.05): the
/// mixture's density is a difference of GEMM terms scaled by `exp(-logvar)`, whose f32
/// rounding this bounds (to about 3e-4 nats per dimension at |z| ~ 3); without it, training
/// narrows components until the rounding itself is what it maximises.
pub const PRIOR_LOGVAR_MIN: f64 = -6.0;

impl<T: Float> Vae<T> {
    /// The VampPrior's pseudo-inputs (C x input), to set them; `None` under the standard
    /// prior.
    pub fn pseudo_inputs_mut(&mut self) -> Option<&mut Array2<T>> {
        let p = self.pseudo_inputs?;
        Some(self.tape.param_mut(p))
    }

    /// Records `-log p(z_top)` for each row of `top` (rows x 1).
    pub(crate) fn top_prior_nll(&mut self, top: Var) -> Var {
        let (rows, d) = self.tape.dim(top);
        match self.config.prior {
            Prior::Standard => {
                let zero_mu = self.tape.constant_with((rows, d), |b| b.fill(T::zero()));
                let zero_lv = self.tape.constant_with((1, d), |b| b.fill(T::zero()));
                self.tape.gaussian_nll(zero_mu, zero_lv, top)
            }
            Prior::Vamp { .. } => {
                let (mu, lv) = self.prior_components();
                self.tape.gaussian_mixture_nll(top, mu, lv)
            }
        }
    }

    /// Records the VampPrior's components: the top level's posterior (mean, log-variance
    /// clamped to [`PRIOR_LOGVAR_MIN`, the densities' upper bound]) at every pseudo-input, C x top latent each. The
    /// pseudo-inputs are clipped to [0, 1] for a Bernoulli decoder; each level above the
    /// first encodes the mean of the one below.
    ///
    /// # Panics
    /// If the model has no pseudo-inputs (a standard prior).
    pub(crate) fn prior_components(&mut self) -> (Var, Var) {
        let pseudo = self.pseudo_inputs.expect("a VampPrior has pseudo-inputs");
        let u = match self.config.likelihood {
            Likelihood::Bernoulli => {
                let t = &mut self.tape;
                let low = t.clamp_min(pseudo, T::zero());
                let neg = t.neg(low);
                let high = t.clamp_min(neg, T::c(-1.0));
                t.neg(high)
            }
            Likelihood::Gaussian { .. } => pseudo,
        };
        let (mut mu, mut lv) = self.encode_graph(u);
        for l in 0..self.upper.len() {
            (mu, lv) = self.upper[l].q.forward(&mut self.tape, mu);
        }
        let lv = self.clamp_logvar(lv);
        let lv = self.tape.clamp_min(lv, T::c(PRIOR_LOGVAR_MIN));
        (mu, lv)
    }

    /// `n` draws of z_top from the prior (n x top latent): each from N(0, I), or from a
    /// component of the VampPrior chosen uniformly.
    pub(crate) fn sample_top(&mut self, n: usize, rng: &mut impl Rng) -> Array2<T> {
        let d = self.config.top_latent();
        match self.config.prior {
            Prior::Standard => Array2::from_shape_simple_fn((n, d), || T::c(StandardNormal.sample(rng))),
            Prior::Vamp { components } => {
                self.tape.reset();
                let (mu, lv) = self.prior_components();
                let (mu, lv) = (self.tape.value(mu), self.tape.value(lv));
                let mut z = Array2::zeros((n, d));
                for mut row in z.rows_mut() {
                    let c = rng.random_range(0..components);
                    for (j, e) in row.iter_mut().enumerate() {
                        let eps: f64 = StandardNormal.sample(rng);
                        *e = mu[[c, j]] + (lv[[c, j]] * T::c(0.5)).exp() * T::c(eps);
                    }
                }
                z
            }
        }
    }

    /// The initial pseudo-inputs of a VampPrior (C x input): Tomczak & Welling's N(0.05,
    /// 0.01^2) for a Bernoulli decoder, N(0, 0.01^2) for standardised values.
    pub(crate) fn initial_pseudo_inputs(config: &crate::VaeConfig, rng: &mut impl Rng) -> Option<Array2<T>> {
        let Prior::Vamp { components } = config.prior else {
            return None;
        };
        let mean = match config.likelihood {
            Likelihood::Bernoulli => 0.05,
            Likelihood::Gaussian { .. } => 0.0,
        };
        Some(Array2::from_shape_simple_fn((components, config.input), || {
            let e: f64 = StandardNormal.sample(rng);
            T::c(mean + 0.01 * e)
        }))
    }
}
