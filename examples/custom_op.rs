//! A user-defined op with its own backward: `swish(x) = x * sigmoid(x)`. Its derivative is
//! checked against finite differences with the library's gradient checker (in f64), then
//! the op is used in a small f32 network that learns to fit a curve.
//!
//! `cargo run --release --example custom_op`

use std::sync::Arc;

use ndarray::{Array2, ArrayView2, array};
use rand::SeedableRng;
use vae::autograd::{CustomOp, Float, Tape, gradcheck};
use vae::nn::{Adam, AdamConfig, Layer, Linear, Named, Optimizer, ParamScope};

/// `x * sigmoid(x)`; derivative `s + x s (1 - s)` with `s = sigmoid(x)`.
struct Swish;

impl<T: Float> CustomOp<T> for Swish {
    fn name(&self) -> &str {
        "swish"
    }
    fn output_dim(&self, inputs: &[(usize, usize)]) -> (usize, usize) {
        inputs[0]
    }
    fn forward(&self, inputs: &[ArrayView2<T>], out: &mut Array2<T>) {
        out.zip_mut_with(&inputs[0], |o, &x| *o = x * x.sigmoid());
    }
    fn backward(&self, inputs: &[ArrayView2<T>], _out: ArrayView2<T>, grad: ArrayView2<T>, _input: usize) -> Array2<T> {
        let mut g = grad.to_owned();
        g.zip_mut_with(&inputs[0], |g, &x| {
            let s = x.sigmoid();
            *g = *g * (s + x * s * (T::one() - s));
        });
        g
    }
}

fn main() {
    // 1. The derivative, element by element, against five-point finite differences.
    let x = array![[-4.0, -1.5, -0.2, 0.0], [0.3, 1.0, 2.5, 6.0]];
    let report = gradcheck::check_tape(&[x], gradcheck::Config::default(), |t, v| {
        t.custom(Arc::new(Swish), &[v[0]])
    })
    .expect("swish's backward agrees with finite differences");
    println!(
        "gradient check: {} elements, worst relative error {:.1e}",
        report.checked, report.max_rel_error
    );

    // 2. The op in a 1-32-1 network fitting y = sin(2x) on [-2, 2].
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut t = Tape::<f32>::new();
    let mut named = Named::new();
    let mut scope = ParamScope::new(&mut t, &mut named);
    let (l1, l2) = (
        Linear::new(&mut scope.child("fc1"), 1, 32, &mut rng),
        Linear::new(&mut scope.child("fc2"), 32, 1, &mut rng),
    );
    let params: Vec<_> = t.params().collect();
    let mut adam = Adam::new(
        AdamConfig {
            lr: 1e-2,
            ..Default::default()
        },
        &t,
        &params,
    );
    let xs = Array2::from_shape_fn((64, 1), |(i, _)| -2.0 + 4.0 * i as f32 / 63.0);
    let ys = xs.mapv(|x| (2.0 * x).sin());
    let swish = Arc::new(Swish);
    let mut mse = f32::NAN;
    for step in 0..=2000 {
        t.reset();
        let x = t.constant(xs.view());
        let y = t.constant(ys.view());
        let h = l1.forward(&mut t, x);
        let h = t.custom(swish.clone(), &[h]);
        let p = l2.forward(&mut t, h);
        let d = t.sub(p, y);
        let se = t.square(d);
        let loss = t.mean(se);
        t.backward(loss);
        adam.step(&mut t, &params);
        mse = t.scalar(loss);
        if step % 500 == 0 {
            println!("step {step:>4}: mean squared error {mse:.5}");
        }
    }
    assert!(mse < 0.01, "the network did not fit: {mse}");
}
