//! `vae-train score`: a per-image anomaly score (the negative ELBO, or the importance-sampled
//! -log p(x)) of every test image to CSV, and the AUROC of telling one digit from the rest.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use ndarray::Axis;
use rand::SeedableRng;
use rand::rngs::StdRng;
use vae_model::checkpoint::write_atomic;

use super::{RunArgs, output};
use crate::stats::auroc;
use crate::train::{EVAL_BATCH, list, with_threads};

/// Which score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// The negative ELBO, averaged over k single-sample estimates.
    Elbo,
    /// The importance-sampled estimate of -log p(x) with k samples.
    Iwae,
}

/// Flags of `vae-train score`.
#[derive(Args, Debug, Clone)]
pub struct ScoreArgs {
    /// The run.
    #[command(flatten)]
    pub run: RunArgs,
    /// The score.
    #[arg(long, value_enum, default_value = "elbo")]
    pub method: Method,
    /// Samples per image.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Report the AUROC of separating this digit (the anomaly) from the others.
    #[arg(long)]
    pub anomaly_digit: Option<u8>,
    /// Seed of the samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output CSV [default: RUN_DIR/scores.csv].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What `score` produced.
#[derive(Debug)]
pub struct Scores {
    /// The CSV file.
    pub path: PathBuf,
    /// One score per test image (higher: more anomalous).
    pub scores: Vec<f64>,
    /// The AUROC, when a digit was given.
    pub auroc: Option<f64>,
}

/// Scores every test image.
pub fn score(a: &ScoreArgs) -> Result<Scores> {
    if a.k == 0 {
        bail!("--k must be at least 1");
    }
    let mut run = a.run.load()?;
    let test = a.run.test_set(&run)?;
    if let Some(d) = a.anomaly_digit {
        let classes = test.classes();
        if !classes.contains(&d) || classes.len() < 2 {
            bail!(
                "--anomaly-digit {d}: the test set must hold images of label {d} and of others (labels present: {})",
                list(&classes)
            );
        }
    }
    let scores = with_threads(a.run.threads, || {
        let mut rng = StdRng::seed_from_u64(a.seed);
        let mut scores = Vec::with_capacity(test.len());
        for chunk in test.images.axis_chunks_iter(Axis(0), EVAL_BATCH) {
            match a.method {
                Method::Elbo => {
                    let mut acc = vec![0.0; chunk.nrows()];
                    for _ in 0..a.k {
                        for (s, v) in acc.iter_mut().zip(run.model.neg_elbo_per_image(chunk, &mut rng)) {
                            *s += v / a.k as f64;
                        }
                    }
                    scores.extend(acc);
                }
                Method::Iwae => {
                    let ll = run.model.log_likelihood(chunk, a.k, 5000, &mut rng);
                    scores.extend(ll.iter().map(|l| -l));
                }
            }
        }
        scores
    })?;
    let mut csv = String::from("index,label,score\n");
    for (i, (s, l)) in scores.iter().zip(&test.labels).enumerate() {
        let _ = writeln!(csv, "{i},{l},{s:.6}");
    }
    let path = output(&run.dir, &a.out, "scores.csv");
    write_atomic(&path, csv.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    let auroc = match a.anomaly_digit {
        Some(d) => {
            let positive: Vec<bool> = test.labels.iter().map(|&l| l == d).collect();
            Some(auroc(&scores, &positive).with_context(|| format!("the test set has no digit {d}, or only it"))?)
        }
        None => None,
    };
    Ok(Scores { path, scores, auroc })
}
