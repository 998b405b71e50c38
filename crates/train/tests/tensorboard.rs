//! The TensorBoard events of a run as the binary writes them: every epoch scalar equals
//! `metrics.csv`, the running loss averages back to the epoch's, the images are the run's
//! pictures, and a resumed run continues the steps in a new file.

use std::path::{Path, PathBuf};
use std::process::Command;

use vae_train::run::read_metrics;
use vae_train::tensorboard::proto::{Content, Event, What};
use vae_train::tensorboard::{self, BATCH_NEG_ELBO, EPOCH_TAGS, SAMPLES};

const BIN: &str = env!("CARGO_BIN_EXE_vae-train");

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vae-tb-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn train(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The event files of `dir`, in name order (the order TensorBoard reads them).
fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| tensorboard::is_event_file(p.file_name().unwrap().to_str().unwrap()))
        .collect();
    files.sort();
    files
}

/// (step, value) of every scalar with `tag` in `events`.
fn scalars(events: &[Event], tag: &str) -> Vec<(i64, f32)> {
    let mut out = Vec::new();
    for e in events {
        if let Some(What::Summary(s)) = &e.what {
            for v in &s.value {
                if let (true, Some(Content::SimpleValue(x))) = (v.tag == tag, &v.value) {
                    out.push((e.step, *x));
                }
            }
        }
    }
    out
}

#[test]
fn events_match_the_metrics_and_continue_after_a_resume() {
    let dir = tmp("run");
    let (d, r) = (data(), dir.to_str().unwrap().to_owned());
    // 2000 images in batches of 128: 16 batches an epoch (the last of 80 images).
    let common = ["--data", d.to_str().unwrap(), "--subset", "2000", "--threads", "1"];
    train(&[&common[..], &["--epochs", "2", "--log-every", "4", "--run-dir", &r]].concat());
    train(&["train", "--resume", &r, "--epochs", "3"]);
    let files = event_files(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    let first = tensorboard::read_events(&files[0]).unwrap();
    let second = tensorboard::read_events(&files[1]).unwrap();
    for events in [&first, &second] {
        assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())));
    }
    // The resumed session marks its start at the first step it trains.
    assert!(matches!(&second[1].what, Some(What::SessionLog(l)) if l.status == 1));
    assert_eq!(second[1].step, 33);
    let all: Vec<Event> = first.iter().chain(&second).cloned().collect();
    let metrics = read_metrics(&dir.join("metrics.csv")).unwrap();
    assert_eq!(metrics.len(), 3);
    for (tag, column) in EPOCH_TAGS {
        let got = scalars(&all, tag);
        let steps: Vec<i64> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, [16, 32, 48], "{tag}");
        if let Some(c) = column {
            let f = vae_trainer::FIELDS.iter().find(|f| f.name == *c).unwrap();
            // The file's value, to its decimals and f32's rounding.
            let tolerance = |x: f64| 0.5 * 10f64.powi(-(f.decimals as i32)) + x.abs() * 6e-8;
            for ((_, v), m) in got.iter().zip(&metrics) {
                let want = (f.get)(m);
                assert!(
                    (f64::from(*v) - want).abs() <= tolerance(want),
                    "{tag}, epoch {}: {v} vs {want}",
                    m.epoch
                );
            }
        }
    }
    assert!(scalars(&all, "lr").iter().all(|(_, v)| *v == 1e-3));
    // The running loss every 4 batches; its windows, weighted by their images, average to
    // the epoch's training -ELBO (to f32 rounding).
    let running = scalars(&all, BATCH_NEG_ELBO);
    assert_eq!(
        running.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=12).map(|k| 4 * k).collect::<Vec<i64>>()
    );
    for (epoch, m) in metrics.iter().enumerate() {
        let windows = &running[4 * epoch..4 * epoch + 4];
        let images = [512.0, 512.0, 512.0, 464.0];
        let mean: f64 = windows
            .iter()
            .zip(images)
            .map(|((_, v), n)| f64::from(*v) * n)
            .sum::<f64>()
            / 2000.0;
        assert!(
            (mean - m.train_loss).abs() < 1e-4 * m.train_loss,
            "epoch {}: {mean} vs {}",
            m.epoch,
            m.train_loss
        );
    }
    // Each epoch's pictures; the last samples are samples.png.
    let mut last = None;
    for e in &all {
        if let Some(What::Summary(s)) = &e.what {
            for v in &s.value {
                if let Some(Content::Image(img)) = &v.value {
                    let dec = png::Decoder::new(std::io::Cursor::new(img.encoded_image_string.clone()));
                    let info = dec.read_info().unwrap().info().clone();
                    assert_eq!((info.width as i32, info.height as i32), (img.width, img.height));
                    if v.tag == SAMPLES {
                        last = Some(img.encoded_image_string.clone());
                    }
                }
            }
        }
    }
    assert_eq!(last.unwrap(), std::fs::read(dir.join("samples.png")).unwrap());
}
