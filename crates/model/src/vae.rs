//! The VAE itself: parameters on a tape, the graph of one batch, and what users do with it.

use ndarray::{Array2, ArrayView2, Axis};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use vae_autograd::{Float, Tape, Var};
use vae_nn::{Activation, Layer, Linear, Mlp, Named, ParamScope};

use crate::arch::ConvPlan;
use crate::{Arch, ConfigError, Likelihood, Objective, VaeConfig};

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
    /// Samples per image the sums below run over.
    pub samples: usize,
    /// The per-image objective (1 x 1): what `backward` differentiates.
    pub loss: Var,
    /// The batch's summed objective, up to `offset`.
    pub total: Var,
    /// Added to `total`'s value for the objective (the IWAE bound's `n ln K`).
    pub offset: f64,
    /// The batch's reconstruction NLL summed over images and samples.
    pub recon_sum: Var,
    /// The KL: elementwise (n x latent, analytic) or per sample (n K x 1, sampled).
    pub kl: Var,
}

/// The nodes of one batch's graph.
struct Graph {
    /// Per-image reconstruction NLL (n x 1).
    recon: Var,
    /// Elementwise KL (n x latent).
    kl: Var,
}

/// A trunk followed by two linear heads: the mean and log-variance of a diagonal Gaussian.
pub(crate) struct Heads<T> {
    trunk: Box<dyn Layer<T>>,
    mu: Linear,
    logvar: Linear,
}

impl<T: Float> Heads<T> {
    /// The heads `mu` and `logvar` (width `out`, named in `scope`) on `trunk`, which takes
    /// `input` columns and whose parameters come first.
    fn new(scope: &mut ParamScope<T>, trunk: Box<dyn Layer<T>>, input: usize, out: usize, rng: &mut impl Rng) -> Self {
        let h = trunk.output_width(input);
        let mu = Linear::new(&mut scope.child("mu"), h, out, rng);
        let logvar = Linear::new(&mut scope.child("logvar"), h, out, rng);
        Heads { trunk, mu, logvar }
    }

    /// [`Heads::new`] on an MLP trunk `input -> hidden...`, all named in `scope`.
    fn mlp(
        scope: &mut ParamScope<T>,
        input: usize,
        hidden: &[usize],
        out: usize,
        act: Activation,
        rng: &mut impl Rng,
    ) -> Self {
        let trunk = Mlp::new(scope, input, hidden, act, rng);
        Self::new(scope, Box::new(trunk), input, out, rng)
    }

    /// (mu, logvar) of `x`.
    pub(crate) fn forward(&self, t: &mut Tape<T>, x: Var) -> (Var, Var) {
        let h = self.trunk.forward(t, x);
        (self.mu.forward(t, h), self.logvar.forward(t, h))
    }

    /// (mu, logvar) of `x` with the parameters detached.
    pub(crate) fn forward_detached(&self, t: &mut Tape<T>, x: Var) -> (Var, Var) {
        let h = self.trunk.forward_detached(t, x);
        (self.mu.forward_detached(t, h), self.logvar.forward_detached(t, h))
    }
}

/// A stochastic layer above the first: q(z_l | z_{l-1}) and p(z_{l-1} | z_l).
pub(crate) struct Upper<T> {
    pub(crate) q: Heads<T>,
    pub(crate) p: Heads<T>,
}

/// A VAE: its configuration and its parameters on its own tape.
pub struct Vae<T: Float> {
    pub(crate) config: VaeConfig,
    pub(crate) tape: Tape<T>,
    /// q(z1 | x): `encoder.*`.
    encoder: Heads<T>,
    /// The decoder's trunk (`decoder.N.*`), then its output layer (`decoder.out`).
    decoder: Box<dyn Layer<T>>,
    dec_out: Box<dyn Layer<T>>,
    /// The PyTorch shapes of the parameters that are not matrices (convolution weights).
    shapes: Vec<(String, Vec<usize>)>,
    /// Learned per-pixel log-variance (1 x input) of a Gaussian decoder.
    dec_logvar: Option<Var>,
    pub(crate) upper: Vec<Upper<T>>,
    /// The VampPrior's pseudo-inputs (C x input): `prior.pseudo_inputs`.
    pub(crate) pseudo_inputs: Option<Var>,
    /// Scratch for the sampled graphs' noise.
    pub(crate) noise_buf: Array2<T>,
    /// Scratch for the DReG weights.
    pub(crate) weights_buf: Array2<T>,
    /// Scratch for each level's sampled z.
    pub(crate) zs_buf: Vec<(Var, Var)>,
    named: Named,
    params: Vec<Var>,
}

impl<T: Float> Vae<T> {
    /// A freshly initialised VAE (PyTorch's default initialisation, drawn from `rng`).
    pub fn new(config: VaeConfig, rng: &mut impl Rng) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut tape = Tape::new();
        let mut named = Named::new();
        let mut root = ParamScope::new(&mut tape, &mut named);
        let act = config.activation;
        let rev = |h: &[usize]| h.iter().rev().copied().collect::<Vec<_>>();
        let (encoder, decoder, dec_out, shapes) = match &config.arch {
            Arch::Mlp => {
                let encoder = Heads::mlp(
                    &mut root.child("encoder"),
                    config.input,
                    &config.hidden,
                    config.latent,
                    act,
                    rng,
                );
                let mut dec = root.child("decoder");
                let decoder: Box<dyn Layer<T>> =
                    Box::new(Mlp::new(&mut dec, config.latent, &rev(&config.hidden), act, rng));
                let width = decoder.output_width(config.latent);
                let out: Box<dyn Layer<T>> = Box::new(Linear::new(&mut dec.child("out"), width, config.input, rng));
                (encoder, decoder, out, Vec::new())
            }
            Arch::Conv { layers } => {
                let shape = config.shape.expect("validated: a conv model has a shape");
                let plan = ConvPlan::new(shape, layers)?;
                let mut shapes = Vec::new();
                let mut enc = root.child("encoder");
                let trunk = plan.encoder(&mut enc, &config.hidden, act, rng, &mut shapes);
                let encoder = Heads::new(&mut enc, Box::new(trunk), config.input, config.latent, rng);
                let mut dec = root.child("decoder");
                let (decoder, out) = plan.decoder(&mut dec, &config.hidden, config.latent, act, rng, &mut shapes);
                let decoder: Box<dyn Layer<T>> = Box::new(decoder);
                let out: Box<dyn Layer<T>> = Box::new(out);
                (encoder, decoder, out, shapes)
            }
        };
        let mut dec = root.child("decoder");
        let dec_logvar = matches!(config.likelihood, Likelihood::Gaussian { variance: None })
            .then(|| dec.param("logvar", Array2::zeros((1, config.input))));
        let mut upper = Vec::new();
        let mut below = config.latent;
        for (i, l) in config.upper.iter().enumerate() {
            let q = Heads::mlp(
                &mut root.child(&format!("encoder{}", i + 2)),
                below,
                &l.hidden,
                l.latent,
                act,
                rng,
            );
            let p = Heads::mlp(
                &mut root.child(&format!("decoder{}", i + 2)),
                l.latent,
                &rev(&l.hidden),
                below,
                act,
                rng,
            );
            upper.push(Upper { q, p });
            below = l.latent;
        }
        let pseudo_inputs =
            Self::initial_pseudo_inputs(&config, rng).map(|u| root.child("prior").param("pseudo_inputs", u));
        let params = named.iter().map(|(_, v)| *v).collect();
        Ok(Vae {
            config,
            tape,
            encoder,
            decoder,
            dec_out,
            shapes,
            dec_logvar,
            upper,
            pseudo_inputs,
            noise_buf: Array2::zeros((0, 0)),
            weights_buf: Array2::zeros((0, 0)),
            zs_buf: Vec::new(),
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

    /// The shape PyTorch gives the parameter `name` whose value is `dim` on the tape: the
    /// 4-D shape of a convolution's weight, `[n]` for a bias or the learned log-variance
    /// (`1 x n`), else `dim`.
    pub fn stored_shape(&self, name: &str, dim: (usize, usize)) -> Vec<usize> {
        if let Some((_, s)) = self.shapes.iter().find(|(n, _)| n == name) {
            return s.clone();
        }
        if dim.0 == 1 && !name.ends_with(".weight") {
            vec![dim.1]
        } else {
            vec![dim.0, dim.1]
        }
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

    /// Records the first level's encoder on `x`: (mu, logvar).
    pub(crate) fn encode_graph(&mut self, x: Var) -> (Var, Var) {
        self.encoder.forward(&mut self.tape, x)
    }

    /// Records the decoder on `z`: logits (Bernoulli) or means (Gaussian).
    pub(crate) fn decode_graph(&mut self, z: Var) -> Var {
        let t = &mut self.tape;
        let h = self.decoder.forward(t, z);
        self.dec_out.forward(t, h)
    }

    /// Records the per-image reconstruction NLL of `x` under the decoder output `out`.
    pub(crate) fn recon_graph(&mut self, out: Var, x: Var) -> Var {
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
        let z = self.reparameterise(mu, logvar, eps);
        let out = self.decode_graph(z);
        let recon = self.recon_graph(out, xv);
        let kl = self.tape.kl_normal(mu, logvar);
        Graph { recon, kl }
    }

    /// Records the training objective on a batch (forward only). The classic objective
    /// (see [`Objective::is_classic`]) is `(recon + kl_weight * KL') / n` with KL' the
    /// analytic KL after free bits; any other is the negative bound over
    /// `objective.samples` samples per image, divided by n.
    pub fn forward(&mut self, x: ArrayView2<T>, rng: &mut impl Rng, objective: Objective) -> Step {
        if !objective.is_classic(&self.config) {
            return self.bound_step(x, rng, objective);
        }
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
            samples: 1,
            loss,
            total,
            offset: 0.0,
            recon_sum,
            kl: g.kl,
        }
    }

    /// The loss sums of a recorded step (reconstruction and KL averaged over the samples).
    pub fn step_sums(&self, step: &Step) -> LossSums {
        let f = |v: Var| self.tape.scalar(v).to_f64().unwrap_or(f64::NAN);
        let k = step.samples.max(1) as f64;
        LossSums {
            images: step.images,
            recon: f(step.recon_sum) / k,
            kl: self.sum_of(step.kl) / k,
            objective: f(step.total) + step.offset,
        }
    }

    /// Forward and backward on a batch: afterwards the tape holds every parameter's gradient
    /// of the per-image objective (for an optimizer's step). Returns the batch's sums.
    pub fn train_step(&mut self, x: ArrayView2<T>, rng: &mut impl Rng, objective: Objective) -> LossSums {
        let step = self.forward(x, rng, objective);
        self.tape.backward(step.loss);
        self.step_sums(&step)
    }

    /// How many standard normal numbers a training step draws per image (so that a shard
    /// of a batch can skip the rows before it and draw what one process would).
    pub fn noise_per_image(&self, objective: Objective) -> usize {
        if objective.is_classic(&self.config) {
            self.config.latent
        } else {
            objective.samples.max(1) * self.config.latents().iter().sum::<usize>()
        }
    }

    pub(crate) fn sum_of(&self, v: Var) -> f64 {
        self.tape.value(v).iter().map(|x| x.to_f64().unwrap_or(f64::NAN)).sum()
    }

    /// The loss sums on a batch with z sampled (as PyTorch's example evaluates), no
    /// gradient: the analytic KL for one level under the standard normal, else the sampled
    /// one (log q - log p).
    pub fn evaluate(&mut self, x: ArrayView2<T>, rng: &mut impl Rng) -> LossSums {
        let (recon, kl) = if self.has_analytic_kl() {
            let g = self.graph(x, rng);
            (g.recon, g.kl)
        } else {
            let s = self.sampled_graph(x, 1, false, 1.0, rng);
            (s.recon, s.kl)
        };
        let (recon, kl) = (self.sum_of(recon), self.sum_of(kl));
        LossSums {
            images: x.nrows(),
            recon,
            kl,
            objective: recon + kl,
        }
    }

    /// Whether the KL has a closed form: one level under the standard normal.
    fn has_analytic_kl(&self) -> bool {
        self.upper.is_empty() && self.config.prior.is_standard()
    }

    /// The negative ELBO of each image of the batch (one z sample each): an anomaly score.
    pub fn neg_elbo_per_image(&mut self, x: ArrayView2<T>, rng: &mut impl Rng) -> Vec<f64> {
        if !self.has_analytic_kl() {
            let s = self.sampled_graph(x, 1, false, 1.0, rng);
            return self
                .tape
                .value(s.log_w)
                .iter()
                .map(|w| -w.to_f64().unwrap_or(f64::NAN))
                .collect();
        }
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

    /// The posterior means and log-variances of every level (n x latent_l each, z1 first),
    /// each level encoding the mean of the one below.
    pub fn encode_levels(&mut self, x: ArrayView2<T>) -> Vec<(Array2<T>, Array2<T>)> {
        self.tape.reset();
        let xv = self.tape.constant(x);
        let (mut mu, mut lv) = self.encode_graph(xv);
        let mut out = vec![(self.tape.value(mu).clone(), self.tape.value(lv).clone())];
        for l in 0..self.upper.len() {
            (mu, lv) = self.upper[l].q.forward(&mut self.tape, mu);
            out.push((self.tape.value(mu).clone(), self.tape.value(lv).clone()));
        }
        out
    }

    /// The top level's posterior means and log-variances of a batch (n x top latent each):
    /// where [`Vae::decode`] starts.
    pub fn encode(&mut self, x: ArrayView2<T>) -> (Array2<T>, Array2<T>) {
        self.encode_levels(x).pop().expect("a VAE has a level")
    }

    /// The decoder's mean image for each top-level latent row (each level below taking the
    /// mean of p(z_(l-1) | z_l)): pixel probabilities (Bernoulli) or Gaussian means.
    pub fn decode(&mut self, z: ArrayView2<T>) -> Array2<T> {
        self.tape.reset();
        let mut zv = self.tape.constant(z);
        for l in (0..self.upper.len()).rev() {
            zv = self.upper[l].p.forward(&mut self.tape, zv).0;
        }
        self.mean_image(zv)
    }

    /// Decodes each image's posterior mean.
    pub fn reconstruct(&mut self, x: ArrayView2<T>) -> Array2<T> {
        let (mu, _) = self.encode(x);
        self.decode(mu.view())
    }

    /// `n` images from the model: z_top from the prior (N(0, I), or a VampPrior component
    /// chosen uniformly), each level below sampled from p(z_(l-1) | z_l), and the decoder's
    /// mean image of z1.
    pub fn sample(&mut self, n: usize, rng: &mut impl Rng) -> Array2<T> {
        let z = self.sample_top(n, rng);
        if self.upper.is_empty() {
            return self.decode(z.view());
        }
        self.tape.reset();
        let mut zv = self.tape.constant(z.view());
        for l in (0..self.upper.len()).rev() {
            let (mu, lv) = self.upper[l].p.forward(&mut self.tape, zv);
            let d = self.tape.dim(mu);
            let eps = self
                .tape
                .constant_with(d, |b| b.iter_mut().for_each(|e| *e = T::c(StandardNormal.sample(rng))));
            zv = self.reparameterise(mu, lv, eps);
        }
        self.mean_image(zv)
    }

    /// The decoder's mean image of z1: pixel probabilities or Gaussian means.
    fn mean_image(&mut self, z1: Var) -> Array2<T> {
        let out = self.decode_graph(z1);
        let mean = match self.config.likelihood {
            Likelihood::Bernoulli => self.tape.sigmoid(out),
            Likelihood::Gaussian { .. } => out,
        };
        self.tape.value(mean).clone()
    }

    /// Records `mu + exp(logvar / 2) * eps`.
    pub(crate) fn reparameterise(&mut self, mu: Var, logvar: Var, eps: Var) -> Var {
        let t = &mut self.tape;
        let half = t.scale(logvar, T::c(0.5));
        let std = t.exp(half);
        let noise = t.mul(std, eps);
        t.add(mu, noise)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::LevelConfig;

    #[test]
    fn two_level_names_shapes_and_order() {
        let config = VaeConfig {
            input: 6,
            hidden: vec![5, 4],
            latent: 3,
            likelihood: Likelihood::Gaussian { variance: None },
            upper: vec![LevelConfig {
                hidden: vec![4],
                latent: 2,
            }],
            ..VaeConfig::reference()
        };
        let vae = Vae::<f32>::new(config, &mut StdRng::seed_from_u64(0)).unwrap();
        let got: Vec<(&str, (usize, usize))> = vae
            .named_params()
            .iter()
            .map(|(n, v)| (n.as_str(), vae.tape().dim(*v)))
            .collect();
        let expected = [
            ("encoder.0.weight", (5, 6)),
            ("encoder.0.bias", (1, 5)),
            ("encoder.1.weight", (4, 5)),
            ("encoder.1.bias", (1, 4)),
            ("encoder.mu.weight", (3, 4)),
            ("encoder.mu.bias", (1, 3)),
            ("encoder.logvar.weight", (3, 4)),
            ("encoder.logvar.bias", (1, 3)),
            ("decoder.0.weight", (4, 3)),
            ("decoder.0.bias", (1, 4)),
            ("decoder.1.weight", (5, 4)),
            ("decoder.1.bias", (1, 5)),
            ("decoder.out.weight", (6, 5)),
            ("decoder.out.bias", (1, 6)),
            ("decoder.logvar", (1, 6)),
            ("encoder2.0.weight", (4, 3)),
            ("encoder2.0.bias", (1, 4)),
            ("encoder2.mu.weight", (2, 4)),
            ("encoder2.mu.bias", (1, 2)),
            ("encoder2.logvar.weight", (2, 4)),
            ("encoder2.logvar.bias", (1, 2)),
            ("decoder2.0.weight", (4, 2)),
            ("decoder2.0.bias", (1, 4)),
            ("decoder2.mu.weight", (3, 4)),
            ("decoder2.mu.bias", (1, 3)),
            ("decoder2.logvar.weight", (3, 4)),
            ("decoder2.logvar.bias", (1, 3)),
        ];
        assert_eq!(got, expected);
        // Creation order: the optimizer's state is indexed by it.
        assert_eq!(vae.params(), vae.tape().params().collect::<Vec<_>>());
    }
}
