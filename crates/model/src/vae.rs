//! The VAE itself: parameters on a tape, the graph of one batch, and what users do with it.

use ndarray::{Array2, ArrayView2, Axis};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use vae_autograd::{Float, Tape, Var};
use vae_nn::{Linear, Mlp, Named};

use crate::{ConfigError, Likelihood, Objective, VaeConfig};

/// Sums of the loss terms over some images; divide by `images` for the per-image figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSums {
    /// Number of images summed over.
    pub images: usize,
    /// Sum of the reconstruction negative log-likelihoods, in nats.
    pub recon: f64,
    /// Sum of KL(q(z|x) || p(z)), in nats.
    pub kl: f64,
    /// Sum of the training objective (β-weighted, free bits), when training.
    pub objective: f64,
}

impl LossSums {
    /// Adds another batch's sums.
    pub fn add(&mut self, o: &LossSums) {
        self.images += o.images;
        self.recon += o.recon;
        self.kl += o.kl;
        self.objective += o.objective;
    }
    /// Negative ELBO per image (reconstruction + KL).
    pub fn neg_elbo(&self) -> f64 {
        (self.recon + self.kl) / self.images.max(1) as f64
    }
    /// Reconstruction NLL per image.
    pub fn recon_per_image(&self) -> f64 {
        self.recon / self.images.max(1) as f64
    }
    /// KL per image.
    pub fn kl_per_image(&self) -> f64 {
        self.kl / self.images.max(1) as f64
    }
    /// Whether every sum is finite.
    pub fn is_finite(&self) -> bool {
        self.recon.is_finite() && self.kl.is_finite() && self.objective.is_finite()
    }
}

/// The nodes of a recorded training step (valid until the tape is next reset).
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// Images in the batch.
    pub images: usize,
    /// The per-image objective (1 x 1): what `backward` differentiates.
    pub loss: Var,
    /// The batch's summed objective.
    pub total: Var,
    /// The batch's summed reconstruction NLL.
    pub recon_sum: Var,
    /// The elementwise KL (n x latent).
    pub kl: Var,
}

/// The nodes of one batch's graph.
struct Graph {
    /// Per-image reconstruction NLL (n x 1).
    recon: Var,
    /// Elementwise KL (n x latent).
    kl: Var,
}

/// A VAE: its configuration and its parameters on its own tape.
pub struct Vae<T: Float> {
    config: VaeConfig,
    tape: Tape<T>,
    encoder: Mlp,
    enc_mu: Linear,
    enc_logvar: Linear,
    decoder: Mlp,
    dec_out: Linear,
    /// Learned per-pixel log-variance (1 x input) of a Gaussian decoder.
    dec_logvar: Option<Var>,
    named: Named,
    params: Vec<Var>,
}

impl<T: Float> Vae<T> {
    /// A freshly initialised VAE (PyTorch's default initialisation, drawn from `rng`).
    pub fn new(config: VaeConfig, rng: &mut impl Rng) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut tape = Tape::new();
        let act = config.activation;
        let encoder = Mlp::new(&mut tape, config.input, &config.hidden, act, rng);
        let h = encoder.out_features(config.input);
        let enc_mu = Linear::new(&mut tape, h, config.latent, rng);
        let enc_logvar = Linear::new(&mut tape, h, config.latent, rng);
        let dec_hidden: Vec<usize> = config.hidden.iter().rev().copied().collect();
        let decoder = Mlp::new(&mut tape, config.latent, &dec_hidden, act, rng);
        let dec_out = Linear::new(&mut tape, decoder.out_features(config.latent), config.input, rng);
        let dec_logvar = matches!(config.likelihood, Likelihood::Gaussian { variance: None })
            .then(|| tape.param(Array2::zeros((1, config.input))));
        let mut named = encoder.named("encoder");
        named.extend(enc_mu.named("encoder.mu"));
        named.extend(enc_logvar.named("encoder.logvar"));
        named.extend(decoder.named("decoder"));
        named.extend(dec_out.named("decoder.out"));
        if let Some(v) = dec_logvar {
            named.push(("decoder.logvar".into(), v));
        }
        let params = named.iter().map(|(_, v)| *v).collect();
        Ok(Vae {
            config,
            tape,
            encoder,
            enc_mu,
            enc_logvar,
            decoder,
            dec_out,
            dec_logvar,
            named,
            params,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Every parameter with its checkpoint name, e.g. `encoder.0.weight`.
    pub fn named_params(&self) -> &[(String, Var)] {
        &self.named
    }

    /// Every parameter, in the order of [`Vae::named_params`].
    pub fn params(&self) -> &[Var] {
        &self.params
    }

    /// The tape holding the parameters (and the last batch's graph).
    pub fn tape(&self) -> &Tape<T> {
        &self.tape
    }

    /// Mutable access to the tape, for optimizers and checkpoint loading.
    pub fn tape_mut(&mut self) -> &mut Tape<T> {
        &mut self.tape
    }

    /// Number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        self.params.iter().map(|&p| self.tape.value(p).len()).sum()
    }

    /// Draws standard normal noise (n x latent) onto the tape.
    fn noise(&mut self, n: usize, rng: &mut impl Rng) -> Var {
        let d = self.config.latent;
        self.tape.constant_with((n, d), |buf| {
            buf.iter_mut().for_each(|e| *e = T::c(StandardNormal.sample(rng)))
        })
    }

    /// Records the encoder on `x`: (mu, logvar).
    fn encode_graph(&mut self, x: Var) -> (Var, Var) {
        let t = &mut self.tape;
        let h = self.encoder.forward(t, x);
        (self.enc_mu.forward(t, h), self.enc_logvar.forward(t, h))
    }

    /// Records the decoder on `z`: logits (Bernoulli) or means (Gaussian).
    fn decode_graph(&mut self, z: Var) -> Var {
        let t = &mut self.tape;
        let h = self.decoder.forward(t, z);
        self.dec_out.forward(t, h)
    }

    /// Records the per-image reconstruction NLL of `x` under the decoder output `out`.
    fn recon_graph(&mut self, out: Var, x: Var) -> Var {
        match self.config.likelihood {
            Likelihood::Bernoulli => self.tape.bernoulli_nll(out, x),
            Likelihood::Gaussian { variance } => {
                let lv = match (variance, self.dec_logvar) {
                    (Some(v), _) => {
                        let lnv = T::c(v.ln());
                        let n = self.config.input;
                        self.tape.constant_with((1, n), |b| b.fill(lnv))
                    }
                    (None, Some(p)) => p,
                    (None, None) => unreachable!("a learned variance has its parameter"),
                };
                self.tape.gaussian_nll(out, lv, x)
            }
        }
    }

    /// Records the whole model on a batch: encode, reparameterise with fresh noise
    /// (`z = mu + exp(logvar / 2) * eps`), decode, and the two loss terms.
    fn graph(&mut self, x: ArrayView2<T>, rng: &mut impl Rng) -> Graph {
        self.tape.reset();
        let xv = self.tape.constant(x);
        let (mu, logvar) = self.encode_graph(xv);
        let eps = self.noise(x.nrows(), rng);
        let half = self.tape.scale(logvar, T::c(0.5));
        let std = self.tape.exp(half);
        let noise = self.tape.mul(std, eps);
        let z = self.tape.add(mu, noise);
        let out = self.decode_graph(z);
        let recon = self.recon_graph(out, xv);
        let kl = self.tape.kl_normal(mu, logvar);
        Graph { recon, kl }
    }

    /// Records the training objective on a batch (forward only): the per-image objective
    /// `(recon + kl_weight * KL') / n`, where KL' is the KL with free bits applied.
    pub fn forward(&mut self, x: ArrayView2<T>, rng: &mut impl Rng, objective: Objective) -> Step {
        let n = x.nrows();
        let g = self.graph(x, rng);
        let t = &mut self.tape;
        let inv_n = T::c(1.0 / n as f64);
        let recon_sum = t.sum(g.recon);
        let kl_term = if objective.free_bits > 0.0 {
            let per_unit = t.sum_axis(g.kl, Axis(0));
            let mean = t.scale(per_unit, inv_n);
            let floored = t.clamp_min(mean, T::c(objective.free_bits));
            let s = t.sum(floored);
            t.scale(s, T::c(n as f64))
        } else {
            t.sum(g.kl)
        };
        let weighted = t.scale(kl_term, T::c(objective.kl_weight));
        let total = t.add(recon_sum, weighted);
        let loss = t.scale(total, inv_n);
        Step {
            images: n,
            loss,
            total,
            recon_sum,
            kl: g.kl,
        }
    }

    /// The loss sums of a recorded step.
    pub fn step_sums(&self, step: &Step) -> LossSums {
        let f = |v: Var| self.tape.scalar(v).to_f64().unwrap_or(f64::NAN);
        LossSums {
            images: step.images,
            recon: f(step.recon_sum),
            kl: self.sum_of(step.kl),
            objective: f(step.total),
        }
    }

    /// Forward and backward on a batch: afterwards the tape holds every parameter's gradient
    /// of the per-image objective (for an optimizer's step). Returns the batch's sums.
    pub fn train_step(&mut self, x: ArrayView2<T>, rng: &mut impl Rng, objective: Objective) -> LossSums {
        let step = self.forward(x, rng, objective);
        self.tape.backward(step.loss);
        self.step_sums(&step)
    }

    fn sum_of(&self, v: Var) -> f64 {
        self.tape.value(v).iter().map(|x| x.to_f64().unwrap_or(f64::NAN)).sum()
    }

    /// The loss sums on a batch with z sampled (as PyTorch's example evaluates), no gradient.
    pub fn evaluate(&mut self, x: ArrayView2<T>, rng: &mut impl Rng) -> LossSums {
        let g = self.graph(x, rng);
        let (recon, kl) = (self.sum_of(g.recon), self.sum_of(g.kl));
        LossSums {
            images: x.nrows(),
            recon,
            kl,
            objective: recon + kl,
        }
    }

    /// The negative ELBO of each image of the batch (one z sample each): an anomaly score.
    pub fn neg_elbo_per_image(&mut self, x: ArrayView2<T>, rng: &mut impl Rng) -> Vec<f64> {
        let g = self.graph(x, rng);
        let rec = self.tape.value(g.recon);
        let kl = self.tape.value(g.kl);
        rec.iter()
            .zip(kl.rows())
            .map(|(r, k)| {
                r.to_f64().unwrap_or(f64::NAN) + k.iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).sum::<f64>()
            })
            .collect()
    }

    /// The posterior means and log-variances of a batch (n x latent each).
    pub fn encode(&mut self, x: ArrayView2<T>) -> (Array2<T>, Array2<T>) {
        self.tape.reset();
        let xv = self.tape.constant(x);
        let (mu, lv) = self.encode_graph(xv);
        (self.tape.value(mu).clone(), self.tape.value(lv).clone())
    }

    /// The decoder's mean image for each latent row: pixel probabilities (Bernoulli) or
    /// Gaussian means.
    pub fn decode(&mut self, z: ArrayView2<T>) -> Array2<T> {
        self.tape.reset();
        let zv = self.tape.constant(z);
        let out = self.decode_graph(zv);
        let mean = match self.config.likelihood {
            Likelihood::Bernoulli => self.tape.sigmoid(out),
            Likelihood::Gaussian { .. } => out,
        };
        self.tape.value(mean).clone()
    }

    /// Decodes each image's posterior mean.
    pub fn reconstruct(&mut self, x: ArrayView2<T>) -> Array2<T> {
        let (mu, _) = self.encode(x);
        self.decode(mu.view())
    }

    /// `n` images decoded from z ~ N(0, I).
    pub fn sample(&mut self, n: usize, rng: &mut impl Rng) -> Array2<T> {
        let z = Array2::from_shape_simple_fn((n, self.config.latent), || T::c(StandardNormal.sample(rng)));
        self.decode(z.view())
    }

    /// The importance-sampled estimate of `log p(x)` for each image (Burda et al.'s IWAE
    /// bound with `k` samples from q(z|x)): `log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x)`,
    /// by a max-subtracted log-sum-exp. Samples are decoded `chunk` rows at a time, so
    /// memory stays bounded whatever `k`.
    pub fn log_likelihood(&mut self, x: ArrayView2<T>, k: usize, chunk: usize, rng: &mut impl Rng) -> Vec<f64> {
        let k = k.max(1);
        let chunk = chunk.max(1);
        let (mu, lv) = self.encode(x);
        let (d, px) = (self.config.latent, self.config.input);
        let mut out = Vec::with_capacity(x.nrows());
        let mut log_w = Vec::with_capacity(k);
        let lo = vae_autograd::LOGVAR_RANGE.0;
        let hi = vae_autograd::LOGVAR_RANGE.1;
        for i in 0..x.nrows() {
            log_w.clear();
            let mut done = 0;
            while done < k {
                let s = chunk.min(k - done);
                let mut z = Array2::<T>::zeros((s, d));
                // log p(z) - log q(z|x) = sum_j -z^2/2 + eps^2/2 + lv/2 (the 2 pi terms cancel).
                let mut prior_minus_q = vec![0.0f64; s];
                for (r, mut zr) in z.rows_mut().into_iter().enumerate() {
                    for j in 0..d {
                        let l = lv[[i, j]].to_f64().unwrap_or(f64::NAN).clamp(lo, hi);
                        let e: f64 = StandardNormal.sample(rng);
                        let zz = mu[[i, j]].to_f64().unwrap_or(f64::NAN) + (0.5 * l).exp() * e;
                        zr[j] = T::c(zz);
                        prior_minus_q[r] += -0.5 * zz * zz + 0.5 * e * e + 0.5 * l;
                    }
                }
                self.tape.reset();
                let zv = self.tape.constant(z.view());
                let row = x.row(i);
                let xv = self
                    .tape
                    .constant_with((s, px), |b| b.rows_mut().into_iter().for_each(|mut r| r.assign(&row)));
                let o = self.decode_graph(zv);
                let rec = self.recon_graph(o, xv);
                for (r, &nll) in self.tape.value(rec).iter().enumerate() {
                    log_w.push(-nll.to_f64().unwrap_or(f64::NAN) + prior_minus_q[r]);
                }
                done += s;
            }
            let m = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + log_w.iter().map(|w| (w - m).exp()).sum::<f64>().ln();
            out.push(lse - (k as f64).ln());
        }
        out
    }
}
