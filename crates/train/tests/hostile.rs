//! Hostile data and damaged files through the binary, as a user meets them: images of
//! different sizes, a header declaring billions of images in front of a gzip bomb, flipped
//! bytes in checkpoints, labels outside 0-9, a run killed before its first checkpoint, and
//! pictures of tiny images. Each gives a clear error naming the file (or a working result),
//! never a panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flate2::Compression;
use flate2::write::GzEncoder;
use vae_data::idx::{self, Idx, IdxData};

mod common;

use common::rewrite_metadata;

const BIN: &str = env!("CARGO_BIN_EXE_vae-train");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vae-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("the binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?} failed: {err}");
    err
}

/// Runs with `args`, expects a failure (not a panic) whose stderr contains each of `want`.
fn fails_with(args: &[&str], want: &[&str]) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should fail");
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: stderr {err:?} lacks {w:?}");
    }
    err
}

/// Writes a split of `n` `side x side` images with the given labels (cycled).
fn write_split(dir: &Path, stem: &str, n: usize, rows: usize, cols: usize, labels: &[u8]) {
    let px: Vec<u8> = (0..n * rows * cols).map(|i| ((i * 37) % 256) as u8).collect();
    let images = Idx {
        dims: vec![n, rows, cols],
        data: IdxData::U8(px),
    };
    let labs = Idx {
        dims: vec![n],
        data: IdxData::U8((0..n).map(|i| labels[i % labels.len()]).collect()),
    };
    idx::write(dir.join(format!("{stem}-images-idx3-ubyte")), &images, false).unwrap();
    idx::write(dir.join(format!("{stem}-labels-idx1-ubyte")), &labs, false).unwrap();
}

/// A dataset directory: train and test images of the given sizes and labels.
fn dataset(name: &str, train: (usize, usize), test: (usize, usize), labels: &[u8]) -> PathBuf {
    let d = tmp(name);
    write_split(&d, "train", 60, train.0, train.1, labels);
    write_split(&d, "t10k", 30, test.0, test.1, labels);
    d
}

fn tiny_train<'a>(data: &'a str, run_dir: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        data,
        "--run-dir",
        run_dir,
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--latent",
        "2",
        "--batch-size",
        "20",
        "--threads",
        "1",
    ]
}

#[test]
fn train_and_test_images_of_different_sizes_are_refused_naming_both() {
    let d = dataset("sizes", (28, 28), (27, 27), &[0, 1]);
    let r = tmp("sizes-run");
    fails_with(
        &tiny_train(d.to_str().unwrap(), r.to_str().unwrap()),
        &["train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "28x28", "27x27"],
    );
    // The run directory was not started.
    assert!(!r.join("config.json").exists());
}

/// Peak resident memory of a child process, in bytes, and its output (Linux). The child is
/// reaped by `wait4`, which reports its own peak, not by `Child::wait`.
#[cfg(target_os = "linux")]
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[&str]) -> (Output, u64) {
    let child = Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.unwrap();
    let mut err = Vec::new();
    std::io::Read::read_to_end(&mut stderr, &mut err).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our unwaited child; the pointers are to live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let out = Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(status),
        stdout: Vec::new(),
        stderr: err,
    };
    assert!(code >= 0, "killed by a signal");
    (out, usage.ru_maxrss as u64 * 1024)
}

#[cfg(target_os = "linux")]
#[test]
fn a_gzip_bomb_behind_an_absurd_header_is_refused_before_inflating() {
    // 4,294,967,295 images of 28x28 declared, then 256 MiB of zeros: a 256 KiB file.
    let d = dataset("bomb", (28, 28), (28, 28), &[0, 1]);
    let train = d.join("train-images-idx3-ubyte");
    std::fs::remove_file(&train).unwrap();
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    let mut head = vec![0, 0, 0x08, 3];
    for v in [u32::MAX, 28, 28] {
        head.extend_from_slice(&v.to_be_bytes());
    }
    enc.write_all(&head).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = d.join("train-images-idx3-ubyte.gz");
    std::fs::write(&bomb, enc.finish().unwrap()).unwrap();
    let r = tmp("bomb-run");
    let args = tiny_train(d.to_str().unwrap(), r.to_str().unwrap());
    let (out, peak) = run_measured(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for w in [
        "train-images-idx3-ubyte.gz",
        "3367254359280",
        "limit",
        "--max-data-bytes",
    ] {
        assert!(err.contains(w), "stderr {err:?} lacks {w:?}");
    }
    assert!(peak < 64 << 20, "peak RSS {peak} bytes while refusing a 256 KiB file");
}

#[test]
fn max_data_bytes_bounds_every_file() {
    let d = dataset("limit", (28, 28), (28, 28), &[0, 1]);
    let r = tmp("limit-run");
    let mut args = tiny_train(d.to_str().unwrap(), r.to_str().unwrap());
    args.extend(["--max-data-bytes", "1000"]);
    fails_with(
        &args,
        &["train-images-idx3-ubyte", "47040 bytes", "limit of 1000 bytes"],
    );
}

/// Flips one byte inside the data of tensor `name` of a safetensors file.
fn flip_tensor_byte(file: &Path, name: &str) {
    let mut bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[8 + n + start + 1] ^= 0x40;
    std::fs::write(file, bytes).unwrap();
}

/// Rewrites a safetensors file without its checksums, as files written before them were.
fn strip_checksums(file: &Path) {
    rewrite_metadata(file, |meta| {
        meta.remove("vae.crc32");
    });
}

#[test]
fn damaged_checkpoints_are_refused_naming_the_tensor() {
    let d = dataset("sums", (28, 28), (28, 28), &[0, 1, 2]);
    let r = tmp("sums-run");
    let (d_s, r_s) = (d.to_str().unwrap(), r.to_str().unwrap());
    ok(&tiny_train(d_s, r_s));
    let model = r.join("model.safetensors");
    let state = r.join("training_state.safetensors");
    let pristine = (std::fs::read(&model).unwrap(), std::fs::read(&state).unwrap());

    flip_tensor_byte(&model, "decoder.out.weight");
    fails_with(
        &["sample", "--run-dir", r_s],
        &["model.safetensors", "tensor 'decoder.out.weight'", "damaged"],
    );
    fails_with(
        &["eval", "--run-dir", r_s, "--k", "2"],
        &["tensor 'decoder.out.weight'"],
    );

    std::fs::write(&model, &pristine.0).unwrap();
    flip_tensor_byte(&state, "adam.v.encoder.0.weight");
    fails_with(
        &["train", "--resume", r_s, "--epochs", "2"],
        &[
            "training_state.safetensors",
            "tensor 'adam.v.encoder.0.weight'",
            "damaged",
        ],
    );

    // A digit changed in the metadata still parses, but not past its checksum.
    std::fs::write(&state, &pristine.1).unwrap();
    let mut bytes = std::fs::read(&state).unwrap();
    let at = bytes.windows(13).position(|w| w == b"\"epochs_done\"").unwrap();
    let digit = bytes[at..].iter().position(|&b| b == b'1').unwrap() + at;
    bytes[digit] = b'0';
    std::fs::write(&state, bytes).unwrap();
    fails_with(
        &["train", "--resume", r_s, "--epochs", "2"],
        &["the header metadata", "damaged"],
    );

    // Files written before checksums load, with a warning.
    std::fs::write(&state, &pristine.1).unwrap();
    strip_checksums(&model);
    let err = ok(&["sample", "--run-dir", r_s]);
    assert!(err.contains("carries no checksums"), "{err}");
    strip_checksums(&state);
    let err = ok(&["train", "--resume", r_s, "--epochs", "2"]);
    assert!(err.contains("training_state.safetensors carries no checksums"), "{err}");
    // and what is written anew carries them again.
    assert!(ok(&["sample", "--run-dir", r_s]).is_empty());
}

#[test]
fn labels_are_the_classes_the_data_holds() {
    // Labels 3, 200 and 7: the legend and the AUROC take them as they are.
    let d = dataset("labels", (28, 28), (28, 28), &[3, 200, 7]);
    let r = tmp("labels-run");
    let (d_s, r_s) = (d.to_str().unwrap(), r.to_str().unwrap());
    ok(&tiny_train(d_s, r_s));
    ok(&["latents", "--run-dir", r_s]);
    let svg = std::fs::read_to_string(r.join("latents.svg")).unwrap();
    for l in ["digit 3", "digit 7", "digit 200"] {
        assert!(svg.contains(l), "legend lacks {l}");
    }
    assert!(!svg.contains("digit 0"));
    let out = run(&["score", "--run-dir", r_s, "--anomaly-digit", "200", "--k", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("AUROC"));
    fails_with(
        &["score", "--run-dir", r_s, "--anomaly-digit", "5"],
        &["--anomaly-label 5", "labels present: 3, 7, 200"],
    );
    let mut args = tiny_train(d_s, "unused");
    args[4] = tmp("labels-run2").to_str().unwrap().to_owned().leak();
    args.extend(["--exclude-digit", "4"]);
    fails_with(&args, &["--exclude-label 4", "labels present: 3, 7, 200"]);
}

#[test]
fn a_run_killed_before_its_first_checkpoint_can_be_started_again() {
    let d = dataset("unfinished", (28, 28), (28, 28), &[0, 1]);
    let done = tmp("unfinished-done");
    let (d_s, done_s) = (d.to_str().unwrap(), done.to_str().unwrap());
    ok(&tiny_train(d_s, done_s));
    // What a run killed in its first second leaves: its configuration and a partial write.
    let r = tmp("unfinished-run");
    let r_s = r.to_str().unwrap();
    std::fs::copy(done.join("config.json"), r.join("config.json")).unwrap();
    std::fs::write(r.join("training_state.safetensors.tmp"), b"half").unwrap();
    fails_with(
        &["train", "--resume", r_s],
        &["nothing to resume", "--overwrite", "config.json"],
    );
    fails_with(
        &tiny_train(d_s, r_s),
        &["never finished its first checkpoint", "--overwrite"],
    );
    let mut again = tiny_train(d_s, r_s);
    again.push("--overwrite");
    ok(&again);
    assert!(r.join("training_state.safetensors").exists());
    assert!(!r.join("training_state.safetensors.tmp").exists());
    // Never over a checkpoint.
    fails_with(&again, &["already holds a trained model", "--overwrite never applies"]);
}

#[test]
fn pictures_of_small_images_are_magnified() {
    let d = dataset("small", (8, 8), (8, 8), &[0, 1]);
    let r = tmp("small-run");
    let (d_s, r_s) = (d.to_str().unwrap(), r.to_str().unwrap());
    ok(&tiny_train(d_s, r_s));
    let size = |p: &Path| {
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()));
        let info = dec.read_info().unwrap();
        (info.info().width, info.info().height)
    };
    // 8 tiles of 8 pixels with 2 of padding, magnified 4 times: tiles of 32 pixels.
    assert_eq!(size(&r.join("samples.png")), (82 * 4, 82 * 4));
    for (cmd, extra) in [
        ("sample", vec![]),
        ("reconstruct", vec![]),
        ("interpolate", vec!["--pairs", "0-1", "--steps", "4"]),
        ("manifold", vec!["--n", "4"]),
    ] {
        let out = r.join(format!("{cmd}-x2.png"));
        let mut args = vec![cmd, "--run-dir", r_s, "--scale", "2", "--out", out.to_str().unwrap()];
        args.extend(extra);
        ok(&args);
        let (w, _) = size(&out);
        assert_eq!(w % 2, 0, "{cmd}");
        let default_out = r.join(format!("{cmd}-default.png"));
        let mut args = vec![cmd, "--run-dir", r_s, "--out", default_out.to_str().unwrap()];
        args.extend(match cmd {
            "interpolate" => vec!["--pairs", "0-1", "--steps", "4"],
            "manifold" => vec!["--n", "4"],
            _ => vec![],
        });
        ok(&args);
        assert_eq!(size(&default_out).0, 2 * w, "{cmd}: the default scale is 4");
    }
    fails_with(
        &["sample", "--run-dir", r_s, "--scale", "0"],
        &["--scale must be at least 1"],
    );
}
