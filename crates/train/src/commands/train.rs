//! `vae-train train`: the run plan (`crate::plan`) from the flags, the data and the thread
//! pool; then the session (`crate::session`).

use anyhow::Result;

use crate::flags::TrainArgs;
use crate::plan::{Plan, PlanError, Setting};
use crate::report::Progress;
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
    let setting = Setting {
        rank: collective.as_ref().map_or(0, |c| c.rank()),
        ranks: collective.is_some(),
        ..Setting::default()
    };
    let mut plan = Plan::prepare(args, &setting).map_err(PlanError::for_cli)?;
    let data = plan.open_data()?;
    plan.settle(&data).map_err(PlanError::for_cli)?;
    let Plan {
        recipe,
        launch,
        run_dir,
        state,
    } = plan;
    let threads = per_rank(recipe.training.threads, collective.is_some());
    with_threads(threads, || {
        session::run(&recipe, &launch, &data, &run_dir, state, progress, collective)
    })?
}
