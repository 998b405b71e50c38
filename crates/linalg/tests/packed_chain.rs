//! The engine's own GEMM kernels at every SIMD level this CPU has, checked bit for bit: each
//! element of `C` must equal one multiply-add chain over `k` in order, starting from
//! `beta * C` (fused at the AVX2 and AVX-512 levels, rounded twice on the portable one), so
//! the AVX2 and AVX-512 results are identical to each other, at every thread count and at
//! shapes that leave partial tiles and partial `k` blocks. The level is process-wide: the
//! tests take turns (`LEVEL_LOCK`).

use ndarray::{Array2, ShapeBuilder};
use ndarray_rand::RandomExt;
use ndarray_rand::rand::SeedableRng;
use ndarray_rand::rand::rngs::StdRng;
use ndarray_rand::rand_distr::Uniform;
use vae_linalg::simd::Unary;
use vae_linalg::simd::{self, Level};
use vae_linalg::{Backend, elementwise, force_backend, gemm, gemm_bias_act};

static LEVEL_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn operand(rng: &mut StdRng, m: usize, n: usize, transposed: bool) -> Array2<f32> {
    let data = Array2::<f32>::random_using((m, n), Uniform::new(-1.0, 1.0).unwrap(), rng);
    let mut out = Array2::<f32>::zeros((m, n).set_f(transposed));
    out.assign(&data);
    out
}

/// The chain every element must equal.
fn chain(a: &Array2<f32>, b: &Array2<f32>, alpha: f32, beta: f32, c0: &Array2<f32>, fused: bool) -> Array2<f32> {
    let (m, k) = a.dim();
    let n = b.ncols();
    Array2::from_shape_fn((m, n), |(i, j)| {
        let mut c = if beta == 0.0 {
            0.0
        } else if beta == 1.0 {
            c0[[i, j]]
        } else {
            beta * c0[[i, j]]
        };
        for p in 0..k {
            let bp = if alpha == 1.0 { b[[p, j]] } else { alpha * b[[p, j]] };
            c = if fused {
                a[[i, p]].mul_add(bp, c)
            } else {
                a[[i, p]] * bp + c
            };
        }
        c
    })
}

#[test]
fn own_kernels_compute_one_chain_per_element_at_every_level() {
    let _turn = LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    force_backend(Backend::Own);
    let mut rng = StdRng::seed_from_u64(7);
    let shapes = [
        (128, 784, 400),
        (128, 400, 784),
        (784, 128, 400),
        (128, 20, 400),
        (33, 257, 33),
        (61, 513, 97),
        (100, 1, 50),
        (47, 300, 200),
        (37, 2100, 60),
        (500, 100, 50),
        (500, 200, 100),
        (203, 50, 100),
    ];
    let scalars = [(1.0f32, 0.0f32), (1.0, 1.0), (-0.75, 1.5), (2.0, 0.0)];
    for level in simd::supported_levels() {
        simd::force_level(level).unwrap();
        let fused = level != Level::Scalar;
        for (idx, &(m, k, n)) in shapes.iter().enumerate() {
            let (ta, tb) = (idx % 2 == 1, idx % 3 == 0);
            let (alpha, beta) = scalars[idx % scalars.len()];
            let a = operand(&mut rng, m, k, ta);
            let b = operand(&mut rng, k, n, tb);
            let c0 = if beta == 0.0 {
                Array2::from_elem((m, n), f32::NAN)
            } else {
                operand(&mut rng, m, n, false)
            };
            let want = chain(&a, &b, alpha, beta, &c0, fused);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut c = c0.clone();
                pool.install(|| gemm(alpha, a.view(), b.view(), beta, c.view_mut()));
                let bad = c.iter().zip(want.iter()).position(|(x, y)| x.to_bits() != y.to_bits());
                if let Some(pos) = bad {
                    let (i, j) = (pos / n, pos % n);
                    panic!(
                        "{level} ({m},{k},{n}) ta={ta} tb={tb} alpha={alpha} beta={beta} {threads} threads: \
                         C[{i},{j}] = {} want {}",
                        c[[i, j]],
                        want[[i, j]]
                    );
                }
            }
        }
    }
}

/// The fused dense layer: every chain starts at the bias and the activation is the engine's
/// own, applied to the finished chain, at every level and thread count.
#[test]
fn fused_bias_and_activation_equal_the_chain_then_the_activation() {
    let _turn = LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    force_backend(Backend::Own);
    let mut rng = StdRng::seed_from_u64(8);
    let acts = [
        None,
        Some(Unary::Relu),
        Some(Unary::Tanh),
        Some(Unary::Sigmoid),
        Some(Unary::LeakyRelu(0.2)),
    ];
    for level in simd::supported_levels() {
        simd::force_level(level).unwrap();
        let fused = level != Level::Scalar;
        for (idx, &(m, k, n)) in [
            (128, 784, 400),
            (61, 513, 97),
            (40, 1500, 50),
            (500, 100, 200),
            (500, 200, 50),
        ]
        .iter()
        .enumerate()
        {
            let x = operand(&mut rng, m, k, false);
            let w = operand(&mut rng, n, k, false); // [out, in], used transposed
            let bias = operand(&mut rng, 1, n, false);
            let act = acts[idx % acts.len()];
            let mut want = chain(
                &x,
                &w.t().to_owned(),
                1.0,
                1.0,
                &Array2::from_shape_fn((m, n), |(_, j)| bias[[0, j]]),
                fused,
            );
            if let Some(f) = act {
                let pre = want.clone();
                elementwise::unary(f, pre.as_slice().unwrap(), want.as_slice_mut().unwrap());
            }
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut c = Array2::from_elem((m, n), f32::NAN);
                pool.install(|| gemm_bias_act(x.view(), w.t(), bias.as_slice().unwrap(), act, c.view_mut()));
                assert!(
                    c.iter().zip(want.iter()).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{level} ({m},{k},{n}) {act:?} {threads} threads"
                );
            }
        }
    }
}
