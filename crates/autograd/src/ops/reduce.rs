//! Reductions: sums along an axis or of everything, the mean, and log-sum-exp.
//! Every reduction adds in a fixed order, so results do not depend on the thread count.

use ndarray::{Array2, Axis};
use vae_linalg::simd::Accum;

use super::Op;
use crate::Float;
use crate::kernels::{acc1, acc3};
use crate::ops::elementwise::{sl, sl_mut};
use crate::tape::{Grads, Tape, Values, Var};

/// The shape left after reducing `dim` along `axis` (kept 2-D).
fn reduced(dim: (usize, usize), axis: Axis) -> (usize, usize) {
    match axis.index() {
        0 => (1, dim.1),
        1 => (dim.0, 1),
        i => panic!("axis {i} out of range for a 2-D value"),
    }
}

impl<T: Float> Tape<T> {
    /// Sum along `axis`, keeping two dimensions: `Axis(0)` sums over the rows (giving
    /// 1 x n), `Axis(1)` over the columns (giving m x 1, one total per row).
    pub fn sum_axis(&mut self, x: Var, axis: Axis) -> Var {
        let dim = reduced(self.dim(x), axis);
        self.record(Op::Sum(x), dim, false, |out, v| {
            let xv = v.get(x);
            if axis.index() == 0 {
                vae_linalg::elementwise::column_sums(sl(xv), sl_mut(out), Accum::Overwrite);
            } else {
                for (o, row) in out.iter_mut().zip(xv.rows()) {
                    *o = row.iter().fold(T::zero(), |s, &a| s + a);
                }
            }
        })
    }

    /// Sum of every element, as 1 x 1.
    pub fn sum(&mut self, x: Var) -> Var {
        self.record(Op::Sum(x), (1, 1), false, |out, v| out[[0, 0]] = total(v.get(x)))
    }

    /// Mean of every element, as 1 x 1.
    pub fn mean(&mut self, x: Var) -> Var {
        self.record(Op::Mean(x), (1, 1), false, |out, v| {
            let xv = v.get(x);
            out[[0, 0]] = total(xv) / T::from_usize(xv.len().max(1)).unwrap_or_else(T::one)
        })
    }

    /// `log(sum(exp(x)))` along `axis` (same shape convention as [`Tape::sum_axis`]),
    /// computed with the maximum subtracted so that it never overflows.
    pub fn log_sum_exp(&mut self, x: Var, axis: Axis) -> Var {
        let dim = reduced(self.dim(x), axis);
        self.record(Op::LogSumExp(x), dim, false, |out, v| {
            let xv = v.get(x);
            for (o, lane) in out.iter_mut().zip(xv.lanes(axis)) {
                let m = lane.iter().fold(T::neg_infinity(), |m, &a| m.max(a));
                *o = if m == T::infinity() || m == T::neg_infinity() {
                    m
                } else {
                    m + lane.iter().fold(T::zero(), |s, &a| s + (a - m).exp()).ln()
                };
            }
        })
    }
}

/// Row sums first, then their sum: a fixed order.
fn total<T: Float>(x: ndarray::ArrayView2<T>) -> T {
    x.rows()
        .into_iter()
        .map(|r| r.iter().fold(T::zero(), |s, &a| s + a))
        .fold(T::zero(), |s, r| s + r)
}

pub(super) fn sum_backward<T: Float>(x: Var, factor: T, g: &Array2<T>, vals: &Values<T>, grads: &mut Grads<T>) {
    if !vals.wants_grad(x) {
        return;
    }
    let dim = vals.get(x).dim();
    let (gx, acc) = grads.slot(x, dim);
    let gb = g.broadcast(dim).expect("a reduced gradient broadcasts back");
    acc1(gx, acc, gb, |v| factor * v);
}

pub(super) fn log_sum_exp_backward<T: Float>(
    x: Var,
    y: &Array2<T>,
    g: &Array2<T>,
    vals: &Values<T>,
    grads: &mut Grads<T>,
) {
    if !vals.wants_grad(x) {
        return;
    }
    let xv = vals.get(x);
    let yb = y.broadcast(xv.dim()).expect("a reduced value broadcasts back");
    let gb = g.broadcast(xv.dim()).expect("a reduced gradient broadcasts back");
    let (gx, acc) = grads.slot(x, xv.dim());
    acc3(gx, acc, xv, yb, gb, |xe, ye, ge| ge * (xe - ye).exp());
}
