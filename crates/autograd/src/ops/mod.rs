//! The operations: what each records, computes forward, and sends backward.
//!
//! Forward constructors are methods on [`Tape`](crate::Tape), grouped by kind in the
//! submodules; [`backward`] dispatches a node's gradient to its inputs.

mod conv;
pub(crate) mod custom;
mod elementwise;
mod linear;
mod loss;
mod mixture;
mod reduce;
mod shape;

pub use conv::ConvGeometry;
pub use linear::DenseAct;
use ndarray::Array2;
pub use ndarray::Axis;

use crate::Float;
use crate::tape::{Grads, Values, Var};

pub(crate) use elementwise::Unary;

/// How a node was made, with the input handles and constants its backward needs.
pub(crate) enum Op<T> {
    /// A parameter, data, or gradient-check input.
    Leaf,
    /// `op(a) * op(b)`, with `op` a transpose when the flag is set.
    MatMul { a: Var, b: Var, ta: bool, tb: bool },
    /// `x + bias`, `bias` (1 x n) broadcast over the rows of `x`.
    AddBias { x: Var, bias: Var },
    /// `act(x w^T + b)`: a dense layer in one product (`w` is `[out, in]`, `b` is 1 x out;
    /// `act` one whose derivative follows from its output).
    Dense {
        x: Var,
        w: Var,
        b: Var,
        act: Option<Unary<T>>,
    },
    /// `act(conv(x, w) + b)`, a convolution or transposed convolution (`geom`) of a batch
    /// of channels-last images.
    Conv {
        x: Var,
        w: Var,
        b: Var,
        geom: conv::ConvGeometry,
        act: Option<Unary<T>>,
    },
    /// `a + b`.
    Add(Var, Var),
    /// `a - b`.
    Sub(Var, Var),
    /// `a * b`, elementwise.
    Mul(Var, Var),
    /// `c * x`.
    Scale(Var, T),
    /// An elementwise function of one input.
    Unary(Var, Unary<T>),
    /// Sum along an axis or of everything (the gradient broadcasts back either way).
    Sum(Var),
    /// Mean of everything.
    Mean(Var),
    /// `log(sum(exp(x)))` along an axis, max-subtracted.
    LogSumExp(Var),
    /// Per-row `sum(softplus(l) - t * l)`.
    BernoulliNll { logits: Var, target: Var },
    /// Per-row Gaussian negative log-likelihood.
    GaussianNll { mean: Var, logvar: Var, target: Var },
    /// Elementwise KL(N(mu, exp(logvar)) || N(0, 1)).
    KlNormal { mu: Var, logvar: Var },
    /// Each row repeated `k` times.
    RepeatRows(Var, usize),
    /// The same elements in another shape.
    Reshape(Var),
    /// Each row, a `rows x cols` matrix, transposed (images between `[C, H, W]` and
    /// `[H, W, C]`).
    TransposeRows { x: Var, rows: usize, cols: usize },
    /// The identity, with each row's gradient multiplied by `w`'s row.
    ScaleGradRows { x: Var, w: Var },
    /// A user-defined operation.
    Custom(custom::Custom<T>),
}

impl<T> Op<T> {
    /// The input handles, for the requires-grad flag.
    pub(crate) fn inputs(&self) -> [Option<Var>; 3] {
        match *self {
            Op::Leaf => [None; 3],
            Op::MatMul { a, b, .. } | Op::Add(a, b) | Op::Sub(a, b) | Op::Mul(a, b) => [Some(a), Some(b), None],
            Op::AddBias { x, bias } => [Some(x), Some(bias), None],
            Op::Dense { x, w, b, .. } | Op::Conv { x, w, b, .. } => [Some(x), Some(w), Some(b)],
            Op::Scale(x, _)
            | Op::Unary(x, _)
            | Op::Sum(x)
            | Op::Mean(x)
            | Op::LogSumExp(x)
            | Op::RepeatRows(x, _)
            | Op::Reshape(x)
            | Op::TransposeRows { x, .. } => [Some(x), None, None],
            // The weights never get a gradient, so they are not an input for the flag.
            Op::ScaleGradRows { x, .. } => [Some(x), None, None],
            Op::BernoulliNll { logits, target } => [Some(logits), Some(target), None],
            Op::GaussianNll { mean, logvar, target } => [Some(mean), Some(logvar), Some(target)],
            Op::KlNormal { mu, logvar } => [Some(mu), Some(logvar), None],
            Op::Custom(ref c) => c.inputs,
        }
    }
}

/// Sends the gradient `g` of a node with value `y` to the inputs that need one. (`g` is the
/// node's own buffer, which a fused op may turn into the gradient of its pre-activation.)
pub(crate) fn backward<T: Float>(op: &Op<T>, y: &Array2<T>, g: &mut Array2<T>, vals: &Values<T>, grads: &mut Grads<T>) {
    if let Op::Dense { x, w, b, act } = *op {
        return linear::dense_backward(x, w, b, act, y, g, vals, grads);
    }
    if let Op::Conv { x, w, b, ref geom, act } = *op {
        return conv::conv_backward(x, w, b, geom, act, y, g, vals, grads);
    }
    let g = &*g;
    match *op {
        Op::Dense { .. } | Op::Conv { .. } => unreachable!("handled above"),
        Op::Custom(ref c) => custom::custom_backward(c, y, g, vals, grads),
        Op::Leaf => {}
        Op::MatMul { a, b, ta, tb } => linear::matmul_backward(a, b, ta, tb, g, vals, grads),
        Op::AddBias { x, bias } => linear::add_bias_backward(x, bias, g, vals, grads),
        Op::Add(a, b) => elementwise::add_backward(a, b, T::one(), g, vals, grads),
        Op::Sub(a, b) => elementwise::add_backward(a, b, -T::one(), g, vals, grads),
        Op::Mul(a, b) => elementwise::mul_backward(a, b, g, vals, grads),
        Op::Scale(x, c) => elementwise::scale_backward(x, c, g, vals, grads),
        Op::Unary(x, f) => elementwise::unary_backward(x, f, y, g, vals, grads),
        Op::Sum(x) => reduce::sum_backward(x, T::one(), g, vals, grads),
        Op::Mean(x) => {
            let n = T::from_usize(vals.get(x).len()).unwrap_or_else(T::one);
            reduce::sum_backward(x, T::one() / n, g, vals, grads)
        }
        Op::LogSumExp(x) => reduce::log_sum_exp_backward(x, y, g, vals, grads),
        Op::BernoulliNll { logits, target } => loss::bernoulli_backward(logits, target, g, vals, grads),
        Op::GaussianNll { mean, logvar, target } => loss::gaussian_backward(mean, logvar, target, g, vals, grads),
        Op::KlNormal { mu, logvar } => loss::kl_backward(mu, logvar, g, vals, grads),
        Op::RepeatRows(x, k) => shape::repeat_rows_backward(x, k, g, vals, grads),
        Op::Reshape(x) => shape::reshape_backward(x, g, vals, grads),
        Op::TransposeRows { x, rows, cols } => shape::transpose_rows_backward(x, rows, cols, g, vals, grads),
        Op::ScaleGradRows { x, w } => shape::scale_grad_rows_backward(x, w, g, vals, grads),
    }
}
