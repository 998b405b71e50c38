//! Matrix product and row-broadcast bias: the dense layer's two halves.

use ndarray::ArrayView2;
use vae_linalg::simd::Unary;
use vae_linalg::{elementwise, gemm, gemm_bias_act};

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

    /// `act(x w^T + b)`, a dense layer with PyTorch's `[out, in]` weight layout and a 1 x out
    /// bias, as one op: one product whose multiply-add chains start from the bias and whose
    /// activation is applied as the result is stored (`vae_linalg::gemm_bias_act`); its
    /// backward takes the activation's derivative from the output. After `backward`, the
    /// node's gradient holds the gradient of the pre-activation.
    ///
    /// # Panics
    /// If the shapes do not agree.
    pub fn dense(&mut self, x: Var, w: Var, b: Var, act: Option<DenseAct<T>>) -> Var {
        let (m, k) = self.dim(x);
        let (n, k2) = self.dim(w);
        assert!(
            k == k2 && self.dim(b) == (1, n),
            "dense: x {:?}, w {:?} and b {:?} do not agree (w is [out, in], b is 1 x out)",
            self.dim(x),
            self.dim(w),
            self.dim(b)
        );
        if let Some(DenseAct::LeakyRelu(s)) = act {
            // With a negative slope the output's sign would no longer tell the input's.
            assert!(
                s >= T::zero(),
                "dense: leaky ReLU slope {s} is negative (use leaky_relu)"
            );
        }
        let act = act.map(DenseAct::unary);
        self.record(Op::Dense { x, w, b, act }, (m, n), false, |out, v| {
            gemm_bias_act(v.get(x), v.get(w).t(), sl(v.get(b)), act, out.view_mut())
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
        let (ga, acc) = grads.slot(a, av.dim());
        if ta {
            // a is stored k x m: d(a) = op(b) * g^T.
            gemm(T::one(), op(bv, tb), g.t(), acc.beta(), ga.view_mut());
        } else {
            gemm(T::one(), g, op(bv, tb).t(), acc.beta(), ga.view_mut());
        }
    }
    if vals.wants_grad(b) {
        let (gb, acc) = grads.slot(b, bv.dim());
        if tb {
            // b is stored n x k: d(b) = g^T * op(a).
            gemm(T::one(), g.t(), op(av, ta), acc.beta(), gb.view_mut());
        } else {
            gemm(T::one(), op(av, ta).t(), g, acc.beta(), gb.view_mut());
        }
    }
}

/// The backward of [`Tape::dense`]: the pre-activation gradient (in `g`'s own buffer), then
/// `dx = g w`, `dw = g^T x`, `db = column sums of g`.
#[allow(clippy::too_many_arguments)]
pub(super) fn dense_backward<T: Float>(
    x: Var,
    w: Var,
    b: Var,
    act: Option<Unary<T>>,
    y: &ndarray::Array2<T>,
    g: &mut ndarray::Array2<T>,
    vals: &Values<T>,
    grads: &mut Grads<T>,
) {
    if let Some(f) = act {
        let ys = y.as_slice().expect("values are contiguous");
        let gs = g.as_slice_mut().expect("gradients are contiguous");
        elementwise::unary_grad_from_output(f, ys, gs);
    }
    let g = &*g;
    let gv = g.view();
    if vals.wants_grad(x) {
        let (gx, acc) = grads.slot(x, vals.get(x).dim());
        gemm(T::one(), gv, vals.get(w), acc.beta(), gx.view_mut());
    }
    if vals.wants_grad(w) {
        let (gw, acc) = grads.slot(w, vals.get(w).dim());
        gemm(T::one(), gv.t(), vals.get(x), acc.beta(), gw.view_mut());
    }
    if vals.wants_grad(b) {
        let (gb, acc) = grads.slot(b, (1, g.ncols()));
        elementwise::column_sums(sl(gv), sl_mut(gb), acc);
    }
}

/// An activation a fused dense layer can apply: one whose derivative follows from its output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DenseAct<T> {
    /// `max(x, 0)`.
    Relu,
    /// `x` if positive, else `slope * x` (`slope >= 0`).
    LeakyRelu(T),
    /// The logistic function.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
}

impl<T: Float> DenseAct<T> {
    pub(crate) fn unary(self) -> Unary<T> {
        match self {
            DenseAct::Relu => Unary::Relu,
            DenseAct::LeakyRelu(s) => Unary::LeakyRelu(s),
            DenseAct::Sigmoid => Unary::Sigmoid,
            DenseAct::Tanh => Unary::Tanh,
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
        let (gx, acc) = grads.slot(x, g.dim());
        elementwise::scale(T::one(), gs, sl_mut(gx), acc);
    }
    if vals.wants_grad(bias) {
        let (gb, acc) = grads.slot(bias, (1, g.ncols()));
        elementwise::column_sums(gs, sl_mut(gb), acc);
    }
}
