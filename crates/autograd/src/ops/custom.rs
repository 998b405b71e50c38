//! User-defined operations: a forward and a backward of the user's own, recorded on the tape
//! like any built-in op (see [`CustomOp`] and [`Tape::custom`]).

use std::sync::Arc;

use ndarray::{Array2, ArrayView2};
use vae_linalg::simd::Accum;

use super::Op;
use crate::Float;
use crate::tape::{Grads, Tape, Values, Var};

/// An operation of one to three 2-D inputs that a user defines: its output shape, its value,
/// and the gradient of each input given the output's gradient. Check the backward with
/// [`crate::gradcheck::check_tape`].
///
/// ```
/// use std::sync::Arc;
/// use ndarray::{Array2, ArrayView2, array};
/// use vae_autograd::{CustomOp, Tape, gradcheck};
///
/// /// `x / (1 + |x|)`, whose derivative is `1 / (1 + |x|)^2`.
/// struct Softsign;
///
/// impl CustomOp<f64> for Softsign {
///     fn name(&self) -> &str { "softsign" }
///     fn output_dim(&self, inputs: &[(usize, usize)]) -> (usize, usize) { inputs[0] }
///     fn forward(&self, inputs: &[ArrayView2<f64>], out: &mut Array2<f64>) {
///         out.zip_mut_with(&inputs[0], |o, &x| *o = x / (1.0 + x.abs()));
///     }
///     fn backward(&self, inputs: &[ArrayView2<f64>], _out: ArrayView2<f64>, grad: ArrayView2<f64>, input: usize) -> Array2<f64> {
///         assert_eq!(input, 0);
///         let mut g = grad.to_owned();
///         g.zip_mut_with(&inputs[0], |g, &x| *g /= (1.0 + x.abs()).powi(2));
///         g
///     }
/// }
///
/// let op = Arc::new(Softsign);
/// let x = array![[-2.0, -0.5, 0.25], [0.75, 1.5, 3.0]];
/// let report = gradcheck::check_tape(&[x], Default::default(), |t, v| t.custom(op.clone(), &[v[0]])).unwrap();
/// assert!(report.max_rel_error < 1e-6);
/// ```
pub trait CustomOp<T: Float>: Send + Sync {
    /// A name for error messages.
    fn name(&self) -> &str;
    /// The output's shape (rows, columns) for inputs of these shapes.
    fn output_dim(&self, inputs: &[(usize, usize)]) -> (usize, usize);
    /// Writes the output into `out` (already shaped by [`CustomOp::output_dim`]; its old
    /// contents are unspecified).
    fn forward(&self, inputs: &[ArrayView2<T>], out: &mut Array2<T>);
    /// The gradient of input number `input` (shaped as that input), given the inputs, the
    /// forward's output and the gradient of the loss with respect to that output.
    fn backward(&self, inputs: &[ArrayView2<T>], out: ArrayView2<T>, grad: ArrayView2<T>, input: usize) -> Array2<T>;
}

/// A recorded custom op: the op and its inputs (at most three).
pub(crate) struct Custom<T> {
    pub(crate) op: Arc<dyn CustomOp<T>>,
    pub(crate) inputs: [Option<Var>; 3],
}

impl<T: Float> Tape<T> {
    /// Records a user-defined operation on `inputs` (one to three values).
    ///
    /// # Panics
    /// If there are no inputs or more than three.
    pub fn custom(&mut self, op: Arc<dyn CustomOp<T>>, inputs: &[Var]) -> Var {
        assert!(
            (1..=3).contains(&inputs.len()),
            "custom op '{}': takes one to three inputs, got {}",
            op.name(),
            inputs.len()
        );
        let dims: Vec<(usize, usize)> = inputs.iter().map(|&v| self.dim(v)).collect();
        let dim = op.output_dim(&dims);
        let mut slots = [None; 3];
        for (s, &v) in slots.iter_mut().zip(inputs) {
            *s = Some(v);
        }
        let rec = Custom {
            op: op.clone(),
            inputs: slots,
        };
        self.record(Op::Custom(rec), dim, false, |out, vals| {
            let views: Vec<ArrayView2<T>> = inputs.iter().map(|&v| vals.get(v)).collect();
            op.forward(&views, out);
        })
    }
}

pub(super) fn custom_backward<T: Float>(
    c: &Custom<T>,
    y: &Array2<T>,
    g: &Array2<T>,
    vals: &Values<T>,
    grads: &mut Grads<T>,
) {
    let inputs: Vec<Var> = c.inputs.iter().flatten().copied().collect();
    let views: Vec<ArrayView2<T>> = inputs.iter().map(|&v| vals.get(v)).collect();
    for (i, &v) in inputs.iter().enumerate() {
        if !vals.wants_grad(v) {
            continue;
        }
        let gi = c.op.backward(&views, y.view(), g.view(), i);
        let dim = views[i].dim();
        assert_eq!(
            gi.dim(),
            dim,
            "custom op '{}': the gradient of input {i} is {:?}, the input is {dim:?}",
            c.op.name(),
            gi.dim()
        );
        let (slot, acc) = grads.slot(v, dim);
        match acc {
            Accum::Overwrite => slot.assign(&gi),
            Accum::Add => slot.zip_mut_with(&gi, |s, &v| *s = *s + v),
        }
    }
}
