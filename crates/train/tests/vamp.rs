//! The VampPrior and the time-based schedule through the binary: a two-level VampPrior model
//! trained with IWAE and DReG resumes bitwise, stores its pseudo-inputs, and every command
//! reads it; a one-level one trains with the ELBO; `cosine-time` completes a run when its
//! seconds are spent, and the settings that cannot work are refused naming the flag.

mod common;

use common::{fails_with, ok, run, tensors, tmp};

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");

fn train<'a>(run: &'a str, epochs: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        "--data",
        MNIST,
        "--run-dir",
        run,
        "--hidden",
        "16",
        "--epochs",
        epochs,
        "--threads",
        "2",
        "--subset",
        "512",
        "--batch-size",
        "64",
        "--binarize",
    ];
    a.extend_from_slice(extra);
    a
}

const TWO_LEVELS: [&str; 11] = [
    "--latent",
    "4,2",
    "--upper-hidden",
    "8",
    "--prior",
    "vamp:7",
    "--objective",
    "iwae",
    "--samples",
    "3",
    "--dreg",
];

#[test]
fn a_two_level_vampprior_model_resumes_bitwise_and_every_command_reads_it() {
    let d = tmp("vamp2");
    let (straight, resumed) = (d.join("straight"), d.join("resumed"));
    let (s, r) = (straight.to_str().unwrap(), resumed.to_str().unwrap());
    let out = ok(&train(s, "2", &TWO_LEVELS));
    assert!(out.contains("done:"), "{out}");
    ok(&train(r, "1", &TWO_LEVELS));
    ok(&["train", "--resume", r, "--epochs", "2"]);
    let (a, b) = (
        tensors(&straight.join("model.safetensors")),
        tensors(&resumed.join("model.safetensors")),
    );
    assert!(a == b, "resumed weights differ from the straight run's");
    let (_, shape, bytes) = a
        .iter()
        .find(|(n, _, _)| n == "prior.pseudo_inputs")
        .expect("the pseudo-inputs are stored");
    assert_eq!(shape, &[7, 784]);
    // They started as training images inside (0, 1) and were trained.
    let u: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(
        u.iter().all(|v| v.is_finite()) && u.iter().any(|&v| v > 0.5),
        "{:?}",
        &u[..8]
    );
    let config = std::fs::read_to_string(straight.join("config.json")).unwrap();
    assert!(
        config.contains("\"Vamp\"") && config.contains("\"components\": 7"),
        "{config}"
    );
    for cmd in [
        &["sample", "--run-dir", s][..],
        &["reconstruct", "--run-dir", s, "--n", "4"],
        &["interpolate", "--run-dir", s],
        &["manifold", "--run-dir", s],
        &["latents", "--run-dir", s],
        &["plot", "--run-dir", s],
        &["score", "--run-dir", s, "--anomaly-digit", "3", "--k", "2"],
        &["export", "--run-dir", s],
    ] {
        ok(cmd);
    }
    for f in [
        "sample.png",
        "reconstruct.png",
        "manifold.png",
        "encoder.onnx",
        "decoder.onnx",
    ] {
        assert!(straight.join(f).is_file(), "{f}");
    }
    // The importance-sampled estimate lies below the ELBO and above the IWAE-trained bound's
    // typical gap: sanity of the mixture's density inside the evaluator.
    let out = ok(&["eval", "--run-dir", s, "--k", "50", "--n", "100"]);
    let field = |name: &str| -> f64 {
        let at = out.find(name).unwrap_or_else(|| panic!("{name} in {out}")) + name.len();
        out[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let (elbo, nll) = (field("-ELBO"), field("-log p(x) ~"));
    assert!(nll.is_finite() && nll < elbo && nll > elbo - 40.0, "{out}");
}

#[test]
fn a_one_level_vampprior_model_trains_with_the_elbo() {
    let d = tmp("vamp1");
    let r = d.join("run");
    let r = r.to_str().unwrap();
    let out = ok(&train(r, "2", &["--latent", "3", "--prior", "vamp"]));
    assert!(out.contains("done:"), "{out}");
    let stored = tensors(&d.join("run/model.safetensors"));
    let (_, shape, _) = stored.iter().find(|(n, _, _)| n == "prior.pseudo_inputs").unwrap();
    assert_eq!(shape, &[500, 784]);
    ok(&["sample", "--run-dir", r]);
    ok(&["eval", "--run-dir", r, "--k", "5", "--n", "20"]);
}

#[test]
fn cosine_time_completes_the_run_when_its_seconds_are_spent() {
    let d = tmp("cosine-time");
    let r = d.join("run");
    let r = r.to_str().unwrap();
    let out = ok(&train(
        r,
        "100000",
        &[
            "--latent",
            "2",
            "--lr-schedule",
            "cosine-time:2s",
            "--snapshot-every",
            "1h",
        ],
    ));
    assert!(out.contains("done:"), "{out}");
    let metrics = std::fs::read_to_string(d.join("run/metrics.csv")).unwrap();
    let epochs = metrics.lines().count() - 1;
    assert!((1..100000).contains(&epochs), "{epochs} epochs");
    let config = std::fs::read_to_string(d.join("run/config.json")).unwrap();
    assert!(
        config.contains("\"CosineTime\"") && config.contains("\"seconds\": 2.0"),
        "{config}"
    );
    // The last snapshot is taken when the schedule ends the run.
    let snapshots = std::fs::read_dir(d.join("run/snapshots")).unwrap().count();
    assert_eq!(snapshots, 1);
    // A resumed run continues the recorded seconds: it is over, so nothing more is trained.
    ok(&["train", "--resume", r, "--epochs", "100001"]);
    let again = std::fs::read_to_string(d.join("run/metrics.csv")).unwrap();
    assert_eq!(again.lines().count() - 1, epochs);
}

#[test]
fn what_cannot_work_is_refused_naming_the_flag() {
    let d = tmp("vamp-refused");
    let r = d.join("run");
    let r = r.to_str().unwrap();
    fails_with(
        &train(r, "1", &["--lr-schedule", "cosine-time"]),
        &["--lr-schedule", "--time-budget", "cosine-time:60m"],
    );
    // Values the flag's parser refuses (clap's usage error, status 2).
    for (args, want) in [
        (["--prior", "vamp:0"], "whole number of at least 1"),
        (["--prior", "gaussian"], "standard or vamp"),
        (["--lr-schedule", "cosine-time:soon"], "duration"),
    ] {
        let out = run(&train(r, "1", &args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(args[0]) && err.contains(want), "{args:?}: {err}");
    }
    fails_with(
        &train(r, "1", &["--prior", "vamp:5", "--free-bits", "0.5"]),
        &["--free-bits", "--prior"],
    );
}
