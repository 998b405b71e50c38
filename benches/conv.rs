//! Every convolution and transposed convolution of the two conv models the project is
//! measured by, alone, at batch 128, on 1 thread and on every thread:
//! - `keras-conv`: the Keras example (`--arch conv:32k3s2,64k3s2` on 28x28 grey images);
//! - `conv64`: PyTorch-VAE's VanillaVAE trunk (`--arch conv:32k3s2,64k3s2,128k3s2,256k3s2,
//!   512k3s2` on 64x64 colour images).
//!
//! For each layer: GFLOP/s of the forward (bias and LeakyReLU fused), of the backward by the
//! input and of the backward by the weights, each with 2 flops per nominal multiply-add
//! (weight elements times window positions: the output's pixels for a convolution, the
//! input's for a transposed one, as `benches/epoch.rs` counts), and that as a fraction of
//! the FMA peak measured in the same process on as many threads (`simd::fma_peak` at the
//! level in force; `VAE_SIMD` forces one). Each figure is the median of timed runs inside a
//! team (`team::with_team`), as a training step runs them (`-- --best`: the fastest run). Run: `cargo bench --bench conv`
//! (`cargo bench --bench conv -- conv64/dec2` for the layers whose `model/layer` contains the
//! argument, `-- --threads=1` at one thread count alone, `-- --batch=32` at another batch).

use std::time::Instant;

use vae::autograd::ConvGeometry;
use vae::data::ImageShape;
use vae::linalg::simd::{self, Accum, Unary};
use vae::linalg::{fpenv, team};
use vae::model::{Arch, ConvPlan};

/// Large blocks on cache lines, as `vae-train` allocates them.
#[global_allocator]
static ALLOC: vae::linalg::CacheAligned = vae::linalg::CacheAligned;

/// Images per pass unless `--batch=N` says otherwise.
const BATCH: usize = 128;

/// (model, layer name, geometry) of every layer of both models.
fn layers() -> Vec<(&'static str, String, ConvGeometry)> {
    let mut out = Vec::new();
    for (model, shape, arch) in [
        ("keras-conv", ImageShape::grey(28, 28), "conv:32k3s2,64k3s2"),
        (
            "conv64",
            ImageShape {
                height: 64,
                width: 64,
                channels: 3,
            },
            "conv:32k3s2,64k3s2,128k3s2,256k3s2,512k3s2",
        ),
    ] {
        let Ok(Arch::Conv { layers }) = arch.parse::<Arch>() else {
            unreachable!("a conv arch")
        };
        let plan = ConvPlan::new(shape, &layers).expect("the models' shapes fit");
        for (i, g) in plan.encoder_convs().iter().enumerate() {
            out.push((model, format!("enc{i}"), *g));
        }
        for (i, g) in plan.decoder_convs().iter().enumerate() {
            out.push((model, format!("dec{i}"), *g));
        }
        out.push((model, "out".into(), *plan.output_conv()));
    }
    out
}

/// Flops of one pass over `batch` images.
fn flops(g: &ConvGeometry, batch: usize) -> f64 {
    let [a, b, kh, kw] = g.weight_shape();
    let (oh, ow) = g.out_size().unwrap();
    let positions = if g.transposed {
        g.in_size.0 * g.in_size.1
    } else {
        oh * ow
    };
    2.0 * (a * b * kh * kw * positions * batch) as f64
}

/// Seconds of `f`, run until about 0.25 s have passed (at least 5 times): the median, or
/// with `best` the fastest run (on a shared host, what the code does when left alone).
fn time(best: bool, mut f: impl FnMut()) -> f64 {
    f();
    let mut t = Vec::new();
    let start = Instant::now();
    while t.len() < 5 || (start.elapsed().as_secs_f64() < 0.25 && t.len() < 200) {
        let s = Instant::now();
        f();
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    if best { t[0] } else { t[t.len() / 2] }
}

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| ((i as f32) * 0.37 + seed).sin() * 0.1).collect()
}

fn main() {
    let level = simd::level();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // `--threads=N` measures at N threads alone.
    let forced = std::env::args().find_map(|a| a.strip_prefix("--threads=").and_then(|n| n.parse().ok()));
    let counts = match forced {
        Some(n) => vec![n],
        None if cpus > 1 => vec![1, cpus],
        None => vec![1],
    };
    let batch = std::env::args()
        .find_map(|a| a.strip_prefix("--batch=").and_then(|n| n.parse().ok()))
        .unwrap_or(BATCH);
    let best = std::env::args().any(|a| a == "--best");
    println!(
        "conv layers at batch {batch}, SIMD level {level}, {} of timed runs",
        if best { "fastest" } else { "median" }
    );
    println!(
        "{:<11} {:<5} {:<26} {:>2} {:>16} {:>16} {:>16}",
        "model", "layer", "shape", "t", "forward", "back by input", "back by weights"
    );
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for &threads in &counts {
        let pool = fpenv::thread_pool(Some(threads)).unwrap();
        let peak: f64 = pool.broadcast(|_| simd::fma_peak(level, 5)).iter().sum();
        println!("FMA peak on {threads} thread(s) at {level}: {peak:.0} GFLOP/s");
        for (model, name, g) in layers() {
            if only
                .as_ref()
                .is_some_and(|o| !format!("{model}/{name}").contains(o.as_str()))
            {
                continue;
            }
            let (wr, wc) = g.weight_dim();
            let x = values(batch * g.input_len(), 0.1);
            let w = values(wr * wc, 0.2);
            let b = values(g.out_channels, 0.3);
            let gy = values(batch * g.output_len(), 0.4);
            let mut y = vec![0f32; gy.len()];
            let mut gx = vec![0f32; x.len()];
            let mut gw = vec![0f32; w.len()];
            let act = Some(Unary::LeakyRelu(0.01));
            let secs = pool.install(|| {
                team::with_team(|| {
                    [
                        time(best, || g.forward_nhwc(&x, &w, &b, act, &mut y)),
                        time(best, || g.input_grad_nhwc(&gy, &w, &mut gx, Accum::Overwrite)),
                        time(best, || g.weight_grad_nhwc(&x, &gy, &mut gw, Accum::Overwrite)),
                    ]
                })
            });
            let f = flops(&g, batch);
            let (oh, ow) = g.out_size().unwrap();
            let shape = format!(
                "{}{}x{}x{}->{}x{}x{}",
                if g.transposed { "T " } else { "" },
                g.in_channels,
                g.in_size.0,
                g.in_size.1,
                g.out_channels,
                oh,
                ow
            );
            let cell = |s: f64| format!("{:.0} ({:.0}%)", f / s / 1e9, 100.0 * f / s / 1e9 / peak);
            println!(
                "{model:<11} {name:<5} {shape:<26} {threads:>2} {:>16} {:>16} {:>16}",
                cell(secs[0]),
                cell(secs[1]),
                cell(secs[2])
            );
        }
    }
}
