//! The `vae-train` binary as a user runs it: exit statuses and messages for bad input,
//! SIGINT, SIGTERM and SIGHUP with an exact resume, a second signal exiting at once, and SIGKILL at random moments never leaving a broken
//! checkpoint.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vae_model::checkpoint;

const BIN: &str = env!("CARGO_BIN_EXE_vae-train");

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vae-proc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("the binary runs")
}

/// Runs with `args`, expects a failure whose stderr contains `want`.
fn fails_with(args: &[&str], want: &str) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(err.contains(want), "{args:?}: stderr {err:?} lacks {want:?}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

#[test]
fn out_of_range_flags_are_refused_by_name() {
    let d = data();
    let d = d.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--batch-size", "0"], "--batch-size must be at least 1"),
        (&["--lr", "0"], "--lr must be a positive number"),
        (&["--lr", "-0.001"], "--lr must be a positive number"),
        (&["--latent", "0"], "--latent must be at least 1"),
        (&["--hidden"], "--hidden is empty"),
        (&["--hidden", "400,0"], "--hidden widths must be at least 1"),
        (&["--hidden", "abc"], "--hidden"),
        (&["--beta", "-1"], "--beta must be 0 or more"),
        (&["--threads", "0"], "--threads must be at least 1"),
        (&["--epochs", "0"], "--epochs must be at least 1"),
        (&["--likelihood", "poisson"], "--likelihood"),
        (&["--activation", "gelu"], "unknown activation"),
        (
            &["--exclude-digit", "12"],
            "--exclude-label 12: no training image has label 12",
        ),
        (&["--adam-eps", "0"], "--adam-eps must be a positive number"),
        (&["--adam-beta1", "1"], "--adam-beta1 must be in [0, 1)"),
        (&["--adam-beta2", "-0.1"], "--adam-beta2 must be in [0, 1)"),
        (
            &["--lr-schedule", "linear"],
            "expected constant, iwae, cosine, cosine-time[:DURATION] or exponential",
        ),
        (&["--lr-schedule", "exponential:2"], "GAMMA must be in (0, 1]"),
        (&["--time-budget", "5x"], "expected a duration like 90s, 60m or 1.5h"),
        (&["--latent", "100,0"], "--latent must be at least 1"),
        (
            &["--latent", "100,50", "--upper-hidden", "0"],
            "--upper-hidden widths must be at least 1",
        ),
        (&["--samples", "0"], "--samples must be at least 1"),
        (&["--objective", "vimco"], "expected elbo or iwae"),
        (
            &["--free-bits", "0.5", "--samples", "5"],
            "--free-bits acts on the analytic KL",
        ),
        (
            &["--free-bits", "0.5", "--latent", "10,5"],
            "--free-bits acts on the analytic KL",
        ),
        (&["--snapshot-every", "soon"], "expected a duration"),
    ];
    for (flags, want) in cases {
        let mut args = vec!["train", "--data", d];
        args.extend_from_slice(flags);
        fails_with(&args, want);
    }
}

#[test]
fn an_unusable_simd_level_is_refused() {
    let out = Command::new(BIN)
        .env("VAE_SIMD", "sse9")
        .args(["sample", "--run-dir", "/nonexistent"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("VAE_SIMD") && err.contains("avx512, avx2 or scalar"),
        "{err}"
    );
}

#[test]
fn a_time_budget_stops_with_a_checkpoint_that_resumes() {
    let d = data();
    let d = d.to_str().unwrap();
    let dir = tmp("budget");
    let dir_s = dir.to_str().unwrap();
    let args = [
        "--data",
        d,
        "--subset",
        "2000",
        "--epochs",
        "1000",
        "--threads",
        "1",
        "--lr-schedule",
        "iwae",
        "--time-budget",
        "2s",
        "--run-dir",
        dir_s,
    ];
    let start = Instant::now();
    let out = run(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("time budget of 2 s reached"), "{text}");
    assert!(start.elapsed() < Duration::from_secs(30));
    let before = checkpoint::load_tensors(&dir.join("training_state.safetensors")).unwrap();
    let epochs: usize = before.metadata["epochs_done"].parse().unwrap();
    // The budget is per invocation: a resume trains on, to a total it is given.
    let target = (epochs + 1).to_string();
    let out = run(&["train", "--resume", dir_s, "--epochs", &target]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = checkpoint::load_tensors(&dir.join("training_state.safetensors")).unwrap();
    assert_eq!(after.metadata["epochs_done"], target);
    let config: serde_json::Value = serde_json::from_str(&after.metadata["train.config"]).unwrap();
    assert_eq!(
        config["training"]["lr_schedule"], "Iwae",
        "the schedule is part of the run's configuration"
    );
}

#[test]
fn a_data_directory_without_the_files() {
    let empty = tmp("empty-data");
    std::fs::create_dir_all(&empty).unwrap();
    fails_with(
        &[
            "--data",
            empty.to_str().unwrap(),
            "--run-dir",
            tmp("x").to_str().unwrap(),
        ],
        "no train images file",
    );
}

#[test]
fn a_run_directory_that_does_not_exist() {
    fails_with(
        &["train", "--resume", "/nonexistent/run"],
        "run directory /nonexistent/run does not exist",
    );
}

fn train_args<'a>(dir: &'a str, d: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "--data",
        d,
        "--subset",
        "3000",
        "--epochs",
        epochs,
        "--threads",
        "2",
        "--run-dir",
        dir,
    ]
}

/// Sends `signal` to a training run part-way, expects `status` and a checkpoint that resumes
/// to bitwise the weights of an uninterrupted run.
fn a_signal_checkpoints_and_resumes_exactly(signal: libc::c_int, status: i32, name: &str) {
    let d = data();
    let d = d.to_str().unwrap();
    let (a, b) = (tmp(&format!("int-a-{name}")), tmp(&format!("int-b-{name}")));
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
    assert!(run(&train_args(a_s, d, "8")).status.success());
    // Interrupt the same run part-way, then resume it.
    let mut child = Command::new(BIN)
        .args(train_args(b_s, d, "8"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !b.join("model.safetensors").exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(20));
    send(&child, signal);
    let status_got = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    if status_got.success() {
        eprintln!("the run finished before the {name} arrived; nothing to resume");
    } else {
        assert_eq!(status_got.code(), Some(status), "{name}: {err}");
        assert!(err.contains("checkpoint saved in"), "{err}");
        assert!(err.contains(name), "{err}");
        let out = run(&["train", "--resume", b_s]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let w = |p: &Path| checkpoint::load_tensors(&p.join("model.safetensors")).unwrap().tensors;
    assert!(w(&a) == w(&b), "resumed weights differ from an uninterrupted run");
}

/// Sends `signal` to `child`.
fn send(child: &std::process::Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with a valid signal number and the pid of our own child.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
}

#[test]
fn ctrl_c_checkpoints_exits_130_and_resumes_exactly() {
    a_signal_checkpoints_and_resumes_exactly(libc::SIGINT, 130, "SIGINT");
}

#[test]
fn sigterm_checkpoints_exits_143_and_resumes_exactly() {
    a_signal_checkpoints_and_resumes_exactly(libc::SIGTERM, 143, "SIGTERM");
}

#[test]
fn sighup_checkpoints_exits_129_and_resumes_exactly() {
    a_signal_checkpoints_and_resumes_exactly(libc::SIGHUP, 129, "SIGHUP");
}

#[test]
fn a_second_signal_exits_at_once() {
    // Batches of a wide model take long enough that the second SIGTERM arrives while the
    // first batch is still training: the process ends without finishing it.
    let d = data();
    let dir = tmp("twice");
    let mut child = Command::new(BIN)
        .args([
            "--data",
            d.to_str().unwrap(),
            "--subset",
            "10000",
            "--batch-size",
            "10000",
        ])
        .args([
            "--hidden",
            "2000,2000",
            "--threads",
            "1",
            "--run-dir",
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first line is printed once the data is loaded, just before the first batch.
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.starts_with("training"), "{line}");
    send(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let second = Instant::now();
    send(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    let took = second.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(err.contains("SIGTERM again: exiting now"), "{err}");
    assert!(took < Duration::from_secs(2), "took {took:?} to exit");
    assert!(
        !dir.join("model.safetensors").exists(),
        "the first batch should not have finished"
    );
}

#[test]
fn sigkill_at_random_moments_never_breaks_the_checkpoint() {
    let d = data();
    let d = d.to_str().unwrap();
    let dir = tmp("kill");
    let dir_s = dir.to_str().unwrap();
    // Tiny epochs (2 batches) so that checkpoints are written most of the time.
    let base = ["--data", d, "--subset", "256", "--epochs", "100000", "--threads", "1"];
    let mut rng = StdRng::seed_from_u64(7);
    let mut loads = 0;
    for round in 0..20 {
        let mut args: Vec<&str> = base.to_vec();
        if round == 0 {
            args.extend(["--run-dir", dir_s]);
        } else {
            args.extend(["--resume", dir_s]);
        }
        let mut child = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if round == 0 {
            let start = Instant::now();
            while !dir.join("model.safetensors").exists() && start.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Let it get going (loading data takes a moment), then kill it at a random moment.
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1000)));
        child.kill().unwrap();
        child.wait().unwrap();
        if dir.join("model.safetensors").exists() {
            let (model, meta) = checkpoint::load::<f32>(&dir.join("model.safetensors"))
                .unwrap_or_else(|e| panic!("round {round}: the checkpoint does not load: {e}"));
            assert!(model.num_parameters() > 0 && meta.contains_key("epochs_done"));
            loads += 1;
        }
        // Nothing but the run's files and, at most, one temporary file per output.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let known = [
                "model.safetensors",
                "training_state.safetensors",
                "metrics.csv",
                "config.json",
            ];
            assert!(
                known.iter().any(|k| name == *k || name == format!("{k}.tmp"))
                    || name.starts_with("events.out.tfevents."),
                "unexpected file {name}"
            );
        }
    }
    assert_eq!(loads, 20, "only {loads} of 20 rounds had a checkpoint to load");
}

#[test]
fn run_from_another_directory_finds_the_data_or_says_what_to_pass() {
    // As an installed binary runs: no data/mnist in the current directory, no --data.
    let here = tmp("elsewhere");
    std::fs::create_dir_all(&here).unwrap();
    let out = Command::new(BIN)
        .current_dir(&here)
        .env_remove("VAE_DATA")
        .args(["--subset", "500", "--epochs", "1", "--threads", "1", "--run-dir", "run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The repository's copy, recorded absolute, so that later commands find it from anywhere.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(here.join("run/config.json")).unwrap()).unwrap();
    let recorded = PathBuf::from(config["data"]["path"].as_str().unwrap());
    assert!(recorded.is_absolute(), "{recorded:?}");
    assert_eq!(recorded.canonicalize().unwrap(), data().canonicalize().unwrap());
    let run_dir = here.join("run");
    let out = Command::new(BIN)
        .current_dir(std::env::temp_dir())
        .args(["reconstruct", "--run-dir", run_dir.to_str().unwrap(), "--n", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // VAE_DATA names the data when --data is not given; a wrong one is explained.
    let out = Command::new(BIN)
        .current_dir(&here)
        .env("VAE_DATA", here.join("nowhere"))
        .args(["--subset", "500", "--epochs", "1", "--run-dir", "run2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for want in [
        "nowhere",
        "does not exist",
        "--data DIR",
        "VAE_DATA=DIR",
        "current directory",
    ] {
        assert!(err.contains(want), "stderr lacks {want:?}: {err}");
    }
    let out = Command::new(BIN)
        .current_dir(&here)
        .env("VAE_DATA", data())
        .args([
            "--subset",
            "500",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--run-dir",
            "run3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("batch-size"), "{shell}");
    }
    fails_with(
        &["completions", "tcsh"],
        "[possible values: bash, elvish, fish, powershell, zsh]",
    );
}

#[test]
fn export_writes_both_graphs_and_refuses_what_is_not_a_run() {
    let d = data();
    let dir = tmp("export");
    let r = dir.to_str().unwrap();
    let out = run(&[
        "--data",
        d.to_str().unwrap(),
        "--subset",
        "300",
        "--epochs",
        "1",
        "--run-dir",
        r,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let to = dir.join("onnx");
    let out = run(&["export", "--run-dir", r, "--out", to.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["encoder.onnx", "decoder.onnx"] {
        let bytes = std::fs::read(to.join(name)).unwrap();
        let m = <vae_train::onnx::proto::ModelProto as prost::Message>::decode(&bytes[..]).unwrap();
        assert_eq!(m.opset_import[0].version, 13, "{name}");
    }
    fails_with(&["export", "--run-dir", "/nonexistent/run"], "does not exist");
    fails_with(&["export", "--run-dir", to.to_str().unwrap()], "not a run directory");
    // A damaged model is refused by its checksums, not exported.
    let model = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x40;
    std::fs::write(&model, bytes).unwrap();
    fails_with(&["export", "--run-dir", r], "model.safetensors");
}

#[test]
fn commands_other_than_training_end_at_once_on_sigterm() {
    // Nothing to save: `eval` keeps the default disposition and dies by the signal.
    let d = data();
    let dir = tmp("eval-term");
    let r = dir.to_str().unwrap();
    let out = run(&[
        "--data",
        d.to_str().unwrap(),
        "--subset",
        "300",
        "--epochs",
        "1",
        "--run-dir",
        r,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut child = Command::new(BIN)
        .args(["eval", "--run-dir", r, "--k", "5000", "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    send(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(2), "took {:?}", sent.elapsed());
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGTERM),
        "{status:?}"
    );
}
