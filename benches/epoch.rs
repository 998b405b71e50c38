//! One training epoch of the reference configuration (784-400-20, batch 128, Bernoulli
//! decoder, Adam lr 1e-3) over the 60,000 MNIST training images, at every SIMD level this CPU
//! has (forced), on 1 thread and on every thread. Criterion's throughput is in images per
//! second. At the end it prints, per level and thread count: images/s, the epoch's effective
//! GFLOP/s (its matrix products' flops over its wall time), and that as a fraction of
//! vae-linalg's own 1024^3 GEMM rate measured in the same run at the same level and threads.
//! Run: `cargo bench --bench epoch`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use vae::linalg::{gemm, simd};
use vae::mnist::{BatchConfig, Batches, Mnist};
use vae::model::{Objective, Vae, VaeConfig};
use vae::nn::{Adam, AdamConfig, Optimizer};

/// Flops of the matrix products of one training image: forward `2 in out` per layer, the
/// weight gradients the same, the input gradients the same but for the first layer (the
/// data needs none).
fn flops_per_image(c: &VaeConfig) -> f64 {
    let mut dims = vec![c.input];
    dims.extend(&c.hidden);
    let mut layers: Vec<(usize, usize)> = dims.windows(2).map(|w| (w[0], w[1])).collect();
    let h = *dims.last().unwrap();
    layers.extend([(h, c.latent), (h, c.latent)]);
    let mut dec = vec![c.latent];
    dec.extend(c.hidden.iter().rev());
    dec.push(c.input);
    layers.extend(dec.windows(2).map(|w| (w[0], w[1])));
    let fwd: usize = layers.iter().map(|&(i, o)| 2 * i * o).sum();
    let first = 2 * layers[0].0 * layers[0].1;
    (3 * fwd - first) as f64
}

/// vae-linalg's 1024^3 GEMM rate in GFLOP/s on the current pool (best of 10, after two
/// warm-up products).
fn gemm_rate() -> f64 {
    let n = 1024;
    let a = Array2::<f32>::from_shape_fn((n, n), |(i, j)| ((i * 7 + j * 3) % 17) as f32 / 17.0 - 0.5);
    let mut c = Array2::<f32>::zeros((n, n));
    for _ in 0..2 {
        gemm(1.0, a.view(), a.view(), 0.0, c.view_mut());
    }
    let best = (0..10)
        .map(|_| {
            let t = Instant::now();
            gemm(1.0, a.view(), black_box(a.view()), 0.0, c.view_mut());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (n * n * n) as f64 / best / 1e9
}

fn bench(c: &mut Criterion) {
    let mnist = Mnist::load(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist")).expect("the shipped MNIST");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let images = mnist.train.len();
    let flops = flops_per_image(&VaeConfig::reference()) * images as f64;
    let mut group = c.benchmark_group("epoch_784-400-20_b128");
    group
        .throughput(Throughput::Elements(images as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(15));
    let mut summary = Vec::new();
    for level in simd::supported_levels() {
        simd::force_level(level).expect("a supported level");
        for t in [1, threads] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            let mut rng = StdRng::seed_from_u64(1);
            let mut vae = Vae::<f32>::new(VaeConfig::reference(), &mut rng).unwrap();
            let params = vae.params().to_vec();
            let mut adam = Adam::new(AdamConfig::default(), vae.tape(), &params);
            let cfg = BatchConfig {
                batch_size: 128,
                shuffle: true,
                seed: 1,
                subset: None,
                binarize: false,
            };
            let mut batches = Batches::new(&mnist.train, cfg);
            let mut epoch = 0;
            let mut seconds = Vec::new();
            group.bench_function(BenchmarkId::new(format!("train-{level}"), format!("{t}t")), |b| {
                b.iter_custom(|iters| {
                    pool.install(|| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let one = Instant::now();
                            batches.start_epoch(epoch);
                            epoch += 1;
                            while let Some(batch) = batches.next_batch() {
                                black_box(vae.train_step(batch.images, &mut rng, Objective::default()));
                                adam.step(vae.tape_mut(), &params);
                            }
                            seconds.push(one.elapsed().as_secs_f64());
                        }
                        start.elapsed()
                    })
                })
            });
            if seconds.is_empty() {
                continue; // filtered out on the command line
            }
            seconds.sort_by(f64::total_cmp);
            let median = seconds[seconds.len() / 2];
            let rate = pool.install(gemm_rate);
            summary.push((level, t, images as f64 / median, flops / median / 1e9, rate));
        }
    }
    group.finish();
    println!("\nlevel   threads   img/s     epoch GFLOP/s   1024^3 GEMM GFLOP/s   epoch / GEMM");
    for (level, t, ips, gf, rate) in summary {
        println!(
            "{:<7} {t:>7} {ips:>9.0} {gf:>12.1} {rate:>18.1} {:>16.0}%",
            level.name(),
            100.0 * gf / rate
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
