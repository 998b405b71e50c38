//! Gradient checking by central finite differences, in `f64`.
//!
//! [`check`] perturbs every element of every input by `±h` and `±2h`, re-evaluates the
//! function, and compares the five-point central difference
//! `(8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))) / 12h` (truncation error O(h^4), so `h` can
//! be large enough for rounding noise to stay small) with the analytic gradient by the
//! relative error
//! `|a - n| / max(|a|, |n|, floor)`: relative where gradients are large, absolute (scaled by
//! `floor`) near zero, where finite differences carry only rounding noise.
//! [`check_tape`] does this for a graph built on a [`Tape`], whose non-scalar output is
//! reduced to a scalar with fixed, distinct weights so that every output element matters.

use ndarray::Array2;

use crate::{Tape, Var};

/// Tolerances of a gradient check.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Finite-difference step `h` (the stencil reaches `±2h`: keep kinks farther away).
    pub step: f64,
    /// Largest relative error accepted.
    pub rtol: f64,
    /// Denominator floor of the relative error (an absolute tolerance of `rtol * floor`).
    pub floor: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            step: 1e-3,
            rtol: 1e-6,
            floor: 1e-3,
        }
    }
}

/// What a passing check saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    /// Number of gradient elements compared.
    pub checked: usize,
    /// The largest relative error among them.
    pub max_rel_error: f64,
}

/// Why a gradient check failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// An analytic derivative disagrees with the finite difference.
    #[error("input {input} element [{row}, {col}]: analytic {analytic:e}, numeric {numeric:e}, relative error {rel:e}")]
    Mismatch {
        /// Which input.
        input: usize,
        /// Row of the element.
        row: usize,
        /// Column of the element.
        col: usize,
        /// The gradient the function reported.
        analytic: f64,
        /// The central finite difference.
        numeric: f64,
        /// Their relative error.
        rel: f64,
    },
    /// The function returned a gradient of the wrong shape, or none, for an input.
    #[error("input {input}: gradient has shape {got:?}, expected {want:?}")]
    Shape {
        /// Which input.
        input: usize,
        /// The shape returned.
        got: Option<(usize, usize)>,
        /// The input's shape.
        want: (usize, usize),
    },
}

/// Checks the gradients that `f` returns (its value and one gradient per input) against
/// central finite differences of its value, on every element of every input.
pub fn check(
    inputs: &[Array2<f64>],
    config: Config,
    mut f: impl FnMut(&[Array2<f64>]) -> (f64, Vec<Option<Array2<f64>>>),
) -> Result<Report, Error> {
    let (_, analytic) = f(inputs);
    let mut report = Report::default();
    let mut x: Vec<Array2<f64>> = inputs.to_vec();
    for (input, want) in inputs.iter().enumerate() {
        let grad = match analytic.get(input) {
            Some(Some(g)) if g.dim() == want.dim() => g,
            other => {
                return Err(Error::Shape {
                    input,
                    got: other.and_then(|g| g.as_ref().map(|g| g.dim())),
                    want: want.dim(),
                });
            }
        };
        for ((row, col), &a) in grad.indexed_iter() {
            let orig = x[input][[row, col]];
            let h = config.step;
            let mut at = |delta: f64| {
                x[input][[row, col]] = orig + delta;
                f(&x).0
            };
            let near = at(h) - at(-h);
            let far = at(2.0 * h) - at(-2.0 * h);
            x[input][[row, col]] = orig;
            let numeric = (8.0 * near - far) / (12.0 * h);
            let rel = (a - numeric).abs() / a.abs().max(numeric.abs()).max(config.floor);
            if rel.is_nan() || rel > config.rtol {
                return Err(Error::Mismatch {
                    input,
                    row,
                    col,
                    analytic: a,
                    numeric,
                    rel,
                });
            }
            report.checked += 1;
            report.max_rel_error = report.max_rel_error.max(rel);
        }
    }
    Ok(report)
}

/// Checks a graph: `build` records ops on a fresh tape from one leaf per input (each
/// needing a gradient) and returns the output, of any shape.
pub fn check_tape(
    inputs: &[Array2<f64>],
    config: Config,
    build: impl Fn(&mut Tape<f64>, &[Var]) -> Var,
) -> Result<Report, Error> {
    let mut tape = Tape::new();
    check(inputs, config, |xs| {
        tape.reset();
        let vars: Vec<Var> = xs.iter().map(|x| tape.leaf(x.view(), true)).collect();
        let out = build(&mut tape, &vars);
        let (m, n) = tape.dim(out);
        let weights = Array2::from_shape_fn((m, n), |(i, j)| {
            1.0 + 0.5 * (1.7 * i as f64 + 2.3 * j as f64 + 0.3).sin()
        });
        let w = tape.constant(weights.view());
        let weighted = tape.mul(out, w);
        let loss = tape.sum(weighted);
        tape.backward(loss);
        let grads = vars.iter().map(|&v| tape.grad(v).cloned()).collect();
        (tape.scalar(loss), grads)
    })
}
