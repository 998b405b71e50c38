//! Elementwise ops: add, sub, mul, scale, neg, and the functions of one input
//! (exp, log, square, activations, softplus, clamp).

use ndarray::{Array2, ArrayView2};
use vae_linalg::elementwise::{binary, scale, unary, unary_grad};
use vae_linalg::simd::{Accum, Binary};

use super::Op;
use crate::Float;
use crate::tape::{Grads, Tape, Values, Var};

/// An elementwise function of one input (the SIMD kernels' own enum).
pub(crate) use vae_linalg::simd::Unary;

/// A value's elements as a slice (every value and gradient on the tape is contiguous).
pub(crate) fn sl<T>(a: ArrayView2<'_, T>) -> &[T] {
    a.to_slice().expect("tape values are standard-layout matrices")
}

/// A buffer's elements as a mutable slice.
pub(crate) fn sl_mut<T>(a: &mut Array2<T>) -> &mut [T] {
    a.as_slice_mut().expect("tape buffers are standard-layout matrices")
}

impl<T: Float> Tape<T> {
    fn binary(&mut self, op: Op<T>, a: Var, b: Var, name: &str, kind: Binary) -> Var {
        let dim = self.dim(a);
        assert_eq!(
            dim,
            self.dim(b),
            "{name}: shapes differ ({dim:?} and {:?})",
            self.dim(b)
        );
        self.record(op, dim, false, |out, v| {
            binary(kind, sl(v.get(a)), sl(v.get(b)), sl_mut(out), Accum::Overwrite)
        })
    }

    fn unary(&mut self, x: Var, f: Unary<T>) -> Var {
        self.record(Op::Unary(x, f), self.dim(x), false, |out, v| {
            unary(f, sl(v.get(x)), sl_mut(out))
        })
    }

    /// `a + b` (same shapes).
    pub fn add(&mut self, a: Var, b: Var) -> Var {
        self.binary(Op::Add(a, b), a, b, "add", Binary::Add)
    }

    /// `a - b` (same shapes).
    pub fn sub(&mut self, a: Var, b: Var) -> Var {
        self.binary(Op::Sub(a, b), a, b, "sub", Binary::Sub)
    }

    /// `a * b`, elementwise (same shapes).
    pub fn mul(&mut self, a: Var, b: Var) -> Var {
        self.binary(Op::Mul(a, b), a, b, "mul", Binary::Mul)
    }

    /// `c * x`.
    pub fn scale(&mut self, x: Var, c: T) -> Var {
        self.record(Op::Scale(x, c), self.dim(x), false, |out, v| {
            scale(c, sl(v.get(x)), sl_mut(out), Accum::Overwrite)
        })
    }

    /// `-x`.
    pub fn neg(&mut self, x: Var) -> Var {
        self.scale(x, -T::one())
    }

    /// `exp(x)`.
    pub fn exp(&mut self, x: Var) -> Var {
        self.unary(x, Unary::Exp)
    }

    /// `ln(x)`.
    pub fn log(&mut self, x: Var) -> Var {
        self.unary(x, Unary::Log)
    }

    /// `x^2`.
    pub fn square(&mut self, x: Var) -> Var {
        self.unary(x, Unary::Square)
    }

    /// `max(x, 0)`; the derivative at 0 is taken as 0.
    pub fn relu(&mut self, x: Var) -> Var {
        self.unary(x, Unary::Relu)
    }

    /// `x` for positive `x`, `slope * x` otherwise.
    pub fn leaky_relu(&mut self, x: Var, slope: T) -> Var {
        self.unary(x, Unary::LeakyRelu(slope))
    }

    /// The logistic function `1 / (1 + exp(-x))`.
    pub fn sigmoid(&mut self, x: Var) -> Var {
        self.unary(x, Unary::Sigmoid)
    }

    /// `tanh(x)`.
    pub fn tanh(&mut self, x: Var) -> Var {
        self.unary(x, Unary::Tanh)
    }

    /// `ln(1 + exp(x))`, computed stably.
    pub fn softplus(&mut self, x: Var) -> Var {
        self.unary(x, Unary::Softplus)
    }

    /// `max(x, c)` (used for free bits); the derivative at `x == c` is taken as 0.
    pub fn clamp_min(&mut self, x: Var, c: T) -> Var {
        self.unary(x, Unary::ClampMin(c))
    }
}

pub(super) fn add_backward<T: Float>(a: Var, b: Var, sign_b: T, g: &Array2<T>, vals: &Values<T>, grads: &mut Grads<T>) {
    let gs = g.as_slice().expect("gradients are contiguous");
    if vals.wants_grad(a) {
        let (ga, acc) = grads.slot(a, g.dim());
        scale(T::one(), gs, sl_mut(ga), acc);
    }
    if vals.wants_grad(b) {
        let (gb, acc) = grads.slot(b, g.dim());
        scale(sign_b, gs, sl_mut(gb), acc);
    }
}

pub(super) fn mul_backward<T: Float>(a: Var, b: Var, g: &Array2<T>, vals: &Values<T>, grads: &mut Grads<T>) {
    let gs = g.as_slice().expect("gradients are contiguous");
    if vals.wants_grad(a) {
        let (ga, acc) = grads.slot(a, g.dim());
        binary(Binary::Mul, gs, sl(vals.get(b)), sl_mut(ga), acc);
    }
    if vals.wants_grad(b) {
        let (gb, acc) = grads.slot(b, g.dim());
        binary(Binary::Mul, gs, sl(vals.get(a)), sl_mut(gb), acc);
    }
}

pub(super) fn scale_backward<T: Float>(x: Var, c: T, g: &Array2<T>, vals: &Values<T>, grads: &mut Grads<T>) {
    if vals.wants_grad(x) {
        let (gx, acc) = grads.slot(x, g.dim());
        scale(c, g.as_slice().expect("gradients are contiguous"), sl_mut(gx), acc);
    }
}

pub(super) fn unary_backward<T: Float>(
    x: Var,
    f: Unary<T>,
    y: &Array2<T>,
    g: &Array2<T>,
    vals: &Values<T>,
    grads: &mut Grads<T>,
) {
    if vals.wants_grad(x) {
        let (gx, acc) = grads.slot(x, g.dim());
        let gs = g.as_slice().expect("gradients are contiguous");
        let ys = y.as_slice().expect("values are contiguous");
        unary_grad(f, gs, sl(vals.get(x)), ys, sl_mut(gx), acc);
    }
}
