//! `vae-train`: parses the command line and dispatches to the command; errors go to stderr
//! with a non-zero exit status (130 after a Ctrl-C).

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use vae_train::cli::{self, Command};
use vae_train::session::{INTERRUPT, Interrupted, SharedCollective};

/// The conventional status of a process stopped by SIGINT.
const INTERRUPTED_STATUS: u8 = 130;

fn main() -> ExitCode {
    // Subnormal floats flushed to zero on this thread too (the pool's workers set it as they
    // start): they cost a slow microcode path on Intel cores and change no reported figure.
    vae_linalg::fpenv::flush_denormals();
    let cli = cli::parse();
    #[cfg(feature = "mpi")]
    let mpi = match vae_train::mpi::Mpi::from_launcher() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // First Ctrl-C: finish the batch, checkpoint, exit 130. Second: exit 130 at once.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPT.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now");
            std::process::exit(INTERRUPTED_STATUS.into());
        }
        eprintln!("\ninterrupt: finishing the current batch, then saving a checkpoint (Ctrl-C again to quit at once)");
    });
    // A VAE_SIMD the CPU cannot honour is refused here, not silently ignored.
    let result = vae_linalg::simd::level_from_env()
        .map_err(anyhow::Error::msg)
        .and_then(|_| {
            // Under mpirun, training and the evaluation commands share the work among the ranks.
            let shares = matches!(
                cli.command,
                None | Some(Command::Train(_) | Command::Eval(_) | Command::Score(_))
            );
            #[cfg(feature = "mpi")]
            let collective = mpi
                .as_ref()
                .filter(|_| shares)
                .map(|m| Box::new(m.collective()) as SharedCollective);
            #[cfg(not(feature = "mpi"))]
            let collective: Option<SharedCollective> = {
                let _ = shares;
                None
            };
            vae_train::commands::run(cli.command, cli.train, collective)
        });
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
