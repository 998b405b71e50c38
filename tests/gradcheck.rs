//! Every op's derivative against central finite differences, in f64, on every element of
//! every differentiable input, at several random shapes; plus fan-out (a diamond), a small
//! composite network, the whole VAE loss with its noise held fixed, and self-tests proving
//! that the checker fails on a wrong derivative.

use ndarray::{Array2, Axis};
use ndarray_rand::RandomExt;
use ndarray_rand::rand::SeedableRng;
use ndarray_rand::rand::rngs::StdRng;
use ndarray_rand::rand_distr::Uniform;
use vae::autograd::gradcheck::{self, Config, Error};
use vae::autograd::{DenseAct, Tape, Var};

const SHAPES: [(usize, usize); 4] = [(1, 1), (3, 4), (5, 2), (7, 9)];

fn uniform(rng: &mut StdRng, dim: (usize, usize), lo: f64, hi: f64) -> Array2<f64> {
    Array2::random_using(dim, Uniform::new(lo, hi).unwrap(), rng)
}

/// Moves values within 0.05 of `kink` away from it, so that finite differences never
/// straddle a point where the function is not differentiable.
fn away_from(mut x: Array2<f64>, kink: f64) -> Array2<f64> {
    x.mapv_inplace(|v| if (v - kink).abs() < 0.05 { v + 0.1 } else { v });
    x
}

/// Runs the check, prints the worst relative error, and fails on any mismatch.
fn verify(name: &str, inputs: &[Array2<f64>], build: impl Fn(&mut Tape<f64>, &[Var]) -> Var) {
    let shapes: Vec<_> = inputs.iter().map(|x| x.dim()).collect();
    match gradcheck::check_tape(inputs, Config::default(), build) {
        Ok(r) => eprintln!(
            "gradcheck {name} {shapes:?}: {} elements, worst relative error {:.2e}",
            r.checked, r.max_rel_error
        ),
        Err(e) => panic!("gradcheck {name} {shapes:?}: {e}"),
    }
}

/// Checks a one-input op at every shape, inputs drawn from [lo, hi).
fn unary(name: &str, lo: f64, hi: f64, kink: Option<f64>, op: impl Fn(&mut Tape<f64>, Var) -> Var) {
    let mut rng = StdRng::seed_from_u64(name.len() as u64);
    for dim in SHAPES {
        let mut x = uniform(&mut rng, dim, lo, hi);
        if let Some(k) = kink {
            x = away_from(x, k);
        }
        verify(name, &[x], |t, v| op(t, v[0]));
    }
}

/// Checks a two-input op of same-shaped inputs at every shape.
fn binary(name: &str, op: impl Fn(&mut Tape<f64>, Var, Var) -> Var) {
    let mut rng = StdRng::seed_from_u64(name.len() as u64 + 100);
    for dim in SHAPES {
        let a = uniform(&mut rng, dim, -2.0, 2.0);
        let b = uniform(&mut rng, dim, -2.0, 2.0);
        verify(name, &[a, b], |t, v| op(t, v[0], v[1]));
    }
}

#[test]
fn matmul() {
    let mut rng = StdRng::seed_from_u64(1);
    for (m, k, n) in [(1, 1, 1), (3, 4, 5), (6, 2, 3), (4, 7, 1), (9, 5, 8)] {
        for ta in [false, true] {
            for tb in [false, true] {
                let a = uniform(&mut rng, if ta { (k, m) } else { (m, k) }, -1.0, 1.0);
                let b = uniform(&mut rng, if tb { (n, k) } else { (k, n) }, -1.0, 1.0);
                verify(&format!("matmul ta={ta} tb={tb}"), &[a, b], |t, v| {
                    t.matmul_t(v[0], ta, v[1], tb)
                });
            }
        }
    }
}

/// The fused dense layer, with every activation it takes, at shapes that take the fused
/// product (more than 32 rows and columns) and shapes that take the three-pass fallback.
#[test]
fn dense() {
    let mut rng = StdRng::seed_from_u64(11);
    let acts = [
        None,
        Some(DenseAct::Relu),
        Some(DenseAct::LeakyRelu(0.2)),
        Some(DenseAct::Sigmoid),
        Some(DenseAct::Tanh),
    ];
    for (m, k, n) in [(3, 4, 5), (9, 5, 8), (33, 3, 40), (40, 7, 50)] {
        for act in acts {
            let mut x = uniform(&mut rng, (m, k), -1.0, 1.0);
            let mut w = uniform(&mut rng, (n, k), -1.0, 1.0);
            let mut b = uniform(&mut rng, (1, n), -1.0, 1.0);
            if matches!(act, Some(DenseAct::Relu | DenseAct::LeakyRelu(_))) {
                // Pre-activations at least 0.05 from the kink: positive inputs, and each
                // output unit's weights and bias all positive (on) or all negative (off).
                x.mapv_inplace(|v| 0.1 + 0.45 * (v + 1.0));
                for (j, mut row) in w.rows_mut().into_iter().enumerate() {
                    let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
                    row.mapv_inplace(|v| sign * (0.1 + 0.45 * (v + 1.0)));
                    b[[0, j]] = sign * (0.05 + 0.05 * b[[0, j]].abs());
                }
            }
            verify(&format!("dense {act:?}"), &[x, w, b], |t, v| {
                t.dense(v[0], v[1], v[2], act)
            });
        }
    }
}

#[test]
fn add_bias() {
    let mut rng = StdRng::seed_from_u64(2);
    for (m, n) in SHAPES {
        let x = uniform(&mut rng, (m, n), -1.0, 1.0);
        let b = uniform(&mut rng, (1, n), -1.0, 1.0);
        verify("add_bias", &[x, b], |t, v| t.add_bias(v[0], v[1]));
    }
}

#[test]
fn add() {
    binary("add", |t, a, b| t.add(a, b));
}

#[test]
fn sub() {
    binary("sub", |t, a, b| t.sub(a, b));
}

#[test]
fn mul() {
    binary("mul", |t, a, b| t.mul(a, b));
}

#[test]
fn scale() {
    unary("scale", -2.0, 2.0, None, |t, x| t.scale(x, -1.75));
}

#[test]
fn neg() {
    unary("neg", -2.0, 2.0, None, |t, x| t.neg(x));
}

#[test]
fn exp() {
    unary("exp", -3.0, 3.0, None, |t, x| t.exp(x));
}

#[test]
fn log() {
    unary("log", 0.1, 5.0, None, |t, x| t.log(x));
}

#[test]
fn square() {
    unary("square", -2.0, 2.0, None, |t, x| t.square(x));
}

#[test]
fn relu() {
    unary("relu", -2.0, 2.0, Some(0.0), |t, x| t.relu(x));
}

#[test]
fn leaky_relu() {
    unary("leaky_relu", -2.0, 2.0, Some(0.0), |t, x| t.leaky_relu(x, 0.2));
}

#[test]
fn sigmoid() {
    unary("sigmoid", -6.0, 6.0, None, |t, x| t.sigmoid(x));
}

#[test]
fn tanh() {
    unary("tanh", -3.0, 3.0, None, |t, x| t.tanh(x));
}

#[test]
fn softplus() {
    unary("softplus", -8.0, 8.0, None, |t, x| t.softplus(x));
}

#[test]
fn clamp_min() {
    unary("clamp_min", -2.0, 2.0, Some(0.5), |t, x| t.clamp_min(x, 0.5));
}

#[test]
fn sum_rows() {
    unary("sum_axis(0)", -2.0, 2.0, None, |t, x| t.sum_axis(x, Axis(0)));
    unary("sum_axis(1)", -2.0, 2.0, None, |t, x| t.sum_axis(x, Axis(1)));
}

#[test]
fn sum() {
    unary("sum", -2.0, 2.0, None, |t, x| t.sum(x));
}

#[test]
fn mean() {
    unary("mean", -2.0, 2.0, None, |t, x| t.mean(x));
}

#[test]
fn gaussian_mixture_nll() {
    // z of 5 rows against 3 components of width 4 (logvar within the clamp range).
    let mut rng = StdRng::seed_from_u64(21);
    let inputs = [
        uniform(&mut rng, (5, 4), -2.0, 2.0),
        uniform(&mut rng, (3, 4), -1.5, 1.5),
        uniform(&mut rng, (3, 4), -2.0, 1.0),
    ];
    verify("gaussian_mixture_nll", &inputs, |t, v| {
        t.gaussian_mixture_nll(v[0], v[1], v[2])
    });
    // The value against the definition, term by term.
    let mut t = Tape::<f64>::new();
    let vars: Vec<Var> = inputs.iter().map(|a| t.constant(a.view())).collect();
    let out = t.gaussian_mixture_nll(vars[0], vars[1], vars[2]);
    let (z, mu, lv) = (&inputs[0], &inputs[1], &inputs[2]);
    for (i, zi) in z.rows().into_iter().enumerate() {
        let dens: f64 = (0..3)
            .map(|c| {
                let log_n: f64 = (0..4)
                    .map(|d| {
                        let diff = zi[d] - mu[[c, d]];
                        -0.5 * ((2.0 * std::f64::consts::PI).ln() + lv[[c, d]] + diff * diff * (-lv[[c, d]]).exp())
                    })
                    .sum();
                log_n.exp() / 3.0
            })
            .sum();
        let want = -dens.ln();
        let got = t.value(out)[[i, 0]];
        assert!(
            (got - want).abs() < 1e-12 * want.abs().max(1.0),
            "row {i}: {got} vs {want}"
        );
    }
}

#[test]
fn gaussian_mixture_nll_in_f32_near_narrow_components() {
    // z right at components of log-variance -6 (the VampPrior's floor) in all 50
    // dimensions, |z| ~ 3: the f32 expansion stays within 0.02 nats of the f64 value.
    let mut rng = StdRng::seed_from_u64(5);
    let mu = uniform(&mut rng, (4, 50), -3.0, 3.0);
    let lv = uniform(&mut rng, (4, 50), -6.0, -5.5);
    let z = &mu.select(Axis(0), &[0, 1, 2, 3, 0, 2]) + &uniform(&mut rng, (6, 50), -0.01, 0.01);
    let mut t64 = Tape::<f64>::new();
    let (a, b, c) = (t64.constant(z.view()), t64.constant(mu.view()), t64.constant(lv.view()));
    let want = t64.gaussian_mixture_nll(a, b, c);
    let mut t32 = Tape::<f32>::new();
    let f = |x: &Array2<f64>| x.mapv(|v| v as f32);
    let (a, b, c) = (
        t32.constant(f(&z).view()),
        t32.constant(f(&mu).view()),
        t32.constant(f(&lv).view()),
    );
    let got = t32.gaussian_mixture_nll(a, b, c);
    for (g, w) in t32.value(got).iter().zip(t64.value(want)) {
        assert!((f64::from(*g) - w).abs() < 0.02, "{g} vs {w}");
    }
}

#[test]
fn log_sum_exp() {
    unary("log_sum_exp(0)", -5.0, 5.0, None, |t, x| t.log_sum_exp(x, Axis(0)));
    unary("log_sum_exp(1)", -5.0, 5.0, None, |t, x| t.log_sum_exp(x, Axis(1)));
}

#[test]
fn log_sum_exp_does_not_overflow() {
    // exp(1000) overflows f64: only the max-subtracted form gets 1000 + ln 2 and softmax
    // gradients of one half.
    let mut t = Tape::<f64>::new();
    let x = t.leaf(ndarray::array![[1000.0, 1000.0]].view(), true);
    let y = t.log_sum_exp(x, Axis(1));
    let s = t.sum(y);
    t.backward(s);
    assert!((t.scalar(s) - (1000.0 + 2f64.ln())).abs() < 1e-9);
    assert!(t.grad(x).unwrap().iter().all(|&g| (g - 0.5).abs() < 1e-9));
}

#[test]
fn bernoulli_nll() {
    let mut rng = StdRng::seed_from_u64(3);
    for dim in SHAPES {
        let logits = uniform(&mut rng, dim, -6.0, 6.0);
        let target = uniform(&mut rng, dim, 0.0, 1.0);
        verify("bernoulli_nll", &[logits, target], |t, v| t.bernoulli_nll(v[0], v[1]));
    }
}

#[test]
fn gaussian_nll() {
    let mut rng = StdRng::seed_from_u64(4);
    for (m, n) in SHAPES {
        let mean = uniform(&mut rng, (m, n), -1.0, 1.0);
        let target = uniform(&mut rng, (m, n), -1.0, 1.0);
        let logvar = uniform(&mut rng, (m, n), -2.0, 2.0);
        let logvar_row = uniform(&mut rng, (1, n), -2.0, 2.0);
        verify("gaussian_nll", &[mean.clone(), logvar, target.clone()], |t, v| {
            t.gaussian_nll(v[0], v[1], v[2])
        });
        verify(
            "gaussian_nll (broadcast logvar)",
            &[mean, logvar_row, target],
            |t, v| t.gaussian_nll(v[0], v[1], v[2]),
        );
    }
}

#[test]
fn kl_normal() {
    let mut rng = StdRng::seed_from_u64(5);
    for dim in SHAPES {
        let mu = uniform(&mut rng, dim, -2.0, 2.0);
        let logvar = uniform(&mut rng, dim, -4.0, 3.0);
        verify("kl_normal", &[mu, logvar], |t, v| t.kl_normal(v[0], v[1]));
    }
}

#[test]
fn kl_normal_clamps_logvar_without_nan() {
    let mut t = Tape::<f64>::new();
    let mu = t.leaf(Array2::zeros((1, 2)).view(), true);
    let lv = t.leaf(ndarray::array![[-1000.0, 1000.0]].view(), true);
    let kl = t.kl_normal(mu, lv);
    let s = t.sum(kl);
    t.backward(s);
    assert!(t.value(kl).iter().all(|v| v.is_finite()));
    assert!(
        t.grad(lv).unwrap().iter().all(|&g| g == 0.0),
        "no gradient flows through the clamp"
    );
}

/// A user-defined op of two inputs, `a * b + a^2` (elementwise), with its own backward.
struct MulAddSquare;

impl vae::autograd::CustomOp<f64> for MulAddSquare {
    fn name(&self) -> &str {
        "mul_add_square"
    }
    fn output_dim(&self, inputs: &[(usize, usize)]) -> (usize, usize) {
        inputs[0]
    }
    fn forward(&self, inputs: &[ndarray::ArrayView2<f64>], out: &mut Array2<f64>) {
        ndarray::Zip::from(out)
            .and(&inputs[0])
            .and(&inputs[1])
            .for_each(|o, &a, &b| *o = a * b + a * a);
    }
    fn backward(
        &self,
        inputs: &[ndarray::ArrayView2<f64>],
        _out: ndarray::ArrayView2<f64>,
        grad: ndarray::ArrayView2<f64>,
        input: usize,
    ) -> Array2<f64> {
        let (a, b) = (&inputs[0], &inputs[1]);
        let mut g = grad.to_owned();
        ndarray::Zip::from(&mut g).and(a).and(b).for_each(|g, &a, &b| {
            *g *= if input == 0 { b + 2.0 * a } else { a };
        });
        g
    }
}

#[test]
fn custom_op() {
    // A user-defined op on its own, and fed twice from the same input (its gradient must be
    // added to the built-in ops' gradients, not overwrite them).
    let mut rng = StdRng::seed_from_u64(12);
    let op = std::sync::Arc::new(MulAddSquare);
    for (m, n) in SHAPES {
        let a = uniform(&mut rng, (m, n), -2.0, 2.0);
        let b = uniform(&mut rng, (m, n), -2.0, 2.0);
        verify("custom_op", &[a.clone(), b.clone()], |t, v| {
            t.custom(op.clone(), &[v[0], v[1]])
        });
        verify("custom_op fan-out", &[a, b], |t, v| {
            let c = t.custom(op.clone(), &[v[0], v[1]]);
            let d = t.custom(op.clone(), &[c, v[0]]);
            let e = t.tanh(v[0]);
            t.add(d, e)
        });
    }
}

#[test]
fn diamond_fan_out() {
    // y feeds three paths (relu, sigmoid, and directly); x feeds both sides of a product.
    let mut rng = StdRng::seed_from_u64(6);
    for (m, n) in SHAPES {
        let x = away_from(uniform(&mut rng, (m, n), -2.0, 2.0), 0.0);
        let w = uniform(&mut rng, (n, n), -1.0, 1.0);
        verify("diamond", &[x, w], |t, v| {
            let y = t.matmul(v[0], v[1]);
            let u = t.relu(y);
            let s = t.sigmoid(y);
            let p = t.mul(u, s);
            let q = t.add(p, y);
            let xx = t.mul(v[0], v[0]);
            let r = t.matmul(xx, v[1]);
            t.add(q, r)
        });
    }
}

#[test]
fn composite_two_dense_layers() {
    // x -> Linear(6, 5) -> tanh -> Linear(5, 4) -> Bernoulli NLL against targets, mean.
    let mut rng = StdRng::seed_from_u64(7);
    let x = uniform(&mut rng, (8, 6), -1.0, 1.0);
    let target = uniform(&mut rng, (8, 4), 0.0, 1.0);
    let inputs = [
        uniform(&mut rng, (5, 6), -0.5, 0.5),
        uniform(&mut rng, (1, 5), -0.5, 0.5),
        uniform(&mut rng, (4, 5), -0.5, 0.5),
        uniform(&mut rng, (1, 4), -0.5, 0.5),
    ];
    verify("two dense layers", &inputs, |t, v| {
        let xv = t.constant(x.view());
        let tv = t.constant(target.view());
        let h = t.matmul_t(xv, false, v[0], true);
        let h = t.add_bias(h, v[1]);
        let h = t.tanh(h);
        let o = t.matmul_t(h, false, v[2], true);
        let o = t.add_bias(o, v[3]);
        let nll = t.bernoulli_nll(o, tv);
        t.mean(nll)
    });
}

#[test]
fn whole_vae_loss_with_fixed_noise() {
    // Encoder 6-5(relu)-(mu, logvar) of 2, reparameterised with fixed noise, decoder
    // 2-5(leaky relu)-6 logits, Bernoulli NLL + beta * KL, averaged over the batch.
    let mut rng = StdRng::seed_from_u64(8);
    let (n, d, h, z) = (4, 6, 5, 2);
    let x = uniform(&mut rng, (n, d), 0.0, 1.0);
    let eps = uniform(&mut rng, (n, z), -1.5, 1.5);
    let dims = [
        (h, d),
        (1, h),
        (z, h),
        (1, z),
        (z, h),
        (1, z),
        (h, z),
        (1, h),
        (d, h),
        (1, d),
    ];
    let inputs: Vec<_> = dims.iter().map(|&s| uniform(&mut rng, s, -0.6, 0.6)).collect();
    verify("vae loss", &inputs, |t, p| {
        let dense = |t: &mut Tape<f64>, x: Var, w: Var, b: Var| {
            let y = t.matmul_t(x, false, w, true);
            t.add_bias(y, b)
        };
        let xv = t.constant(x.view());
        let ev = t.constant(eps.view());
        let a = dense(t, xv, p[0], p[1]);
        let a = t.relu(a);
        let mu = dense(t, a, p[2], p[3]);
        let lv = dense(t, a, p[4], p[5]);
        let half = t.scale(lv, 0.5);
        let std = t.exp(half);
        let noise = t.mul(std, ev);
        let zz = t.add(mu, noise);
        let b = dense(t, zz, p[6], p[7]);
        let b = t.leaky_relu(b, 0.1);
        let logits = dense(t, b, p[8], p[9]);
        let rec = t.bernoulli_nll(logits, xv);
        let kl = t.kl_normal(mu, lv);
        let kl = t.sum_axis(kl, Axis(1));
        let kl = t.scale(kl, 0.7);
        let per_image = t.add(rec, kl);
        t.mean(per_image)
    });
}

#[test]
fn checker_catches_a_wrong_derivative() {
    // f(x) = sum(x^3) with a derivative off by one part in ten thousand.
    let x = Array2::from_shape_fn((3, 3), |(i, j)| 0.3 + 0.2 * i as f64 - 0.1 * j as f64);
    let wrong = |xs: &[Array2<f64>]| {
        let v = xs[0].mapv(|a| a * a * a).sum();
        (v, vec![Some(xs[0].mapv(|a| 3.0 * a * a * 1.0001))])
    };
    assert!(matches!(
        gradcheck::check(std::slice::from_ref(&x), Config::default(), wrong),
        Err(Error::Mismatch { .. })
    ));
    // The same function with the right derivative passes, so the failure above is the
    // derivative's, not the checker's.
    let right = |xs: &[Array2<f64>]| (xs[0].mapv(|a| a * a * a).sum(), vec![Some(xs[0].mapv(|a| 3.0 * a * a))]);
    assert!(gradcheck::check(std::slice::from_ref(&x), Config::default(), right).is_ok());
    // A missing gradient is an error too.
    let none = |xs: &[Array2<f64>]| (xs[0].sum(), vec![None]);
    assert!(matches!(
        gradcheck::check(&[x], Config::default(), none),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn checker_catches_a_dropped_fan_out_path() {
    // Had backward overwritten instead of accumulating, d(x*x)/dx would be x, not 2x: check
    // that exactly that error is caught.
    let x = Array2::from_shape_fn((2, 3), |(i, j)| 0.5 + i as f64 + 0.25 * j as f64);
    let overwritten = |xs: &[Array2<f64>]| ((&xs[0] * &xs[0]).sum(), vec![Some(xs[0].clone())]);
    assert!(gradcheck::check(&[x], Config::default(), overwritten).is_err());
}

#[test]
fn repeat_rows() {
    unary("repeat_rows(1)", -2.0, 2.0, None, |t, x| t.repeat_rows(x, 1));
    unary("repeat_rows(3)", -2.0, 2.0, None, |t, x| t.repeat_rows(x, 3));
}

#[test]
fn reshape() {
    unary("reshape", -2.0, 2.0, None, |t, x| {
        let (m, n) = t.dim(x);
        t.reshape(x, (n, m))
    });
    unary("reshape to a row", -2.0, 2.0, None, |t, x| {
        let (m, n) = t.dim(x);
        t.reshape(x, (1, m * n))
    });
}

#[test]
fn detach_passes_no_gradient() {
    // y = x * detach(x): the derivative is detach(x) = x, not 2x.
    let mut t = Tape::<f64>::new();
    let x = t.leaf(ndarray::array![[3.0, -2.0]].view(), true);
    let d = t.detach(x);
    let y = t.mul(x, d);
    let s = t.sum(y);
    t.backward(s);
    assert_eq!(t.grad(x).unwrap(), ndarray::array![[3.0, -2.0]]);
}

#[test]
fn scale_grad_rows_weights_each_rows_gradient() {
    // The op is the identity forward, so finite differences cannot see the weights: check
    // its gradient against that of the explicit surrogate sum_i w_i f_i(x) (verified op by
    // op), where f is a per-row function, with w filled in after the forward pass.
    let mut rng = StdRng::seed_from_u64(21);
    for (m, n) in SHAPES {
        let x = uniform(&mut rng, (m, n), -2.0, 2.0);
        let w = uniform(&mut rng, (m, 1), 0.0, 1.0);
        let f = |t: &mut Tape<f64>, v: Var| {
            let s = t.tanh(v);
            let q = t.mul(s, v);
            t.sum_axis(q, Axis(1))
        };
        let mut t = Tape::<f64>::new();
        let xv = t.leaf(x.view(), true);
        let wv = t.constant_with((m, 1), |b| b.fill(0.0));
        let y = t.scale_grad_rows(xv, wv);
        let rows = f(&mut t, y);
        let total = t.sum(rows);
        t.set_constant(wv, w.view());
        t.backward(total);
        let got = t.grad(xv).unwrap().clone();
        let mut t2 = Tape::<f64>::new();
        let xv2 = t2.leaf(x.view(), true);
        let wv2 = t2.constant(w.view());
        let rows2 = f(&mut t2, xv2);
        let weighted = t2.mul(rows2, wv2);
        let total2 = t2.sum(weighted);
        t2.backward(total2);
        let want = t2.grad(xv2).unwrap();
        let err = (&got - want).mapv(f64::abs).fold(0.0f64, |a, &b| a.max(b));
        assert!(err < 1e-12, "scale_grad_rows ({m}, {n}): off by {err}");
        verify("scale_grad_rows surrogate", &[x, w], |t, v| {
            let rows = f(t, v[0]);
            t.mul(rows, v[1])
        });
    }
}
