//! The convolutional [`Layer`]s: [`Conv`] (PyTorch's `Conv2d` and `ConvTranspose2d`, with
//! their weight layouts and default initialisation) on channels-last images, [`Layout`], which
//! converts at the edges of a convolution stack, and [`Sequential`], a chain of layers.

use rand::Rng;
pub use vae_autograd::ConvGeometry;
use vae_autograd::{Float, Tape, Var};

use crate::layers::{named_pair, on_tape, weight_and_bias};
use crate::{Activation, Layer, Named, ParamScope};

/// A convolution or transposed convolution (`geometry.transposed`) of channels-last rows
/// (flattened `[H, W, C]` images: put a [`Layout`] before the first and after the last of a
/// stack), with a bias and an optional activation. The weight is PyTorch's (`Conv2d`
/// `[out, in, kh, kw]`, `ConvTranspose2d` `[in, out, kh, kw]`), held on the tape with its
/// last three axes flattened ([`ConvGeometry::weight_dim`]).
#[derive(Clone, Debug)]
pub struct Conv {
    /// The weight.
    pub weight: Var,
    /// The `[1, out_channels]` bias.
    pub bias: Var,
    /// The shapes.
    pub geometry: ConvGeometry,
    /// Applied to the output, if any.
    pub activation: Option<Activation>,
    prefix: String,
}

impl Conv {
    /// A layer initialised as PyTorch initialises it: weight, then bias, uniform in
    /// `±1/sqrt(fan_in)`, where `fan_in` is the weight's second axis times the kernel's size
    /// (`in kh kw` for a convolution, `out kh kw` for a transposed one, as PyTorch computes
    /// it), named `weight` and `bias` in `scope`; or why the geometry makes no output.
    pub fn new<T: Float>(
        scope: &mut ParamScope<T>,
        geometry: ConvGeometry,
        activation: Option<Activation>,
        rng: &mut impl Rng,
    ) -> Result<Self, String> {
        geometry.out_size()?;
        let [_, second, kh, kw] = geometry.weight_shape();
        let (weight, bias) = weight_and_bias(
            scope,
            geometry.weight_dim(),
            geometry.out_channels,
            second * kh * kw,
            rng,
        );
        Ok(Conv {
            weight,
            bias,
            geometry,
            activation,
            prefix: scope.prefix().to_owned(),
        })
    }

    fn run<T: Float>(&self, tape: &mut Tape<T>, x: Var, detached: bool) -> Var {
        let (w, b) = on_tape(tape, self.weight, self.bias, detached);
        let act = self.activation.map(Activation::dense);
        if self.geometry.transposed {
            tape.conv_transpose2d(x, w, b, &self.geometry, act)
        } else {
            tape.conv2d(x, w, b, &self.geometry, act)
        }
    }
}

impl<T: Float> Layer<T> for Conv {
    fn forward(&self, tape: &mut Tape<T>, x: Var) -> Var {
        self.run(tape, x, false)
    }

    fn forward_detached(&self, tape: &mut Tape<T>, x: Var) -> Var {
        self.run(tape, x, true)
    }

    /// `prefix.weight` and `prefix.bias`.
    fn named(&self) -> Named {
        named_pair(&self.prefix, self.weight, self.bias)
    }

    fn output_width(&self, input: usize) -> usize {
        assert_eq!(input, self.geometry.input_len(), "Conv: input width");
        self.geometry.output_len()
    }
}

/// Images between PyTorch's `[C, H, W]` rows and the channels-last rows of the
/// convolutions (the identity for one channel): what a convolution stack starts and ends
/// with, so that the layout is converted once per stack, not per layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Channels of each image.
    pub channels: usize,
    /// To channels-last (the stack's start) or back to `[C, H, W]` (its end).
    pub to_channels_last: bool,
}

impl Layout {
    fn run<T: Float>(&self, tape: &mut Tape<T>, x: Var) -> Var {
        match (self.channels, self.to_channels_last) {
            (1, _) => x,
            (c, true) => tape.channels_last(x, c),
            (c, false) => tape.channels_first(x, c),
        }
    }
}

impl<T: Float> Layer<T> for Layout {
    fn forward(&self, tape: &mut Tape<T>, x: Var) -> Var {
        self.run(tape, x)
    }

    fn forward_detached(&self, tape: &mut Tape<T>, x: Var) -> Var {
        self.run(tape, x)
    }

    /// No parameters.
    fn named(&self) -> Named {
        Named::new()
    }

    fn output_width(&self, input: usize) -> usize {
        input
    }
}

/// Layers applied one after the other.
pub struct Sequential<T>(pub Vec<Box<dyn Layer<T>>>);

impl<T: Float> Layer<T> for Sequential<T> {
    fn forward(&self, tape: &mut Tape<T>, x: Var) -> Var {
        self.0.iter().fold(x, |x, l| l.forward(tape, x))
    }

    fn forward_detached(&self, tape: &mut Tape<T>, x: Var) -> Var {
        self.0.iter().fold(x, |x, l| l.forward_detached(tape, x))
    }

    fn named(&self) -> Named {
        self.0.iter().flat_map(|l| l.named()).collect()
    }

    /// The input width if there are no layers.
    fn output_width(&self, input: usize) -> usize {
        self.0.iter().fold(input, |w, l| l.output_width(w))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn geometry(transposed: bool, cin: usize, cout: usize, size: usize) -> ConvGeometry {
        ConvGeometry {
            transposed,
            in_channels: cin,
            out_channels: cout,
            in_size: (size, size),
            kernel: (3, 3),
            stride: (2, 2),
            padding: (1, 1),
            output_padding: if transposed { (1, 1) } else { (0, 0) },
        }
    }

    #[test]
    fn pytorch_layouts_init_bounds_names_and_gradients() {
        let mut t = Tape::<f64>::new();
        let mut named = Named::new();
        let mut scope = ParamScope::new(&mut t, &mut named);
        let mut rng = StdRng::seed_from_u64(0);
        let mut enc = scope.child("encoder");
        let conv = Conv::new(
            &mut enc.child("0"),
            geometry(false, 1, 4, 8),
            Some(Activation::Tanh),
            &mut rng,
        )
        .unwrap();
        let up = Conv::new(&mut enc.child("1"), geometry(true, 4, 2, 4), None, &mut rng).unwrap();
        let layout = |channels, to_channels_last| {
            Box::new(Layout {
                channels,
                to_channels_last,
            })
        };
        let net = Sequential(vec![
            layout(1, true),
            Box::new(conv.clone()),
            Box::new(up.clone()),
            layout(2, false),
        ]);
        assert_eq!(t.dim(conv.weight), (4, 9));
        assert_eq!(t.dim(up.weight), (4, 18));
        // fan_in: in kh kw = 9 for the convolution, out kh kw = 18 for the transposed one.
        for (v, bound) in [(conv.weight, 1.0 / 3.0), (up.weight, 1.0 / 18f64.sqrt())] {
            let spread = t.value(v).iter().fold(0f64, |m, w| m.max(w.abs()));
            assert!(spread <= bound && spread > 0.6 * bound, "{spread} vs {bound}");
        }
        assert!(t.value(conv.bias).iter().all(|b| b.abs() <= 1.0 / 3.0));
        let names: Vec<String> = Layer::<f64>::named(&net).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "encoder.0.weight",
                "encoder.0.bias",
                "encoder.1.weight",
                "encoder.1.bias"
            ]
        );
        assert_eq!(net.output_width(64), 2 * 8 * 8);
        for detached in [false, true] {
            t.reset();
            let x = t.leaf(
                Array2::from_shape_fn((3, 64), |(i, j)| ((i * 7 + j) as f64 * 0.1).sin()).view(),
                true,
            );
            let y = if detached {
                net.forward_detached(&mut t, x)
            } else {
                net.forward(&mut t, x)
            };
            assert_eq!(t.dim(y), (3, 128));
            let s = t.sum(y);
            t.backward(s);
            assert!(t.grad(x).unwrap().iter().any(|g| *g != 0.0));
            assert_eq!(t.grad(conv.weight).is_some(), !detached);
        }
    }

    #[test]
    fn a_geometry_without_output_is_refused() {
        let mut t = Tape::<f32>::new();
        let mut named = Named::new();
        let mut scope = ParamScope::new(&mut t, &mut named);
        let mut g = geometry(false, 1, 1, 1);
        g.kernel = (5, 5);
        let e = Conv::new(&mut scope, g, None, &mut StdRng::seed_from_u64(0)).unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
    }
}
