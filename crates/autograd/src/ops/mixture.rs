//! The negative log-density of a mixture of diagonal Gaussians with equal weights (the
//! VampPrior's), composed of the tape's own ops: the squared distances of every row to
//! every component are two matrix products, so the work is in the GEMM.

use ndarray::Axis;

use crate::tape::{Tape, Var};
use crate::{Float, LOGVAR_RANGE};

impl<T: Float> Tape<T> {
    /// `-ln (1/C) sum_c N(z_i; mu_c, diag(exp(logvar_c)))` for each row `z_i` of the m x d
    /// `z`, with the C x d `mu` and `logvar` (clamped by the caller to [`LOGVAR_RANGE`]).
    /// Returns m x 1. The exponent of component c,
    /// `-0.5 sum_d (lv_cd + (z_d - mu_cd)^2 exp(-lv_cd))`, is expanded into
    /// `z^2 . p_c - 2 z . (mu_c p_c) + sum_d (lv_cd + mu_cd^2 p_cd)` with `p = exp(-lv)`,
    /// and the mixture is a max-subtracted log-sum-exp. The expansion rounds to about
    /// `eps * exp(-lv) * (z^2 + mu^2)` per dimension (`eps` of `T`): in f32, keep the
    /// log-variances well above the clamp range's floor (the VampPrior keeps them >= -6).
    ///
    /// # Panics
    /// If the widths differ or `mu` and `logvar` differ in shape.
    pub fn gaussian_mixture_nll(&mut self, z: Var, mu: Var, logvar: Var) -> Var {
        let (c, d) = self.dim(mu);
        assert_eq!(
            self.dim(logvar),
            (c, d),
            "gaussian_mixture_nll: mu and logvar differ in shape"
        );
        assert_eq!(
            self.dim(z).1,
            d,
            "gaussian_mixture_nll: z and the components differ in width"
        );
        debug_assert!(
            self.value(logvar)
                .iter()
                .all(|&v| v >= T::c(LOGVAR_RANGE.0) && v <= T::c(LOGVAR_RANGE.1)),
            "gaussian_mixture_nll: logvar outside LOGVAR_RANGE"
        );
        let neg_lv = self.neg(logvar);
        let prec = self.exp(neg_lv);
        let z2 = self.square(z);
        let quad = self.matmul_t(z2, false, prec, true);
        let mp = self.mul(mu, prec);
        let cross = self.matmul_t(z, false, mp, true);
        let mmp = self.mul(mu, mp);
        let per = self.add(logvar, mmp);
        let sums = self.sum_axis(per, Axis(1));
        let consts = self.reshape(sums, (1, c));
        let half_quad = self.scale(quad, T::c(-0.5));
        let partial = self.add(cross, half_quad);
        let half_consts = self.scale(consts, T::c(-0.5));
        let exponent = self.add_bias(partial, half_consts);
        let lse = self.log_sum_exp(exponent, Axis(1));
        let neg = self.neg(lse);
        let offset = T::c(0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln() + (c as f64).ln());
        let offset = self.constant_with((1, 1), |b| b.fill(offset));
        self.add_bias(neg, offset)
    }
}
