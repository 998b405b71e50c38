//! Fused, numerically stable loss terms of a VAE: the Bernoulli and Gaussian negative
//! log-likelihoods (one total per row, i.e. per image) and the analytic KL divergence of a
//! diagonal Gaussian from N(0, I) (elementwise, so free bits can act per latent unit).

use ndarray::{Array2, ArrayView2, Zip};

use super::Op;
use super::elementwise::{sigmoid, softplus};
use crate::kernels::{acc2, fill_indexed, lane_sum2, put, rows_acc2};
use crate::tape::{Grads, Tape, Values, Var};
use crate::{Float, LOGVAR_RANGE};

/// `ln(2 * pi)`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Clamps a log-variance into [`LOGVAR_RANGE`]; the second value says whether it was inside
/// (outside, the gradient through the clamp is zero).
#[inline(always)]
fn clamp_logvar<T: Float>(lv: T) -> (T, bool) {
    let (lo, hi) = (T::c(LOGVAR_RANGE.0), T::c(LOGVAR_RANGE.1));
    if lv < lo {
        (lo, false)
    } else if lv > hi {
        (hi, false)
    } else {
        (lv, true)
    }
}

/// Row `i` of a standard-layout matrix as a slice.
fn row<'a, T>(a: &ArrayView2<'a, T>, i: usize) -> &'a [T] {
    let n = a.ncols();
    let s = a.to_slice().expect("loss inputs are standard-layout matrices");
    &s[i * n..(i + 1) * n]
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
            let (l, t) = (v.get(logits), v.get(target));
            fill_indexed(out, m * n, |i| {
                lane_sum2(row(&l, i), row(&t, i), |l, t| softplus(l) - t * l)
            })
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
            let (mu, t) = (v.get(mean), v.get(target));
            let lv_raw = v.get(logvar);
            let lv = lv_raw.broadcast((m, n)).expect("checked above");
            let half = T::c(0.5);
            let c = T::c(LN_2PI);
            fill_indexed(out, m * n, |i| {
                let mut s = T::zero();
                Zip::from(mu.row(i))
                    .and(t.row(i))
                    .and(lv.row(i))
                    .for_each(|&mu, &t, &lv| {
                        let (lv, _) = clamp_logvar(lv);
                        let d = t - mu;
                        s = s + half * (c + lv + d * d * (-lv).exp());
                    });
                s
            })
        })
    }

    /// Elementwise KL divergence of N(mu, exp(logvar)) from N(0, 1):
    /// `-0.5 * (1 + lv - mu^2 - exp(lv))`, with `logvar` clamped to [`LOGVAR_RANGE`].
    /// Sum along `Axis(1)` for the per-image KL.
    pub fn kl_normal(&mut self, mu: Var, logvar: Var) -> Var {
        let dim = self.dim(mu);
        assert_eq!(dim, self.dim(logvar), "kl_normal: mu and logvar differ in shape");
        self.record(Op::KlNormal { mu, logvar }, dim, false, |out, v| {
            let half = T::c(0.5);
            Zip::from(out)
                .and(&v.get(mu))
                .and(&v.get(logvar))
                .for_each(|o, &m, &lv| {
                    let (lv, _) = clamp_logvar(lv);
                    *o = -half * (T::one() + lv - m * m - lv.exp());
                });
        })
    }
}

fn broadcast_col<'a, T>(g: &'a Array2<T>, dim: (usize, usize)) -> ArrayView2<'a, T> {
    g.broadcast(dim).expect("a per-row gradient broadcasts over columns")
}

pub(super) fn bernoulli_backward<T: Float>(
    logits: Var,
    target: Var,
    g: &Array2<T>,
    vals: &Values<T>,
    grads: &mut Grads<T>,
) {
    let (l, t) = (vals.get(logits), vals.get(target));
    let g = g.as_slice().expect("a per-row gradient is contiguous");
    if vals.wants_grad(logits) {
        let (gl, first) = grads.slot(logits, l.dim());
        rows_acc2(gl, l, t, |i, o, l, t| {
            let gi = g[i];
            for ((o, &l), &t) in o.iter_mut().zip(l).zip(t) {
                put(o, gi * (sigmoid(l) - t), first);
            }
        });
    }
    if vals.wants_grad(target) {
        let (gt, first) = grads.slot(target, t.dim());
        rows_acc2(gt, l, t, |i, o, l, _| {
            let gi = g[i];
            for (o, &l) in o.iter_mut().zip(l) {
                put(o, -gi * l, first);
            }
        });
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
    let (mu, t) = (vals.get(mean), vals.get(target));
    let dim = mu.dim();
    let lv_raw = vals.get(logvar);
    let lv = lv_raw.broadcast(dim).expect("checked in forward");
    let gb = broadcast_col(g, dim);
    // d/dmean = -(t - mean) * exp(-lv); d/dt = +(t - mean) * exp(-lv).
    for (v, sign) in [(mean, -T::one()), (target, T::one())] {
        if vals.wants_grad(v) {
            let (gv, first) = grads.slot(v, dim);
            Zip::from(gv)
                .and(gb)
                .and(mu)
                .and(t)
                .and(lv)
                .for_each(|o, &g, &m, &tt, &l| {
                    let (l, _) = clamp_logvar(l);
                    crate::kernels::put(o, sign * g * (tt - m) * (-l).exp(), first);
                });
        }
    }
    if vals.wants_grad(logvar) {
        let half = T::c(0.5);
        let d_lv = |g: T, m: T, tt: T, l: T| {
            let (l, inside) = clamp_logvar(l);
            let d = tt - m;
            if inside {
                g * half * (T::one() - d * d * (-l).exp())
            } else {
                T::zero()
            }
        };
        let (gl, first) = grads.slot(logvar, lv_raw.dim());
        if lv_raw.dim() == dim {
            Zip::from(gl)
                .and(gb)
                .and(mu)
                .and(t)
                .and(lv)
                .for_each(|o, &g, &m, &tt, &l| {
                    crate::kernels::put(o, d_lv(g, m, tt, l), first);
                });
        } else {
            // One variance per column: the gradient sums over rows, in row order.
            if first {
                gl.fill(T::zero());
            }
            for i in 0..dim.0 {
                Zip::from(gl.row_mut(0))
                    .and(gb.row(i))
                    .and(mu.row(i))
                    .and(t.row(i))
                    .and(lv_raw.row(0))
                    .for_each(|o, &g, &m, &tt, &l| *o = *o + d_lv(g, m, tt, l));
            }
        }
    }
}

pub(super) fn kl_backward<T: Float>(mu: Var, logvar: Var, g: &Array2<T>, vals: &Values<T>, grads: &mut Grads<T>) {
    let (m, lv) = (vals.get(mu), vals.get(logvar));
    if vals.wants_grad(mu) {
        let (gm, first) = grads.slot(mu, m.dim());
        acc2(gm, first, g.view(), m, |g, m| g * m);
    }
    if vals.wants_grad(logvar) {
        let (gl, first) = grads.slot(logvar, lv.dim());
        let half = T::c(0.5);
        acc2(gl, first, g.view(), lv, |g, l| {
            let (l, inside) = clamp_logvar(l);
            if inside {
                g * half * (l.exp() - T::one())
            } else {
                T::zero()
            }
        });
    }
}
