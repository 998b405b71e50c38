//! The SIMD kernels of the loss ops (`ops/loss.rs`): the Bernoulli and Gaussian negative
//! log-likelihoods per row and their gradients, the KL term and its log-variance gradient.
//! Each is a [`Kernel`] written once over `vae_linalg::simd::Vector` with `vae-linalg`'s
//! lanewise loops (no fused multiply-add, row sums in 16 fixed lanes: bitwise the same at
//! every SIMD level) and run at the level in force by `dispatch`; the functions after them
//! split the work across the pool in contiguous chunks of rows or elements.

use vae_linalg::elementwise::{chunk_len, split};
use vae_linalg::lanewise;
use vae_linalg::simd::{Accum, Kernel, Vector, c, dispatch, lane_sum, sigmoid, softplus, zip};
use vae_linalg::team::for_chunks_mut;

use crate::Float;

lanewise!(
    /// `softplus(l) - t * l`: one pixel's Bernoulli negative log-likelihood.
    BernoulliF, 2, |_, [l, t]| softplus(l).sub(t.mul(l))
);
lanewise!(
    /// `g * (sigmoid(l) - t)`.
    BernoulliG, 2, |[g, _, _], [l, t]| g.mul(sigmoid(l).sub(t))
);
lanewise!(
    /// `0.5 (ln 2 pi + lv + (t - m)^2 exp(-lv))`, `lv` clamped to `[lo, hi]`.
    GaussianF, 3, |[lo, hi, _], [m, t, lv]| {
        let lv = clamp(lv, lo, hi);
        let d = t.sub(m);
        c::<V>(0.5).mul(c::<V>(1.837_877_066_409_345_5).add(lv).add(d.mul(d).mul(lv.neg().exp())))
    }
);
lanewise!(
    /// `gs (t - m) exp(-lv)`: the mean's (gs = -g) or target's (gs = g) gradient.
    GaussianMeanG, 3, |[gs, lo, hi], [m, t, lv]| gs.mul(t.sub(m)).mul(clamp(lv, lo, hi).neg().exp())
);
lanewise!(
    /// `g 0.5 (1 - (t - m)^2 exp(-lv))`, zero where `lv` was clamped.
    GaussianLogvarG, 3, |[g, lo, hi], [m, t, lv]| {
        let l = clamp(lv, lo, hi);
        let d = t.sub(m);
        inside(lv, lo, hi, g.mul(c(0.5)).mul(c::<V>(1.0).sub(d.mul(d).mul(l.neg().exp()))))
    }
);
lanewise!(
    /// `-0.5 (1 + lv - mu^2 - exp(lv))`, `lv` clamped.
    KlF, 2, |[lo, hi, _], [m, lv]| {
        let lv = clamp(lv, lo, hi);
        c::<V>(-0.5).mul(c::<V>(1.0).add(lv).sub(m.mul(m)).sub(lv.exp()))
    }
);
lanewise!(
    /// `g 0.5 (exp(lv) - 1)`, zero where `lv` was clamped.
    KlLogvarG, 2, |[lo, hi, _], [g, lv]| {
        let l = clamp(lv, lo, hi);
        inside(lv, lo, hi, g.mul(c(0.5)).mul(l.exp().sub(c(1.0))))
    }
);

/// Per row of logits `l` and targets `t` (row-major, `n` columns):
/// `sum_j softplus(l) - t * l`.
pub struct BernoulliRows<'a, T> {
    /// Logits.
    pub logits: &'a [T],
    /// Targets in [0, 1].
    pub target: &'a [T],
    /// Columns.
    pub n: usize,
    /// One value per row.
    pub out: &'a mut [T],
}

impl<T: Float> Kernel<T> for BernoulliRows<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let n = self.n.max(1);
        for ((o, l), t) in self
            .out
            .iter_mut()
            .zip(self.logits.chunks_exact(n))
            .zip(self.target.chunks_exact(n))
        {
            *o = lane_sum::<V, _>([l, t], &BernoulliF([T::zero(); 3]));
        }
    }
}

/// `out[i, j] (+)= g[i] * (sigmoid(l[i, j]) - t[i, j])`: the Bernoulli loss's gradient with
/// respect to the logits.
pub struct BernoulliGrad<'a, T> {
    /// Upstream gradient, one per row.
    pub g: &'a [T],
    /// Logits.
    pub logits: &'a [T],
    /// Targets.
    pub target: &'a [T],
    /// Gradient of the logits.
    pub out: &'a mut [T],
    /// Overwrite `out` or add to it.
    pub acc: Accum,
}

impl<T: Float> Kernel<T> for BernoulliGrad<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let n = self.logits.len() / self.g.len().max(1);
        let rows = self.out.chunks_exact_mut(n.max(1));
        for (((o, l), t), &g) in rows
            .zip(self.logits.chunks_exact(n.max(1)))
            .zip(self.target.chunks_exact(n.max(1)))
            .zip(self.g)
        {
            zip::<V, _>([l, t], o, self.acc, &BernoulliG([g, T::zero(), T::zero()]));
        }
    }
}

/// Clamps log-variances into `[lo, hi]` (NaN passes through).
#[inline(always)]
fn clamp<V: Vector>(lv: V, lo: V, hi: V) -> V {
    hi.min(lo.max(lv))
}

/// `v` where `lo <= lv <= hi`, zero outside (the gradient through a clamp).
#[inline(always)]
fn inside<V: Vector>(lv: V, lo: V, hi: V, v: V) -> V {
    let zero = c::<V>(0.0);
    V::select_gt(lo, lv, zero, V::select_gt(lv, hi, zero, v))
}

/// Per row: `sum_j 0.5 * (ln(2 pi) + lv + (t - mean)^2 * exp(-lv))`, `lv` the log-variance
/// clamped to `[lo, hi]`, either one per element or one row shared by every row.
pub struct GaussianRows<'a, T> {
    /// Means, row-major.
    pub mean: &'a [T],
    /// Targets, the shape of `mean`.
    pub target: &'a [T],
    /// Log-variances: the shape of `mean`, or one row of `n`.
    pub logvar: &'a [T],
    /// Columns.
    pub n: usize,
    /// The clamp of the log-variance.
    pub range: (T, T),
    /// One value per row.
    pub out: &'a mut [T],
}

impl<T: Float> Kernel<T> for GaussianRows<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let n = self.n.max(1);
        let f = GaussianF([self.range.0, self.range.1, T::zero()]);
        let shared = self.logvar.len() == n;
        for (i, o) in self.out.iter_mut().enumerate() {
            let r = i * n..(i + 1) * n;
            let lv = if shared { self.logvar } else { &self.logvar[r.clone()] };
            *o = lane_sum::<V, 3>([&self.mean[r.clone()], &self.target[r], lv], &f);
        }
    }
}

/// The Gaussian loss's gradients: `d mean = -g (t - mean) exp(-lv)`, `d target = +g (t -
/// mean) exp(-lv)`, `d lv = g 0.5 (1 - (t - mean)^2 exp(-lv))` (zero where `lv` was clamped;
/// summed over rows, in row order, when the log-variance is one shared row).
pub struct GaussianGrad<'a, T> {
    /// Upstream gradient, one per row.
    pub g: &'a [T],
    /// Means.
    pub mean: &'a [T],
    /// Targets.
    pub target: &'a [T],
    /// Log-variances (per element, or one shared row of `n`).
    pub logvar: &'a [T],
    /// Columns.
    pub n: usize,
    /// The clamp of the log-variance.
    pub range: (T, T),
    /// Which gradient: 0 the mean, 1 the target, 2 the log-variance.
    pub wrt: usize,
    /// The gradient to write (shaped as its variable).
    pub out: &'a mut [T],
    /// Overwrite `out` or add to it.
    pub acc: Accum,
}

impl<T: Float> Kernel<T> for GaussianGrad<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let n = self.n.max(1);
        let (lo, hi) = self.range;
        let shared = self.logvar.len() == n;
        if shared && self.wrt == 2 && self.acc == Accum::Overwrite {
            self.out.fill(T::zero());
        }
        for (i, &g) in self.g.iter().enumerate() {
            let r = i * n..(i + 1) * n;
            let lv = if shared { self.logvar } else { &self.logvar[r.clone()] };
            let ins = [&self.mean[r.clone()], &self.target[r.clone()], lv];
            let out = if shared && self.wrt == 2 {
                &mut self.out[..]
            } else {
                &mut self.out[r]
            };
            let acc = if shared && self.wrt == 2 { Accum::Add } else { self.acc };
            match self.wrt {
                0 => zip::<V, 3>(ins, out, acc, &GaussianMeanG([-g, lo, hi])),
                1 => zip::<V, 3>(ins, out, acc, &GaussianMeanG([g, lo, hi])),
                _ => zip::<V, 3>(ins, out, acc, &GaussianLogvarG([g, lo, hi])),
            }
        }
    }
}

/// Elementwise KL divergence of N(mu, exp(lv)) from N(0, 1): `-0.5 (1 + lv - mu^2 -
/// exp(lv))`, `lv` clamped to `range`.
pub struct KlNormal<'a, T> {
    /// Means.
    pub mu: &'a [T],
    /// Log-variances.
    pub logvar: &'a [T],
    /// The clamp of the log-variance.
    pub range: (T, T),
    /// Output.
    pub out: &'a mut [T],
}

impl<T: Float> Kernel<T> for KlNormal<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let f = KlF([self.range.0, self.range.1, T::zero()]);
        zip::<V, 2>([self.mu, self.logvar], self.out, Accum::Overwrite, &f);
    }
}

/// The KL term's gradient with respect to the log-variance: `g 0.5 (exp(lv) - 1)`, zero
/// where `lv` was clamped.
pub struct KlGradLogvar<'a, T> {
    /// Upstream gradient.
    pub g: &'a [T],
    /// Log-variances.
    pub logvar: &'a [T],
    /// The clamp of the log-variance.
    pub range: (T, T),
    /// The gradient to write.
    pub out: &'a mut [T],
    /// Overwrite `out` or add to it.
    pub acc: Accum,
}

impl<T: Float> Kernel<T> for KlGradLogvar<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let f = KlLogvarG([self.range.0, self.range.1, T::zero()]);
        zip::<V, 2>([self.g, self.logvar], self.out, self.acc, &f);
    }
}

/// Per row: `sum_j softplus(l) - t * l` (the Bernoulli negative log-likelihood of targets
/// `t` in [0, 1] under logits `l`; `n` columns).
pub fn bernoulli_nll_rows<T: Float>(logits: &[T], target: &[T], n: usize, out: &mut [T]) {
    let rows = chunk_len(out.len(), logits.len(), 1);
    if rows >= out.len() {
        return dispatch(BernoulliRows { logits, target, n, out });
    }
    let n1 = n.max(1);
    for_chunks_mut(out, rows, |row, out| {
        let r = row * n1..(row + out.len()) * n1;
        let (logits, target) = (&logits[r.clone()], &target[r]);
        dispatch(BernoulliRows { logits, target, n, out })
    });
}

/// `out[i, j] (+)= g[i] * (sigmoid(l[i, j]) - t[i, j])`.
pub fn bernoulli_nll_grad<T: Float>(g: &[T], logits: &[T], target: &[T], out: &mut [T], acc: Accum) {
    let n = logits.len() / g.len().max(1);
    let rows = chunk_len(g.len(), logits.len(), 1);
    let len = rows * n.max(1);
    if len >= out.len() {
        return dispatch(BernoulliGrad {
            g,
            logits,
            target,
            out,
            acc,
        });
    }
    let n1 = n.max(1);
    for_chunks_mut(out, len, |start, out| {
        let r = start..start + out.len();
        let g = &g[start / n1..(start + out.len()) / n1];
        let (logits, target) = (&logits[r.clone()], &target[r]);
        dispatch(BernoulliGrad {
            g,
            logits,
            target,
            out,
            acc,
        })
    });
}

/// Per row: the Gaussian negative log-likelihood (see [`GaussianRows`]).
pub fn gaussian_nll_rows<T: Float>(mean: &[T], target: &[T], logvar: &[T], n: usize, range: (T, T), out: &mut [T]) {
    let n1 = n.max(1);
    let shared = logvar.len() == n1;
    let rows = chunk_len(out.len(), mean.len(), 1);
    for_chunks_mut(out, rows, |row, out| {
        let r = row * n1..(row + out.len()) * n1;
        let lv = if shared { logvar } else { &logvar[r.clone()] };
        dispatch(GaussianRows {
            mean: &mean[r.clone()],
            target: &target[r],
            logvar: lv,
            n,
            range,
            out,
        })
    });
}

/// One gradient of the Gaussian negative log-likelihood (see [`GaussianGrad`]; `wrt`: 0 the
/// mean, 1 the target, 2 the log-variance). Split by rows across the pool, except the
/// gradient of a shared log-variance row, which sums the rows in order.
#[allow(clippy::too_many_arguments)]
pub fn gaussian_nll_grad<T: Float>(
    g: &[T],
    mean: &[T],
    target: &[T],
    logvar: &[T],
    n: usize,
    range: (T, T),
    wrt: usize,
    out: &mut [T],
    acc: Accum,
) {
    let n1 = n.max(1);
    let shared = logvar.len() == n1;
    if shared && wrt == 2 {
        return dispatch(GaussianGrad {
            g,
            mean,
            target,
            logvar,
            n,
            range,
            wrt,
            out,
            acc,
        });
    }
    let rows = chunk_len(g.len(), mean.len(), 1);
    for_chunks_mut(out, rows * n1, |start, out| {
        let r = start..start + out.len();
        let lv = if shared { logvar } else { &logvar[r.clone()] };
        dispatch(GaussianGrad {
            g: &g[start / n1..(start + out.len()) / n1],
            mean: &mean[r.clone()],
            target: &target[r],
            logvar: lv,
            n,
            range,
            wrt,
            out,
            acc,
        })
    });
}

/// Elementwise KL divergence of N(mu, exp(lv)) from N(0, 1) (see [`KlNormal`]).
pub fn kl_normal<T: Float>(mu: &[T], logvar: &[T], range: (T, T), out: &mut [T]) {
    split(out, [mu, logvar], 16, |out, [mu, logvar]| {
        dispatch(KlNormal { mu, logvar, range, out })
    });
}

/// The KL term's gradient with respect to the log-variance (see [`KlGradLogvar`]).
pub fn kl_normal_grad_logvar<T: Float>(g: &[T], logvar: &[T], range: (T, T), out: &mut [T], acc: Accum) {
    split(out, [g, logvar], 16, |out, [g, logvar]| {
        dispatch(KlGradLogvar {
            g,
            logvar,
            range,
            out,
            acc,
        })
    });
}
