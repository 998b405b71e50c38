//! The run plan: everything a training session needs decided before it starts, made the
//! same way for `vae-train train` and for the Python package's `train` and `Trainer`: a new
//! run's recipe from the flags, or a resumed run's own recipe with the new session's
//! settings; the run directory (refusing to overwrite a run); the data, with a table's
//! stored standardisation; the recipe settled for that data.

use std::path::{Path, PathBuf};

use vae_data::Dataset;
use vae_model::checkpoint::{self, CheckpointError};

use crate::flags::{TrainArgs, rendered};
use crate::recipe::{RecipeError, RunConfig};
use crate::run::{self, RunDir, TRAIN_CONFIG_KEY};
use crate::session::Launch;

/// Why a run could not be planned; each caller reports it in its own terms (the command
/// line with flags, Python with its exception types and keywords).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The run directory to resume does not exist.
    #[error("run directory {} does not exist", .0.display())]
    NoRunDir(PathBuf),
    /// The run directory holds no training state: nothing to resume.
    #[error("{0}")]
    NothingToResume(String),
    /// The run directory holds a run that a new one must not overwrite.
    #[error("{0}")]
    RunDirTaken(String),
    /// Several ranks were given no run directory to agree on.
    #[error("give --run-dir when training on several ranks (they must agree on it)")]
    RunDirNeeded,
    /// A file or directory could not be created, read or removed (the I/O error is its
    /// source, which `{:#}` adds after a colon).
    #[error("{what}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The run's training state could not be read.
    #[error(transparent)]
    State(#[from] CheckpointError),
    /// The training state holds no recipe, or one that does not parse.
    #[error("{path}: {reason}")]
    BadRecipe {
        /// The training state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The settings do not hold together (named by their recipe fields).
    #[error("{0}")]
    Recipe(#[from] RecipeError),
}

impl PlanError {
    /// The error as the command line reports it: recipe settings spelt as flags.
    pub fn for_cli(self) -> anyhow::Error {
        match self {
            PlanError::Recipe(e) => rendered(e),
            e => e.into(),
        }
    }
}

/// How the caller runs the session, beyond its flags.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// This process's rank: rank 0 alone prepares the run directory.
    pub rank: usize,
    /// Whether several ranks train together (they must be given a run directory).
    pub ranks: bool,
    /// The data are kept in the run directory under this name (arrays given from Python)
    /// rather than where the flags say.
    pub data_in_run_dir: Option<&'static str>,
    /// The run directory of a new run whose flags name none.
    pub default_run_dir: fn() -> PathBuf,
}

impl Default for Setting {
    /// One process, the data where the flags say, `runs/<UTC time>`.
    fn default() -> Self {
        Setting {
            rank: 0,
            ranks: false,
            data_in_run_dir: None,
            default_run_dir: run::default_run_dir,
        }
    }
}

/// A session about to start: its recipe, its options, its directory and, when resuming,
/// the training state it continues from.
pub struct Plan {
    /// The run's recipe (settled for the data once [`Plan::settle`] has run).
    pub recipe: RunConfig,
    /// The session's options among the flags.
    pub launch: Launch,
    /// The run directory (created for a new run on rank 0).
    pub run_dir: PathBuf,
    /// The training state of a resumed run.
    pub state: Option<checkpoint::Loaded>,
}

impl Plan {
    /// Plans the run `args` describe (a new one, or `--resume`'s): the recipe, validated, and
    /// the run directory, prepared for a new run.
    pub fn prepare(args: &TrainArgs, setting: &Setting) -> Result<Plan, PlanError> {
        let launch = args.launch();
        let data_in = |dir: &Path| setting.data_in_run_dir.map(|f| absolute(dir).join(f));
        let (recipe, run_dir, state) = match &launch.resume {
            Some(dir) => {
                let (stored, state) = read_resume_state(dir)?;
                let mut requested = stored.clone();
                if args.source.data.is_none() {
                    requested.data.path = crate::data::locate(&stored.data.path);
                }
                args.apply(&mut requested);
                if let Some(path) = data_in(dir) {
                    requested.data.path = path;
                }
                requested.output.run_dir = Some(dir.clone());
                (stored.resumed(requested)?, dir.clone(), Some(state))
            }
            None => {
                let mut recipe = args.recipe();
                recipe.validate()?;
                let dir = match (&recipe.output.run_dir, setting.ranks) {
                    (Some(d), _) => d.clone(),
                    (None, false) => (setting.default_run_dir)(),
                    (None, true) => return Err(PlanError::RunDirNeeded),
                };
                if setting.rank == 0 {
                    prepare_run_dir(&dir, launch.overwrite)?;
                }
                if let Some(path) = data_in(&dir) {
                    recipe.data.path = path;
                }
                (recipe, dir, None)
            }
        };
        recipe.validate()?;
        Ok(Plan {
            recipe,
            launch,
            run_dir,
            state,
        })
    }

    /// Opens the data the recipe names (a table with the standardisation a resumed run
    /// stored).
    pub fn open_data(&self) -> anyhow::Result<Dataset> {
        let mut opts = self.recipe.open_options();
        opts.standardizer = match &self.state {
            Some(s) => crate::data::stored_table(&s.metadata, &s.path)?.map(|t| t.standardizer),
            None => None,
        };
        crate::data::open(&self.recipe.data.path, &opts)
    }

    /// Settles the recipe's data-dependent settings (likelihood, image shape, ...) for
    /// `data`.
    pub fn settle(&mut self, data: &Dataset) -> Result<(), PlanError> {
        Ok(self.recipe.settle_for(data)?)
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Creates the run directory, refusing to overwrite a finished or interrupted run. A run
/// that never wrote its first checkpoint is started afresh only with `overwrite`.
pub fn prepare_run_dir(dir: &Path, overwrite: bool) -> Result<(), PlanError> {
    let run = RunDir(dir);
    if run.holds_checkpoint() {
        return Err(PlanError::RunDirTaken(format!(
            "{} already holds a trained model; choose another --run-dir, or continue it with --resume {} \
             (nothing was overwritten{})",
            dir.display(),
            dir.display(),
            if overwrite {
                "; --overwrite never applies to a directory holding a checkpoint"
            } else {
                ""
            }
        )));
    }
    let leftovers = run.unfinished_files();
    if !leftovers.is_empty() {
        if !overwrite {
            return Err(PlanError::RunDirTaken(format!(
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
            )));
        }
        for f in &leftovers {
            std::fs::remove_file(f).map_err(|source| PlanError::Io {
                what: format!("removing {}", f.display()),
                source,
            })?;
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| PlanError::Io {
        what: format!("creating run directory {}", dir.display()),
        source,
    })
}

/// Reads a run's training state (once): its recipe, and the file for
/// [`vae_trainer::Trainer::restore`].
pub fn read_resume_state(dir: &Path) -> Result<(RunConfig, checkpoint::Loaded), PlanError> {
    if !dir.is_dir() {
        return Err(PlanError::NoRunDir(dir.to_path_buf()));
    }
    let path = RunDir(dir).state();
    if !path.is_file() {
        return Err(PlanError::NothingToResume(format!(
            "{} holds no {}: nothing to resume (the run never finished its first checkpoint); start it \
             again with `vae-train train --run-dir {} --overwrite` and its flags{}",
            dir.display(),
            run::STATE,
            dir.display(),
            if RunDir(dir).config().is_file() {
                format!(" (they are in {})", RunDir(dir).config().display())
            } else {
                String::new()
            }
        )));
    }
    let state = checkpoint::load_tensors(&path)?;
    if !state.verified {
        run::warn_unverified(&path);
    }
    let bad = |reason: String| PlanError::BadRecipe {
        path: path.clone(),
        reason,
    };
    let json = state
        .metadata
        .get(TRAIN_CONFIG_KEY)
        .ok_or_else(|| bad(format!("no '{TRAIN_CONFIG_KEY}' in the training state")))?;
    let stored = RunConfig::from_json(json).map_err(|e| bad(format!("invalid '{TRAIN_CONFIG_KEY}': {e:#}")))?;
    Ok((stored, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vae-plan-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn resume(dir: &Path) -> TrainArgs {
        TrainArgs {
            resume: Some(dir.to_path_buf()),
            ..TrainArgs::default()
        }
    }

    /// Each refusal is its own variant, so that Python can raise its exception by type.
    #[test]
    fn refusals_are_typed() {
        let s = Setting::default();
        let d = tmp("refusals");
        assert!(matches!(Plan::prepare(&resume(&d), &s), Err(PlanError::NoRunDir(p)) if p == d));
        std::fs::create_dir_all(&d).unwrap();
        let e = Plan::prepare(&resume(&d), &s).err().unwrap();
        assert!(matches!(e, PlanError::NothingToResume(_)), "{e}");
        std::fs::write(d.join(run::STATE), b"not safetensors").unwrap();
        let e = Plan::prepare(&resume(&d), &s).err().unwrap();
        assert!(matches!(e, PlanError::State(_)), "{e}");
        let new = TrainArgs {
            run_dir: Some(d.clone()),
            ..TrainArgs::default()
        };
        let e = Plan::prepare(&new, &s).err().unwrap();
        assert!(matches!(e, PlanError::RunDirTaken(_)), "{e}");
        let inside_a_file = TrainArgs {
            run_dir: Some(d.join(run::STATE).join("run")),
            ..TrainArgs::default()
        };
        let e = Plan::prepare(&inside_a_file, &s).err().unwrap();
        assert!(matches!(e, PlanError::Io { .. }), "{e}");
        let shown = format!("{:#}", e.for_cli());
        assert!(
            shown.starts_with("creating run directory") && shown.matches(": ").count() == 1,
            "{shown}"
        );
        let ranks = Setting { ranks: true, ..s };
        let e = Plan::prepare(&TrainArgs::default(), &ranks).err().unwrap();
        assert!(matches!(e, PlanError::RunDirNeeded), "{e}");
        let bad = TrainArgs {
            batch_size: Some(0),
            ..TrainArgs::default()
        };
        let e = Plan::prepare(&bad, &s).err().unwrap();
        assert!(matches!(&e, PlanError::Recipe(r) if r.field == "batch_size"), "{e}");
        assert!(e.for_cli().to_string().starts_with("--batch-size"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A new run's directory is created on rank 0 only, and arrays' data are kept in it.
    #[test]
    fn a_new_run_is_prepared_where_it_is_asked() {
        let d = tmp("new");
        let args = TrainArgs {
            run_dir: Some(d.clone()),
            ..TrainArgs::default()
        };
        let rank1 = Setting {
            rank: 1,
            ranks: true,
            ..Setting::default()
        };
        let plan = Plan::prepare(&args, &rank1).unwrap();
        assert_eq!(plan.run_dir, d);
        assert!(!d.exists(), "rank 1 left the directory to rank 0");
        let arrays = Setting {
            data_in_run_dir: Some("data.npz"),
            ..Setting::default()
        };
        let plan = Plan::prepare(&args, &arrays).unwrap();
        assert!(d.is_dir());
        assert!(plan.recipe.data.path.ends_with("data.npz") && plan.recipe.data.path.is_absolute());
        assert!(plan.state.is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
