//! Training throughput of the models the project is measured by, at every SIMD level
//! this CPU has (forced), on 1 thread and on every thread:
//! - `reference`: PyTorch's example VAE (784-400-20, ReLU, Bernoulli, batch 128, Adam), whole
//!   epochs of the 60,000 MNIST training images;
//! - `iwae2`: the two-stochastic-layer IWAE of docs/quality.md (784-200-200-100-100-100-50,
//!   tanh, K = 5, DReG, dynamically binarized, batch 100, Adam eps 1e-4), on the first
//!   10,000 training images per iteration; `iwae2-b20` the same at the IWAE paper's batch
//!   of 20;
//! - `keras-conv`: the Keras example's convolutional VAE (`--arch conv:32k3s2,64k3s2 --hidden
//!   16 --latent 2`: two stride-2 convolutions, a dense 16, a 2-d latent, a dense decoder
//!   layer and three transposed convolutions; ReLU, Bernoulli, batch 128, Adam), on the first
//!   5,120 training images per iteration.
//!
//! and, at the best level, the reference model on the matrixmultiply backend (the GEMM the
//! engine used before its own kernels). Criterion's throughput is in images per second. At
//! the end it prints, per model, level and thread count: images/s, the effective GFLOP/s of
//! the step's matrix products, and that as a fraction of this machine's FMA peak measured in
//! the same run (`vae::linalg::simd::fma_peak`, on as many threads, at the best level and at
//! the row's level), and the speed on every thread over one thread's. Run: `cargo bench --bench epoch`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vae::data::{BatchConfig, Batches, Dataset, ImageShape};
use vae::linalg::{Backend, force_backend, fpenv, simd, team};
use vae::model::{Bound, LevelConfig, Objective, Vae, VaeConfig};
use vae::nn::{Activation, Adam, AdamConfig, Optimizer};

/// Large blocks on cache lines, as `vae-train` allocates them.
#[global_allocator]
static ALLOC: vae::linalg::CacheAligned = vae::linalg::CacheAligned;

/// One model under test.
struct Model {
    name: &'static str,
    config: VaeConfig,
    objective: Objective,
    adam: AdamConfig,
    batch: usize,
    binarize: bool,
    /// Images per timed iteration (`None`: the whole training set).
    subset: Option<usize>,
    /// Flops per training image, when [`flops_per_image`]'s dense count does not apply.
    flops: Option<f64>,
}

/// The Keras example's model: its multiply-adds per image by layer, with whether the
/// layer's input needs a gradient (all but the first): 2 flops each forward, as many for
/// the weight gradient and for the input gradient. Convolutions: weight elements times
/// window positions (the output's pixels for a convolution, the input's for a transposed
/// one).
fn keras_conv() -> (VaeConfig, f64) {
    let config = VaeConfig {
        input: 784,
        hidden: vec![16],
        latent: 2,
        shape: Some(ImageShape::grey(28, 28)),
        arch: "conv:32k3s2,64k3s2".parse().unwrap(),
        ..VaeConfig::reference()
    };
    let macs = [
        (32 * 9 * 14 * 14, false),      // encoder.0: 1 -> 32, 28x28 -> 14x14
        (64 * 32 * 9 * 7 * 7, true),    // encoder.1: 32 -> 64, 14x14 -> 7x7
        (3136 * 16 + 2 * 16 * 2, true), // encoder.2, mu, logvar
        (2 * 3136, true),               // decoder.0
        (64 * 64 * 9 * 7 * 7, true),    // decoder.1: 64 -> 64, 7x7 -> 14x14
        (64 * 32 * 9 * 14 * 14, true),  // decoder.2: 64 -> 32, 14x14 -> 28x28
        (32 * 9 * 28 * 28, true),       // decoder.out: 32 -> 1, 28x28
    ];
    let flops = macs.iter().map(|&(m, xg)| 2 * m * (2 + xg as usize)).sum::<usize>();
    (config, flops as f64)
}

fn models() -> Vec<Model> {
    let iwae2 = VaeConfig {
        input: 784,
        hidden: vec![200, 200],
        latent: 100,
        activation: Activation::Tanh,
        likelihood: vae::model::Likelihood::Bernoulli,
        upper: vec![LevelConfig {
            hidden: vec![100, 100],
            latent: 50,
        }],
        shape: None,
        arch: Default::default(),
        prior: Default::default(),
    };
    let keras = keras_conv();
    let iwae2_model = |name, batch| Model {
        name,
        config: iwae2.clone(),
        objective: Objective {
            bound: Bound::Iwae,
            samples: 5,
            dreg: true,
            ..Objective::default()
        },
        adam: AdamConfig {
            eps: 1e-4,
            ..AdamConfig::default()
        },
        batch,
        binarize: true,
        subset: Some(10_000),
        flops: None,
    };
    vec![
        Model {
            name: "reference",
            config: VaeConfig::reference(),
            objective: Objective::default(),
            adam: AdamConfig::default(),
            batch: 128,
            binarize: false,
            subset: None,
            flops: None,
        },
        iwae2_model("iwae2", 100),
        // The IWAE paper's batch: more, smaller steps.
        iwae2_model("iwae2-b20", 20),
        Model {
            name: "keras-conv",
            config: keras.0,
            objective: Objective::default(),
            adam: AdamConfig::default(),
            batch: 128,
            binarize: false,
            subset: Some(5_120),
            flops: Some(keras.1),
        },
    ]
}

/// Flops of one dense layer's products per row: forward `2 in out`, and as much again for
/// the weight gradient and for the input gradient when they are computed.
fn layer(i: usize, o: usize, rows: usize, weight_grad: bool, input_grad: bool) -> usize {
    2 * i * o * rows * (1 + weight_grad as usize + input_grad as usize)
}

/// An MLP's layers (widths `dims`), the first with or without an input gradient, then two
/// heads (mean and log-variance) of `head` outputs each.
fn mlp(dims: &[usize], head: usize, rows: usize, weight_grad: bool, first_input_grad: bool) -> usize {
    let mut f = 0;
    for (l, w) in dims.windows(2).enumerate() {
        f += layer(w[0], w[1], rows, weight_grad, l > 0 || first_input_grad);
    }
    let last = *dims.last().unwrap();
    let first = dims.len() == 1 && !first_input_grad;
    f + 2 * layer(last, head, rows, weight_grad, !first)
}

/// Flops of the matrix products of one training image, as the engine computes them: the
/// first encoder once per image, everything above it on the K samples' rows, and with DReG
/// the upper encoders once more with their parameters held fixed (no weight gradients).
fn flops_per_image(m: &Model) -> f64 {
    let c = &m.config;
    let k = m.objective.samples.max(1);
    let mut enc = vec![c.input];
    enc.extend(&c.hidden);
    let mut f = mlp(&enc, c.latent, 1, true, false);
    let mut below = c.latent;
    for up in &c.upper {
        let mut q = vec![below];
        q.extend(&up.hidden);
        f += mlp(&q, up.latent, k, true, true);
        if m.objective.dreg {
            f += mlp(&q, up.latent, k, false, true);
        }
        let mut p = vec![up.latent];
        p.extend(up.hidden.iter().rev());
        f += mlp(&p, below, k, true, true);
        below = up.latent;
    }
    let mut dec = vec![c.latent];
    dec.extend(c.hidden.iter().rev());
    dec.push(c.input);
    for w in dec.windows(2) {
        f += layer(w[0], w[1], k, true, true);
    }
    f as f64
}

/// This machine's FMA peak at `level` on `threads` threads at once (each thread's best,
/// summed), in GFLOP/s.
fn peak(level: simd::Level, threads: usize) -> f64 {
    let pool = fpenv::thread_pool(Some(threads)).unwrap();
    pool.broadcast(|_| simd::fma_peak(level, 5)).iter().sum()
}

fn bench(c: &mut Criterion) {
    let mnist = Dataset::open(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist")).expect("the shipped MNIST");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let counts = if threads > 1 { vec![1, threads] } else { vec![1] };
    let best = simd::detected_level();
    let mut summary = Vec::new();
    for model in models() {
        let images = model.subset.unwrap_or(mnist.train.len()).min(mnist.train.len());
        let flops = model.flops.unwrap_or_else(|| flops_per_image(&model)) * images as f64;
        let mut group = c.benchmark_group(format!("epoch_{}", model.name));
        group
            .throughput(Throughput::Elements(images as u64))
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(15));
        let mut runs: Vec<(simd::Level, Backend)> = simd::supported_levels()
            .into_iter()
            .map(|l| (l, Backend::Own))
            .collect();
        if model.name == "reference" {
            runs.push((best, Backend::MatrixMultiply));
        }
        for (level, backend) in runs {
            simd::force_level(level).expect("a supported level");
            force_backend(backend);
            let label = match backend {
                Backend::Own => level.name().to_string(),
                Backend::MatrixMultiply => format!("{level}+matrixmultiply"),
            };
            for &t in &counts {
                let pool = fpenv::thread_pool(Some(t)).unwrap();
                let mut rng = StdRng::seed_from_u64(1);
                let mut vae = Vae::<f32>::new(model.config.clone(), &mut rng).unwrap();
                let params = vae.params().to_vec();
                let mut adam = Adam::new(model.adam, vae.tape(), &params);
                let cfg = BatchConfig {
                    batch_size: model.batch,
                    shuffle: true,
                    seed: 1,
                    subset: model.subset,
                    binarize: model.binarize,
                };
                let mut batches = Batches::new(&mnist.train, cfg);
                let mut epoch = 0;
                let mut seconds = Vec::new();
                group.bench_function(BenchmarkId::new(format!("train-{label}"), format!("{t}t")), |b| {
                    b.iter_custom(|iters| {
                        pool.install(|| {
                            let start = Instant::now();
                            for _ in 0..iters {
                                let one = Instant::now();
                                batches.start_epoch(epoch);
                                epoch += 1;
                                while let Some(batch) = batches.next_batch() {
                                    // As the trainer runs a step: one team per pass.
                                    black_box(team::with_team(|| {
                                        vae.train_step(batch.images, &mut rng, model.objective)
                                    }));
                                    team::with_team(|| adam.step(vae.tape_mut(), &params));
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
                summary.push((
                    model.name,
                    label.clone(),
                    level,
                    t,
                    images as f64 / median,
                    flops / median / 1e9,
                ));
            }
        }
        group.finish();
    }
    force_backend(Backend::Own);
    let _ = simd::force_level(best);
    if summary.is_empty() {
        return;
    }
    // The peaks, measured after the training runs, on as many threads as each row used.
    let mut peaks = std::collections::HashMap::new();
    for level in simd::supported_levels() {
        for &t in &counts {
            peaks.insert((level, t), peak(level, t));
        }
    }
    println!("\nFMA peak measured now (GFLOP/s):");
    for level in simd::supported_levels() {
        let row: Vec<String> = counts
            .iter()
            .map(|&t| format!("{t}t {:.1}", peaks[&(level, t)]))
            .collect();
        println!("  {:<7} {}", level.name(), row.join("  "));
    }
    println!(
        "\n{:<10} {:<22} {:>7} {:>9} {:>13} {:>16} {:>17} {:>7}",
        "model", "level", "threads", "img/s", "GFLOP/s", "of best peak", "of level's peak", "vs 1t"
    );
    let one_thread: std::collections::HashMap<(&str, String), f64> = summary
        .iter()
        .filter(|r| r.3 == 1)
        .map(|r| ((r.0, r.1.clone()), r.4))
        .collect();
    for (name, label, level, t, ips, gf) in summary {
        // Two threads' (or more) speed over one thread's, same model and level.
        let scaling = match one_thread.get(&(name, label.clone())) {
            Some(one) if t > 1 => format!("{:.2}x", ips / one),
            _ => "-".to_string(),
        };
        // The portable level's code is auto-vectorised: its own "peak" (a scalar FMA chain)
        // is no bound on it.
        let own = if level == simd::Level::Scalar {
            "-".to_string()
        } else {
            format!("{:.0}%", 100.0 * gf / peaks[&(level, t)])
        };
        println!(
            "{name:<10} {label:<22} {t:>7} {ips:>9.0} {gf:>13.1} {:>15.0}% {own:>17} {scaling:>7}",
            100.0 * gf / peaks[&(best, t)],
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
