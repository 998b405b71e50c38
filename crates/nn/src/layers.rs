//! `Linear` and `Mlp`, the dense [`Layer`]s: parameters created and named in a
//! [`ParamScope`].

use ndarray::Array2;
use rand::Rng;
use vae_autograd::{Float, Tape, Var};

use crate::layer::join;
use crate::{Activation, Layer, Named, ParamScope};

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
    /// The prefix it was created under (`encoder.mu`): of `encoder.mu.weight`, ...
    prefix: String,
}

impl Linear {
    /// A layer initialised as PyTorch does by default: weight and bias uniform in
    /// `±1/sqrt(in_features)` (weight drawn first, row-major), named `weight` and `bias`
    /// in `scope`.
    pub fn new<T: Float>(
        scope: &mut ParamScope<T>,
        in_features: usize,
        out_features: usize,
        rng: &mut impl Rng,
    ) -> Self {
        let (weight, bias) = weight_and_bias(scope, (out_features, in_features), out_features, in_features, rng);
        Linear {
            weight,
            bias,
            in_features,
            out_features,
            prefix: scope.prefix().to_owned(),
        }
    }

    /// Records `act(x W^T + b)` as one op (`Tape::dense`: no transposed copy of `W`, the
    /// bias added inside the product), the parameters detached if `detached`.
    pub fn forward_act<T: Float>(&self, tape: &mut Tape<T>, x: Var, act: Option<Activation>, detached: bool) -> Var {
        let (w, b) = on_tape(tape, self.weight, self.bias, detached);
        tape.dense(x, w, b, act.map(Activation::dense))
    }
}

impl<T: Float> Layer<T> for Linear {
    fn forward(&self, tape: &mut Tape<T>, x: Var) -> Var {
        self.forward_act(tape, x, None, false)
    }

    fn forward_detached(&self, tape: &mut Tape<T>, x: Var) -> Var {
        self.forward_act(tape, x, None, true)
    }

    /// `prefix.weight` and `prefix.bias`.
    fn named(&self) -> Named {
        named_pair(&self.prefix, self.weight, self.bias)
    }

    fn output_width(&self, input: usize) -> usize {
        assert_eq!(input, self.in_features, "Linear: input width");
        self.out_features
    }
}

/// A layer's `weight` (shaped `dim`) and `bias` (`1 x out`) in `scope`, drawn as PyTorch
/// draws them: uniform in `±1/sqrt(fan_in)`, weight first, row-major.
pub(crate) fn weight_and_bias<T: Float>(
    scope: &mut ParamScope<T>,
    dim: (usize, usize),
    out: usize,
    fan_in: usize,
    rng: &mut impl Rng,
) -> (Var, Var) {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    let mut uniform = |dim| Array2::from_shape_simple_fn(dim, || T::c(rng.random_range(-bound..=bound)));
    let weight = scope.param("weight", uniform(dim));
    let bias = scope.param("bias", uniform((1, out)));
    (weight, bias)
}

/// The weight and bias as a forward pass uses them: themselves, or detached.
pub(crate) fn on_tape<T: Float>(tape: &mut Tape<T>, w: Var, b: Var, detached: bool) -> (Var, Var) {
    if detached {
        (tape.detach(w), tape.detach(b))
    } else {
        (w, b)
    }
}

/// `prefix.weight` and `prefix.bias`.
pub(crate) fn named_pair(prefix: &str, w: Var, b: Var) -> Named {
    vec![(join(prefix, "weight"), w), (join(prefix, "bias"), b)]
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
    /// Layers `input -> sizes[0] -> sizes[1] -> ...`, each followed by `activation`, named
    /// `0`, `1`, ... in `scope` (`0.weight`, `0.bias`, `1.weight`, ...).
    pub fn new<T: Float>(
        scope: &mut ParamScope<T>,
        input: usize,
        sizes: &[usize],
        activation: Activation,
        rng: &mut impl Rng,
    ) -> Self {
        Self::numbered_from(scope, 0, input, sizes, activation, rng)
    }

    /// [`Mlp::new`] with the layers named `first`, `first + 1`, ... (after other layers of
    /// the same scope, as the dense layers after a conv trunk).
    pub fn numbered_from<T: Float>(
        scope: &mut ParamScope<T>,
        first: usize,
        input: usize,
        sizes: &[usize],
        activation: Activation,
        rng: &mut impl Rng,
    ) -> Self {
        let mut layers = Vec::with_capacity(sizes.len());
        let mut width = input;
        for (i, &s) in sizes.iter().enumerate() {
            layers.push(Linear::new(&mut scope.child(&(first + i).to_string()), width, s, rng));
            width = s;
        }
        Mlp { layers, activation }
    }

    fn run<T: Float>(&self, tape: &mut Tape<T>, x: Var, detached: bool) -> Var {
        self.layers
            .iter()
            .fold(x, |x, l| l.forward_act(tape, x, Some(self.activation), detached))
    }
}

impl<T: Float> Layer<T> for Mlp {
    fn forward(&self, tape: &mut Tape<T>, x: Var) -> Var {
        self.run(tape, x, false)
    }

    fn forward_detached(&self, tape: &mut Tape<T>, x: Var) -> Var {
        self.run(tape, x, true)
    }

    fn named(&self) -> Named {
        self.layers.iter().flat_map(Layer::<T>::named).collect()
    }

    /// The input width if there are no layers.
    fn output_width(&self, input: usize) -> usize {
        self.layers.iter().fold(input, |w, l| Layer::<T>::output_width(l, w))
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
        let mut named = Named::new();
        let mut scope = ParamScope::new(&mut t, &mut named);
        let mut rng = StdRng::seed_from_u64(0);
        let l = Linear::new(&mut scope, 400, 20, &mut rng);
        let m = Mlp::new(
            &mut scope.child("encoder"),
            784,
            &[512, 256],
            Activation::Relu,
            &mut rng,
        );
        assert_eq!(t.dim(l.weight), (20, 400));
        assert_eq!(t.dim(l.bias), (1, 20));
        let b = 1.0 / 20.0;
        assert!(t.value(l.weight).iter().all(|w| w.abs() <= b));
        let spread = t.value(l.weight).iter().fold(0f32, |m, w| m.max(w.abs()));
        assert!(spread > 0.9 * b, "fills the interval");
        let x = t.constant(Array2::ones((3, 400)).view());
        let y = l.forward(&mut t, x);
        assert_eq!(t.dim(y), (3, 20));
        let names: Vec<String> = Layer::<f32>::named(&m).into_iter().map(|(n, _)| n).collect();
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

    /// Shapes, names and gradients of `layer` (created alone in `named`) on a batch of 3.
    fn check_layer(t: &mut Tape<f64>, layer: &dyn Layer<f64>, named: &Named, input: usize, output: usize) {
        assert_eq!(layer.named(), *named, "the names the scope gave");
        assert_eq!(layer.output_width(input), output);
        let x0 = Array2::from_shape_fn((3, input), |(i, j)| (i as f64 - 1.0) * 0.3 + j as f64 * 0.1);
        for detached in [false, true] {
            t.reset();
            let x = t.leaf(x0.view(), true);
            let y = if detached {
                layer.forward_detached(t, x)
            } else {
                layer.forward(t, x)
            };
            assert_eq!(t.dim(y), (3, output));
            let loss = t.sum(y);
            t.backward(loss);
            let gx = t.grad(x).expect("the input's gradient");
            assert!(gx.iter().any(|g| *g != 0.0), "detached {detached}");
            for (name, p) in named {
                assert_eq!(t.grad(*p).is_some(), !detached, "{name}, detached {detached}");
            }
        }
    }

    #[test]
    fn linear_and_mlp_are_layers() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut t = Tape::<f64>::new();
        let mut named = Named::new();
        let l = Linear::new(&mut ParamScope::new(&mut t, &mut named).child("out"), 4, 2, &mut rng);
        assert_eq!(
            named.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["out.weight", "out.bias"]
        );
        check_layer(&mut t, &l, &named, 4, 2);

        let mut named = Named::new();
        let act = Activation::Tanh;
        let m = Mlp::new(&mut ParamScope::new(&mut t, &mut named), 4, &[5, 3], act, &mut rng);
        let names: Vec<_> = named.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["0.weight", "0.bias", "1.weight", "1.bias"]);
        check_layer(&mut t, &m, &named, 4, 3);

        let empty = Mlp::new(&mut ParamScope::new(&mut t, &mut Named::new()), 4, &[], act, &mut rng);
        assert_eq!(Layer::<f64>::output_width(&empty, 4), 4);
        assert!(Layer::<f64>::named(&empty).is_empty());
    }
}
