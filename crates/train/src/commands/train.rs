//! `vae-train train`: the recipe from the flags (or, with `--resume`, the run's own with the
//! new session's settings), the run directory, the data and the thread pool; then the
//! session (`crate::session`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use vae_model::checkpoint;

use crate::flags::{TrainArgs, rendered};
use crate::recipe::RunConfig;
use crate::report::Progress;
use crate::run;
use crate::run::TRAIN_CONFIG_KEY;
use crate::session::{self, Outcome, SharedCollective};
use crate::threads::{per_rank, with_threads};

/// Trains as `args` says (or resumes the run `args.resume` names), reporting through
/// `progress`.
pub fn train(args: &TrainArgs, progress: &mut Progress) -> Result<Outcome> {
    train_with(args, progress, None)
}

/// [`train`], data-parallel across the ranks of `collective` when one is given: every rank
/// trains the same model on its shard of each batch; rank 0 alone writes the run directory
/// and reports.
pub fn train_with(args: &TrainArgs, progress: &mut Progress, collective: Option<SharedCollective>) -> Result<Outcome> {
    let rank = collective.as_ref().map_or(0, |c| c.rank());
    let launch = args.launch();
    let (recipe, run_dir, state) = match &launch.resume {
        Some(dir) => {
            let (stored, state) = read_resume_state(dir)?;
            let mut requested = stored.clone();
            if args.source.data.is_none() {
                requested.data.path = crate::data::locate(&stored.data.path);
            }
            args.apply(&mut requested);
            requested.output.run_dir = Some(dir.clone());
            let recipe = stored.resumed(requested).map_err(rendered)?;
            (recipe, dir.clone(), Some(state))
        }
        None => {
            let mut recipe = args.recipe();
            if args.source.data.is_none() {
                recipe.data.path = crate::data::default_dir();
            }
            recipe.validate().map_err(rendered)?;
            let dir: PathBuf = match (&recipe.output.run_dir, &collective) {
                (Some(d), _) => d.clone(),
                (None, None) => run::default_run_dir(),
                (None, Some(_)) => bail!("give --run-dir when training on several ranks (they must agree on it)"),
            };
            if rank == 0 {
                prepare_run_dir(&dir, launch.overwrite)?;
            }
            (recipe, dir, None)
        }
    };
    let mut recipe = recipe;
    recipe.validate().map_err(rendered)?;
    let mut opts = recipe.open_options();
    opts.standardizer = match &state {
        Some(s) => crate::data::stored_table(&s.metadata, &s.path)?.map(|t| t.standardizer),
        None => None,
    };
    let data = crate::data::open(&recipe.data.path, &opts)?;
    recipe.settle_for(&data).map_err(rendered)?;
    let threads = per_rank(recipe.training.threads, collective.is_some());
    with_threads(threads, || {
        session::run(&recipe, &launch, &data, &run_dir, state, progress, collective)
    })?
}

/// Creates the run directory, refusing to overwrite a finished or interrupted run. A run
/// that never wrote its first checkpoint is started afresh only with `overwrite`.
pub fn prepare_run_dir(dir: &Path, overwrite: bool) -> Result<()> {
    if dir.join(run::MODEL).exists() || dir.join(run::STATE).exists() {
        bail!(
            "{} already holds a trained model; choose another --run-dir, or continue it with --resume {} \
             (nothing was overwritten{})",
            dir.display(),
            dir.display(),
            if overwrite {
                "; --overwrite never applies to a directory holding a checkpoint"
            } else {
                ""
            }
        );
    }
    let leftovers = run::unfinished_files(dir);
    if !leftovers.is_empty() {
        if !overwrite {
            bail!(
                "{} holds a run that never finished its first checkpoint ({}), so there is nothing to \
                 resume; start it again in place with `vae-train train --run-dir {} --overwrite` and your \
                 flags, or choose another --run-dir",
                dir.display(),
                leftovers
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                dir.display()
            );
        }
        for f in &leftovers {
            std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating run directory {}", dir.display()))
}

/// Reads a run's training state (once): its recipe, and the file for
/// [`vae_trainer::Trainer::restore`].
pub fn read_resume_state(dir: &Path) -> Result<(RunConfig, checkpoint::Loaded)> {
    ensure!(dir.is_dir(), "run directory {} does not exist", dir.display());
    let path = dir.join(run::STATE);
    ensure!(
        path.is_file(),
        "{} holds no {}: nothing to resume (the run never finished its first checkpoint); start it \
         again with `vae-train train --run-dir {} --overwrite` and its flags{}",
        dir.display(),
        run::STATE,
        dir.display(),
        if dir.join(run::CONFIG).is_file() {
            format!(" (they are in {})", dir.join(run::CONFIG).display())
        } else {
            String::new()
        }
    );
    let state = checkpoint::load_tensors(&path)?;
    if !state.verified {
        run::warn_unverified(&path);
    }
    let json = state
        .metadata
        .get(TRAIN_CONFIG_KEY)
        .with_context(|| format!("{}: no '{TRAIN_CONFIG_KEY}' in the training state", path.display()))?;
    let stored =
        RunConfig::from_json(json).with_context(|| format!("{}: invalid '{TRAIN_CONFIG_KEY}'", path.display()))?;
    Ok((stored, state))
}
