//! Every run subcommand on a tiny trained model: the output exists, decodes as a PNG (or
//! parses as SVG) of the expected size, and each tile of a grid shows the image it should.

use std::path::PathBuf;
use std::sync::OnceLock;

use ndarray::{Array2, ArrayView2, array};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vae::data::Dataset;
use vae::model::Vae;
use vae::model::checkpoint;
use vae::train::cli::{DataArgs, TrainArgs};
use vae::train::commands::interpolate::{InterpolateArgs, interpolate};
use vae::train::commands::manifold::{ManifoldArgs, grid_point, manifold};
use vae::train::commands::reconstruct::{ReconstructArgs, reconstruct};
use vae::train::commands::sample::{SampleArgs, sample};
use vae::train::commands::score::{Method, ScoreArgs, score};
use vae::train::commands::train::train;
use vae::train::commands::{RunArgs, eval, latents, plot};
use vae::train::image::{PAD, read_png, to_byte, untile};
use vae::train::report::{Progress, Verbosity};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

/// A tiny run (2-d latent, 500 images, 2 epochs), trained once for all tests.
fn tiny(latent: usize) -> PathBuf {
    static RUNS: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    RUNS[latent - 2]
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("vae-cmd-it-{}-{latent}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let args = TrainArgs {
                source: DataArgs::at(data()),
                epochs: Some(2),
                subset: Some(500),
                hidden: Some(vec![32]),
                latent: Some(vec![latent]),
                threads: Some(2),
                run_dir: Some(dir.clone()),
                ..TrainArgs::default()
            };
            train(&args, &mut Progress::new(Verbosity::Quiet)).unwrap();
            dir
        })
        .clone()
}

fn run_args(dir: &std::path::Path) -> RunArgs {
    RunArgs {
        run_dir: dir.to_path_buf(),
        data: None,
        threads: Some(2),
        max_data_bytes: None,
    }
}

fn model(dir: &std::path::Path) -> Vae<f32> {
    checkpoint::load::<f32>(&dir.join("model.safetensors")).unwrap().0
}

fn bytes(images: ArrayView2<f32>) -> Vec<Vec<u8>> {
    images
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| to_byte(v)).collect())
        .collect()
}

fn grid_size(cols: usize, rows: usize) -> (usize, usize) {
    (cols * (28 + PAD) + PAD, rows * (28 + PAD) + PAD)
}

#[test]
fn sample_tiles_the_prior_draws_in_order() {
    let dir = tiny(2);
    let out = dir.join("s.png");
    let a = SampleArgs {
        run: run_args(&dir),
        n: 4,
        seed: 9,
        scale: None,
        out: Some(out.clone()),
    };
    assert_eq!(sample(&a).unwrap(), out);
    let g = read_png(&out).unwrap();
    assert_eq!((g.width, g.height), grid_size(4, 4));
    let want = model(&dir).sample(16, &mut StdRng::seed_from_u64(9));
    assert_eq!(untile(&g, 28, 28, 16, 4), bytes(want.view()));
}

#[test]
fn reconstruct_puts_test_images_over_their_reconstructions() {
    let dir = tiny(2);
    let csv = dir.join("r.csv");
    let a = ReconstructArgs {
        run: run_args(&dir),
        n: 5,
        scale: None,
        out: None,
        csv: Some(csv.clone()),
        inputs_csv: None,
    };
    let out = reconstruct(&a).unwrap();
    assert_eq!(out, dir.join("reconstruct.png"));
    let g = read_png(&out).unwrap();
    assert_eq!((g.width, g.height), grid_size(5, 2));
    let test = Dataset::open(data()).unwrap().test.head(5);
    let tiles = untile(&g, 28, 28, 10, 5);
    assert_eq!(tiles[..5], bytes(test.images.f32().view())[..]);
    let recon = model(&dir).reconstruct(test.images.f32().view());
    assert_eq!(tiles[5..], bytes(recon.view())[..]);
    // The CSV holds the same reconstructions, exactly.
    let text = std::fs::read_to_string(csv).unwrap();
    let first: Vec<f32> = text
        .lines()
        .next()
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(first, recon.row(0).to_vec());
}

#[test]
fn interpolate_runs_from_one_latent_mean_to_the_other() {
    let dir = tiny(2);
    for spherical in [false, true] {
        let a = InterpolateArgs {
            run: run_args(&dir),
            pairs: "0-1,2-3".into(),
            steps: 6,
            spherical,
            scale: None,
            out: None,
        };
        let g = read_png(&vae::train::commands::interpolate::run(&a).unwrap()).unwrap();
        assert_eq!((g.width, g.height), grid_size(6, 2));
        let tiles = untile(&g, 28, 28, 12, 6);
        let test = Dataset::open(data()).unwrap().test.head(4);
        let mut m = model(&dir);
        let (mu, _) = m.encode(test.images.f32().view());
        let ends = m.decode(mu.view());
        let ends = bytes(ends.view());
        assert_eq!((&tiles[0], &tiles[5]), (&ends[0], &ends[1]));
        assert_eq!((&tiles[6], &tiles[11]), (&ends[2], &ends[3]));
    }
    // Midpoints: the line and the great circle.
    let (a, b) = (array![1.0f32, 0.0], array![0.0f32, 1.0]);
    assert_eq!(interpolate(a.view(), b.view(), 0.5, false), array![0.5, 0.5]);
    let s = interpolate(a.view(), b.view(), 0.5, true);
    assert!((s.dot(&s) - 1.0).abs() < 1e-6, "stays on the circle: {s}");
}

#[test]
fn manifold_decodes_the_quantile_grid() {
    let dir = tiny(2);
    let a = ManifoldArgs {
        run: run_args(&dir),
        n: 5,
        scale: None,
        out: None,
    };
    let g = read_png(&manifold(&a).unwrap()).unwrap();
    assert_eq!((g.width, g.height), grid_size(5, 5));
    let z = Array2::from_shape_fn((25, 2), |(k, j)| grid_point(k / 5, k % 5, 5)[j]);
    let want = model(&dir).decode(z.view());
    assert_eq!(untile(&g, 28, 28, 25, 5), bytes(want.view()));
    // The centre cell is the origin; z1 grows to the right, z2 upwards.
    assert!(grid_point(2, 2, 5).iter().all(|v| v.abs() < 1e-6));
    assert!(grid_point(0, 4, 5)[0] > 0.0 && grid_point(0, 4, 5)[1] > 0.0);
    // Other latent sizes are refused with a clear message.
    let err = manifold(&ManifoldArgs {
        run: run_args(&tiny(3)),
        n: 5,
        scale: None,
        out: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("needs a 2-d (top) latent space"), "{err}");
}

fn svg(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    roxmltree::Document::parse(&text).expect("well-formed SVG");
    text
}

#[test]
fn latents_plots_every_test_image_with_a_legend() {
    for latent in [2, 3] {
        let dir = tiny(latent);
        let out = latents::latents(&latents::LatentsArgs {
            run: run_args(&dir),
            out: None,
        })
        .unwrap();
        let text = svg(&out);
        let doc = roxmltree::Document::parse(&text).unwrap();
        let root = doc.root_element();
        assert_eq!(
            (root.attribute("width"), root.attribute("height")),
            (Some("720"), Some("540"))
        );
        let circles = doc.descendants().filter(|n| n.has_tag_name("circle")).count();
        assert_eq!(circles, 10_000);
        for d in 0..10 {
            assert!(text.contains(&format!(">digit {d}</text>")), "legend lacks digit {d}");
        }
    }
}

#[test]
fn plot_draws_the_curves() {
    let dir = tiny(2);
    let out = plot::plot(&plot::PlotArgs {
        run_dir: dir.clone(),
        out: None,
        nll: false,
        compare: vec![],
    })
    .unwrap();
    let text = svg(&out);
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(doc.descendants().filter(|n| n.has_tag_name("polyline")).count(), 4);
    assert!(text.contains("test -ELBO") && text.contains("train KL"));
}

#[test]
fn eval_gives_a_tighter_bound_than_the_elbo() {
    let dir = tiny(2);
    let e = eval::eval(&eval::EvalArgs {
        run: run_args(&dir),
        k: 200,
        n: Some(300),
        chunk: 64,
        seed: 0,
        out: None,
    })
    .unwrap();
    eprintln!("{e:?}");
    assert!(e.neg_log_likelihood < e.neg_elbo, "{e:?}");
    assert!(e.neg_elbo - e.neg_log_likelihood < 50.0, "{e:?}");
    assert!(e.active_units >= 1 && e.active_units <= 2);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap();
    assert_eq!(json["k"], 200);
}

#[test]
fn score_writes_every_test_image_and_the_auroc() {
    let dir = tiny(2);
    for method in [Method::Elbo, Method::Iwae] {
        let s = score(&ScoreArgs {
            run: run_args(&dir),
            method,
            k: 3,
            anomaly_label: Some(vae::data::ClassLabel::Number(1)),
            seed: 0,
            out: None,
        })
        .unwrap();
        assert_eq!(s.scores.len(), 10_000);
        let auc = s.auroc.unwrap();
        assert!((0.0..=1.0).contains(&auc));
        // Ones are the easiest digit to reconstruct: their scores are low.
        assert!(auc < 0.5, "{method:?}: AUROC {auc}");
        let text = std::fs::read_to_string(&s.path).unwrap();
        assert_eq!(text.lines().count(), 10_001);
        assert!(text.starts_with("index,label,score\n0,7,"));
    }
}

#[test]
fn two_stochastic_layers_with_iwae_work_with_every_command() {
    let dir = std::env::temp_dir().join(format!("vae-cmd-it-{}-two-levels", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args = TrainArgs {
        source: DataArgs::at(data()),
        epochs: Some(3),
        subset: Some(500),
        hidden: Some(vec![32]),
        latent: Some(vec![6, 2]),
        upper_hidden: Some(vec![16]),
        objective: Some(vae::model::Bound::Iwae),
        samples: Some(4),
        dreg: true,
        binarize: true,
        // Every epoch: any training time reaches the mark.
        snapshot_every: Some(1e-9),
        threads: Some(2),
        run_dir: Some(dir.clone()),
        ..TrainArgs::default()
    };
    let out = train(&args, &mut Progress::new(Verbosity::Quiet)).unwrap();
    // The IWAE bound (k = 4) is tighter than the ELBO on the same batches.
    let m = out.metrics.last().unwrap();
    assert!(m.train_objective < m.train_loss, "{m:?}");
    let run = run_args(&dir);
    assert_eq!(model(&dir).config().levels(), 2);
    sample(&SampleArgs {
        run: run.clone(),
        n: 4,
        seed: 1,
        scale: None,
        out: None,
    })
    .unwrap();
    reconstruct(&ReconstructArgs {
        run: run.clone(),
        n: 4,
        scale: None,
        out: None,
        csv: None,
        inputs_csv: None,
    })
    .unwrap();
    vae::train::commands::interpolate::run(&InterpolateArgs {
        run: run.clone(),
        pairs: "0-1".into(),
        steps: 5,
        spherical: false,
        scale: None,
        out: None,
    })
    .unwrap();
    // The manifold is the top layer's (2-d here).
    manifold(&ManifoldArgs {
        run: run.clone(),
        n: 4,
        scale: None,
        out: None,
    })
    .unwrap();
    latents::latents(&latents::LatentsArgs {
        run: run.clone(),
        out: None,
    })
    .unwrap();
    let s = score(&ScoreArgs {
        run: run.clone(),
        method: Method::Elbo,
        k: 10,
        anomaly_label: Some(vae::data::ClassLabel::Number(1)),
        seed: 0,
        out: None,
    })
    .unwrap();
    assert!(s.scores.iter().all(|v| v.is_finite()));
    // One snapshot per epoch; each evaluates as a run of its own, and plot --nll draws them.
    let snaps: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    assert_eq!(snaps.len(), 3, "{snaps:?}");
    let mut last = f64::INFINITY;
    for s in &snaps {
        let e = eval::eval(&eval::EvalArgs {
            run: run_args(s),
            k: 50,
            n: Some(200),
            chunk: 1000,
            seed: 0,
            out: None,
        })
        .unwrap();
        assert_eq!(e.active_per_layer.len(), 2);
        assert!(e.neg_log_likelihood < e.neg_elbo, "{e:?}");
        last = e.neg_log_likelihood;
    }
    assert!(last.is_finite());
    let svg_path = plot::plot(&plot::PlotArgs {
        run_dir: dir.clone(),
        out: None,
        nll: true,
        compare: vec![],
    })
    .unwrap();
    let text = svg(&svg_path);
    assert!(
        text.contains("minutes of training") && text.contains("k = 50"),
        "{text}"
    );
}

#[test]
fn every_binarized_run_is_tested_on_the_same_binary_test_set() {
    let mnist = vae::train::data::open(&data(), &Default::default()).unwrap();
    let args = |seed| TrainArgs {
        binarize: true,
        seed: Some(seed),
        ..TrainArgs::default()
    };
    let a = vae::train::data::test_split(&args(1).recipe(), &mnist);
    let b = vae::train::data::test_split(&args(7).recipe(), &mnist);
    assert_eq!(a.images, b.images);
    assert!(a.images.f32().iter().all(|&p| p == 0.0 || p == 1.0));
}
