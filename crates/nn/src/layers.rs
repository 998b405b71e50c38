//! `Linear` and `Mlp`: parameters created on a tape, named for checkpoints.

use ndarray::Array2;
use rand::Rng;
use vae_autograd::{Float, Tape, Var};

use crate::Activation;

/// A list of (name, parameter) pairs, in creation order.
pub type Named = Vec<(String, Var)>;

/// A dense layer `y = x W^T + b`, with `W` stored `[out, in]` as in PyTorch's `nn.Linear`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// The `[out, in]` weight.
    pub weight: Var,
    /// The `[1, out]` bias.
    pub bias: Var,
    /// Input width.
    pub in_features: usize,
    /// Output width.
    pub out_features: usize,
}

impl Linear {
    /// A layer initialised as PyTorch does by default: weight and bias uniform in
    /// `±1/sqrt(in_features)`.
    pub fn new<T: Float>(tape: &mut Tape<T>, in_features: usize, out_features: usize, rng: &mut impl Rng) -> Self {
        let bound = 1.0 / (in_features.max(1) as f64).sqrt();
        let mut uniform = |dim| Array2::from_shape_simple_fn(dim, || T::c(rng.random_range(-bound..=bound)));
        let weight = uniform((out_features, in_features));
        let bias = uniform((1, out_features));
        Linear {
            weight: tape.param(weight),
            bias: tape.param(bias),
            in_features,
            out_features,
        }
    }

    /// Records `x W^T + b` (one fused op, `Tape::dense`: no transposed copy of `W`, the
    /// bias added inside the product).
    pub fn forward<T: Float>(&self, tape: &mut Tape<T>, x: Var) -> Var {
        tape.dense(x, self.weight, self.bias, None)
    }

    /// Records `act(x W^T + b)` as one op.
    pub fn forward_act<T: Float>(&self, tape: &mut Tape<T>, x: Var, act: Activation) -> Var {
        tape.dense(x, self.weight, self.bias, Some(act.dense()))
    }

    /// The layer with its parameters detached: gradients flow into `x`, not into the
    /// weight and bias (the frozen-parameter density of the DReG estimator).
    pub fn forward_detached<T: Float>(&self, tape: &mut Tape<T>, x: Var) -> Var {
        self.detached(tape, x, None)
    }

    /// [`Linear::forward_act`] with the parameters detached.
    pub fn forward_act_detached<T: Float>(&self, tape: &mut Tape<T>, x: Var, act: Activation) -> Var {
        self.detached(tape, x, Some(act))
    }

    fn detached<T: Float>(&self, tape: &mut Tape<T>, x: Var, act: Option<Activation>) -> Var {
        let w = tape.detach(self.weight);
        let b = tape.detach(self.bias);
        tape.dense(x, w, b, act.map(Activation::dense))
    }

    /// `prefix.weight` and `prefix.bias`.
    pub fn named(&self, prefix: &str) -> Named {
        vec![
            (format!("{prefix}.weight"), self.weight),
            (format!("{prefix}.bias"), self.bias),
        ]
    }
}

/// Dense layers, each followed by the same activation.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// The layers, input side first.
    pub layers: Vec<Linear>,
    /// The activation after every layer.
    pub activation: Activation,
}

impl Mlp {
    /// Layers `input -> sizes[0] -> sizes[1] -> ...`, each followed by `activation`.
    pub fn new<T: Float>(
        tape: &mut Tape<T>,
        input: usize,
        sizes: &[usize],
        activation: Activation,
        rng: &mut impl Rng,
    ) -> Self {
        let mut layers = Vec::with_capacity(sizes.len());
        let mut width = input;
        for &s in sizes {
            layers.push(Linear::new(tape, width, s, rng));
            width = s;
        }
        Mlp { layers, activation }
    }

    /// Width of the output (the input width if there are no layers).
    pub fn out_features(&self, input: usize) -> usize {
        self.layers.last().map_or(input, |l| l.out_features)
    }

    /// Records the stack on `x`.
    pub fn forward<T: Float>(&self, tape: &mut Tape<T>, mut x: Var) -> Var {
        for l in &self.layers {
            x = l.forward_act(tape, x, self.activation);
        }
        x
    }

    /// [`Mlp::forward`] with every parameter detached (see [`Linear::forward_detached`]).
    pub fn forward_detached<T: Float>(&self, tape: &mut Tape<T>, mut x: Var) -> Var {
        for l in &self.layers {
            x = l.forward_act_detached(tape, x, self.activation);
        }
        x
    }

    /// `prefix.0.weight`, `prefix.0.bias`, `prefix.1.weight`, ...
    pub fn named(&self, prefix: &str) -> Named {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.named(&format!("{prefix}.{i}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn pytorch_layout_and_init_bounds() {
        let mut t = Tape::<f32>::new();
        let mut rng = StdRng::seed_from_u64(0);
        let l = Linear::new(&mut t, 400, 20, &mut rng);
        assert_eq!(t.dim(l.weight), (20, 400));
        assert_eq!(t.dim(l.bias), (1, 20));
        let b = 1.0 / 20.0;
        assert!(t.value(l.weight).iter().all(|w| w.abs() <= b));
        let spread = t.value(l.weight).iter().fold(0f32, |m, w| m.max(w.abs()));
        assert!(spread > 0.9 * b, "fills the interval");
        let x = t.constant(Array2::ones((3, 400)).view());
        let y = l.forward(&mut t, x);
        assert_eq!(t.dim(y), (3, 20));
        let m = Mlp::new(&mut t, 784, &[512, 256], Activation::Relu, &mut rng);
        let names: Vec<String> = m.named("encoder").into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "encoder.0.weight",
                "encoder.0.bias",
                "encoder.1.weight",
                "encoder.1.bias"
            ]
        );
    }
}
