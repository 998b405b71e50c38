//! Every SIMD level this CPU has against the scalar reference: each elementwise kernel gives
//! bitwise the same result at every level (lengths with ragged tails, every function, with
//! and without accumulation), the f32 kernels agree with the f64 path to a few parts in a
//! million, and GEMM at every level matches the naive triple loop. (The kernels of the
//! losses and of Adam, written with this crate's loops, are compared the same way in
//! `vae-autograd`'s `tests/loss_kernel_levels.rs` and `vae-nn`'s `tests/adam_levels.rs`.)

use ndarray::Array2;
use ndarray_rand::RandomExt;
use ndarray_rand::rand::rngs::StdRng;
use ndarray_rand::rand::{Rng, SeedableRng};
use ndarray_rand::rand_distr::Uniform;
use vae_linalg::simd::{
    self, Accum, ActGradSums, AddBias, Binary, BinaryMap, ColumnSums, Level, Unary, UnaryGrad, UnaryGradFromOutput,
    UnaryMap,
};
use vae_linalg::{Parallelism, gemm_with, naive_gemm};

const LENGTHS: [usize; 7] = [1, 7, 16, 17, 33, 100, 787];

fn random(rng: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// The outputs of every kernel on the same inputs, at `level` (f32) or in f64.
fn outputs<T: vae_linalg::Float>(level: Level, n: usize, inputs: &[Vec<T>; 4], rows: usize) -> Vec<(String, Vec<T>)> {
    let [x, y, z, w] = inputs;
    let mut out = Vec::new();
    let zero = || vec![T::zero(); n];
    let unaries = [
        Unary::Exp,
        Unary::Log,
        Unary::Square,
        Unary::Relu,
        Unary::LeakyRelu(T::c(0.01)),
        Unary::Sigmoid,
        Unary::Tanh,
        Unary::Softplus,
        Unary::ClampMin(T::c(0.1)),
        Unary::Scale(T::c(-1.5)),
    ];
    for f in unaries {
        // Log takes positive inputs.
        let input: Vec<T> = if f == Unary::Log { z.clone() } else { x.clone() };
        let mut fwd = zero();
        simd::dispatch_at(
            level,
            UnaryMap {
                f,
                x: &input,
                out: &mut fwd,
                acc: Accum::Overwrite,
            },
        );
        for acc in [Accum::Overwrite, Accum::Add] {
            let mut g = w.clone();
            simd::dispatch_at(
                level,
                UnaryGrad {
                    f,
                    g: y,
                    x: &input,
                    y: &fwd,
                    out: &mut g,
                    acc,
                },
            );
            out.push((format!("{f:?} grad acc={acc:?}"), g));
        }
        if matches!(f, Unary::Relu | Unary::LeakyRelu(_) | Unary::Sigmoid | Unary::Tanh) {
            // The fused dense layer's in-place derivative, from the output alone.
            let mut g = y.clone();
            simd::dispatch_at(level, UnaryGradFromOutput { f, y: &fwd, g: &mut g });
            out.push((format!("{f:?} grad from output"), g));
        }
        let mut summed = w.clone();
        simd::dispatch_at(
            level,
            UnaryMap {
                f,
                x: &input,
                out: &mut summed,
                acc: Accum::Add,
            },
        );
        out.push((format!("{f:?} acc"), summed));
        out.push((format!("{f:?}"), fwd));
    }
    for op in [Binary::Add, Binary::Sub, Binary::Mul] {
        for acc in [Accum::Overwrite, Accum::Add] {
            let mut o = w.clone();
            simd::dispatch_at(
                level,
                BinaryMap {
                    op,
                    a: x,
                    b: y,
                    out: &mut o,
                    acc,
                },
            );
            out.push((format!("{op:?} acc={acc:?}"), o));
        }
    }
    // Row kernels: `rows` rows of n / rows columns.
    let cols = n / rows;
    let m = rows * cols;
    let bias = &y[..cols];
    let mut o = vec![T::zero(); m];
    simd::dispatch_at(
        level,
        AddBias {
            x: &x[..m],
            bias,
            out: &mut o,
        },
    );
    out.push(("add_bias".into(), o));
    for acc in [Accum::Overwrite, Accum::Add] {
        let mut s = w[..cols].to_vec();
        simd::dispatch_at(
            level,
            ColumnSums {
                src: &x[..m],
                dst: &mut s,
                acc,
            },
        );
        out.push((format!("column_sums acc={acc:?}"), s));
    }
    out
}

/// Inputs: x in [-5, 5] (with exact zeros), y in [-2, 2], z in (0.01, 10), w in [-1, 1].
fn inputs(rng: &mut StdRng, n: usize) -> [Vec<f64>; 4] {
    let mut x = random(rng, n, -5.0, 5.0);
    for v in x.iter_mut().step_by(5) {
        *v = 0.0;
    }
    [
        x,
        random(rng, n, -2.0, 2.0),
        random(rng, n, 0.01, 10.0),
        random(rng, n, -1.0, 1.0),
    ]
}

#[test]
fn every_level_gives_the_scalar_bits() {
    let mut rng = StdRng::seed_from_u64(3);
    for n in LENGTHS {
        let [a, b, c, d] = inputs(&mut rng, n);
        let ins = [f32s(&a), f32s(&b), f32s(&c), f32s(&d)];
        let rows = if n >= 16 { 4 } else { 1 };
        let reference = outputs::<f32>(Level::Scalar, n, &ins, rows);
        for level in simd::supported_levels() {
            for ((name, got), (_, want)) in outputs::<f32>(level, n, &ins, rows).iter().zip(&reference) {
                let same = got.iter().zip(want).all(|(g, w)| g.to_bits() == w.to_bits());
                assert!(
                    same,
                    "{level}, n = {n}: {name} differs from scalar: {got:?} vs {want:?}"
                );
            }
        }
    }
}

/// The fused derivative and column sums give, at every level, the bits of the derivative
/// kernel at the scalar level and of each column's rows added in order: columns in whole
/// vectors of every level (sums in registers, one to several groups of four vectors) and
/// ragged ones.
#[test]
fn act_grad_sums_and_column_sums_are_the_plain_loops() {
    let mut rng = StdRng::seed_from_u64(6);
    let acts = [
        None,
        Some(Unary::Relu),
        Some(Unary::LeakyRelu(0.2f32)),
        Some(Unary::Sigmoid),
        Some(Unary::Tanh),
    ];
    for (rows, cols) in [
        (7, 16),
        (5, 32),
        (3, 48),
        (9, 64),
        (4, 80),
        (6, 24),
        (4, 40),
        (3, 19),
        (5, 5),
        (1, 1),
        (0, 8),
    ] {
        let n = rows * cols;
        let y = f32s(&random(&mut rng, n, -1.0, 1.0));
        let g0 = f32s(&random(&mut rng, n, -2.0, 2.0));
        let start = f32s(&random(&mut rng, cols, -1.0, 1.0));
        for act in acts {
            for acc in [Accum::Overwrite, Accum::Add] {
                let mut want_g = g0.clone();
                if let Some(f) = act {
                    simd::dispatch_at(
                        Level::Scalar,
                        UnaryGradFromOutput {
                            f,
                            y: &y,
                            g: &mut want_g,
                        },
                    );
                }
                // Each column's rows added in order, from zero or from `start`.
                let want: Vec<f32> = (0..cols)
                    .map(|j| {
                        let first = if acc == Accum::Add { start[j] } else { 0.0 };
                        (0..rows).fold(first, |s, r| s + want_g[r * cols + j])
                    })
                    .collect();
                for level in simd::supported_levels() {
                    let (mut g, mut sums) = (g0.clone(), start.clone());
                    simd::dispatch_at(
                        level,
                        ActGradSums {
                            f: act,
                            y: &y,
                            g: &mut g,
                            dst: &mut sums,
                            acc,
                        },
                    );
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let what = format!("{level}, {rows} x {cols}, {act:?}, {acc:?}");
                    assert_eq!(bits(&g), bits(&want_g), "{what}: the derivative");
                    assert_eq!(bits(&sums), bits(&want), "{what}: the sums");
                    if act.is_none() {
                        let mut plain = start.clone();
                        simd::dispatch_at(
                            level,
                            ColumnSums {
                                src: &g0,
                                dst: &mut plain,
                                acc,
                            },
                        );
                        assert_eq!(bits(&plain), bits(&want), "{what}: ColumnSums");
                    }
                }
            }
        }
    }
}

#[test]
fn f32_kernels_agree_with_f64() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut worst = (0.0f64, String::new());
    for n in LENGTHS {
        let ins64 = inputs(&mut rng, n);
        let ins32 = [f32s(&ins64[0]), f32s(&ins64[1]), f32s(&ins64[2]), f32s(&ins64[3])];
        // The f64 path on the f32-rounded inputs, so only the arithmetic differs.
        let ins64: [Vec<f64>; 4] = ins32.clone().map(|v| v.iter().map(|&x| x as f64).collect());
        let rows = if n >= 16 { 4 } else { 1 };
        let got = outputs::<f32>(simd::detected_level(), n, &ins32, rows);
        let want = outputs::<f64>(Level::Scalar, n, &ins64, rows);
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            // Row sums add many terms: scale the tolerance by their magnitude.
            for (&g, &w) in g.iter().zip(w) {
                let err = (g as f64 - w).abs() / (1.0 + w.abs());
                if err > worst.0 {
                    worst = (err, name.clone());
                }
                assert!(err < 2e-5, "n = {n}: {name}: f32 {g} vs f64 {w}");
            }
        }
    }
    eprintln!("worst f32 vs f64 error {:.2e} ({})", worst.0, worst.1);
}

#[test]
fn gemm_matches_the_naive_loop_at_every_level() {
    // The only test in this file that forces the process-wide level.
    let mut rng = StdRng::seed_from_u64(5);
    let shapes = [
        (128, 400, 20),
        (128, 20, 400),
        (400, 128, 20),
        (37, 29, 5),
        (65, 3, 131),
        (9, 300, 33),
        (200, 31, 200),
    ];
    let before = simd::level();
    for level in simd::supported_levels() {
        simd::force_level(level).unwrap();
        for &(m, k, n) in &shapes {
            let a = Array2::<f32>::random_using((m, k), Uniform::new(-1.0f32, 1.0).unwrap(), &mut rng);
            let b = Array2::<f32>::random_using((k, n), Uniform::new(-1.0f32, 1.0).unwrap(), &mut rng);
            for par in [Parallelism::Sequential, Parallelism::Rayon] {
                let mut c = Array2::<f32>::from_elem((m, n), f32::NAN);
                gemm_with(par, 1.0, a.view(), b.view(), 0.0, c.view_mut());
                let mut r = Array2::<f32>::zeros((m, n));
                naive_gemm(1.0, a.view(), b.view(), 0.0, r.view_mut());
                let tol = 2.0 * k as f32 * f32::EPSILON * k as f32;
                for (x, y) in c.iter().zip(&r) {
                    assert!((x - y).abs() <= tol, "{level} {m}x{k}x{n}: {x} vs {y}");
                }
                // Transposed operands too.
                let (at, bt) = (a.t().to_owned(), b.t().to_owned());
                gemm_with(par, 1.0, at.t(), bt.t(), 0.0, c.view_mut());
                for (x, y) in c.iter().zip(&r) {
                    assert!((x - y).abs() <= tol, "{level} {m}x{k}x{n} transposed: {x} vs {y}");
                }
            }
        }
    }
    simd::force_level(before).unwrap();
}

#[test]
fn levels_parse_and_unsupported_ones_are_refused() {
    assert_eq!("AVX2".parse::<Level>().unwrap(), Level::Avx2);
    assert_eq!("avx512".parse::<Level>().unwrap(), Level::Avx512);
    assert!("sse9".parse::<Level>().unwrap_err().contains("avx512, avx2 or scalar"));
    let levels = simd::supported_levels();
    assert!(levels.contains(&Level::Scalar) && levels[0] == simd::detected_level());
    // (Forcing is exercised by the GEMM test, the only one here that changes the level.)
    for l in [Level::Avx512, Level::Avx2] {
        assert_eq!(levels.contains(&l), l.is_supported());
    }
}
