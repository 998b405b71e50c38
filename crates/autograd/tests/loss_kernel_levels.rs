//! The loss kernels at every SIMD level this CPU has against the scalar reference: each
//! gives bitwise the same result at every level (lengths with ragged tails, per-element and
//! shared log-variances spanning the clamp, with and without accumulation), and the f32
//! kernels agree with the f64 path to a few parts in a million (as `vae-linalg`'s
//! `tests/simd_levels.rs` checks its own kernels, on the same inputs).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vae_autograd::loss_kernels::{BernoulliGrad, BernoulliRows, GaussianGrad, GaussianRows, KlGradLogvar, KlNormal};
use vae_linalg::simd::{self, Accum, Level};

const LENGTHS: [usize; 7] = [1, 7, 16, 17, 33, 100, 787];
const RANGE: (f64, f64) = (-30.0, 20.0);

fn random(rng: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// The outputs of every loss kernel on the same inputs, at `level` (f32) or in f64.
fn outputs<T: vae_linalg::Float>(level: Level, n: usize, inputs: &[Vec<T>; 4], rows: usize) -> Vec<(String, Vec<T>)> {
    let [x, y, z, w] = inputs;
    let mut out = Vec::new();
    let zero = || vec![T::zero(); n];
    // Row kernels: `rows` rows of n / rows columns.
    let cols = n / rows;
    let m = rows * cols;
    let target: Vec<T> = z[..m].iter().map(|&v| v / T::c(10.0)).collect();
    let mut r = vec![T::zero(); rows];
    simd::dispatch_at(
        level,
        BernoulliRows {
            logits: &x[..m],
            target: &target,
            n: cols,
            out: &mut r,
        },
    );
    out.push(("bernoulli_rows".into(), r));
    let g = &y[..rows];
    for acc in [Accum::Overwrite, Accum::Add] {
        let mut o = w[..m].to_vec();
        simd::dispatch_at(
            level,
            BernoulliGrad {
                g,
                logits: &x[..m],
                target: &target,
                out: &mut o,
                acc,
            },
        );
        out.push((format!("bernoulli_grad acc={acc:?}"), o));
    }
    let range = (T::c(RANGE.0), T::c(RANGE.1));
    // Log-variances spanning the clamp: x scaled to [-40, 40].
    let lv_full: Vec<T> = x[..m].iter().map(|&v| v * T::c(8.0)).collect();
    let lv_row: Vec<T> = lv_full[..cols].to_vec();
    for (name, lv) in [("full", &lv_full), ("shared", &lv_row)] {
        let mut r = vec![T::zero(); rows];
        simd::dispatch_at(
            level,
            GaussianRows {
                mean: &y[..m],
                target: &target,
                logvar: lv,
                n: cols,
                range,
                out: &mut r,
            },
        );
        out.push((format!("gaussian_rows {name}"), r));
        for wrt in 0..3 {
            let mut o = if wrt == 2 {
                w[..lv.len()].to_vec()
            } else {
                w[..m].to_vec()
            };
            simd::dispatch_at(
                level,
                GaussianGrad {
                    g,
                    mean: &y[..m],
                    target: &target,
                    logvar: lv,
                    n: cols,
                    range,
                    wrt,
                    out: &mut o,
                    acc: Accum::Add,
                },
            );
            out.push((format!("gaussian_grad {name} wrt={wrt}"), o));
        }
    }
    let mut k = zero();
    simd::dispatch_at(
        level,
        KlNormal {
            mu: y,
            logvar: &lv_full_n(x),
            range,
            out: &mut k,
        },
    );
    out.push(("kl".into(), k));
    let mut k = w.clone();
    simd::dispatch_at(
        level,
        KlGradLogvar {
            g: y,
            logvar: &lv_full_n(x),
            range,
            out: &mut k,
            acc: Accum::Add,
        },
    );
    out.push(("kl_grad_logvar".into(), k));
    out
}

fn lv_full_n<T: vae_linalg::Float>(x: &[T]) -> Vec<T> {
    x.iter().map(|&v| v * T::c(8.0)).collect()
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
