//! CSV tables through the binary: a table of correlated columns trains (a Gaussian decoder
//! by default, the columns standardised with the training rows' statistics, stored in the
//! checkpoint), scores its anomalies with an AUROC against a label, reconstructs rows in
//! the original units, refuses pictures saying why; bad tables are refused by row and column.

use std::fmt::Write as _;

mod common;

use common::{fails_with, ok, tmp};

/// Rows whose columns follow b = 2a, c = -a (+ noise) around a = 100, except the anomalies
/// (label 1), whose b and c are unrelated to a.
fn table() -> String {
    labelled_table(["0", "1"])
}

/// [`table`] with its normal rows and its anomalies labelled `names[0]` and `names[1]`.
fn labelled_table(names: [&str; 2]) -> String {
    let mut s = String::from("a,b,c,kind\n");
    let mut x = 12345u64;
    let mut noise = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((x >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    };
    for i in 0..800 {
        let a = 100.0 + 20.0 * noise();
        let anomaly = i % 10 == 0;
        let (b, c) = if anomaly {
            (200.0 + 40.0 * noise(), -100.0 + 20.0 * noise())
        } else {
            (2.0 * a + noise(), -a + noise())
        };
        let _ = writeln!(s, "{a:.3},{b:.3},{c:.3},{}", names[usize::from(anomaly)]);
    }
    s
}

#[test]
fn a_table_trains_scores_its_anomalies_and_reconstructs_in_its_units() {
    let d = tmp("ok");
    let csv = d.join("sensors.csv");
    std::fs::write(&csv, table()).unwrap();
    let r = d.join("run");
    let (c, rs) = (csv.to_str().unwrap(), r.to_str().unwrap());
    let out = ok(&[
        "train",
        "--data",
        c,
        "--label-column",
        "kind",
        "--run-dir",
        rs,
        "--epochs",
        "30",
        "--hidden",
        "16",
        "--latent",
        "1",
        "--batch-size",
        "32",
        "--threads",
        "1",
    ]);
    assert!(
        out.contains("CSV table") && out.contains("Gaussian (learned variance)"),
        "{out}"
    );
    let out = ok(&["score", "--run-dir", rs, "--anomaly-label", "1", "--k", "4"]);
    let auc: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("AUROC for detecting digit 1 as an anomaly: "))
        .expect("an AUROC line")
        .trim()
        .parse()
        .unwrap();
    assert!(
        auc > 0.8,
        "AUROC {auc}: the broken correlations should stand out\n{out}"
    );
    let recon = d.join("recon.csv");
    ok(&[
        "reconstruct",
        "--run-dir",
        rs,
        "--n",
        "20",
        "--csv",
        recon.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&recon).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("a,b,c"));
    let first_column: Vec<f64> = lines.map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
    let mean = first_column.iter().sum::<f64>() / first_column.len() as f64;
    assert!(
        (80.0..120.0).contains(&mean),
        "column a is reconstructed around {mean}, not around 100"
    );
    fails_with(
        &["sample", "--run-dir", rs],
        &["trained on a table", "a, b, c", "no images to draw"],
    );
    fails_with(&["reconstruct", "--run-dir", rs], &["--csv"]);
    ok(&["eval", "--run-dir", rs, "--k", "8"]);
    ok(&["latents", "--run-dir", rs]);
    let out = ok(&["train", "--resume", rs, "--epochs", "31"]);
    assert!(out.contains("epoch 31/31"), "{out}");
    fails_with(
        &[
            "train",
            "--data",
            c,
            "--binarize",
            "--run-dir",
            d.join("bin").to_str().unwrap(),
        ],
        &["--binarize"],
    );
}

#[test]
fn bad_tables_are_refused_naming_the_row_and_column() {
    let d = tmp("bad");
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "text.csv",
            "a,b\n1,2\n3,four\n5,6\n",
            &["text.csv", "row 3", "'b'", "four"],
        ),
        ("ragged.csv", "a,b\n1,2\n3\n5,6\n", &["ragged.csv", "row 3"]),
        ("nan.csv", "a,b\n1,2\n3,NaN\n5,6\n", &["nan.csv", "row 3", "'b'"]),
        ("inf.csv", "a,b\n1,2\n3,inf\n5,6\n", &["inf.csv", "'b'"]),
        ("constant.csv", "a,b\n1,7\n3,7\n5,7\n6,7\n", &["constant.csv", "'b'"]),
    ];
    for (name, body, want) in cases {
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        let r = d.join(format!("{name}.run"));
        fails_with(
            &[
                "train",
                "--data",
                p.to_str().unwrap(),
                "--run-dir",
                r.to_str().unwrap(),
                "--epochs",
                "1",
            ],
            want,
        );
    }
    let p = d.join("labels.csv");
    std::fs::write(&p, "a,b\n1,2\n3,4\n5,6\n").unwrap();
    fails_with(
        &[
            "train",
            "--data",
            p.to_str().unwrap(),
            "--label-column",
            "kind",
            "--run-dir",
            d.join("l.run").to_str().unwrap(),
        ],
        &["labels.csv", "kind", "a, b"],
    );
}

/// `inspect` calls a table's rows rows, and gives each named class the number that flags and
/// score.csv use for it.
#[test]
fn inspect_counts_rows_and_numbers_the_named_classes() {
    let d = tmp("inspect");
    let csv = d.join("cells.csv");
    let text = labelled_table(["benign", "malignant"]);
    std::fs::write(&csv, text).unwrap();
    let out = ok(&["inspect", "--data", csv.to_str().unwrap(), "--label-column", "kind"]);
    assert!(
        out.contains("train and") && out.contains("test rows of 3 columns"),
        "{out}"
    );
    assert!(out.contains("labels: 2 classes (0 benign, 1 malignant)"), "{out}");
}
