//! Matrix product and row-broadcast bias: the dense layer's two halves.

use ndarray::ArrayView2;
use vae_linalg::{elementwise, gemm};

use super::Op;
use super::elementwise::{sl, sl_mut};
use crate::Float;
use crate::tape::{Grads, Tape, Values, Var};

fn op<T>(v: ArrayView2<'_, T>, transpose: bool) -> ArrayView2<'_, T> {
    if transpose { v.reversed_axes() } else { v }
}

impl<T: Float> Tape<T> {
    /// `a * b`.
    pub fn matmul(&mut self, a: Var, b: Var) -> Var {
        self.matmul_t(a, false, b, false)
    }

    /// `op(a) * op(b)`, where `op` transposes (a stride swap, never a copy) when its flag is
    /// set: `matmul_t(x, false, w, true)` is `x * w^T`, the dense layer with PyTorch's
    /// `[out, in]` weight layout.
    ///
    /// # Panics
    /// If the inner dimensions differ.
    pub fn matmul_t(&mut self, a: Var, ta: bool, b: Var, tb: bool) -> Var {
        let (m, k) = op(self.value(a).view(), ta).dim();
        let (k2, n) = op(self.value(b).view(), tb).dim();
        assert_eq!(k, k2, "matmul: inner dimensions differ ({m}x{k} times {k2}x{n})");
        self.record(Op::MatMul { a, b, ta, tb }, (m, n), false, |out, v| {
            gemm(T::one(), op(v.get(a), ta), op(v.get(b), tb), T::zero(), out.view_mut())
        })
    }

    /// `x + bias`, with the 1 x n `bias` added to every row of the m x n `x`.
    ///
    /// # Panics
    /// If `bias` is not 1 x n.
    pub fn add_bias(&mut self, x: Var, bias: Var) -> Var {
        let (m, n) = self.dim(x);
        assert_eq!(
            self.dim(bias),
            (1, n),
            "add_bias: bias must be 1 x {n}, got {:?}",
            self.dim(bias)
        );
        self.record(Op::AddBias { x, bias }, (m, n), false, |out, v| {
            elementwise::add_bias(sl(v.get(x)), sl(v.get(bias)), sl_mut(out))
        })
    }
}

pub(super) fn matmul_backward<T: Float>(
    a: Var,
    b: Var,
    ta: bool,
    tb: bool,
    g: &ndarray::Array2<T>,
    vals: &Values<T>,
    grads: &mut Grads<T>,
) {
    let (av, bv) = (vals.get(a), vals.get(b));
    let g = g.view();
    if vals.wants_grad(a) {
        let (ga, first) = grads.slot(a, av.dim());
        let beta = if first { T::zero() } else { T::one() };
        if ta {
            // a is stored k x m: d(a) = op(b) * g^T.
            gemm(T::one(), op(bv, tb), g.t(), beta, ga.view_mut());
        } else {
            gemm(T::one(), g, op(bv, tb).t(), beta, ga.view_mut());
        }
    }
    if vals.wants_grad(b) {
        let (gb, first) = grads.slot(b, bv.dim());
        let beta = if first { T::zero() } else { T::one() };
        if tb {
            // b is stored n x k: d(b) = g^T * op(a).
            gemm(T::one(), g.t(), op(av, ta), beta, gb.view_mut());
        } else {
            gemm(T::one(), op(av, ta).t(), g, beta, gb.view_mut());
        }
    }
}

pub(super) fn add_bias_backward<T: Float>(
    x: Var,
    bias: Var,
    g: &ndarray::Array2<T>,
    vals: &Values<T>,
    grads: &mut Grads<T>,
) {
    let gs = g.as_slice().expect("gradients are contiguous");
    if vals.wants_grad(x) {
        let (gx, first) = grads.slot(x, g.dim());
        elementwise::scale(T::one(), gs, sl_mut(gx), !first);
    }
    if vals.wants_grad(bias) {
        let (gb, first) = grads.slot(bias, (1, g.ncols()));
        elementwise::column_sums(gs, sl_mut(gb), !first);
    }
}
