//! Adam's kernel at every SIMD level this CPU has against the scalar reference: bitwise the
//! same result at every level (lengths with ragged tails, with and without weight decay),
//! and the f32 kernel agrees with the f64 path to a few parts in a million (as `vae-linalg`'s
//! `tests/simd_levels.rs` checks its own kernels, on the same inputs).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vae_linalg::simd::{self, Level};
use vae_nn::adam_kernel::{AdamStep, AdamUpdate};

const LENGTHS: [usize; 7] = [1, 7, 16, 17, 33, 100, 787];

fn random(rng: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Adam's outputs (weights and both moments) on the same inputs, at `level` (f32) or in f64.
fn outputs<T: vae_linalg::Float>(level: Level, inputs: &[Vec<T>; 4]) -> Vec<(String, Vec<T>)> {
    let [x, y, z, w] = inputs;
    let mut out = Vec::new();
    for wd in [0.0, 0.01] {
        let (mut wt, mut m1, mut v1) = (x.clone(), y.clone(), z.clone());
        let h = AdamStep {
            step_size: T::c(1e-3 / (1.0 - 0.9f64.powi(3))),
            bc2_sqrt: T::c((1.0 - 0.999f64.powi(3)).sqrt()),
            beta1: T::c(0.9),
            beta2: T::c(0.999),
            eps: T::c(1e-8),
            weight_decay: T::c(wd),
        };
        simd::dispatch_at(
            level,
            AdamUpdate {
                w: &mut wt,
                g: w,
                m: &mut m1,
                v: &mut v1,
                h,
            },
        );
        out.push((format!("adam wd={wd} w"), wt));
        out.push((format!("adam wd={wd} m"), m1));
        out.push((format!("adam wd={wd} v"), v1));
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
        let reference = outputs::<f32>(Level::Scalar, &ins);
        for level in simd::supported_levels() {
            for ((name, got), (_, want)) in outputs::<f32>(level, &ins).iter().zip(&reference) {
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
        let got = outputs::<f32>(simd::detected_level(), &ins32);
        let want = outputs::<f64>(Level::Scalar, &ins64);
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            // Relative to the magnitude, as for every kernel.
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
