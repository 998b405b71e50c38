//! One training epoch of the reference configuration (784-400-20, batch 128, Bernoulli
//! decoder, Adam lr 1e-3) over the 60,000 MNIST training images, on 1 thread and on every
//! thread. Criterion's throughput is in images per second. Run: `cargo bench --bench epoch`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vae::mnist::{BatchConfig, Batches, Mnist};
use vae::model::{Objective, Vae, VaeConfig};
use vae::nn::{Adam, AdamConfig, Optimizer};

fn bench(c: &mut Criterion) {
    let mnist = Mnist::load(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist")).expect("the shipped MNIST");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("epoch_784-400-20_b128");
    group
        .throughput(Throughput::Elements(mnist.train.len() as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(15));
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
        group.bench_function(BenchmarkId::new("train", format!("{t}t")), |b| {
            b.iter_custom(|iters| {
                pool.install(|| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        batches.start_epoch(epoch);
                        epoch += 1;
                        while let Some(batch) = batches.next_batch() {
                            black_box(vae.train_step(batch.images, &mut rng, Objective::default()));
                            adam.step(vae.tape_mut(), &params);
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
