//! Runs written by earlier versions (`tests/fixtures/`, see its README): today's code reads
//! their flat `config.json` and checkpoints, resumes them to bitwise the weights the old
//! version reached, and evaluates them to the same figures.

use std::path::{Path, PathBuf};

use vae::model::checkpoint;
use vae::train::cli::{DataArgs, TrainArgs};
use vae::train::commands::RunArgs;
use vae::train::commands::eval::{EvalArgs, eval};
use vae::train::commands::train::train;
use vae::train::recipe::RunConfig;
use vae::train::report::{Progress, Verbosity};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// A copy of the v1 run directory to work in.
fn copy_of_v1(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vae-old-runs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "config.json",
        "metrics.csv",
        "model.safetensors",
        "training_state.safetensors",
    ] {
        std::fs::copy(fixture("run-v1").join(f), dir.join(f)).unwrap();
    }
    dir
}

/// Whether the kernels run at a vector level: the fixtures were written at AVX-512, whose
/// results AVX2's equal bit for bit; the portable scalar kernels round differently.
fn vector_level() -> bool {
    let level = vae::linalg::simd::level();
    if level == vae::linalg::simd::Level::Scalar {
        eprintln!("scalar kernels: comparing with the old version's figures within rounding, not bit for bit");
    }
    level != vae::linalg::simd::Level::Scalar
}

fn tensors(path: &Path) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    checkpoint::load_tensors(path).unwrap().tensors
}

#[test]
fn the_flat_configuration_reads_as_the_recipe_it_was() {
    let text = std::fs::read_to_string(fixture("run-v1/config.json")).unwrap();
    let r = RunConfig::from_json(&text).unwrap();
    let mut want = RunConfig::default();
    want.model.hidden = vec![8];
    want.model.latent = vec![2];
    // The old layout recorded the likelihood (today's default leaves it to the data).
    want.model.likelihood = Some(vae::model::Likelihood::Bernoulli);
    want.training.epochs = 2;
    want.training.lr = 3e-3;
    want.training.threads = Some(2);
    want.training.binarize = true;
    want.training.seed = 5;
    want.data.path = PathBuf::from("data/mnist");
    want.data.subset = Some(2000);
    // Saved before the split method was recorded: the random one.
    want.data.split = vae::train::recipe::SplitMethod::Random;
    want.output.run_dir = Some(PathBuf::from("/tmp/fx/v1"));
    assert_eq!(r, want);
    // Written back in today's layout, it reads the same.
    assert_eq!(RunConfig::from_json(&r.to_json()).unwrap(), r);
}

#[test]
fn an_old_run_resumes_to_bitwise_the_weights_the_old_version_reached() {
    let dir = copy_of_v1("resume");
    let out = train(
        &TrainArgs {
            resume: Some(dir.clone()),
            epochs: Some(3),
            source: DataArgs::at(root().join("data/mnist")),
            ..TrainArgs::default()
        },
        &mut Progress::new(Verbosity::Quiet),
    )
    .unwrap();
    assert_eq!(out.metrics.len(), 3);
    let (now, then) = (
        tensors(&dir.join("model.safetensors")),
        tensors(&fixture("run-v1-resumed-to-epoch3.safetensors")),
    );
    assert_eq!(now.len(), then.len());
    for (name, (shape, w)) in &then {
        let (s, v) = &now[name];
        assert_eq!(s, shape, "{name}");
        if vector_level() {
            let diff = w.iter().zip(v).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(
                diff,
                0,
                "{name}: {diff} of {} weights differ from the old version's",
                w.len()
            );
        } else {
            let worst = w.iter().zip(v).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-3, "{name}: weights differ by up to {worst}");
        }
    }
    // The resumed run is saved in today's layout and resumes again.
    let saved = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert_eq!(RunConfig::from_json(&saved).unwrap().training.epochs, 3);
    assert!(saved.contains("\"format\": 2"), "{saved}");
}

#[test]
fn an_old_run_evaluates_to_the_figures_the_old_version_gave() {
    let dir = copy_of_v1("eval");
    let e = eval(&EvalArgs {
        run: RunArgs {
            run_dir: dir.clone(),
            data: Some(root().join("data/mnist")),
            threads: Some(2),
            max_data_bytes: None,
        },
        k: 20,
        n: Some(200),
        chunk: 5000,
        seed: 0,
        out: Some(dir.join("eval.json")),
    })
    .unwrap();
    let then: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("run-v1-eval-k20-n200.json")).unwrap()).unwrap();
    let tolerance = if vector_level() { 0.0 } else { 1e-3 };
    assert!((then["neg_elbo"].as_f64().unwrap() - e.neg_elbo).abs() <= tolerance);
    assert!((then["neg_log_likelihood"].as_f64().unwrap() - e.neg_log_likelihood).abs() <= tolerance);
    assert_eq!(then["active_units"].as_u64().unwrap() as usize, e.active_units);
    // The model of an old run has no recorded image shape: a grey square of its inputs.
    let run = RunArgs {
        run_dir: dir,
        data: None,
        threads: None,
        max_data_bytes: None,
    }
    .load()
    .unwrap();
    assert_eq!(run.model.config().shape, None);
    assert_eq!(
        run.model.config().image_shape(),
        Some(vae::data::ImageShape::grey(28, 28))
    );
}
