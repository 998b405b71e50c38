//! `vae-train eval`: the test set's negative ELBO, the importance-sampled estimate of
//! -log p(x) (Burda et al., k samples), and the number of active latent units.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use ndarray::{Axis, s};
use vae_data::atomic::write_atomic;
use vae_trainer::Collective;

use super::{RunArgs, block_rng, block_rows, is_writer, my_blocks, output};
use crate::threads::with_threads;

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
    /// Rows decoded at once: samples of several images when --k is smaller (bounds memory:
    /// about 6 KiB per row).
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
    /// Latent units whose posterior mean varies over the test set (variance > 0.01), over
    /// every stochastic layer.
    pub active_units: usize,
    /// Latent dimensions, over every stochastic layer.
    pub latent: usize,
    /// Active units of each stochastic layer, z1 first (each layer encoding the mean of the
    /// one below).
    pub active_per_layer: Vec<usize>,
    /// Seconds spent on the importance-sampled estimate (per rank, on average, under MPI).
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

/// `vae-train eval`: evaluates, writes the JSON and prints the summary (rank 0 alone).
pub fn main(a: &EvalArgs, collective: Option<&mut dyn Collective>) -> Result<()> {
    let writer = is_writer(&collective);
    let e = eval_with(a, collective)?;
    if writer {
        let per_layer = match e.active_per_layer.as_slice() {
            [_] => String::new(),
            l => format!(
                " ({} by layer, z1 first)",
                l.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" + ")
            ),
        };
        println!(
            "{} test images: -ELBO {:.2} nats, -log p(x) ~ {:.2} nats (IWAE, k = {}, {:.1} s), {} of {} latent units active{per_layer}",
            e.images, e.neg_elbo, e.neg_log_likelihood, e.k, e.iwae_seconds, e.active_units, e.latent
        );
    }
    Ok(())
}

/// Runs the evaluation and writes it as JSON.
pub fn eval(a: &EvalArgs) -> Result<Evaluation> {
    eval_with(a, None)
}

/// [`eval`], with the test images shared among the ranks of `collective` (rank 0 writes).
/// Images go in blocks of [`super::BLOCK`], each with its own random stream, so the figures do not
/// depend on the number of ranks.
pub fn eval_with(a: &EvalArgs, mut collective: Option<&mut dyn Collective>) -> Result<Evaluation> {
    if a.k == 0 || a.chunk == 0 {
        bail!("--k and --chunk must be at least 1");
    }
    let mut run = a.run.load()?;
    let test = a.run.test_set(&run)?;
    let n = a.n.unwrap_or(test.len()).min(test.len());
    if n == 0 {
        bail!("--n must be at least 1");
    }
    let x = test.images.rows_f32(0..n);
    let x = x.view();
    let dims = run.model.config().latents();
    let latent: usize = dims.iter().sum();
    let blocks = my_blocks(n, &collective);
    // Sums: recon, KL, log-likelihood, seconds, then per unit the sum and the sum of squares
    // of the posterior mean.
    let mut sums = vec![0.0f64; 4 + 2 * latent];
    with_threads(a.run.threads, || {
        for b in blocks {
            let rows = x.slice(s![block_rows(b, n), ..]);
            let e = run.model.evaluate(rows, &mut block_rng(a.seed, b, 1));
            let levels = run.model.encode_levels(rows);
            let start = Instant::now();
            let ll = run
                .model
                .log_likelihood(rows, a.k, a.chunk, &mut block_rng(a.seed, b, 2));
            sums[0] += e.recon;
            sums[1] += e.kl;
            sums[2] += ll.iter().sum::<f64>();
            sums[3] += start.elapsed().as_secs_f64();
            let mut off = 0;
            for (mu, _) in &levels {
                for row in mu.rows() {
                    for (j, &m) in row.iter().enumerate() {
                        sums[4 + off + j] += f64::from(m);
                        sums[4 + latent + off + j] += f64::from(m) * f64::from(m);
                    }
                }
                off += mu.ncols();
            }
        }
    })?;
    if let Some(c) = collective.as_deref_mut() {
        c.allreduce_sum_f64(&mut sums);
    }
    let count = n as f64;
    let is_active = |j: usize| {
        let mean = sums[4 + j] / count;
        sums[4 + latent + j] / count - mean * mean > 0.01
    };
    let mut active_per_layer = Vec::with_capacity(dims.len());
    let mut off = 0;
    for &d in &dims {
        active_per_layer.push((off..off + d).filter(|&j| is_active(j)).count());
        off += d;
    }
    let result = Evaluation {
        images: n,
        neg_elbo: (sums[0] + sums[1]) / count,
        neg_log_likelihood: -sums[2] / count,
        k: a.k,
        active_units: active_per_layer.iter().sum(),
        latent,
        active_per_layer,
        iwae_seconds: sums[3] / collective.as_ref().map_or(1, |c| c.size()) as f64,
    };
    if is_writer(&collective) {
        let out = output(&run.dir, &a.out, "eval.json");
        let json = serde_json::to_string_pretty(&result).expect("serialises");
        write_atomic(&out, json.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(result)
}
