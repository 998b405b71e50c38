//! Data-parallel training over MPI, two ranks on loopback (`--features mpi`, OpenMPI's
//! `mpirun` on the PATH): the same result as one process, resume across the two, a
//! killed rank ending the job with the last checkpoint intact, and SIGTERM (to mpirun, or to
//! one rank alone) stopping every rank with a checkpoint.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vae_model::checkpoint;

const BIN: &str = env!("CARGO_BIN_EXE_vae-train");

fn data() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/mnist")
        .to_str()
        .unwrap()
        .to_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vae-mpi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn mpirun(np: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "--allow-run-as-root", "-np", &np.to_string(), BIN]);
    c
}

fn ok(out: Output) {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn train_args(dir: &Path, epochs: usize) -> Vec<String> {
    let d = data();
    [
        "--data",
        &d,
        "--subset",
        "3000",
        "--epochs",
        &epochs.to_string(),
        "--threads",
        "1",
        "--run-dir",
        dir.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// The last row's test -ELBO of a run's metrics.
fn test_loss(dir: &Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    text.lines().last().unwrap().split(',').nth(4).unwrap().parse().unwrap()
}

/// The largest relative difference `|a - b| / max |b|` over the tensors of two models.
fn weight_difference(a: &Path, b: &Path) -> f64 {
    let load = |p: &Path| checkpoint::load_tensors(&p.join("model.safetensors")).unwrap().tensors;
    let (ta, tb) = (load(a), load(b));
    ta.iter()
        .map(|(name, (_, va))| {
            let vb = &tb[name].1;
            let scale = vb.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
            va.iter()
                .zip(vb)
                .map(|(x, y)| (x - y).abs() / scale)
                .fold(0.0f32, f32::max) as f64
        })
        .fold(0.0, f64::max)
}

/// Trains `epochs` with `extra` flags in one process and on two ranks; returns the weights'
/// relative difference ([`weight_difference`]) and the two test -ELBOs, which it prints.
fn one_process_and_two_ranks(name: &str, epochs: usize, extra: &[&str]) -> (f64, f64, f64) {
    let (one, two) = (tmp(&format!("one-{name}")), tmp(&format!("two-{name}")));
    let args = |dir: &Path| {
        let mut a = train_args(dir, epochs);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    ok(Command::new(BIN).args(args(&one)).output().unwrap());
    ok(mpirun(2).args(args(&two)).output().unwrap());
    let dw = weight_difference(&two, &one);
    let (l1, l2) = (test_loss(&one), test_loss(&two));
    eprintln!("{name}, after {epochs} epochs: 1 process {l1:.4}, 2 ranks {l2:.4}; weights differ by {dw:.2e} relative");
    (dw, l1, l2)
}

#[test]
fn two_ranks_train_as_one_process() {
    let (one, two) = (tmp("one"), tmp("two"));
    ok(Command::new(BIN).args(train_args(&one, 3)).output().unwrap());
    ok(mpirun(2).args(train_args(&two, 3)).output().unwrap());
    let (l1, l2) = (test_loss(&one), test_loss(&two));
    let dw = weight_difference(&two, &one);
    eprintln!("test -ELBO after 3 epochs: 1 process {l1:.4}, 2 ranks {l2:.4}; weights differ by {dw:.2e} relative");
    assert!((l1 - l2).abs() < 0.05, "{l1} vs {l2}");
    // Rounding only: each rank sums its half of the batch, then the halves are added. Adam
    // (eps 1e-8) turns that rounding in the weights of near-collapsed units into larger
    // steps; with the engine's GEMM the largest difference after 3 epochs measured 1.4e-5.
    assert!(dw < 3e-5, "weights differ by {dw:e} relative");
    // Rank 0 alone wrote the run directory (one metrics row per epoch, no stray files).
    let rows = std::fs::read_to_string(two.join("metrics.csv"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(rows, 4);
    let events = std::fs::read_dir(&two)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .count();
    assert_eq!(events, 1, "rank 0 alone writes the TensorBoard events");
}

#[test]
fn two_ranks_train_iwae_with_two_layers_as_one_process() {
    // The sampled objective draws K x (sum of latent sizes) numbers per image: each rank
    // skips exactly those of the rows before its shard. Adam's epsilon is the IWAE paper's
    // 1e-4: at 1e-8, Adam turns the rounding-level gradients of the first layer's weights
    // into collapsed units (|g| ~ 1e-9, whose sign depends on the order of a sum) into
    // steps of the full learning rate, and those weights then differ by up to 6e-2 of their
    // largest. With 1e-4 every tensor agrees to 2e-5 (the one-level test's bar is 3e-5).
    let extra = [
        "--latent",
        "6,3",
        "--upper-hidden",
        "12",
        "--objective",
        "iwae",
        "--samples",
        "3",
        "--dreg",
        "--binarize",
        "--adam-eps",
        "1e-4",
    ];
    let (dw, l1, l2) = one_process_and_two_ranks("iwae", 2, &extra);
    assert!(dw < 1e-4, "weights differ by {dw:e} relative");
    assert!((l1 - l2).abs() < 0.05, "{l1} vs {l2}");
}

#[test]
fn two_ranks_train_a_conv_model_as_one_process() {
    // Each rank runs its shard through the convolutions; an image's forward does not depend on
    // its batch, and the backward by the weights sums pieces of a power-of-two number of
    // images pairwise, so the shards' sums meet last as the ranks' do: what differs is the
    // dense layers' rounding, 2.1e-7 after one epoch. (Over a second epoch Adam turns that
    // rounding, in weights whose gradient changes sign from step to step, into steps of the
    // learning rate's size: 2.8e-4 measured, with the same test loss to 1e-4 nats.)
    let extra = [
        "--arch",
        "conv:4k3s2,8k3s2",
        "--hidden",
        "16",
        "--latent",
        "2",
        "--adam-eps",
        "1e-4",
    ];
    let (dw, l1, l2) = one_process_and_two_ranks("conv", 1, &extra);
    assert!(dw < 1e-5, "weights differ by {dw:e} relative");
    assert!((l1 - l2).abs() < 0.05, "{l1} vs {l2}");
}

#[test]
fn eval_and_score_split_the_test_images_and_agree_with_one_process() {
    let dir = tmp("evalrun");
    ok(Command::new(BIN).args(train_args(&dir, 1)).output().unwrap());
    let d = dir.to_str().unwrap();
    let (one, two) = (dir.join("one.json"), dir.join("two.json"));
    let eval = |out: &Path| {
        [
            "eval",
            "--run-dir",
            d,
            "--k",
            "20",
            "--n",
            "1000",
            "--threads",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]
        .map(String::from)
    };
    ok(Command::new(BIN).args(eval(&one)).output().unwrap());
    ok(mpirun(2).args(eval(&two)).output().unwrap());
    let read = |p: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (a, b) = (read(&one), read(&two));
    for key in ["neg_elbo", "neg_log_likelihood"] {
        let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
        assert!((x - y).abs() < 1e-9 * x.abs(), "{key}: {x} vs {y}");
    }
    assert_eq!(a["active_units"], b["active_units"]);
    let (s1, s2) = (dir.join("one.csv"), dir.join("two.csv"));
    let score = |out: &Path| {
        [
            "score",
            "--run-dir",
            d,
            "--anomaly-digit",
            "3",
            "--threads",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]
        .map(String::from)
    };
    ok(Command::new(BIN).args(score(&s1)).output().unwrap());
    let out = mpirun(2).args(score(&s2)).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    ok(out);
    assert_eq!(printed.matches("AUROC").count(), 1, "rank 0 alone reports: {printed}");
    let csv = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(csv(&s1), csv(&s2));
}

#[test]
fn resume_moves_between_one_process_and_two_ranks() {
    let (straight, mixed) = (tmp("straight"), tmp("mixed"));
    ok(Command::new(BIN).args(train_args(&straight, 3)).output().unwrap());
    ok(Command::new(BIN).args(train_args(&mixed, 1)).output().unwrap());
    let m = mixed.to_str().unwrap();
    ok(mpirun(2)
        .args(["train", "--resume", m, "--epochs", "2"])
        .output()
        .unwrap());
    ok(Command::new(BIN)
        .args(["train", "--resume", m, "--epochs", "3"])
        .output()
        .unwrap());
    let (ls, lm) = (test_loss(&straight), test_loss(&mixed));
    assert!((ls - lm).abs() < 0.05, "{ls} vs {lm}");
    assert!(weight_difference(&mixed, &straight) < 1e-5);
}

#[test]
fn a_killed_rank_ends_the_job_and_keeps_the_checkpoint() {
    let dir = tmp("killed");
    let mut child = mpirun(2)
        .args(train_args(&dir, 1000))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !dir.join("model.safetensors").exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dir.join("model.safetensors").exists(), "no checkpoint appeared");
    // The rank processes: vae-train processes whose command line names this run directory.
    let pids = Command::new("pgrep")
        .args(["-f", &format!("{BIN}.*{}", dir.display())])
        .output()
        .unwrap();
    let pids: Vec<String> = String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(!pids.is_empty(), "no rank found");
    Command::new("kill")
        .args(["-KILL", &pids[pids.len() - 1]])
        .status()
        .unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the job hangs after a rank was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("the job ended {:.1} s after the kill", killed.elapsed().as_secs_f64());
    assert!(!status.success());
    let (model, meta) = checkpoint::load::<f32>(&dir.join("model.safetensors")).expect("the checkpoint loads");
    assert!(model.num_parameters() > 0 && meta.contains_key("epochs_done"));
}

/// Runs `cmd` and fails if it is still running after `secs` seconds (a hang).
fn within(mut cmd: Command, secs: u64) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("still running after {secs} s: a rank waits forever");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_error_on_rank_0_alone_ends_the_job() {
    // Rank 0 alone checks the run directory: training into a finished run must end every
    // rank with rank 0's message, not leave rank 1 waiting in an allreduce.
    let dir = tmp("taken");
    ok(Command::new(BIN).args(train_args(&dir, 1)).output().unwrap());
    let mut cmd = mpirun(2);
    cmd.args(train_args(&dir, 1));
    let out = within(cmd, 60);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a trained model"));
}

#[test]
fn a_batch_with_fewer_rows_than_ranks() {
    // 129 images in batches of 128: the last batch has one row, rank 1 none (free bits make
    // an empty shard's mean a NaN if it is computed at all).
    let dir = tmp("ragged");
    let d = data();
    let args = [
        "--data",
        &d,
        "--subset",
        "129",
        "--epochs",
        "2",
        "--threads",
        "1",
        "--free-bits",
        "0.5",
        "--run-dir",
        dir.to_str().unwrap(),
    ];
    ok(mpirun(2).args(args).output().unwrap());
    let tiny = tmp("tiny");
    let mut cmd = mpirun(2);
    cmd.args([
        "--data",
        &d,
        "--subset",
        "64",
        "--batch-size",
        "1",
        "--epochs",
        "1",
        "--run-dir",
        tiny.to_str().unwrap(),
    ]);
    let out = within(cmd, 60);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch-size 1 is smaller than the 2 ranks"));
}

/// Starts a long 2-rank run in `dir` and waits for its first checkpoint.
fn start_long_run(dir: &Path) -> std::process::Child {
    let child = mpirun(2)
        .args(train_args(dir, 1000))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !dir.join("model.safetensors").exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dir.join("model.safetensors").exists(), "no checkpoint appeared");
    std::thread::sleep(Duration::from_millis(300));
    child
}

/// Sends `signal` to process `pid`.
fn send(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: kill(2) with a valid signal number and the pid of a process this test started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
}

/// Waits for the job (at most 60 s) and returns its status and stderr.
fn finish(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the job hangs after the signal"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status, err)
}

/// The run's training position (epochs, batches) in its training state.
fn position(dir: &Path) -> (usize, usize) {
    let s = checkpoint::load_tensors(&dir.join("training_state.safetensors")).unwrap();
    let n = |k: &str| s.metadata[k].parse::<usize>().unwrap();
    (n("epochs_done"), n("batches_done"))
}

/// The vae-train process of MPI rank `rank` of the run in `dir`.
fn rank_pid(dir: &Path, rank: usize) -> u32 {
    let pids = Command::new("pgrep")
        .args(["-f", &format!("{BIN}.*{}", dir.display())])
        .output()
        .unwrap();
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == want.as_bytes()))
        })
        .unwrap_or_else(|| panic!("no process of rank {rank} found"))
}

#[test]
fn sigterm_to_mpirun_checkpoints_on_every_rank_and_resumes() {
    // mpirun passes SIGTERM (and turns SIGINT and SIGHUP into SIGTERM) to every rank: they
    // stop at the same batch, rank 0 saves, and a resume trains on from there.
    let dir = tmp("term-all");
    let child = start_long_run(&dir);
    send(child.id(), libc::SIGTERM);
    let (status, err) = finish(child);
    assert!(!status.success());
    assert!(err.contains("interrupted (SIGTERM): checkpoint saved in"), "{err}");
    let (epochs, batches) = position(&dir);
    let target = (epochs + 1).to_string();
    let d = dir.to_str().unwrap();
    ok(mpirun(2)
        .args(["train", "--resume", d, "--epochs", &target])
        .output()
        .unwrap());
    assert_eq!(
        position(&dir),
        (epochs + 1, 0),
        "stopped at epoch {epochs}, batch {batches}"
    );
}

#[test]
fn sigterm_to_one_rank_stops_them_all_with_its_status() {
    // A signal that reaches rank 1 alone: rank 0 learns of it in the step's allreduce, saves
    // the checkpoint, and reports the same signal.
    let dir = tmp("term-one");
    let child = start_long_run(&dir);
    send(rank_pid(&dir, 1), libc::SIGTERM);
    let (status, err) = finish(child);
    assert!(!status.success());
    assert_eq!(
        err.matches("interrupted (SIGTERM): checkpoint saved in").count(),
        2,
        "both ranks report the stop: {err}"
    );
    let d = dir.to_str().unwrap();
    let (epochs, _) = position(&dir);
    let target = (epochs + 1).to_string();
    ok(Command::new(BIN)
        .args(["train", "--resume", d, "--epochs", &target])
        .output()
        .unwrap());
}
