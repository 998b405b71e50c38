//! Command-line arguments (clap): the subcommands, and the training flags as a view of the
//! run recipe ([`crate::recipe`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use vae_trainer::Collective;

use crate::commands;
use crate::flags::defaults;
pub use crate::flags::{DataArgs, TrainArgs, flag};
use crate::recipe::RunConfig;
use crate::report::{Progress, Verbosity};
use crate::session::SharedCollective;

/// Train and explore variational autoencoders on MNIST, folders of images or NumPy arrays.
///
/// With no subcommand, `vae-train` trains (it takes the flags of `vae-train train`).
#[derive(Parser, Debug)]
#[command(name = "vae-train", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: train).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Training flags, when no subcommand is given.
    #[command(flatten)]
    pub train: TrainArgs,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
pub enum Command {
    /// Train a VAE (the default).
    Train(TrainArgs),
    /// An n x n grid of images decoded from the prior.
    Sample(commands::sample::SampleArgs),
    /// The first test images above their reconstructions.
    Reconstruct(commands::reconstruct::ReconstructArgs),
    /// Decodings along the path between the latent means of pairs of test images.
    Interpolate(commands::interpolate::InterpolateArgs),
    /// The 2-d latent manifold: decodings of a grid of normal quantiles.
    Manifold(commands::manifold::ManifoldArgs),
    /// Scatter plot of the test set's latent means by digit (SVG).
    Latents(commands::latents::LatentsArgs),
    /// Training curves from the metrics file (SVG).
    Plot(commands::plot::PlotArgs),
    /// Test negative ELBO, importance-sampled -log p(x), active units.
    Eval(commands::eval::EvalArgs),
    /// Per-image anomaly scores to CSV, and the AUROC for one digit.
    Score(commands::score::ScoreArgs),
    /// What the engine sees at a data path: source, image shape, splits, labels, memory.
    Inspect(commands::inspect::InspectArgs),
    /// The model as ONNX: encoder.onnx (x -> mean and log-variance of every stochastic layer)
    /// and decoder.onnx (top latent -> mean image).
    Export(commands::export::ExportArgs),
    /// Shell completions for vae-train, printed to stdout (e.g. `vae-train completions bash >
    /// ~/.local/share/bash-completion/completions/vae-train`).
    Completions(commands::completions::CompletionsArgs),
}

/// The command line's parser, with each recipe flag's default (from [`RunConfig::default`])
/// in its help (of `train` and of `inspect`'s data flags).
pub fn command() -> clap::Command {
    let show = |cmd: clap::Command| {
        let ids: Vec<String> = cmd.get_arguments().map(|a| a.get_id().to_string()).collect();
        defaults(&RunConfig::default())
            .into_iter()
            .filter_map(|(id, v)| v.map(|v| (id, v)))
            .filter(|(id, _)| ids.iter().any(|a| a == id))
            .fold(cmd, |cmd, (id, v)| {
                cmd.mut_arg(id, |a| {
                    let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                    a.help(format!("{help} [default: {v}]"))
                })
            })
    };
    let cli = show(Cli::command());
    cli.mut_subcommand("train", show).mut_subcommand("inspect", show)
}

/// Parses the process's arguments (with [`command`]'s help).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs `command` (training when `None`, with `train` as its flags); `collective` gives the
/// MPI ranks to share the work with, if any (training, `eval` and `score` use them).
pub fn run(command: Option<Command>, train: TrainArgs, collective: Option<SharedCollective>) -> Result<()> {
    let mut col = collective;
    let wrote = |path: PathBuf| println!("wrote {}", path.display());
    match command {
        None => commands::train::train_with(&train, &mut Progress::new(Verbosity::Normal), col).map(|_| ()),
        Some(Command::Train(a)) => {
            commands::train::train_with(&a, &mut Progress::new(Verbosity::Normal), col).map(|_| ())
        }
        Some(Command::Sample(a)) => commands::sample::sample(&a).map(wrote),
        Some(Command::Reconstruct(a)) => commands::reconstruct::reconstruct(&a).map(wrote),
        Some(Command::Interpolate(a)) => commands::interpolate::run(&a).map(wrote),
        Some(Command::Manifold(a)) => commands::manifold::manifold(&a).map(wrote),
        Some(Command::Latents(a)) => commands::latents::latents(&a).map(wrote),
        Some(Command::Plot(a)) => commands::plot::plot(&a).map(wrote),
        Some(Command::Inspect(a)) => commands::inspect::inspect(&a),
        Some(Command::Eval(a)) => commands::eval::main(&a, col.as_deref_mut().map(|c| c as &mut dyn Collective)),
        Some(Command::Score(a)) => commands::score::main(&a, col.as_deref_mut().map(|c| c as &mut dyn Collective)),
        Some(Command::Export(a)) => commands::export::export(&a).map(|paths| paths.into_iter().for_each(wrote)),
        Some(Command::Completions(a)) => {
            commands::completions::print(&a, self::command(), &mut std::io::stdout().lock())
        }
    }
}
