//! NumPy files through the binary: a `.npy` of colour images (N x H x W x C, as Keras stores
//! them) and an `.npz` in the layout of Keras' `mnist.npz` train and evaluate; hostile
//! arrays are refused with a message naming the file.

use vae_data::npy::{write_npy, write_npz};
use vae_data::{NpyArray, NpyData};

mod common;

use common::{fails_with, ok, run, tmp};

fn bytes(shape: &[usize]) -> NpyArray {
    let n: usize = shape.iter().product();
    NpyArray {
        shape: shape.to_vec(),
        data: NpyData::U8((0..n).map(|i| ((i * 31) % 256) as u8).collect()),
    }
}

fn train_args<'a>(data: &'a str, run_dir: &'a str) -> Vec<&'a str> {
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
        "--threads",
        "1",
    ]
}

#[test]
fn a_npy_of_colour_images_and_a_keras_npz_train_and_evaluate() {
    let d = tmp("ok");
    let npy = d.join("faces.npy");
    write_npy(&npy, &bytes(&[40, 6, 6, 3])).unwrap();
    let r = d.join("run-npy");
    let out = ok(&train_args(npy.to_str().unwrap(), r.to_str().unwrap()));
    assert!(
        out.contains("6x6x3") && out.contains("NumPy array") && out.contains("testing on 4"),
        "{out}"
    );
    ok(&["reconstruct", "--run-dir", r.to_str().unwrap(), "--n", "2"]);

    let npz = d.join("mnist.npz");
    let labels = |n: usize| NpyArray {
        shape: vec![n],
        data: NpyData::U8((0..n).map(|i| (i % 3) as u8).collect()),
    };
    let floats = NpyArray {
        shape: vec![9, 5, 5],
        data: NpyData::F32((0..225).map(|i| (i % 11) as f32 / 10.0).collect()),
    };
    write_npz(
        &npz,
        &[
            ("x_train", &bytes(&[30, 5, 5])),
            ("y_train", &labels(30)),
            ("x_test", &floats),
            ("y_test", &labels(9)),
        ],
        true,
    )
    .unwrap();
    let r = d.join("run-npz");
    let out = ok(&train_args(npz.to_str().unwrap(), r.to_str().unwrap()));
    assert!(
        out.contains("on 30 images of 5x5") && out.contains("testing on 9"),
        "{out}"
    );
    let out = ok(&[
        "score",
        "--run-dir",
        r.to_str().unwrap(),
        "--anomaly-digit",
        "2",
        "--k",
        "2",
    ]);
    assert!(out.contains("AUROC"), "{out}");
    ok(&["eval", "--run-dir", r.to_str().unwrap(), "--k", "4"]);
}

#[test]
fn hostile_arrays_are_refused_naming_the_file() {
    let d = tmp("bad");
    let path = |n: &str| d.join(n).to_str().unwrap().to_string();
    let r = path("run");
    let check = |file: &str, want: &[&str]| {
        let mut a = train_args(file, &r);
        a.extend(["--npz-keys", "x_train,y_train,x_test,y_test"]);
        fails_with(&a, want);
    };
    // A header declaring 10^12 elements.
    let mut huge = b"\x93NUMPY\x01\x00".to_vec();
    let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000, 1000000), }";
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    huge.extend((h.len() as u16).to_le_bytes());
    huge.extend(h.as_bytes());
    std::fs::write(path("huge.npy"), &huge).unwrap();
    check(&path("huge.npy"), &["huge.npy", "1000000000000 bytes"]);
    // Object and complex dtypes.
    for (name, descr) in [("obj.npy", "|O"), ("cplx.npy", "<c8")] {
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}");
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        f.extend((h.len() as u16).to_le_bytes());
        f.extend(h.as_bytes());
        f.extend([0u8; 16]);
        std::fs::write(path(name), &f).unwrap();
        check(&path(name), &[name, descr]);
    }
    // Truncated.
    write_npy(path("cut.npy"), &bytes(&[10, 4, 4])).unwrap();
    let full = std::fs::read(path("cut.npy")).unwrap();
    std::fs::write(path("cut.npy"), &full[..full.len() - 7]).unwrap();
    check(&path("cut.npy"), &["cut.npy", "truncated"]);
    // Floats outside [0, 1].
    let wide = NpyArray {
        shape: vec![4, 2, 2],
        data: NpyData::F32(vec![2.0; 16]),
    };
    write_npy(path("wide.npy"), &wide).unwrap();
    check(&path("wide.npy"), &["wide.npy", "outside [0, 1]"]);
    // An archive without the keys.
    write_npz(path("nokeys.npz"), &[("images", &bytes(&[10, 3, 3]))], false).unwrap();
    check(&path("nokeys.npz"), &["nokeys.npz", "x_train", "images", "--npz-keys"]);
    fails_with(
        &{
            let mut a = train_args("x.npz", &r);
            a.extend(["--npz-keys", "a,b"]);
            a
        },
        &["--npz-keys takes four names"],
    );
}

/// An error in a file that was found and read says what to change in that file; only a
/// path where nothing readable was found gets the hint about what `--data` takes.
#[test]
fn errors_inside_a_found_file_point_at_the_file() {
    let d = tmp("hint");
    let path = |n: &str| d.join(n).to_str().unwrap().to_string();
    let r = path("run");
    let wide = NpyArray {
        shape: vec![4, 2, 2],
        data: NpyData::F32(vec![2.0; 16]),
    };
    write_npy(path("wide.npy"), &wide).unwrap();
    write_npy(path("flat.npy"), &bytes(&[78400])).unwrap();
    write_npy(path("empty.npy"), &bytes(&[0, 4, 4])).unwrap();
    for (file, want) in [
        ("wide.npy", "outside [0, 1]"),
        ("flat.npy", "expected images"),
        ("empty.npy", "an empty array"),
    ] {
        let out = run(&train_args(&path(file), &r));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(file) && err.contains(want), "{err}");
        assert!(err.contains("the file was found and read"), "{err}");
        assert!(!err.contains("give a directory"), "{err}");
    }
    std::fs::write(path("notes.txt"), "hello").unwrap();
    fails_with(&train_args(&path("notes.txt"), &r), &["notes.txt", "give a directory"]);
}
