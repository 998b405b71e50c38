//! Convolutional VAEs through the binary: a grey and a colour model train, every command
//! reads them, a resumed run is bitwise the one trained straight through, the checkpoint
//! holds PyTorch's 4-D weights, and architectures that do not fit are refused naming the
//! layer.

use vae_data::npy::write_npz;
use vae_data::{NpyArray, NpyData};

mod common;

use common::{fails_with, ok, tensors, tmp};

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");

fn train<'a>(data: &'a str, run: &'a str, arch: &'a str, epochs: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        "--data",
        data,
        "--run-dir",
        run,
        "--arch",
        arch,
        "--hidden",
        "16",
        "--latent",
        "2",
        "--epochs",
        epochs,
        "--threads",
        "2",
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn a_grey_conv_model_trains_resumes_bitwise_and_every_command_reads_it() {
    let d = tmp("conv-grey");
    let (straight, resumed) = (d.join("straight"), d.join("resumed"));
    let (s, r) = (straight.to_str().unwrap(), resumed.to_str().unwrap());
    let subset = ["--subset", "512", "--batch-size", "64"];
    let out = ok(&train(MNIST, s, "conv:4k3s2,8k3s2", "2", &subset));
    assert!(out.contains("conv:4k3s2,8k3s2"), "{out}");
    ok(&train(MNIST, r, "conv:4k3s2,8k3s2", "1", &subset));
    ok(&["train", "--resume", r, "--epochs", "2"]);
    let (a, b) = (
        tensors(&straight.join("model.safetensors")),
        tensors(&resumed.join("model.safetensors")),
    );
    assert!(a == b, "resumed weights differ from the straight run's");
    let shapes: Vec<(&str, &[usize])> = a.iter().map(|(n, s, _)| (n.as_str(), s.as_slice())).collect();
    for want in [
        ("encoder.0.weight", &[4, 1, 3, 3][..]),
        ("encoder.1.weight", &[8, 4, 3, 3]),
        ("encoder.2.weight", &[16, 392]),
        ("decoder.0.weight", &[392, 2]),
        ("decoder.1.weight", &[8, 8, 3, 3]),
        ("decoder.2.weight", &[8, 4, 3, 3]),
        ("decoder.out.weight", &[4, 1, 3, 3]),
        ("decoder.out.bias", &[1]),
    ] {
        assert!(shapes.contains(&want), "{want:?} not in {shapes:?}");
    }
    for cmd in [
        &["sample", "--run-dir", s][..],
        &["reconstruct", "--run-dir", s, "--n", "4"],
        &["interpolate", "--run-dir", s],
        &["manifold", "--run-dir", s],
        &["latents", "--run-dir", s],
        &["plot", "--run-dir", s],
        &["eval", "--run-dir", s, "--k", "4", "--n", "50"],
        &["score", "--run-dir", s, "--anomaly-digit", "3", "--k", "2"],
        &["export", "--run-dir", s],
    ] {
        ok(cmd);
    }
    for f in [
        "sample.png",
        "reconstruct.png",
        "manifold.png",
        "latents.svg",
        "encoder.onnx",
        "decoder.onnx",
    ] {
        assert!(straight.join(f).is_file(), "{f}");
    }
}

#[test]
fn a_colour_conv_model_trains_with_iwae_dreg_and_two_levels() {
    let d = tmp("conv-rgb");
    let npz = d.join("rgb.npz");
    let images = |n: usize| NpyArray {
        shape: vec![n, 8, 8, 3],
        data: NpyData::U8((0..n * 192).map(|i| ((i * 37 + i / 7) % 256) as u8).collect()),
    };
    write_npz(&npz, &[("x_train", &images(96)), ("x_test", &images(16))], true).unwrap();
    let run = d.join("run");
    let (data, r) = (npz.to_str().unwrap(), run.to_str().unwrap());
    let extra = [
        "--latent",
        "3,2",
        "--upper-hidden",
        "8",
        "--objective",
        "iwae",
        "--samples",
        "3",
        "--dreg",
    ];
    let out = ok(&train(data, r, "conv:4k3s2,6", "2", &extra));
    assert!(out.contains("8x8x3"), "{out}");
    ok(&["reconstruct", "--run-dir", r, "--n", "4"]);
    ok(&["sample", "--run-dir", r]);
    let out = ok(&["eval", "--run-dir", r, "--k", "5"]);
    assert!(out.contains("-log p(x)"), "{out}");
    let shapes: Vec<(String, Vec<usize>)> = tensors(&run.join("model.safetensors"))
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect();
    assert!(
        shapes.contains(&("encoder.0.weight".into(), vec![4, 3, 3, 3])),
        "{shapes:?}"
    );
    assert!(
        shapes.contains(&("decoder.out.weight".into(), vec![4, 3, 3, 3])),
        "{shapes:?}"
    );
}

#[test]
fn architectures_that_do_not_fit_are_refused_naming_the_layer() {
    let d = tmp("conv-bad");
    let run = d.join("run");
    let r = run.to_str().unwrap();
    fails_with(
        &train(
            MNIST,
            r,
            "conv:8k3s2,8k3s2,8k3s2,8k3s2,8k5s2p0",
            "1",
            &["--subset", "128"],
        ),
        &["--arch", "layer 5 (8k5s2p0)", "does not fit its 8x2x2 input"],
    );
    fails_with(
        &train(MNIST, r, "conv:8k4s2", "1", &["--subset", "128"]),
        &["--arch", "odd kernel"],
    );
    // A spelling error is the parser's: a usage error (status 2), naming the flag.
    let out = common::run(&train(MNIST, r, "conv:8q3", "1", &[]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--arch") && err.contains("unknown field 'q'"), "{err}");
    let csv = d.join("t.csv");
    std::fs::write(&csv, "a,b\n1,2\n2,3.5\n3,1\n4,4\n5,2\n6,1\n7,3\n8,2\n9,9\n10,4\n").unwrap();
    fails_with(
        &train(csv.to_str().unwrap(), r, "conv:4", "1", &[]),
        &["--arch", "a table's rows are vectors"],
    );
    assert!(!run.join("model.safetensors").exists());
}
