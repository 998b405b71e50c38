//! `vae-train`: parses the command line and runs the command; errors go to stderr with a
//! non-zero exit status.

use clap::Parser;
use vae_train::cli::{Cli, Command};
use vae_train::report::{Progress, Verbosity};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => vae_train::train::train(&cli.train, &mut Progress::new(Verbosity::Normal)).map(|_| ()),
        Some(Command::Train(args)) => vae_train::train::train(&args, &mut Progress::new(Verbosity::Normal)).map(|_| ()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
