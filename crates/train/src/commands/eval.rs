//! `vae-train eval`: the test set's negative ELBO, the importance-sampled estimate of
//! -log p(x) (Burda et al., k samples), and the number of active latent units.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use ndarray::{Axis, s};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vae_model::checkpoint::write_atomic;

use super::{RunArgs, output};
use crate::train::{EVAL_BATCH, evaluate, with_threads};

/// Flags of `vae-train eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// The run.
    #[command(flatten)]
    pub run: RunArgs,
    /// Importance samples per image (5000 in the IWAE paper).
    #[arg(long, default_value_t = 5000)]
    pub k: usize,
    /// Evaluate the first N test images only [default: all].
    #[arg(long)]
    pub n: Option<usize>,
    /// Samples decoded at once (bounds memory: about 6 KiB per row).
    #[arg(long, default_value_t = 5000)]
    pub chunk: usize,
    /// Seed of the samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output JSON [default: RUN_DIR/eval.json].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What `eval` measures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    /// Test images evaluated.
    pub images: usize,
    /// Negative ELBO per image (one z sample per image), nats.
    pub neg_elbo: f64,
    /// Importance-sampled estimate of -log p(x) per image, nats.
    pub neg_log_likelihood: f64,
    /// Importance samples per image.
    pub k: usize,
    /// Latent units whose posterior mean varies over the test set (variance > 0.01).
    pub active_units: usize,
    /// Latent dimensions.
    pub latent: usize,
    /// Seconds spent on the importance-sampled estimate.
    pub iwae_seconds: f64,
}

/// Units whose posterior mean has variance above 0.01 across images (Burda et al.).
pub fn active_units(mu: &ndarray::Array2<f32>) -> usize {
    mu.mapv(f64::from)
        .var_axis(Axis(0), 0.0)
        .iter()
        .filter(|&&v| v > 0.01)
        .count()
}

/// Runs the evaluation and writes it as JSON.
pub fn eval(a: &EvalArgs) -> Result<Evaluation> {
    if a.k == 0 || a.chunk == 0 {
        bail!("--k and --chunk must be at least 1");
    }
    let mut run = a.run.load()?;
    let test = a.run.test_set(&run)?;
    let n = a.n.unwrap_or(test.len()).min(test.len());
    if n == 0 {
        bail!("--n must be at least 1");
    }
    let x = test.images.slice(s![..n, ..]);
    let latent = run.model.config().latent;
    let result = with_threads(a.run.threads, || {
        let mut rng = StdRng::seed_from_u64(a.seed);
        let sub = vae_mnist::Split {
            images: x.to_owned(),
            labels: test.labels[..n].to_vec(),
            rows: test.rows,
            cols: test.cols,
        };
        let elbo = evaluate(&mut run.model, &sub, &mut rng);
        let mut mus = Vec::new();
        for chunk in x.axis_chunks_iter(Axis(0), EVAL_BATCH) {
            mus.push(run.model.encode(chunk).0);
        }
        let views: Vec<_> = mus.iter().map(|m| m.view()).collect();
        let mu = ndarray::concatenate(Axis(0), &views).expect("same widths");
        let start = Instant::now();
        let ll = run.model.log_likelihood(x, a.k, a.chunk, &mut rng);
        Evaluation {
            images: n,
            neg_elbo: elbo.neg_elbo(),
            neg_log_likelihood: -ll.iter().sum::<f64>() / n as f64,
            k: a.k,
            active_units: active_units(&mu),
            latent,
            iwae_seconds: start.elapsed().as_secs_f64(),
        }
    })?;
    let out = output(&run.dir, &a.out, "eval.json");
    let json = serde_json::to_string_pretty(&result).expect("serialises");
    write_atomic(&out, json.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    Ok(result)
}
