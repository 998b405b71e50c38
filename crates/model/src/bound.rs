//! Sampled bounds on `log p(x)`: K samples of every level per image, recorded as one
//! (n K)-row graph so that the decoder's products see n K rows at once; the ELBO and IWAE
//! bounds, the DReG / sticking-the-landing encoder gradients, and the importance-sampled
//! log-likelihood built on the same graph.

use ndarray::{Array2, ArrayView2, Axis, s};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use vae_autograd::{Float, Var};

use crate::vae::{Step, Vae};
use crate::{Bound, Objective};

/// The nodes of a sampled graph; rows are image-major (row `i * K + j` is sample j of
/// image i).
pub(crate) struct Sampled {
    /// `log w = -recon - kl_weight * kl` (n K x 1).
    pub(crate) log_w: Var,
    /// `-log p(x | z1)` (n K x 1).
    pub(crate) recon: Var,
    /// `log q(z | x) - log p(z)` over every level (n K x 1): the sampled KL.
    pub(crate) kl: Var,
    /// The constant the DReG weights are written into after the forward pass.
    pub(crate) dreg_weights: Option<Var>,
}

impl<T: Float> Vae<T> {
    /// Records K samples per image through every level. `dreg` routes the encoder's
    /// gradient through the samples alone: each q density is evaluated with its parameters
    /// detached, and each z passes a [`vae_autograd::Tape::scale_grad_rows`] whose weights
    /// the caller fills in.
    pub(crate) fn sampled_graph(
        &mut self,
        x: ArrayView2<T>,
        k: usize,
        dreg: bool,
        kl_weight: f64,
        rng: &mut impl Rng,
    ) -> Sampled {
        self.tape.reset();
        let (n, rows) = (x.nrows(), x.nrows() * k);
        let levels = self.upper.len() + 1;
        let dim = |c: &crate::VaeConfig, l: usize| if l == 0 { c.latent } else { c.upper[l - 1].latent };
        // One row of noise per sample, every level's numbers together, so that the rows of
        // a shard can be skipped in one count.
        let width: usize = (0..levels).map(|l| dim(&self.config, l)).sum();
        let mut noise = std::mem::take(&mut self.noise_buf);
        if noise.dim() != (rows, width) {
            noise = Array2::zeros((rows, width));
        }
        noise.iter_mut().for_each(|e| *e = T::c(StandardNormal.sample(rng)));
        let xv = self.tape.constant(x);
        let weights = dreg.then(|| self.tape.constant_with((rows, 1), |b| b.fill(T::one())));
        let (mu1, lv1) = self.encode_graph(xv);
        let (mut mu, mut lv) = if k > 1 {
            (self.tape.repeat_rows(mu1, k), self.tape.repeat_rows(lv1, k))
        } else {
            (mu1, lv1)
        };
        // Per level: z as sampled, and z as the densities and the decoder see it.
        let mut zs = std::mem::take(&mut self.zs_buf);
        zs.clear();
        let mut q_nll: Option<Var> = None;
        let mut off = 0;
        for level in 0..levels {
            let d = dim(&self.config, level);
            if level > 0 {
                (mu, lv) = self.upper[level - 1].q.forward(&mut self.tape, zs[level - 1].0);
            }
            // Sample from the variance the density sees (clamped to LOGVAR_RANGE), so that
            // the importance weights stay exact for any encoder output.
            lv = self.clamp_logvar(lv);
            let eps = self
                .tape
                .constant_with((rows, d), |b| b.assign(&noise.slice(s![.., off..off + d])));
            off += d;
            let z = self.reparameterise(mu, lv, eps);
            let (seen, nll) = match weights {
                Some(w) => {
                    let seen = self.tape.scale_grad_rows(z, w);
                    let (md, ld) = if level == 0 {
                        (self.tape.detach(mu), self.tape.detach(lv))
                    } else {
                        self.upper[level - 1]
                            .q
                            .forward_detached(&mut self.tape, zs[level - 1].1)
                    };
                    (seen, self.tape.gaussian_nll(md, ld, seen))
                }
                None => (z, self.tape.gaussian_nll(mu, lv, z)),
            };
            q_nll = Some(match q_nll {
                Some(acc) => self.tape.add(acc, nll),
                None => nll,
            });
            zs.push((z, seen));
        }
        self.noise_buf = noise;
        let top = zs[levels - 1].1;
        let mut p_nll = self.top_prior_nll(top);
        for level in (1..levels).rev() {
            let (pm, plv) = self.upper[level - 1].p.forward(&mut self.tape, zs[level].1);
            let nll = self.tape.gaussian_nll(pm, plv, zs[level - 1].1);
            p_nll = self.tape.add(p_nll, nll);
        }
        let out = self.decode_graph(zs[0].1);
        self.zs_buf = zs;
        let xr = if k > 1 { self.tape.repeat_rows(xv, k) } else { xv };
        let recon = self.recon_graph(out, xr);
        let t = &mut self.tape;
        let kl = t.sub(p_nll, q_nll.expect("a VAE has a level"));
        let weighted = if kl_weight == 1.0 {
            kl
        } else {
            t.scale(kl, T::c(kl_weight))
        };
        let neg = t.add(recon, weighted);
        let log_w = t.neg(neg);
        debug_assert_eq!(t.dim(log_w), (n * k, 1));
        Sampled {
            log_w,
            recon,
            kl,
            dreg_weights: weights,
        }
    }

    /// `logvar` clamped to [`vae_autograd::LOGVAR_RANGE`] (the range the densities use).
    pub(crate) fn clamp_logvar(&mut self, lv: Var) -> Var {
        let (lo, hi) = vae_autograd::LOGVAR_RANGE;
        let t = &mut self.tape;
        let a = t.clamp_min(lv, T::c(lo));
        let b = t.neg(a);
        let c = t.clamp_min(b, T::c(-hi));
        t.neg(c)
    }

    /// Records the sampled objective: `-sum_i bound_i`, the loss its mean; with DReG, fills
    /// the weights of the encoder's path. For IWAE these are `1 - β + β w~` with `w~` the
    /// normalised importance weights and β the KL weight (`w~`, so `w~^2` in all, at β = 1):
    /// the score-function term of `-β log q` is rewritten through the samples, which gives
    /// `β w~ (1 - w~)` per sample; for the ELBO they are ones (the score term has mean 0).
    pub(crate) fn bound_step(&mut self, x: ArrayView2<T>, rng: &mut impl Rng, objective: Objective) -> Step {
        let n = x.nrows();
        let k = objective.samples.max(1);
        let s = self.sampled_graph(x, k, objective.dreg, objective.kl_weight, rng);
        let iwae = objective.bound == Bound::Iwae && k > 1;
        let t = &mut self.tape;
        let recon_sum = t.sum(s.recon);
        let (total, offset) = if iwae {
            let lw = t.reshape(s.log_w, (n, k));
            let lse = t.log_sum_exp(lw, Axis(1));
            let sum = t.sum(lse);
            (t.neg(sum), n as f64 * (k as f64).ln())
        } else {
            let sum = t.sum(s.log_w);
            (t.scale(sum, T::c(-1.0 / k as f64)), 0.0)
        };
        let loss = t.scale(total, T::c(1.0 / n.max(1) as f64));
        if let Some(w) = s.dreg_weights {
            let mut weights = std::mem::take(&mut self.weights_buf);
            if weights.dim() != (n * k, 1) {
                weights = Array2::zeros((n * k, 1));
            }
            weights.fill(T::one());
            if iwae {
                let beta = T::c(objective.kl_weight);
                let lw = t.value(s.log_w);
                for (mut dst, src) in weights
                    .exact_chunks_mut((k, 1))
                    .into_iter()
                    .zip(lw.exact_chunks((k, 1)))
                {
                    normalised_weights(src, dst.view_mut());
                    dst.mapv_inplace(|v| T::one() - beta + beta * v);
                }
            }
            t.set_constant(w, weights.view());
            self.weights_buf = weights;
        }
        Step {
            images: n,
            samples: k,
            loss,
            total,
            offset,
            recon_sum,
            kl: s.kl,
        }
    }

    /// The importance-sampled estimate of `log p(x)` for each image (Burda et al.'s bound
    /// with `k` samples from q(z | x)): `log (1/k) sum_i p(x, z_i) / q(z_i | x)`, by a
    /// max-subtracted log-sum-exp in f64. Each pass decodes up to `chunk` rows: several
    /// images at once when `k < chunk`, else `chunk` samples of one image, so memory stays
    /// bounded whatever `k`.
    pub fn log_likelihood(&mut self, x: ArrayView2<T>, k: usize, chunk: usize, rng: &mut impl Rng) -> Vec<f64> {
        let k = k.max(1);
        let per_pass = k.min(chunk.max(1));
        let images = (chunk.max(1) / per_pass).max(1);
        let mut out = Vec::with_capacity(x.nrows());
        let mut start = 0;
        while start < x.nrows() {
            let block = x.slice(s![start..(start + images).min(x.nrows()), ..]);
            let mut log_w = vec![Vec::with_capacity(k); block.nrows()];
            let mut done = 0;
            while done < k {
                let s = per_pass.min(k - done);
                let g = self.sampled_graph(block, s, false, 1.0, rng);
                for (r, w) in self.tape.value(g.log_w).iter().enumerate() {
                    log_w[r / s].push(w.to_f64().unwrap_or(f64::NAN));
                }
                done += s;
            }
            out.extend(log_w.iter().map(|lw| log_mean_exp(lw)));
            start += block.nrows();
        }
        out
    }
}

/// `log mean exp(w)`, max-subtracted.
fn log_mean_exp(w: &[f64]) -> f64 {
    let m = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + w.iter().map(|v| (v - m).exp()).sum::<f64>().ln() - (w.len() as f64).ln()
}

/// The softmax of one image's log-weights (k x 1) into `dst`.
fn normalised_weights<T: Float>(log_w: ArrayView2<T>, mut dst: ndarray::ArrayViewMut2<T>) {
    let m = log_w.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
    let mut sum = T::zero();
    for (d, &v) in dst.iter_mut().zip(log_w.iter()) {
        *d = (v - m).exp();
        sum = sum + *d;
    }
    dst.iter_mut().for_each(|d| *d = *d / sum);
}
