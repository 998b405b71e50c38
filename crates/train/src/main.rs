//! `vae-train`: parses the command line and dispatches to the command; errors go to stderr
//! with a non-zero exit status (128 + the signal's number after a stop by SIGINT, SIGTERM or
//! SIGHUP: 130, 143, 129).

use std::process::ExitCode;

use vae_train::cli::{self, Command};
use vae_train::session::{Interrupted, SharedCollective};

/// Large blocks (the tape's values, the images) on cache lines: see `CacheAligned`.
#[global_allocator]
static ALLOC: vae_linalg::CacheAligned = vae_linalg::CacheAligned;

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
    // Training stops cleanly on SIGINT, SIGTERM or SIGHUP (finish the batch, checkpoint,
    // exit 128 + the signal); a second signal exits at once. Other commands have nothing to
    // save and keep the default dispositions.
    if matches!(cli.command, None | Some(Command::Train(_)))
        && let Err(e) = vae_train::signals::install()
    {
        eprintln!("warning: signals will stop training without a checkpoint: {e}");
    }
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
            cli::run(cli.command, cli.train, collective)
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Interrupted>() => {
            // One write of the whole line: under mpirun every rank prints it to the same
            // pipe, and a line written in pieces interleaves with the others' (seen in the
            // MPI tests).
            let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{e}\n").as_bytes());
            let signal = e.downcast_ref::<Interrupted>().map(|i| i.signal);
            ExitCode::from(signal.map_or(1, |s| s.exit_status()))
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
