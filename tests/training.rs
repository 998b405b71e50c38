//! End-to-end training on small subsets of the real MNIST (fast enough for CI).

use std::path::PathBuf;

use rand::SeedableRng;
use rand::rngs::StdRng;
use vae::data::Dataset;
use vae::model::Vae;
use vae::train::cli::{DataArgs, TrainArgs};
use vae::train::commands::train::train;
use vae::train::report::{Progress, Verbosity};
use vae::train::run::EpochMetrics;
use vae::trainer::evaluate;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

fn run_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vae-train-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Reference configuration on a 2,000-image subset.
fn args(name: &str) -> TrainArgs {
    TrainArgs {
        source: DataArgs::at(data()),
        epochs: Some(1),
        subset: Some(2000),
        threads: Some(2),
        run_dir: Some(run_dir(name)),
        ..TrainArgs::default()
    }
}

fn quiet() -> Progress {
    Progress::new(Verbosity::Quiet)
}

#[test]
fn one_epoch_on_a_subset_lowers_the_test_loss() {
    let a = args("lowers");
    // The untrained model, initialised exactly as the run will be.
    let mnist = Dataset::open(data()).unwrap();
    let mut rng = StdRng::seed_from_u64(vae::data::stream_seed(1, 0, 10));
    let mut fresh = Vae::<f32>::new(a.recipe().model_config(vae::data::ImageShape::grey(28, 28)), &mut rng).unwrap();
    let before = evaluate(&mut fresh, &mnist.test, &mut StdRng::seed_from_u64(0)).neg_elbo();
    let out = train(&a, &mut quiet()).unwrap();
    let after = out.metrics[0].test_loss;
    eprintln!("test -ELBO: {before:.2} untrained, {after:.2} after one epoch on 2,000 images");
    assert!(after < 0.6 * before, "{after} is not well below {before}");
    for f in [
        "model.safetensors",
        "training_state.safetensors",
        "config.json",
        "metrics.csv",
        "samples.png",
        "reconstructions.png",
    ] {
        assert!(out.run_dir.join(f).is_file(), "{f} missing");
    }
}

#[test]
fn beta_weights_the_kl_term() {
    let kl = |beta: f64, name: &str| {
        let a = TrainArgs {
            beta: Some(beta),
            ..args(name)
        };
        let m = train(&a, &mut quiet()).unwrap().metrics[0];
        (m.train_kl, m.test_kl)
    };
    let (b0, b4) = (kl(0.0, "beta0"), kl(4.0, "beta4"));
    eprintln!("KL with beta 0: {b0:?}, with beta 4: {b4:?}");
    assert!(
        b0.1 > 2.0 * b4.1,
        "beta = 0 should leave a much larger KL than beta = 4: {b0:?} vs {b4:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_metrics() {
    let strip = |m: &[EpochMetrics]| -> Vec<EpochMetrics> {
        m.iter()
            .map(|&r| EpochMetrics {
                train_seconds: 0.0,
                ..r
            })
            .collect()
    };
    let a = train(&args("seed-a"), &mut quiet()).unwrap().metrics;
    let b = train(&args("seed-b"), &mut quiet()).unwrap().metrics;
    assert_eq!(strip(&a), strip(&b));
    let c = train(
        &TrainArgs {
            seed: Some(2),
            ..args("seed-c")
        },
        &mut quiet(),
    )
    .unwrap()
    .metrics;
    assert_ne!(strip(&a), strip(&c));
}

#[test]
fn results_are_bitwise_identical_across_thread_counts() {
    let weights = |threads: usize, name: &str| {
        let a = TrainArgs {
            threads: Some(threads),
            subset: Some(1000),
            ..args(name)
        };
        let out = train(&a, &mut quiet()).unwrap();
        let w = vae::model::checkpoint::load_tensors(&out.run_dir.join("model.safetensors"))
            .unwrap()
            .tensors;
        (w, out.metrics[0].test_loss)
    };
    let one = weights(1, "threads-1");
    for t in [2, 3] {
        assert!(weights(t, &format!("threads-{t}")) == one, "{t} threads differ from 1");
    }
}

#[test]
fn a_learning_rate_schedule_changes_the_updates() {
    // Epoch 0 runs at the base rate under every schedule; from epoch 1 on, exponential:0.5
    // halves it, so two epochs end elsewhere than with a constant rate.
    let train = |schedule: &str, name: &str| {
        let mut a = args(name);
        a.epochs = Some(2);
        a.lr_schedule = Some(schedule.parse().unwrap());
        vae::train::commands::train::train(&a, &mut quiet()).unwrap().metrics
    };
    let (c, e) = (train("constant", "sched-c"), train("exponential:0.5", "sched-e"));
    assert_eq!(c[0].train_loss, e[0].train_loss, "epoch 0 runs at the base rate");
    assert_ne!(c[1].train_loss, e[1].train_loss);
}
