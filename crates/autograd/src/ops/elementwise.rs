//! Elementwise ops: add, sub, mul, scale, neg, and the functions of one input
//! (exp, log, square, activations, softplus, clamp).

use ndarray::Array2;

use super::Op;
use crate::Float;
use crate::kernels::{acc1, acc2, acc3, map1, map2};
use crate::tape::{Grads, Tape, Values, Var};

/// An elementwise function of one input.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Unary<T> {
    Exp,
    Log,
    Square,
    Relu,
    LeakyRelu(T),
    Sigmoid,
    Tanh,
    Softplus,
    ClampMin(T),
}

/// The logistic function, stable for large |x| (vectorised for f32).
#[inline(always)]
pub(crate) fn sigmoid<T: Float>(x: T) -> T {
    Float::sigmoid(x)
}

/// `log(1 + exp(x))`, stable for large |x| (vectorised for f32).
#[inline(always)]
pub(crate) fn softplus<T: Float>(x: T) -> T {
    Float::softplus(x)
}

impl<T: Float> Unary<T> {
    #[inline(always)]
    fn forward(self, x: T) -> T {
        match self {
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Square => x * x,
            Unary::Relu => x.max(T::zero()),
            Unary::LeakyRelu(s) => {
                if x > T::zero() {
                    x
                } else {
                    s * x
                }
            }
            Unary::Sigmoid => sigmoid(x),
            Unary::Tanh => x.tanh(),
            Unary::Softplus => softplus(x),
            Unary::ClampMin(c) => x.max(c),
        }
    }

    /// d(output)/d(input) times the upstream gradient `g`, from the input `x` and output `y`.
    #[inline(always)]
    fn backward(self, g: T, x: T, y: T) -> T {
        let zero = T::zero();
        match self {
            Unary::Exp => g * y,
            Unary::Log => g / x,
            Unary::Square => (g + g) * x,
            Unary::Relu => {
                if x > zero {
                    g
                } else {
                    zero
                }
            }
            Unary::LeakyRelu(s) => {
                if x > zero {
                    g
                } else {
                    s * g
                }
            }
            Unary::Sigmoid => g * y * (T::one() - y),
            Unary::Tanh => g * (T::one() - y * y),
            Unary::Softplus => g * sigmoid(x),
            Unary::ClampMin(c) => {
                if x > c {
                    g
                } else {
                    zero
                }
            }
        }
    }
}

impl<T: Float> Tape<T> {
    fn binary(&mut self, op: Op<T>, a: Var, b: Var, name: &str, f: impl Fn(T, T) -> T + Sync + Send) -> Var {
        let dim = self.dim(a);
        assert_eq!(
            dim,
            self.dim(b),
            "{name}: shapes differ ({dim:?} and {:?})",
            self.dim(b)
        );
        self.record(op, dim, false, |out, v| map2(out, v.get(a), v.get(b), f))
    }

    fn unary(&mut self, x: Var, f: Unary<T>) -> Var {
        self.record(Op::Unary(x, f), self.dim(x), false, |out, v| {
            map1(out, v.get(x), |a| f.forward(a))
        })
    }

    /// `a + b` (same shapes).
    pub fn add(&mut self, a: Var, b: Var) -> Var {
        self.binary(Op::Add(a, b), a, b, "add", |x, y| x + y)
    }

    /// `a - b` (same shapes).
    pub fn sub(&mut self, a: Var, b: Var) -> Var {
        self.binary(Op::Sub(a, b), a, b, "sub", |x, y| x - y)
    }

    /// `a * b`, elementwise (same shapes).
    pub fn mul(&mut self, a: Var, b: Var) -> Var {
        self.binary(Op::Mul(a, b), a, b, "mul", |x, y| x * y)
    }

    /// `c * x`.
    pub fn scale(&mut self, x: Var, c: T) -> Var {
        self.record(Op::Scale(x, c), self.dim(x), false, |out, v| {
            map1(out, v.get(x), |a| c * a)
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
    if vals.wants_grad(a) {
        let (ga, first) = grads.slot(a, g.dim());
        acc1(ga, first, g.view(), |v| v);
    }
    if vals.wants_grad(b) {
        let (gb, first) = grads.slot(b, g.dim());
        acc1(gb, first, g.view(), |v| sign_b * v);
    }
}

pub(super) fn mul_backward<T: Float>(a: Var, b: Var, g: &Array2<T>, vals: &Values<T>, grads: &mut Grads<T>) {
    if vals.wants_grad(a) {
        let (ga, first) = grads.slot(a, g.dim());
        acc2(ga, first, g.view(), vals.get(b), |gv, bv| gv * bv);
    }
    if vals.wants_grad(b) {
        let (gb, first) = grads.slot(b, g.dim());
        acc2(gb, first, g.view(), vals.get(a), |gv, av| gv * av);
    }
}

pub(super) fn scale_backward<T: Float>(x: Var, c: T, g: &Array2<T>, vals: &Values<T>, grads: &mut Grads<T>) {
    if vals.wants_grad(x) {
        let (gx, first) = grads.slot(x, g.dim());
        acc1(gx, first, g.view(), |v| c * v);
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
        let (gx, first) = grads.slot(x, g.dim());
        acc3(gx, first, g.view(), vals.get(x), y.view(), |gv, xv, yv| {
            f.backward(gv, xv, yv)
        });
    }
}
