//! `vae-train score`: a per-image anomaly score (the negative ELBO, or the importance-sampled
//! -log p(x)) of every test image to CSV, and the AUROC of telling one class from the rest.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use vae_data::ClassLabel;
use vae_data::atomic::write_atomic;
use vae_trainer::Collective;

use super::{RunArgs, block_rng, block_rows, is_writer, my_blocks, output};
use crate::data::present;
use crate::stats::auroc;
use crate::threads::with_threads;

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
    /// Report the AUROC of separating this class (the anomaly) from the others: its number
    /// (a digit, a class index) or the name the data give it (a class folder, a table's text
    /// label).
    #[arg(long, visible_alias = "anomaly-digit", value_name = "LABEL")]
    pub anomaly_label: Option<ClassLabel>,
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
    /// The AUROC, when a class was given.
    pub auroc: Option<f64>,
}

/// `vae-train score`: scores every test image and says what it wrote (rank 0 alone).
pub fn main(a: &ScoreArgs, collective: Option<&mut dyn Collective>) -> Result<()> {
    let writer = is_writer(&collective);
    let s = score_with(a, collective)?;
    if writer {
        println!("wrote {} ({} scores)", s.path.display(), s.scores.len());
        if let (Some(auc), Some(label)) = (s.auroc, &a.anomaly_label) {
            println!("AUROC for detecting label {label} as an anomaly: {auc:.4}");
        }
    }
    Ok(())
}

/// The scores of `chunk`, the images of block `b` (see [`super::BLOCK`]), into `out`: the
/// negative ELBO averaged over `k` draws, or -log p(x) from `k` importance samples, with the
/// block's own random stream from `seed`.
pub fn block_scores(
    model: &mut vae_model::Vae<f32>,
    chunk: ndarray::ArrayView2<f32>,
    b: usize,
    method: Method,
    k: usize,
    seed: u64,
    out: &mut [f64],
) {
    let mut rng = block_rng(seed, b, 3);
    match method {
        Method::Elbo => {
            for _ in 0..k {
                for (s, v) in out.iter_mut().zip(model.neg_elbo_per_image(chunk, &mut rng)) {
                    *s += v / k as f64;
                }
            }
        }
        Method::Iwae => {
            let ll = model.log_likelihood(chunk, k, 5000, &mut rng);
            out.iter_mut().zip(&ll).for_each(|(s, l)| *s = -l);
        }
    }
}

/// Scores every test image.
pub fn score(a: &ScoreArgs) -> Result<Scores> {
    score_with(a, None)
}

/// [`score`], with the test images shared among the ranks of `collective` in blocks with
/// their own random streams (the scores do not depend on the number of ranks); rank 0
/// writes the CSV.
pub fn score_with(a: &ScoreArgs, mut collective: Option<&mut dyn Collective>) -> Result<Scores> {
    if a.k == 0 {
        bail!("--k must be at least 1");
    }
    let mut run = a.run.load()?;
    let (test, names) = a.run.test_data(&run)?;
    let anomaly = match &a.anomaly_label {
        Some(label) => {
            let d = label
                .resolve(names.as_deref())
                .map_err(|e| anyhow!("--anomaly-label {label}: {e}"))?;
            if test.labels.is_none() {
                bail!("--anomaly-label {label}: the test set has no labels, so there is no AUROC to compute");
            }
            let classes = test.classes();
            if !classes.contains(&d) || classes.len() < 2 {
                bail!(
                    "--anomaly-label {label}: the test set must hold images of label {label} and of others (labels present: {})",
                    present(&test, names.as_deref())
                );
            }
            Some(d)
        }
        None => None,
    };
    let n = test.len();
    let blocks = my_blocks(n, &collective);
    let mut scores = vec![0.0f64; n];
    with_threads(a.run.threads, || {
        for b in blocks {
            let r = block_rows(b, n);
            let chunk = test.images.rows_f32(r.clone());
            block_scores(&mut run.model, chunk.view(), b, a.method, a.k, a.seed, &mut scores[r]);
        }
    })?;
    if let Some(c) = collective.as_deref_mut() {
        // Each rank filled its blocks, the rest are zeros: the sum is every score.
        c.allreduce_sum_f64(&mut scores);
    }
    let path = output(&run.dir, &a.out, "scores.csv");
    if !is_writer(&collective) {
        return Ok(Scores {
            path,
            scores,
            auroc: None,
        });
    }
    let mut csv = String::from("index,label,score\n");
    for (i, s) in scores.iter().enumerate() {
        let label = test.labels.as_ref().map_or(String::new(), |l| l[i].to_string());
        let _ = writeln!(csv, "{i},{label},{s:.6}");
    }
    write_atomic(&path, csv.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    let auroc = match anomaly {
        Some(d) => {
            let positive: Vec<bool> = test.labels.iter().flatten().map(|&l| l == d).collect();
            Some(auroc(&scores, &positive).with_context(|| format!("the test set has no label {d}, or only it"))?)
        }
        None => None,
    };
    Ok(Scores { path, scores, auroc })
}
