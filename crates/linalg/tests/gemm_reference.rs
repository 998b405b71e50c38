//! `gemm` against the naive triple loop: random sizes 1..=300 (rarely a multiple of any
//! kernel width), all four transpose combinations, alpha/beta other than 1/0, f32 and f64,
//! one and several threads; plus bitwise agreement between thread counts.

use ndarray::{Array2, ArrayView2, ShapeBuilder};
use ndarray_rand::RandomExt;
use ndarray_rand::rand::rngs::StdRng;
use ndarray_rand::rand::{Rng, SeedableRng};
use ndarray_rand::rand_distr::Uniform;
use vae_linalg::{Float, Parallelism, gemm, gemm_with, naive_gemm};

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

/// A random m x n matrix, stored transposed (column-major) when `transposed`, so that the
/// view handed to gemm has swapped strides.
fn operand<T: Float>(rng: &mut StdRng, m: usize, n: usize, transposed: bool) -> Array2<T> {
    let data = Array2::<f64>::random_using((m, n), Uniform::new(-1.0, 1.0).unwrap(), rng);
    let mut out = Array2::<T>::zeros((m, n).set_f(transposed));
    out.zip_mut_with(&data, |o, &d| *o = T::c(d));
    out
}

/// Checks one product against the reference with the rigorous bound
/// |err| <= 2 * k * eps * (|alpha| * sum_p |a_ip b_pj| + |beta c_ij|) + tiny.
#[allow(clippy::too_many_arguments)]
fn check<T: Float>(
    rng: &mut StdRng,
    (m, k, n): (usize, usize, usize),
    ta: bool,
    tb: bool,
    alpha: T,
    beta: T,
    par: Parallelism,
) {
    let a = operand::<T>(rng, m, k, ta);
    let b = operand::<T>(rng, k, n, tb);
    let c0 = if beta == T::zero() {
        Array2::from_elem((m, n), T::nan())
    } else {
        operand::<T>(rng, m, n, false)
    };
    let mut got = c0.clone();
    gemm_with(par, alpha, a.view(), b.view(), beta, got.view_mut());
    let mut want = c0.clone();
    naive_gemm(alpha, a.view(), b.view(), beta, want.view_mut());
    let abs = |v: ArrayView2<T>| v.mapv(|x| x.abs());
    let mut bound = Array2::<T>::zeros((m, n));
    naive_gemm(
        alpha.abs(),
        abs(a.view()).view(),
        abs(b.view()).view(),
        T::zero(),
        bound.view_mut(),
    );
    let eps = T::epsilon();
    for ((i, j), &g) in got.indexed_iter() {
        let w = want[[i, j]];
        let old = if beta == T::zero() {
            T::zero()
        } else {
            (beta * c0[[i, j]]).abs()
        };
        let tol = T::c(2.0 * k as f64 + 4.0) * eps * (bound[[i, j]] + old) + T::min_positive_value();
        assert!(
            (g - w).abs() <= tol,
            "({m},{k},{n}) ta={ta} tb={tb} alpha={alpha} beta={beta} {par:?}: C[{i},{j}] = {g}, want {w} (tol {tol})"
        );
    }
}

fn random_sizes(rng: &mut StdRng, count: usize) -> Vec<(usize, usize, usize)> {
    let mut sizes = vec![
        (1, 1, 1),
        (300, 300, 300),
        (128, 400, 20),
        (128, 20, 400),
        (20, 128, 400),
        (400, 128, 20),
        (33, 1, 299),
        (7, 300, 31),
        (1, 257, 1),
        (129, 3, 2),
    ];
    sizes.extend((0..count).map(|_| {
        (
            rng.random_range(1..=300),
            rng.random_range(1..=300),
            rng.random_range(1..=300),
        )
    }));
    sizes
}

fn sweep<T: Float>(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let sizes = random_sizes(&mut rng, 30);
    let scalars = [(T::one(), T::zero()), (T::c(-0.75), T::c(1.5)), (T::c(2.0), T::one())];
    for threads in [1, 2, 3] {
        pool(threads).install(|| {
            for (idx, &shape) in sizes.iter().enumerate() {
                for ta in [false, true] {
                    for tb in [false, true] {
                        let (alpha, beta) = scalars[(idx + ta as usize + 2 * tb as usize) % scalars.len()];
                        check(&mut rng, shape, ta, tb, alpha, beta, Parallelism::Rayon);
                    }
                }
            }
        });
    }
    // The sequential entry point, too.
    for &shape in sizes.iter().take(12) {
        check(
            &mut rng,
            shape,
            true,
            false,
            T::c(0.5),
            T::c(-1.0),
            Parallelism::Sequential,
        );
    }
}

#[test]
fn gemm_f32_matches_reference() {
    sweep::<f32>(1);
}

#[test]
fn gemm_f64_matches_reference() {
    sweep::<f64>(2);
}

#[test]
fn gemm_is_bitwise_identical_across_thread_counts() {
    let mut rng = StdRng::seed_from_u64(3);
    for &(m, k, n, ta) in &[
        (128, 784, 400, false),
        (128, 400, 784, false),
        (784, 128, 400, true),
        (400, 128, 784, true),
        (128, 400, 20, false),
        (20, 128, 400, true),
        (257, 129, 263, false),
    ] {
        let a = operand::<f32>(&mut rng, m, k, ta);
        let b = operand::<f32>(&mut rng, k, n, false);
        let run = |threads: usize| {
            let mut c = Array2::<f32>::zeros((m, n));
            pool(threads).install(|| gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()));
            c
        };
        let one = run(1);
        for threads in [2, 3, 4] {
            assert!(
                run(threads) == one,
                "({m},{k},{n}) differs between 1 and {threads} threads"
            );
        }
    }
}

#[test]
fn empty_and_degenerate_shapes() {
    // k = 0: C = beta * C.
    let a = Array2::<f64>::zeros((3, 0));
    let b = Array2::<f64>::zeros((0, 4));
    let mut c = Array2::<f64>::from_elem((3, 4), 2.0);
    gemm(1.0, a.view(), b.view(), 0.5, c.view_mut());
    assert!(c.iter().all(|&x| x == 1.0));
    // beta = 0 overwrites NaN.
    let mut c = Array2::<f64>::from_elem((3, 4), f64::NAN);
    gemm(1.0, a.view(), b.view(), 0.0, c.view_mut());
    assert!(c.iter().all(|&x| x == 0.0));
    // m = 0 or n = 0: nothing to do, no panic.
    let mut c = Array2::<f64>::zeros((0, 4));
    gemm(
        1.0,
        Array2::<f64>::zeros((0, 2)).view(),
        Array2::<f64>::zeros((2, 4)).view(),
        0.0,
        c.view_mut(),
    );
}

#[test]
#[should_panic(expected = "do not agree")]
fn mismatched_shapes_panic_with_a_message() {
    let mut c = Array2::<f32>::zeros((2, 2));
    gemm(
        1.0,
        Array2::<f32>::zeros((2, 3)).view(),
        Array2::<f32>::zeros((4, 2)).view(),
        0.0,
        c.view_mut(),
    );
}
