//! `vae-train`: parses the command line and runs the command; errors go to stderr with a
//! non-zero exit status (130 after a Ctrl-C).

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::Parser;
use vae_train::cli::{Cli, Command};
use vae_train::report::{Progress, Verbosity};
use vae_train::train::{INTERRUPT, Interrupted, train};

/// The conventional status of a process stopped by SIGINT.
const INTERRUPTED_STATUS: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // First Ctrl-C: finish the batch, checkpoint, exit 130. Second: exit 130 at once.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPT.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now");
            std::process::exit(INTERRUPTED_STATUS.into());
        }
        eprintln!("\ninterrupt: finishing the current batch, then saving a checkpoint (Ctrl-C again to quit at once)");
    });
    let result = match cli.command {
        None => train(&cli.train, &mut Progress::new(Verbosity::Normal)).map(|_| ()),
        Some(Command::Train(args)) => train(&args, &mut Progress::new(Verbosity::Normal)).map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(INTERRUPTED_STATUS)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
