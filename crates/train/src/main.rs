//! `vae-train`: parses the command line and runs the command; errors go to stderr with a
//! non-zero exit status (130 after a Ctrl-C).

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Result;
use clap::Parser;
use vae_train::cli::{Cli, Command};
use vae_train::commands::{eval, interpolate, latents, manifold, plot, reconstruct, sample, score};
use vae_train::report::{Progress, Verbosity};
use vae_train::train::{INTERRUPT, Interrupted, SharedCollective, train_with};
use vae_trainer::Collective;

/// The conventional status of a process stopped by SIGINT.
const INTERRUPTED_STATUS: u8 = 130;

fn main() -> ExitCode {
    // Subnormal floats flushed to zero on this thread too (the pool's workers set it as they
    // start): they cost a slow microcode path on Intel cores and change no reported figure.
    vae_linalg::fpenv::flush_denormals();
    let cli = Cli::parse();
    #[cfg(feature = "mpi")]
    let mpi = match vae_train::mpi::Mpi::from_launcher() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    #[cfg(feature = "mpi")]
    let collective = || mpi.as_ref().map(|m| Box::new(m.collective()) as SharedCollective);
    #[cfg(not(feature = "mpi"))]
    let collective = || None;
    // First Ctrl-C: finish the batch, checkpoint, exit 130. Second: exit 130 at once.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPT.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now");
            std::process::exit(INTERRUPTED_STATUS.into());
        }
        eprintln!("\ninterrupt: finishing the current batch, then saving a checkpoint (Ctrl-C again to quit at once)");
    });
    let result = run(cli, collective);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(INTERRUPTED_STATUS)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            // The other ranks may be waiting for this one in a collective: end them all.
            #[cfg(feature = "mpi")]
            if let Some(m) = &mpi {
                m.abort(1);
            }
            ExitCode::FAILURE
        }
    }
}

fn wrote(path: std::path::PathBuf) {
    println!("wrote {}", path.display());
}

/// Runs the command; `collective` gives the MPI ranks to share the work with, if any.
fn run(cli: Cli, collective: impl Fn() -> Option<SharedCollective>) -> Result<()> {
    // A VAE_SIMD the CPU cannot honour is refused here, not silently ignored.
    vae_linalg::simd::level_from_env().map_err(anyhow::Error::msg)?;
    let evaluating = matches!(cli.command, Some(Command::Eval(_) | Command::Score(_)));
    // Under mpirun, training and the evaluation commands share the work among the ranks.
    let mut col = if cli.command.is_none() || matches!(cli.command, Some(Command::Train(_))) || evaluating {
        collective()
    } else {
        None
    };
    let writer = col.as_ref().is_none_or(|c| c.rank() == 0);
    match cli.command {
        None => train_with(&cli.train, &mut Progress::new(Verbosity::Normal), col).map(|_| ()),
        Some(Command::Train(a)) => train_with(&a, &mut Progress::new(Verbosity::Normal), col).map(|_| ()),
        Some(Command::Sample(a)) => sample::sample(&a).map(wrote),
        Some(Command::Reconstruct(a)) => reconstruct::reconstruct(&a).map(wrote),
        Some(Command::Interpolate(a)) => interpolate::run(&a).map(wrote),
        Some(Command::Manifold(a)) => manifold::manifold(&a).map(wrote),
        Some(Command::Latents(a)) => latents::latents(&a).map(wrote),
        Some(Command::Plot(a)) => plot::plot(&a).map(wrote),
        Some(Command::Eval(a)) => eval::eval_with(&a, col.as_deref_mut().map(|c| c as &mut dyn Collective)).map(|e| {
            if !writer {
                return;
            }
            let per_layer = match e.active_per_layer.as_slice() {
                [_] => String::new(),
                l => format!(" ({} by layer, z1 first)", l.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" + ")),
            };
            println!(
                "{} test images: -ELBO {:.2} nats, -log p(x) ~ {:.2} nats (IWAE, k = {}, {:.1} s), {} of {} latent units active{per_layer}",
                e.images, e.neg_elbo, e.neg_log_likelihood, e.k, e.iwae_seconds, e.active_units, e.latent
            );
        }),
        Some(Command::Score(a)) => score::score_with(&a, col.as_deref_mut().map(|c| c as &mut dyn Collective)).map(|s| {
            if !writer {
                return;
            }
            println!("wrote {} ({} scores)", s.path.display(), s.scores.len());
            if let (Some(auc), Some(d)) = (s.auroc, a.anomaly_digit) {
                println!("AUROC for detecting digit {d} as an anomaly: {auc:.4}");
            }
        }),
    }
}
