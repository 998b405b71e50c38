//! f32 GEMM throughput at a VAE's training shapes, with the operands laid out as training
//! lays them out (weights `[out, in]`, so a forward product multiplies by a transposed
//! view), for: vae-linalg's own kernels at every SIMD level this CPU has (forced), vae-linalg
//! on its matrixmultiply backend (the reference), and the `gemm` crate (with its AVX-512
//! kernels), each on 1 thread and on every thread, and a naive triple loop on small shapes.
//!
//! Criterion's "elements" are floating-point operations (2*M*K*N per call), so its
//! `Gelem/s` column reads as GFLOP/s. At the end a table gives every implementation's best
//! GFLOP/s per shape, measured one after the other in this run.
//! Run: `cargo bench --bench matmul` (`-- own` and similar filters run a part; the table is
//! always complete).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, ShapeBuilder};
use ndarray_rand::RandomExt;
use ndarray_rand::rand::SeedableRng;
use ndarray_rand::rand::rngs::StdRng;
use ndarray_rand::rand_distr::Uniform;
use std::hint::black_box;
use std::time::{Duration, Instant};
use vae::linalg::{Backend, Parallelism, force_backend, fpenv, gemm_with, naive_gemm, simd};

/// Large blocks on cache lines, as `vae-train` allocates them.
#[global_allocator]
static ALLOC: vae::linalg::CacheAligned = vae::linalg::CacheAligned;

/// (M, K, N, A transposed, B transposed, what it is in a training step: of the reference
/// model, batch 128, or of the two-level IWAE model, batch 100 x K = 5 samples).
const SHAPES: [(usize, usize, usize, bool, bool, &str); 15] = [
    (128, 784, 400, false, true, "encoder forward X W1^T"),
    (128, 400, 784, false, true, "decoder output forward H W^T"),
    (128, 784, 400, false, false, "decoder input gradient G W"),
    (784, 128, 400, true, false, "decoder weight gradient G^T H"),
    (400, 128, 784, true, false, "encoder weight gradient G^T X"),
    (128, 400, 20, false, true, "latent heads forward"),
    (128, 20, 400, false, true, "decoder first layer forward"),
    (500, 200, 784, false, true, "iwae2 decoder output forward"),
    (500, 784, 200, false, false, "iwae2 decoder input gradient"),
    (784, 500, 200, true, false, "iwae2 decoder weight gradient"),
    (500, 100, 100, false, true, "iwae2 upper layer forward"),
    (100, 500, 100, true, false, "iwae2 upper weight gradient"),
    (256, 256, 256, false, false, "square"),
    (512, 512, 512, false, false, "square"),
    (1024, 1024, 1024, false, false, "square"),
];

/// One implementation under test.
#[derive(Clone, Copy)]
enum Imp {
    Own(simd::Level),
    MatrixMultiply,
    GemmCrate,
}

impl Imp {
    fn name(self) -> String {
        match self {
            Imp::Own(l) => format!("own-{l}"),
            Imp::MatrixMultiply => "matrixmultiply".into(),
            Imp::GemmCrate => "gemm-crate".into(),
        }
    }
}

fn gemm_crate(a: ArrayView2<f32>, b: ArrayView2<f32>, mut c: ArrayViewMut2<f32>, threads: usize) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let (sa, sb, sc) = (a.strides(), b.strides(), c.strides());
    let (sa, sb, sc) = ([sa[0], sa[1]], [sb[0], sb[1]], [sc[0], sc[1]]);
    // SAFETY: pointers and strides of live views with agreeing shapes; `c` does not alias.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            sc[1],
            sc[0],
            false,
            a.as_ptr(),
            sa[1],
            sa[0],
            b.as_ptr(),
            sb[1],
            sb[0],
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        )
    }
}

/// Runs `imp` once (inside the pool of `threads` threads the caller installed).
fn run(imp: Imp, threads: usize, a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>) {
    match imp {
        Imp::Own(level) => {
            simd::force_level(level).expect("a supported level");
            force_backend(Backend::Own);
            gemm_with(Parallelism::Rayon, 1.0, a, b, 0.0, c);
        }
        Imp::MatrixMultiply => {
            force_backend(Backend::MatrixMultiply);
            gemm_with(Parallelism::Rayon, 1.0, a, b, 0.0, c);
        }
        Imp::GemmCrate => gemm_crate(a, b, c, threads),
    }
}

/// Best GFLOP/s of `imp` over about 0.3 s of calls, after a warm-up.
fn best_rate(
    imp: Imp,
    pool: &rayon::ThreadPool,
    t: usize,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    out: &mut Array2<f32>,
) -> f64 {
    let (m, k) = a.dim();
    let flops = 2.0 * (m * k * b.ncols()) as f64;
    pool.install(|| {
        for _ in 0..3 {
            run(imp, t, a, b, out.view_mut());
        }
        let mut best = f64::INFINITY;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            let one = Instant::now();
            run(imp, t, black_box(a), b, out.view_mut());
            best = best.min(one.elapsed().as_secs_f64());
        }
        flops / best / 1e9
    })
}

fn operands(rng: &mut StdRng, m: usize, k: usize, n: usize, ta: bool, tb: bool) -> (Array2<f32>, Array2<f32>) {
    let mut a = Array2::<f32>::zeros((m, k).set_f(ta));
    a.assign(&Array2::random_using((m, k), Uniform::new(-1.0, 1.0).unwrap(), rng));
    let mut b = Array2::<f32>::zeros((k, n).set_f(tb));
    b.assign(&Array2::random_using((k, n), Uniform::new(-1.0, 1.0).unwrap(), rng));
    (a, b)
}

fn bench(c: &mut Criterion) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let counts = if threads > 1 { vec![1, threads] } else { vec![1] };
    let pools: Vec<_> = counts
        .iter()
        .map(|&n| (fpenv::thread_pool(Some(n)).unwrap(), n))
        .collect();
    let mut imps: Vec<Imp> = simd::supported_levels().into_iter().map(Imp::Own).collect();
    imps.extend([Imp::MatrixMultiply, Imp::GemmCrate]);
    let mut rng = StdRng::seed_from_u64(0);
    let mut group = c.benchmark_group("gemm_f32");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10);
    let mut table = Vec::new();
    for &(m, k, n, ta, tb, what) in &SHAPES {
        let (a, b) = operands(&mut rng, m, k, n, ta, tb);
        let mut out = Array2::<f32>::zeros((m, n));
        let shape = format!(
            "{m}x{k}x{n}{}{}",
            if ta { "_At" } else { "" },
            if tb { "_Bt" } else { "" }
        );
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        if m * k * n <= 256 * 256 * 256 {
            group.bench_function(BenchmarkId::new("naive", &shape), |bch| {
                bch.iter(|| naive_gemm(1.0, black_box(a.view()), b.view(), 0.0, out.view_mut()))
            });
        }
        let mut row = Vec::new();
        for &imp in &imps {
            for (pool, t) in &pools {
                // The whole timed loop runs inside the pool: no per-call hand-off is measured.
                group.bench_function(BenchmarkId::new(format!("{}-{t}t", imp.name()), &shape), |bch| {
                    bch.iter_custom(|iters| {
                        pool.install(|| {
                            let start = Instant::now();
                            for _ in 0..iters {
                                run(imp, *t, black_box(a.view()), b.view(), out.view_mut());
                            }
                            start.elapsed()
                        })
                    })
                });
                row.push(best_rate(imp, pool, *t, a.view(), b.view(), &mut out));
            }
        }
        table.push((shape, what, row));
    }
    group.finish();
    force_backend(Backend::Own);
    let _ = simd::force_level(simd::detected_level());
    println!("\nbest GFLOP/s per shape (this run, one implementation after the other):");
    print!("{:<24} {:<30}", "shape", "");
    for imp in &imps {
        for t in &counts {
            print!(" {:>17}", format!("{}-{t}t", imp.name()));
        }
    }
    println!();
    for (shape, what, row) in table {
        print!("{shape:<24} {what:<30}");
        for r in row {
            print!(" {r:>17.1}");
        }
        println!();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
