//! Fused, numerically stable loss terms of a VAE: the Bernoulli and Gaussian negative
//! log-likelihoods (one total per row, i.e. per image) and the analytic KL divergence of a
//! diagonal Gaussian from N(0, I) (elementwise, so free bits can act per latent unit). The
//! arithmetic is in this crate's SIMD kernels, [`crate::loss_kernels`].

use ndarray::Array2;
use vae_linalg::elementwise::binary;
use vae_linalg::simd::Binary;

use super::Op;
use super::elementwise::{sl, sl_mut};
use crate::kernels::put;
use crate::loss_kernels::{
    bernoulli_nll_grad, bernoulli_nll_rows, gaussian_nll_grad, gaussian_nll_rows, kl_normal, kl_normal_grad_logvar,
};
use crate::tape::{Grads, Tape, Values, Var};
use crate::{Float, LOGVAR_RANGE};

fn range<T: Float>() -> (T, T) {
    (T::c(LOGVAR_RANGE.0), T::c(LOGVAR_RANGE.1))
}

impl<T: Float> Tape<T> {
    /// Bernoulli negative log-likelihood from logits: per row, `sum_j softplus(l) - t * l`,
    /// which equals binary cross-entropy `-t ln p - (1 - t) ln(1 - p)` with `p = sigmoid(l)`
    /// but never takes the log of a rounded probability. Targets may be grey levels in [0, 1].
    /// Returns m x 1.
    pub fn bernoulli_nll(&mut self, logits: Var, target: Var) -> Var {
        let (m, n) = self.dim(logits);
        assert_eq!(
            (m, n),
            self.dim(target),
            "bernoulli_nll: logits and target differ in shape"
        );
        self.record(Op::BernoulliNll { logits, target }, (m, 1), false, |out, v| {
            bernoulli_nll_rows(sl(v.get(logits)), sl(v.get(target)), n, sl_mut(out))
        })
    }

    /// Gaussian negative log-likelihood: per row,
    /// `sum_j 0.5 * (ln(2 pi) + lv + (t - mean)^2 * exp(-lv))`, with `logvar` either the
    /// shape of `mean` or 1 x n (one variance per column, broadcast over rows), clamped to
    /// [`LOGVAR_RANGE`]. With `logvar = 0` this is half the squared error plus a constant.
    /// Returns m x 1.
    pub fn gaussian_nll(&mut self, mean: Var, logvar: Var, target: Var) -> Var {
        let (m, n) = self.dim(mean);
        assert_eq!(
            (m, n),
            self.dim(target),
            "gaussian_nll: mean and target differ in shape"
        );
        let lvd = self.dim(logvar);
        assert!(
            lvd == (m, n) || lvd == (1, n),
            "gaussian_nll: logvar must be {m} x {n} or 1 x {n}, got {lvd:?}"
        );
        self.record(Op::GaussianNll { mean, logvar, target }, (m, 1), false, |out, v| {
            gaussian_nll_rows(
                sl(v.get(mean)),
                sl(v.get(target)),
                sl(v.get(logvar)),
                n,
                range(),
                sl_mut(out),
            )
        })
    }

    /// Elementwise KL divergence of N(mu, exp(logvar)) from N(0, 1):
    /// `-0.5 * (1 + lv - mu^2 - exp(lv))`, with `logvar` clamped to [`LOGVAR_RANGE`].
    /// Sum along `Axis(1)` for the per-image KL.
    pub fn kl_normal(&mut self, mu: Var, logvar: Var) -> Var {
        let dim = self.dim(mu);
        assert_eq!(dim, self.dim(logvar), "kl_normal: mu and logvar differ in shape");
        self.record(Op::KlNormal { mu, logvar }, dim, false, |out, v| {
            kl_normal(sl(v.get(mu)), sl(v.get(logvar)), range(), sl_mut(out))
        })
    }
}

pub(super) fn bernoulli_backward<T: Float>(
    logits: Var,
    target: Var,
    g: &Array2<T>,
    vals: &Values<T>,
    grads: &mut Grads<T>,
) {
    let (l, t) = (vals.get(logits), vals.get(target));
    let gs = g.as_slice().expect("a per-row gradient is contiguous");
    if vals.wants_grad(logits) {
        let (gl, acc) = grads.slot(logits, l.dim());
        bernoulli_nll_grad(gs, sl(l), sl(t), sl_mut(gl), acc);
    }
    if vals.wants_grad(target) {
        // d/dt = -g * l, per row.
        let n = l.ncols();
        let (gt, acc) = grads.slot(target, t.dim());
        let ls = sl(l);
        for (i, o) in sl_mut(gt).iter_mut().enumerate() {
            let v = -gs[i / n.max(1)] * ls[i];
            put(o, v, acc);
        }
    }
}

pub(super) fn gaussian_backward<T: Float>(
    mean: Var,
    logvar: Var,
    target: Var,
    g: &Array2<T>,
    vals: &Values<T>,
    grads: &mut Grads<T>,
) {
    let (mu, t, lv) = (vals.get(mean), vals.get(target), vals.get(logvar));
    let gs = g.as_slice().expect("a per-row gradient is contiguous");
    for (wrt, v) in [(0, mean), (1, target), (2, logvar)] {
        if vals.wants_grad(v) {
            let (gv, acc) = grads.slot(v, vals.get(v).dim());
            gaussian_nll_grad(gs, sl(mu), sl(t), sl(lv), mu.ncols(), range(), wrt, sl_mut(gv), acc);
        }
    }
}

pub(super) fn kl_backward<T: Float>(mu: Var, logvar: Var, g: &Array2<T>, vals: &Values<T>, grads: &mut Grads<T>) {
    let (m, lv) = (vals.get(mu), vals.get(logvar));
    let gs = g.as_slice().expect("gradients are contiguous");
    if vals.wants_grad(mu) {
        let (gm, acc) = grads.slot(mu, m.dim());
        binary(Binary::Mul, gs, sl(m), sl_mut(gm), acc);
    }
    if vals.wants_grad(logvar) {
        let (gl, acc) = grads.slot(logvar, lv.dim());
        kl_normal_grad_logvar(gs, sl(lv), range(), sl_mut(gl), acc);
    }
}
