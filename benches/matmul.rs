//! f32 GEMM throughput at a VAE's training shapes, for: a naive triple loop (small shapes
//! only), single-threaded `matrixmultiply`, ndarray's `dot` (`general_mat_mul`, which `dot`
//! calls), and `vae-linalg` at every SIMD level this CPU has (forced, see `vae::linalg::simd`)
//! on 1 thread and on every thread. matrixmultiply picks its own kernel at run time (AVX2 +
//! FMA on x86-64; the project builds it without its AVX-512 kernel, so a forced level holds
//! for every product).
//!
//! Criterion's "elements" are floating-point operations (2*M*K*N per call), so its
//! `Gelem/s` column reads as GFLOP/s. Run: `cargo bench --bench matmul`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use ndarray_rand::RandomExt;
use ndarray_rand::rand::SeedableRng;
use ndarray_rand::rand::rngs::StdRng;
use ndarray_rand::rand_distr::Uniform;
use std::hint::black_box;
use std::time::{Duration, Instant};
use vae::linalg::{Parallelism, gemm_with, naive_gemm, simd};

/// (M, K, N, A stored transposed): the forward products, the input-gradient products, the
/// weight-gradient products (A^T B), the latent layers, and squares.
const SHAPES: [(usize, usize, usize, bool); 9] = [
    (128, 784, 400, false),
    (128, 400, 784, false),
    (784, 128, 400, true),
    (400, 128, 784, true),
    (128, 400, 20, false),
    (128, 20, 400, false),
    (256, 256, 256, false),
    (512, 512, 512, false),
    (1024, 1024, 1024, false),
];

fn mm_single(a: ArrayView2<f32>, b: ArrayView2<f32>, mut c: ArrayViewMut2<f32>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let (sa, sb, sc) = (a.strides().to_vec(), b.strides().to_vec(), c.strides().to_vec());
    // SAFETY: pointers and strides of live views with agreeing shapes.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            sa[0],
            sa[1],
            b.as_ptr(),
            sb[0],
            sb[1],
            0.0,
            c.as_mut_ptr(),
            sc[0],
            sc[1],
        )
    }
}

fn bench(c: &mut Criterion) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pools = [1, threads].map(|n| (rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap(), n));
    let mut rng = StdRng::seed_from_u64(0);
    let mut group = c.benchmark_group("gemm_f32");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for &(m, k, n, ta) in &SHAPES {
        let a_store = Array2::<f32>::random_using(
            if ta { (k, m) } else { (m, k) },
            Uniform::new(-1.0, 1.0).unwrap(),
            &mut rng,
        );
        let b = Array2::<f32>::random_using((k, n), Uniform::new(-1.0, 1.0).unwrap(), &mut rng);
        let a = if ta { a_store.t() } else { a_store.view() };
        let mut out = Array2::<f32>::zeros((m, n));
        let shape = format!("{m}x{k}x{n}{}", if ta { "_At" } else { "" });
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        if m * k * n <= 256 * 256 * 256 {
            group.bench_function(BenchmarkId::new("naive", &shape), |bch| {
                bch.iter(|| naive_gemm(1.0, black_box(a), b.view(), 0.0, out.view_mut()))
            });
        }
        group.bench_function(BenchmarkId::new("matrixmultiply-1t", &shape), |bch| {
            bch.iter(|| mm_single(black_box(a), b.view(), out.view_mut()))
        });
        group.bench_function(BenchmarkId::new("ndarray-dot", &shape), |bch| {
            bch.iter(|| ndarray::linalg::general_mat_mul(1.0, &black_box(a), &b, 0.0, &mut out))
        });
        for (level, (pool, t)) in simd::supported_levels()
            .into_iter()
            .flat_map(|l| pools.iter().map(move |p| (l, p)))
        {
            simd::force_level(level).expect("a supported level");
            // The whole timed loop runs inside the pool: no per-call hand-off is measured.
            group.bench_function(BenchmarkId::new(format!("vae-linalg-{level}-{t}t"), &shape), |bch| {
                bch.iter_custom(|iters| {
                    pool.install(|| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            gemm_with(Parallelism::Rayon, 1.0, black_box(a), b.view(), 0.0, out.view_mut());
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
