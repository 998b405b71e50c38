//! The convolutions against their definitions (PyTorch's `Conv2d` and `ConvTranspose2d`,
//! on `[C, H, W]` rows: the ops run channels-last between `channels_last` and
//! `channels_first`, as a model's convolution stack does), their gradients (and the layout
//! conversions') against finite differences in f64, and their results across thread counts.

use ndarray::Array2;
use vae_autograd::gradcheck::{Config, check_tape};
use vae_autograd::{ConvGeometry, DenseAct, Tape};

#[allow(clippy::too_many_arguments)]
fn geom(
    transposed: bool,
    c: usize,
    o: usize,
    hw: (usize, usize),
    k: usize,
    s: usize,
    p: usize,
    op: usize,
) -> ConvGeometry {
    ConvGeometry {
        transposed,
        in_channels: c,
        out_channels: o,
        in_size: hw,
        kernel: (k, k),
        stride: (s, s),
        padding: (p, p),
        output_padding: (op, op),
    }
}

/// Shapes covering strides 1-3, paddings 0-2, one and several channels, non-square images,
/// kernels 1-5, and (transposed) output padding.
fn shapes() -> Vec<ConvGeometry> {
    vec![
        geom(false, 1, 2, (5, 5), 3, 1, 1, 0),
        geom(false, 2, 3, (6, 5), 3, 2, 1, 0),
        geom(false, 3, 2, (4, 4), 2, 2, 0, 0),
        geom(false, 2, 2, (7, 3), 5, 1, 2, 0),
        geom(false, 1, 1, (4, 5), 1, 1, 0, 0),
        geom(false, 2, 2, (8, 8), 3, 3, 2, 0),
        geom(true, 2, 1, (3, 3), 3, 2, 1, 1),
        geom(true, 1, 3, (4, 2), 3, 1, 1, 0),
        geom(true, 3, 2, (2, 3), 2, 2, 0, 0),
        geom(true, 2, 2, (3, 4), 4, 3, 1, 2),
        geom(true, 1, 2, (2, 2), 5, 1, 2, 0),
    ]
}

fn values(n: usize, m: usize, seed: f64) -> Array2<f64> {
    Array2::from_shape_fn((n, m), |(i, j)| (seed + 0.37 * i as f64 + 0.71 * j as f64).sin())
}

/// PyTorch's definitions, one product at a time.
fn naive(g: &ConvGeometry, x: &Array2<f64>, w: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let (oh, ow) = g.out_size().unwrap();
    let (ih, iw) = g.in_size;
    let (kh, kw) = g.kernel;
    let (c_in, c_out) = (g.in_channels, g.out_channels);
    let mut y = Array2::zeros((x.nrows(), c_out * oh * ow));
    for j in 0..x.nrows() {
        for o in 0..c_out {
            for v in 0..oh * ow {
                y[[j, o * oh * ow + v]] = b[[0, o]];
            }
        }
        for c in 0..c_in {
            for o in 0..c_out {
                for ki in 0..kh {
                    for kj in 0..kw {
                        let w_at = if g.transposed {
                            w[[c, (o * kh + ki) * kw + kj]]
                        } else {
                            w[[o, (c * kh + ki) * kw + kj]]
                        };
                        // (input pixel, output pixel) pairs this weight joins.
                        let pairs: Vec<((isize, isize), (isize, isize))> = if g.transposed {
                            (0..ih as isize)
                                .flat_map(|a| (0..iw as isize).map(move |bb| (a, bb)))
                                .map(|(a, bb)| {
                                    let out = (
                                        a * g.stride.0 as isize + ki as isize - g.padding.0 as isize,
                                        bb * g.stride.1 as isize + kj as isize - g.padding.1 as isize,
                                    );
                                    ((a, bb), out)
                                })
                                .collect()
                        } else {
                            (0..oh as isize)
                                .flat_map(|a| (0..ow as isize).map(move |bb| (a, bb)))
                                .map(|(a, bb)| {
                                    let inp = (
                                        a * g.stride.0 as isize + ki as isize - g.padding.0 as isize,
                                        bb * g.stride.1 as isize + kj as isize - g.padding.1 as isize,
                                    );
                                    (inp, (a, bb))
                                })
                                .collect()
                        };
                        for ((iy, ix), (oy, ox)) in pairs {
                            let inside = |y: isize, x: isize, h: usize, w: usize| {
                                (0..h as isize).contains(&y) && (0..w as isize).contains(&x)
                            };
                            if inside(iy, ix, ih, iw) && inside(oy, ox, oh, ow) {
                                let xi = c * ih * iw + iy as usize * iw + ix as usize;
                                let yi = o * oh * ow + oy as usize * ow + ox as usize;
                                y[[j, yi]] += w_at * x[[j, xi]];
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

fn record(
    t: &mut Tape<f64>,
    g: &ConvGeometry,
    v: &[vae_autograd::Var],
    act: Option<DenseAct<f64>>,
) -> vae_autograd::Var {
    let x = t.channels_last(v[0], g.in_channels);
    let y = if g.transposed {
        t.conv_transpose2d(x, v[1], v[2], g, act)
    } else {
        t.conv2d(x, v[1], v[2], g, act)
    };
    t.channels_first(y, g.out_channels)
}

#[test]
fn forward_matches_the_definition_in_one_piece_and_in_many() {
    for g in shapes() {
        // 3 images fit in one piece; 200 are cut into several.
        for n in [3, 200] {
            let (x, w, b) = (
                values(n, g.input_len(), 0.1),
                values(g.weight_dim().0, g.weight_dim().1, 0.2),
                values(1, g.out_channels, 0.3),
            );
            let mut t = Tape::<f64>::new();
            let v = [t.constant(x.view()), t.constant(w.view()), t.constant(b.view())];
            let y = record(&mut t, &g, &v, None);
            let want = naive(&g, &x, &w, &b);
            let err = (t.value(y) - &want).iter().fold(0f64, |m, d| m.max(d.abs()));
            assert!(err < 1e-12, "{g:?}, n {n}: max error {err}");
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let config = Config {
        rtol: 1e-6,
        ..Config::default()
    };
    for g in shapes() {
        for act in [None, Some(DenseAct::Tanh)] {
            let inputs = [
                values(2, g.input_len(), 0.1),
                values(g.weight_dim().0, g.weight_dim().1, 0.2),
                values(1, g.out_channels, 0.3),
            ];
            let report = check_tape(&inputs, config, |t, v| record(t, &g, v, act))
                .unwrap_or_else(|e| panic!("{g:?}, {act:?}: {e}"));
            assert!(report.checked > 0);
        }
    }
}

#[test]
fn gradients_over_several_pieces_and_added_to_earlier_ones() {
    // 60 images of 5x5 are cut into pieces; the input is used twice, so its gradient is
    // written once and then added to.
    let g = geom(false, 2, 3, (5, 5), 3, 2, 1, 0);
    let gt = geom(true, 3, 2, (3, 3), 3, 2, 1, 0);
    let inputs = [
        values(60, g.input_len(), 0.1),
        values(g.weight_dim().0, g.weight_dim().1, 0.2),
        values(1, 3, 0.3),
        values(gt.weight_dim().0, gt.weight_dim().1, 0.4),
        values(1, 2, 0.5),
    ];
    let report = check_tape(&inputs, Config::default(), |t, v| {
        let x = t.channels_last(v[0], 2);
        let h = t.conv2d(x, v[1], v[2], &g, Some(DenseAct::Sigmoid));
        let y = t.conv_transpose2d(h, v[3], v[4], &gt, None);
        let y = t.channels_first(y, 2);
        t.add(y, v[0])
    })
    .unwrap();
    assert!(report.checked > 0);
}

/// Values and every gradient of a conv, a transposed conv and a loss over them, in f32.
fn run_in(threads: usize) -> Vec<Vec<f32>> {
    let pool = vae_linalg::fpenv::thread_pool(Some(threads)).unwrap();
    pool.install(|| {
        let g = geom(false, 3, 8, (12, 12), 3, 2, 1, 0);
        let gt = geom(true, 8, 3, (6, 6), 3, 2, 1, 1);
        let f = |a: Array2<f64>| a.mapv(|v| v as f32);
        let mut t = Tape::<f32>::new();
        let w1 = t.param(f(values(8, 27, 0.2)));
        let b1 = t.param(f(values(1, 8, 0.3)));
        let w2 = t.param(f(values(8, 27, 0.4)));
        let b2 = t.param(f(values(1, 3, 0.5)));
        let x = t.leaf(f(values(100, g.input_len(), 0.1)).view(), true);
        let xl = t.channels_last(x, 3);
        let h = t.conv2d(xl, w1, b1, &g, Some(DenseAct::Relu));
        let y = t.conv_transpose2d(h, w2, b2, &gt, None);
        let y = t.channels_first(y, 3);
        let s = t.square(y);
        let loss = t.sum(s);
        t.backward(loss);
        let mut out = vec![t.value(y).iter().copied().collect::<Vec<_>>()];
        for v in [x, w1, b1, w2, b2] {
            out.push(t.grad(v).unwrap().iter().copied().collect());
        }
        out
    })
}

#[test]
fn results_are_bitwise_the_same_on_any_number_of_threads() {
    let one = run_in(1);
    for threads in [2, 3] {
        assert!(run_in(threads) == one, "{threads} threads differ from one");
    }
}

#[test]
fn geometry_errors_say_what_does_not_fit() {
    let e = geom(false, 1, 1, (2, 2), 5, 1, 0, 0).out_size().unwrap_err();
    assert!(e.contains("kernel 5 does not fit an input 2 wide"), "{e}");
    let e = geom(true, 1, 1, (2, 2), 3, 2, 1, 2).out_size().unwrap_err();
    assert!(e.contains("output padding 2 must be less than the stride 2"), "{e}");
    assert_eq!(geom(true, 64, 32, (7, 7), 3, 2, 1, 1).out_size(), Ok((14, 14)));
    assert_eq!(geom(false, 1, 32, (28, 28), 3, 2, 1, 0).out_size(), Ok((14, 14)));
    assert_eq!(geom(true, 64, 32, (7, 7), 3, 2, 1, 0).weight_shape(), [64, 32, 3, 3]);
    assert_eq!(geom(false, 1, 32, (28, 28), 3, 2, 1, 0).weight_dim(), (32, 9));
}
