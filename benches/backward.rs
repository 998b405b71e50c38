//! One training step of the reference VAE (784-400-20, batch 128, Bernoulli decoder): forward
//! alone, backward alone, the Adam update alone, and forward + backward + Adam, in images per
//! second (a batch of 128 images per iteration), at every SIMD level this CPU has (forced),
//! on 1 thread and on every thread. At the end it prints each phase in milliseconds and
//! Adam's share of the whole step. Run: `cargo bench --bench backward`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vae::data::Dataset;
use vae::linalg::simd;
use vae::model::{Objective, Vae, VaeConfig};
use vae::nn::{Adam, AdamConfig, Optimizer};

/// Large blocks on cache lines, as `vae-train` allocates them.
#[global_allocator]
static ALLOC: vae::linalg::CacheAligned = vae::linalg::CacheAligned;

const BATCH: usize = 128;

fn bench(c: &mut Criterion) {
    let mnist = Dataset::open(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist")).expect("the shipped MNIST");
    let x = mnist.train.images.rows_f32(0..BATCH).to_owned();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("vae_step_784-400-20_b128");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    let mut summary = Vec::new();
    for level in simd::supported_levels() {
        simd::force_level(level).expect("a supported level");
        for t in [1, threads] {
            let pool = vae::linalg::fpenv::thread_pool(Some(t)).unwrap();
            let mut rng = StdRng::seed_from_u64(1);
            let mut vae = Vae::<f32>::new(VaeConfig::reference(), &mut rng).unwrap();
            let params = vae.params().to_vec();
            let mut adam = Adam::new(AdamConfig::default(), vae.tape(), &params);
            let obj = Objective::default();
            // Each measurement runs its whole loop inside the pool, so that no per-iteration
            // hand-off is timed; the best per-iteration time goes to the summary.
            let mut best = [f64::INFINITY; 4];
            let mut timed = |phase: usize, iters: u64, f: &mut (dyn FnMut() + Send)| {
                let d = pool.install(|| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        f();
                    }
                    start.elapsed()
                });
                best[phase] = best[phase].min(d.as_secs_f64() / iters as f64);
                d
            };
            let id = |phase: &str| BenchmarkId::new(format!("{phase}-{level}"), format!("{t}t"));
            group.bench_function(id("forward"), |b| {
                b.iter_custom(|n| {
                    timed(0, n, &mut || {
                        black_box(vae.forward(x.view(), &mut rng, obj));
                    })
                })
            });
            let step = pool.install(|| vae.forward(x.view(), &mut rng, obj));
            group.bench_function(id("backward"), |b| {
                b.iter_custom(|n| timed(1, n, &mut || vae.tape_mut().backward(black_box(step.loss))))
            });
            group.bench_function(id("forward+backward+adam"), |b| {
                b.iter_custom(|n| {
                    timed(3, n, &mut || {
                        black_box(vae.train_step(x.view(), &mut rng, obj));
                        adam.step(vae.tape_mut(), &params);
                    })
                })
            });
            // Last, as repeating one update drives the weights far from where training keeps
            // them: gradients for Adam to apply (the same ones every iteration).
            pool.install(|| vae.train_step(x.view(), &mut rng, obj));
            group.bench_function(id("adam"), |b| {
                b.iter_custom(|n| timed(2, n, &mut || adam.step(vae.tape_mut(), &params)))
            });
            summary.push((level, t, best));
        }
    }
    group.finish();
    println!("\nlevel   threads  forward ms  backward ms  Adam ms  step ms   img/s   Adam / step");
    for (level, t, [f, b, a, all]) in summary {
        println!(
            "{:<7} {t:>7} {:>11.3} {:>12.3} {:>8.3} {:>8.3} {:>7.0} {:>12.1}%",
            level.name(),
            f * 1e3,
            b * 1e3,
            a * 1e3,
            all * 1e3,
            BATCH as f64 / all,
            100.0 * a / all
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
