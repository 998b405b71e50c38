//! Checkpoints: exact save/load, exact resume, the divergence stop, and every kind of bad
//! checkpoint file rejected with a message naming it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use vae::model::checkpoint;
use vae::model::{Bound, LevelConfig, Likelihood, Vae, VaeConfig};
use vae::nn::Activation;
use vae::train::cli::{DataArgs, TrainArgs};
use vae::train::commands::train::train;
use vae::train::report::{Progress, Verbosity};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vae-ckpt-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn args(dir: &Path) -> TrainArgs {
    TrainArgs {
        source: DataArgs::at(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist")),
        subset: Some(1000),
        threads: Some(2),
        run_dir: Some(dir.to_path_buf()),
        ..TrainArgs::default()
    }
}

fn quiet() -> Progress {
    Progress::new(Verbosity::Quiet)
}

/// Two stochastic layers trained with the IWAE bound and DReG.
fn args_two_levels(dir: &Path) -> TrainArgs {
    TrainArgs {
        latent: Some(vec![6, 3]),
        upper_hidden: Some(vec![10]),
        objective: Some(Bound::Iwae),
        samples: Some(3),
        dreg: true,
        binarize: true,
        ..args(dir)
    }
}

fn small(likelihood: Likelihood, levels: usize) -> Vae<f32> {
    let cfg = VaeConfig {
        input: 12,
        hidden: vec![7, 5],
        latent: 3,
        activation: Activation::LeakyRelu(0.2),
        likelihood,
        upper: (1..levels)
            .map(|l| LevelConfig {
                hidden: vec![4 + l],
                latent: 2,
            })
            .collect(),
        shape: None,
        arch: Default::default(),
        prior: Default::default(),
    };
    let mut v = Vae::<f32>::new(cfg, &mut StdRng::seed_from_u64(3)).unwrap();
    // Give the learned variance (if any) a non-trivial value too.
    for (name, p) in v.named_params().to_vec() {
        if name == "decoder.logvar" {
            v.tape_mut().param_mut(p).mapv_inplace(|_| 0.37);
        }
    }
    v
}

#[test]
fn save_then_load_reproduces_the_model_exactly() {
    let dir = tmp("roundtrip");
    std::fs::create_dir_all(&dir).unwrap();
    let x = Array2::from_shape_fn((4, 12), |(i, j)| ((i * 12 + j) % 7) as f32 / 7.0);
    for (lik, levels) in [
        (Likelihood::Bernoulli, 1),
        (Likelihood::Gaussian { variance: Some(1.0) }, 1),
        (Likelihood::Gaussian { variance: None }, 1),
        (Likelihood::Bernoulli, 3),
    ] {
        let mut a = small(lik, levels);
        let p = dir.join("m.safetensors");
        checkpoint::save(&a, &p, HashMap::from([("note".to_string(), "x".to_string())])).unwrap();
        let (mut b, meta) = checkpoint::load::<f32>(&p).unwrap();
        assert_eq!(meta["note"], "x");
        assert_eq!(a.config(), b.config());
        for ((na, va), (nb, vb)) in a.named_params().iter().zip(b.named_params()) {
            assert_eq!(na, nb);
            assert_eq!(a.tape().value(*va), b.tape().value(*vb), "{na}");
        }
        assert_eq!(a.reconstruct(x.view()), b.reconstruct(x.view()));
        let (s1, s2) = (
            a.neg_elbo_per_image(x.view(), &mut StdRng::seed_from_u64(1)),
            b.neg_elbo_per_image(x.view(), &mut StdRng::seed_from_u64(1)),
        );
        assert_eq!(s1, s2);
        let (s1, s2) = (
            a.sample(3, &mut StdRng::seed_from_u64(2)),
            b.sample(3, &mut StdRng::seed_from_u64(2)),
        );
        assert_eq!(s1, s2);
    }
    // Three levels: encoder2/decoder2 and encoder3/decoder3 (the last file written).
    let three = checkpoint::load_tensors(&dir.join("m.safetensors")).unwrap();
    assert_eq!(three.tensors["encoder2.0.weight"].0, vec![5, 3]);
    assert_eq!(three.tensors["encoder2.mu.weight"].0, vec![2, 5]);
    assert_eq!(three.tensors["decoder2.0.weight"].0, vec![5, 2]);
    assert_eq!(three.tensors["decoder2.logvar.weight"].0, vec![3, 5]);
    assert_eq!(three.tensors["encoder3.0.weight"].0, vec![6, 2]);
    assert_eq!(three.tensors["decoder3.mu.weight"].0, vec![2, 6]);
    let one = small(Likelihood::Gaussian { variance: None }, 1);
    checkpoint::save(&one, &dir.join("m.safetensors"), HashMap::new()).unwrap();
    // PyTorch's layout and names.
    let loaded = checkpoint::load_tensors(&dir.join("m.safetensors")).unwrap();
    assert_eq!(loaded.tensors["encoder.0.weight"].0, vec![7, 12]);
    assert_eq!(loaded.tensors["encoder.0.bias"].0, vec![7]);
    assert_eq!(loaded.tensors["encoder.mu.weight"].0, vec![3, 5]);
    assert_eq!(loaded.tensors["decoder.out.weight"].0, vec![12, 7]);
    assert_eq!(loaded.tensors["decoder.logvar"].0, vec![12]);
}

fn weights(dir: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    checkpoint::load_tensors(&dir.join("model.safetensors"))
        .unwrap()
        .tensors
}

#[test]
fn resuming_gives_bitwise_the_same_weights() {
    resumes_exactly("", args);
}

#[test]
fn resuming_iwae_with_two_levels_gives_bitwise_the_same_weights() {
    resumes_exactly("-iwae2", args_two_levels);
}

fn resumes_exactly(tag: &str, args: fn(&Path) -> TrainArgs) {
    let (one_go, split) = (tmp(&format!("one-go{tag}")), tmp(&format!("split{tag}")));
    let a = train(
        &TrainArgs {
            epochs: Some(2),
            ..args(&one_go)
        },
        &mut quiet(),
    )
    .unwrap();
    train(
        &TrainArgs {
            epochs: Some(1),
            ..args(&split)
        },
        &mut quiet(),
    )
    .unwrap();
    let resumed = TrainArgs {
        epochs: Some(2),
        resume: Some(split.clone()),
        run_dir: None,
        ..args(&split)
    };
    let b = train(&resumed, &mut quiet()).unwrap();
    let (wa, wb) = (weights(&one_go), weights(&split));
    for (name, (_, a)) in &wa {
        let b = &wb[name].1;
        let diff = a.iter().zip(b).filter(|(x, y)| x != y).count();
        assert_eq!(diff, 0, "{name}: {diff} of {} weights differ after resuming", a.len());
    }
    // The resumed run's epoch 2 is computed afresh (exact); its epoch 1 comes back from the
    // metrics file (six decimals).
    let key = |r: &vae::train::run::EpochMetrics| (r.epoch, r.train_loss, r.test_loss, r.test_kl);
    assert_eq!(key(&a.metrics[1]), key(&b.metrics[1]));
    assert!((a.metrics[0].test_loss - b.metrics[0].test_loss).abs() < 1e-5);
    // Optimizer state too.
    let opt = |d: &Path| {
        checkpoint::load_tensors(&d.join("training_state.safetensors"))
            .unwrap()
            .tensors
    };
    assert_eq!(opt(&one_go), opt(&split));
}

#[test]
fn a_second_run_never_overwrites_a_first() {
    let dir = tmp("no-overwrite");
    train(
        &TrainArgs {
            epochs: Some(1),
            ..args(&dir)
        },
        &mut quiet(),
    )
    .unwrap();
    let before = std::fs::read(dir.join("model.safetensors")).unwrap();
    let err = train(
        &TrainArgs {
            epochs: Some(1),
            ..args(&dir)
        },
        &mut quiet(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("already holds a trained model"), "{err:#}");
    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), before);
}

#[test]
fn a_nan_stops_training_and_keeps_the_last_good_checkpoint() {
    let dir = tmp("nan");
    // 1000 images in batches of 128: 8 batches an epoch; global batch 11 is epoch 2, batch 4.
    let a = TrainArgs {
        epochs: Some(3),
        inject_nan_at: Some(11),
        ..args(&dir)
    };
    let err = format!("{:#}", train(&a, &mut quiet()).unwrap_err());
    assert!(err.contains("diverged at epoch 2, batch 4"), "{err}");
    assert!(err.contains("lower learning rate"), "{err}");
    assert!(err.contains("after epoch 1"), "{err}");
    let (model, meta) = checkpoint::load::<f32>(&dir.join("model.safetensors")).unwrap();
    assert_eq!(meta["epochs_done"], "1");
    for (_, v) in model.named_params() {
        assert!(model.tape().value(*v).iter().all(|x| x.is_finite()));
    }
}

fn load_err(name: &str, bytes: &[u8]) -> String {
    let p = tmp(name);
    std::fs::create_dir_all(&p).unwrap();
    let f = p.join("bad.safetensors");
    std::fs::write(&f, bytes).unwrap();
    let e = checkpoint::load::<f32>(&f).err().expect("loading must fail");
    let msg = e.to_string();
    assert!(msg.contains(&f.display().to_string()), "{msg} does not name the file");
    msg
}

fn good_bytes(name: &str) -> Vec<u8> {
    let p = tmp(&format!("good-{name}"));
    std::fs::create_dir_all(&p).unwrap();
    let f = p.join("m.safetensors");
    checkpoint::save(&small(Likelihood::Bernoulli, 1), &f, HashMap::new()).unwrap();
    std::fs::read(f).unwrap()
}

#[test]
fn a_truncated_checkpoint() {
    let b = good_bytes("trunc");
    let msg = load_err("trunc", &b[..b.len() - 10]);
    assert!(msg.contains("not a valid safetensors file"), "{msg}");
}

#[test]
fn a_file_that_is_not_safetensors() {
    let msg = load_err("text", b"this is a text file, not a checkpoint at all");
    assert!(msg.contains("not a valid safetensors file"), "{msg}");
    let msg = load_err("empty", b"");
    assert!(msg.contains("not a valid safetensors file"), "{msg}");
}

#[test]
fn a_header_of_absurd_size() {
    let mut b = (u64::MAX / 2).to_le_bytes().to_vec();
    b.extend_from_slice(b"{}");
    let msg = load_err("absurd", &b);
    assert!(msg.contains("not a valid safetensors file"), "{msg}");
}

/// Re-serialises the good checkpoint with `edit` applied to its tensors.
fn edited(name: &str, edit: impl FnOnce(&mut Vec<checkpoint::Tensor>)) -> Vec<u8> {
    let p = tmp(&format!("edit-{name}"));
    std::fs::create_dir_all(&p).unwrap();
    let f = p.join("m.safetensors");
    std::fs::write(&f, good_bytes(name)).unwrap();
    let loaded = checkpoint::load_tensors(&f).unwrap();
    let mut tensors: Vec<checkpoint::Tensor> = loaded
        .tensors
        .into_iter()
        .map(|(n, (shape, data))| (n, shape, data))
        .collect();
    edit(&mut tensors);
    checkpoint::save_tensors(&f, &tensors, loaded.metadata).unwrap();
    std::fs::read(f).unwrap()
}

#[test]
fn a_missing_tensor() {
    let b = edited("missing", |t| t.retain(|(n, _, _)| n != "decoder.out.bias"));
    let msg = load_err("missing", &b);
    assert!(msg.contains("missing tensor 'decoder.out.bias'"), "{msg}");
}

#[test]
fn a_misshapen_tensor() {
    let b = edited("shape", |t| {
        for (n, shape, _) in t.iter_mut() {
            if n == "encoder.0.weight" {
                *shape = vec![12, 7];
            }
        }
    });
    let msg = load_err("shape", &b);
    assert!(
        msg.contains("tensor 'encoder.0.weight' is shaped [12, 7], expected shaped [7, 12]"),
        "{msg}"
    );
}

#[test]
fn a_safetensors_file_without_a_configuration() {
    let p = tmp("noconfig");
    std::fs::create_dir_all(&p).unwrap();
    let f = p.join("m.safetensors");
    checkpoint::save_tensors(&f, &[("w".into(), vec![1], vec![1.0])], HashMap::new()).unwrap();
    let msg = load_err("noconfig2", &std::fs::read(&f).unwrap());
    assert!(msg.contains("not a vae checkpoint"), "{msg}");
}
