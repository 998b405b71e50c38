//! Training from Python: `vae.train` (a whole session, `vae_train::session`, as `vae-train
//! train` runs it) and `vae.Trainer` (batch by batch and epoch by epoch). Both build the run
//! as the command line does: its recipe from the same flags, its run directory with the same
//! rules, its data opened by the same code, or, from arrays, checked by the `.npy` reader's
//! rules and kept in the run directory as `data.npz`, so that every `vae-train` command
//! reads the run.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};
use vae_data::arrays::split_off;
use vae_data::atomic::write_atomic;
use vae_data::npy::{NpyArray, write_npz};
use vae_data::{Dataset, Source, Split};
use vae_model::checkpoint::{self, CheckpointError};
use vae_model::{LossSums, Vae};
use vae_train::observers::{Observer, OnEpoch};
use vae_train::plan::{self as run_plan, PlanError, Setting};
use vae_train::recipe::RunConfig;
use vae_train::report::{Progress, Verbosity};
use vae_train::run::{self, EpochMetrics, RunDir};
use vae_train::session::{self, Launch};
use vae_train::signals::Signal;
use vae_trainer::{Control, EpochEnd};

use crate::arrays::{self, as_npy, labels_npy, value_error};
use crate::errors::{guarded, os_error, to_py};
use crate::fpenv::KeepMode;
use crate::model::{Model, metrics_dict};
use crate::options::{recipe_error, train_args};
use crate::signals;

pyo3::create_exception!(
    _vae,
    Interrupted,
    PyKeyboardInterrupt,
    "Training stopped by SIGINT (Ctrl-C), SIGTERM or SIGHUP after saving a checkpoint: a KeyboardInterrupt whose run_dir and signal attributes say where it is and why."
);

/// The file a run trained on arrays keeps them in.
pub const DATA_FILE: &str = "data.npz";

/// The arrays given to train on.
struct Arrays {
    train: Split,
    train_dims: Vec<usize>,
    test: Option<(Split, Vec<usize>)>,
}

impl Arrays {
    /// Checks and copies the arrays (under the GIL, before anything is written).
    fn read(
        x_train: &Bound<'_, PyAny>,
        x_test: Option<&Bound<'_, PyAny>>,
        y_train: Option<&Bound<'_, PyAny>>,
        y_test: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let train = arrays::split("x_train", x_train, y_train.map(|y| ("y_train", y)))?;
        let train_dims = arrays::dims(x_train)?;
        let test = match x_test {
            None => {
                if y_test.is_some() {
                    return Err(value_error("y_test: given without x_test"));
                }
                None
            }
            Some(x) => {
                let test = arrays::split("x_test", x, y_test.map(|y| ("y_test", y)))?;
                if test.shape != train.shape {
                    return Err(value_error(format!(
                        "x_test: 'x_train' holds {} images but 'x_test' holds {}",
                        train.shape, test.shape
                    )));
                }
                if train.labels.is_some() != test.labels.is_some() {
                    return Err(value_error(
                        "y_train: labels for one split only: give both 'y_train' and 'y_test' or neither",
                    ));
                }
                Some((test, arrays::dims(x)?))
            }
        };
        Ok(Arrays {
            train,
            train_dims,
            test,
        })
    }

    /// Writes the arrays to `path` (an `.npz` that `vae-train` reads back to the same values)
    /// and makes the dataset, the test share split off as `vae-train` splits an archive
    /// without test arrays.
    fn dataset(self, recipe: &RunConfig, path: &Path) -> PyResult<Dataset> {
        let mut entries: Vec<(&str, NpyArray)> = vec![("x_train", as_npy(&self.train, &self.train_dims))];
        if let Some(l) = &self.train.labels {
            entries.push(("y_train", labels_npy(l)));
        }
        if let Some((test, dims)) = &self.test {
            entries.push(("x_test", as_npy(test, dims)));
            if let Some(l) = &test.labels {
                entries.push(("y_test", labels_npy(l)));
            }
        }
        let named: Vec<(&str, &NpyArray)> = entries.iter().map(|(k, a)| (*k, a)).collect();
        write_npz(path, &named, false).map_err(|e| to_py(e.into()))?;
        drop(entries);
        let (train, test) = match self.test {
            Some((test, _)) => (self.train, test),
            None => {
                let name = Path::new("x_train");
                let holdout = recipe.open_options().folder;
                let (train, test) = split_off(name, self.train.images, self.train.labels, self.train.shape, &holdout)
                    .map_err(value_error)?;
                if test.is_empty() {
                    return Err(value_error(
                        "x_train: no test rows: set aside a share with a test fraction above 0",
                    ));
                }
                (train, test)
            }
        };
        Ok(Dataset {
            train,
            test,
            source: Source::Npz(path.to_path_buf()),
            classes: None,
            table: None,
        })
    }
}

/// A run ready to train: its recipe, session options, directory, state to resume and data.
struct Plan {
    recipe: RunConfig,
    launch: Launch,
    run_dir: PathBuf,
    state: Option<checkpoint::Loaded>,
    data: Dataset,
}

/// `runs/<UTC time>`, as the command line names a run, with `-2`, `-3`, ... if it exists
/// (two runs can start within a second from Python).
fn fresh_run_dir() -> PathBuf {
    let base = run::default_run_dir();
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = PathBuf::from(format!("{}-{n}", base.display()));
    }
    dir
}

/// The Python exception of a planning error: a missing run or state `FileNotFoundError`, a
/// run in the way `FileExistsError`, file errors `OSError` by their kind, settings
/// `ValueError` with keyword names.
fn plan_error(e: PlanError) -> PyErr {
    if let PlanError::Recipe(e) = e {
        return recipe_error(e);
    }
    // The error and its causes, as the command line prints them.
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message = format!("{message}: {c}");
        cause = c.source();
    }
    let message = crate::errors::pythonic(&message);
    match e {
        PlanError::NoRunDir(_) | PlanError::NothingToResume(_) => PyFileNotFoundError::new_err(message),
        PlanError::RunDirTaken(_) => PyFileExistsError::new_err(message),
        PlanError::Io { source, .. } | PlanError::State(CheckpointError::Io { source, .. }) => {
            os_error(source.kind(), message)
        }
        PlanError::State(_) => PyOSError::new_err(message),
        PlanError::RunDirNeeded | PlanError::BadRecipe { .. } | PlanError::Recipe(_) => PyValueError::new_err(message),
    }
}

/// Makes the run as `vae-train train` would with these flags (`words`), from the arrays if
/// any are given (kept in the run directory as [`DATA_FILE`]).
fn plan(words: &[String], arrays: Option<Arrays>) -> PyResult<Plan> {
    let args = train_args(words)?;
    if arrays.is_some() && args.source.data.is_some() {
        return Err(PyTypeError::new_err(
            "give the training data as arrays (x_train, ...) or as a path (data=...), not both",
        ));
    }
    let setting = Setting {
        data_in_run_dir: arrays.is_some().then_some(DATA_FILE),
        default_run_dir: fresh_run_dir,
        ..Setting::default()
    };
    let mut plan = run_plan::Plan::prepare(&args, &setting).map_err(plan_error)?;
    let data = match arrays {
        Some(a) => a.dataset(&plan.recipe, &plan.recipe.data.path)?,
        None => plan.open_data().map_err(to_py)?,
    };
    plan.settle(&data).map_err(plan_error)?;
    Ok(Plan {
        recipe: plan.recipe,
        launch: plan.launch,
        run_dir: plan.run_dir,
        state: plan.state,
        data,
    })
}

/// The exception of a session stopped by a signal (after its checkpoint): the interpreter's
/// own handler runs first (Python's SIGINT handler raises KeyboardInterrupt, which becomes
/// [`Interrupted`]); a signal whose disposition was the default one ends the process as it
/// would have, now that the checkpoint is saved.
fn interrupted(py: Python<'_>, i: &session::Interrupted) -> PyErr {
    let dir = i.run_dir.display();
    let message = format!(
        "interrupted ({}): checkpoint saved in {dir}; continue with vae.train(..., resume={:?}) or `vae-train train --resume {dir}`",
        i.signal.name(),
        i.run_dir.display().to_string()
    );
    match py.check_signals() {
        Err(e) if !e.is_instance_of::<PyKeyboardInterrupt>(py) => return e,
        Err(_) => {}
        Ok(()) => {
            if signals::was_default(i.signal) {
                signals::raise_default(i.signal);
            }
        }
    }
    let e = Interrupted::new_err(message);
    let v = e.value(py);
    let _ = v.setattr("run_dir", i.run_dir.clone());
    let _ = v.setattr("signal", i.signal.name());
    e
}

/// The engine's error or interruption as a Python exception.
fn session_error(py: Python<'_>, e: anyhow::Error) -> PyErr {
    match e.downcast_ref::<session::Interrupted>() {
        Some(i) => interrupted(py, i),
        None => to_py(e),
    }
}

/// `vae.train`: the flags as command-line words, the arrays if any.
#[pyfunction]
#[pyo3(signature = (words, x_train=None, x_test=None, y_train=None, y_test=None, on_epoch=None, verbose=false))]
#[allow(clippy::too_many_arguments, reason = "the keywords of vae.train")]
pub fn train(
    py: Python<'_>,
    words: Vec<String>,
    x_train: Option<&Bound<'_, PyAny>>,
    x_test: Option<&Bound<'_, PyAny>>,
    y_train: Option<&Bound<'_, PyAny>>,
    y_test: Option<&Bound<'_, PyAny>>,
    on_epoch: Option<Py<PyAny>>,
    verbose: bool,
) -> PyResult<Model> {
    guarded(|| {
        let arrays = match x_train {
            Some(x) => Some(Arrays::read(x, x_test, y_train, y_test)?),
            None if x_test.is_some() || y_train.is_some() || y_test.is_some() => {
                return Err(PyTypeError::new_err("x_test, y_train and y_test need x_train"));
            }
            None => None,
        };
        let _mode = KeepMode::new();
        let Plan {
            recipe,
            launch,
            run_dir,
            state,
            data,
        } = plan(&words, arrays)?;
        let threads = recipe.training.threads;
        let mut progress = Progress::new(if verbose { Verbosity::Normal } else { Verbosity::Quiet });
        let handlers = signals::install();
        // A Ctrl-C that came before the handlers were in place is pending in the interpreter:
        // raised now, before training starts (any later one reaches the session).
        py.check_signals()?;
        let result = py.detach(|| {
            let _mode = KeepMode::new();
            let hook = |m: &EpochMetrics, images: usize| -> anyhow::Result<Control> {
                let Some(f) = &on_epoch else {
                    return Ok(Control::Continue);
                };
                Python::attach(|py| -> PyResult<Control> {
                    let d = metrics_dict(py, m)?;
                    d.set_item("images", images)?;
                    d.set_item("img_per_s", images as f64 / m.train_seconds.max(1e-9))?;
                    let r = f.call1(py, (d,))?;
                    Ok(if r.bind(py).is(PyBool::new(py, false)) {
                        Control::Stop
                    } else {
                        Control::Continue
                    })
                })
                .map_err(anyhow::Error::new)
            };
            vae_train::threads::with_threads(threads, || {
                let more: Vec<Box<dyn Observer + '_>> = vec![Box::new(OnEpoch(hook))];
                session::run_observed(&recipe, &launch, &data, &run_dir, state, &mut progress, None, more)
            })
            .and_then(|r| r)
        });
        drop(handlers);
        match result {
            Ok(outcome) => Ok(Model::load(&outcome.run_dir, threads)?.with_metrics(outcome.metrics)),
            Err(e) => Err(session_error(py, e)),
        }
    })
}

/// The splits a trainer borrows: the data, and the training split without an excluded
/// label and the binarized test split, where the recipe asks for them.
struct Splits {
    dataset: Dataset,
    train: Option<Split>,
    test: Option<Split>,
}

impl Splits {
    fn train(&self) -> &Split {
        self.train.as_ref().unwrap_or(&self.dataset.train)
    }

    fn test(&self) -> &Split {
        self.test.as_ref().unwrap_or(&self.dataset.test)
    }
}

self_cell::self_cell!(
    struct Live {
        owner: Splits,
        #[not_covariant]
        dependent: EngineTrainer,
    }
);

type EngineTrainer<'d> = vae_trainer::Trainer<'d>;

struct TrainerState {
    live: Live,
    pool: rayon::ThreadPool,
    recipe: RunConfig,
    run_dir: PathBuf,
    /// The checkpoints' metadata (the recipe, a table's standardisation).
    extra: HashMap<String, String>,
}

// SAFETY: the engine's trainer is not `Send` only because it may hold a collective (MPI
// ranks), which the bindings never give it; its model, optimizer, batches and metrics are
// plain data (the model is `Send`, as the command line's thread pools require). It is used
// by one thread at a time, behind the `Mutex` of `Trainer`.
unsafe impl Send for Live {}

/// `vae.Trainer`: a run trained batch by batch or epoch by epoch.
#[pyclass(module = "vae._vae", name = "Trainer", frozen)]
pub struct Trainer {
    state: Mutex<TrainerState>,
}

impl Trainer {
    fn lock(&self) -> std::sync::MutexGuard<'_, TrainerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the trainer (with its test split, run directory and checkpoint metadata)
    /// in its pool, without the GIL. The lock is taken and given back without the GIL, so
    /// that a thread waiting for it with the GIL never blocks the one that holds it.
    fn run<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut EngineTrainer<'_>, &Split, &Path, &HashMap<String, String>) -> R + Send,
    ) -> R {
        py.detach(|| {
            let _mode = KeepMode::new();
            let mut state = self.lock();
            let TrainerState {
                live,
                pool,
                run_dir,
                extra,
                ..
            } = &mut *state;
            pool.install(|| live.with_dependent_mut(|owner, trainer| f(trainer, owner.test(), run_dir, extra)))
        })
    }
}

/// Writes the checkpoint (training state and model) and the metrics file, as a session does.
fn save(trainer: &EngineTrainer<'_>, dir: &Path, extra: &HashMap<String, String>) -> anyhow::Result<()> {
    trainer.checkpoint(dir, extra)?;
    RunDir(dir).write_metrics(trainer.metrics())
}

fn sums_dict<'py>(py: Python<'py>, s: &LossSums) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let n = s.images.max(1) as f64;
    d.set_item("images", s.images)?;
    d.set_item("neg_elbo", s.neg_elbo())?;
    d.set_item("recon", s.recon / n)?;
    d.set_item("kl", s.kl / n)?;
    d.set_item("objective", s.objective / n)?;
    Ok(d)
}

/// A copy of the trainer's current model.
fn copy_model(vae: &Vae<f32>) -> Vae<f32> {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut copy = Vae::<f32>::new(vae.config().clone(), &mut rng).expect("the trained configuration is valid");
    for (&from, &to) in vae.params().iter().zip(copy.params().to_vec().iter()) {
        copy.tape_mut().param_mut(to).assign(vae.tape().value(from));
    }
    copy
}

#[pymethods]
impl Trainer {
    /// `vae.Trainer`: the flags as command-line words, the arrays if any.
    #[new]
    #[pyo3(signature = (words, x_train=None, x_test=None, y_train=None, y_test=None))]
    fn new(
        words: Vec<String>,
        x_train: Option<&Bound<'_, PyAny>>,
        x_test: Option<&Bound<'_, PyAny>>,
        y_train: Option<&Bound<'_, PyAny>>,
        y_test: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        guarded(|| {
            let arrays = match x_train {
                Some(x) => Some(Arrays::read(x, x_test, y_train, y_test)?),
                None if x_test.is_some() || y_train.is_some() || y_test.is_some() => {
                    return Err(PyTypeError::new_err("x_test, y_train and y_test need x_train"));
                }
                None => None,
            };
            let _mode = KeepMode::new();
            let Plan {
                recipe,
                launch,
                run_dir,
                state,
                data,
            } = plan(&words, arrays)?;
            if launch.time_budget.is_some() {
                return Err(PyTypeError::new_err(
                    "time_budget applies to vae.train; a Trainer runs as long as you call it",
                ));
            }
            let train = match vae_train::data::training_split(&recipe, &data).map_err(crate::errors::to_py)? {
                Cow::Owned(s) => Some(s),
                Cow::Borrowed(_) => None,
            };
            let test = match vae_train::data::test_split(&recipe, &data) {
                Cow::Owned(s) => Some(s),
                Cow::Borrowed(_) => None,
            };
            let splits = Splits {
                dataset: data,
                train,
                test,
            };
            let (model_config, train_config) = (recipe.model_config(splits.train().shape), recipe.train_config());
            let mut failure = None;
            let live = Live::new(splits, |s| {
                match vae_trainer::Trainer::new(model_config, train_config.clone(), s.train()) {
                    Ok(t) => t,
                    Err(e) => {
                        failure = Some(e);
                        // A placeholder that is dropped at once (the configuration was refused).
                        vae_trainer::Trainer::new(
                            vae_model::VaeConfig::reference(),
                            vae_trainer::TrainConfig::default(),
                            &s.dataset.train,
                        )
                        .expect("the reference configuration is valid")
                    }
                }
            });
            if let Some(e) = failure {
                return Err(recipe_error(e.into()));
            }
            let mut live = live;
            if let Some(state) = &state {
                live.with_dependent_mut(|_, t| t.restore(state))
                    .map_err(|e| to_py(e.into()))?;
            }
            let config_path = run_dir.join(run::CONFIG);
            write_atomic(&config_path, recipe.to_json().as_bytes())
                .map_err(|e| os_error(e.kind(), format!("writing {}: {e}", config_path.display())))?;
            let extra = session::checkpoint_metadata(&recipe, &live.borrow_owner().dataset);
            let pool = vae_linalg::fpenv::thread_pool(recipe.training.threads)
                .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("starting the thread pool: {e}")))?;
            Ok(Trainer {
                state: Mutex::new(TrainerState {
                    live,
                    pool,
                    recipe,
                    run_dir,
                    extra,
                }),
            })
        })
    }

    /// Trains on the next batch: its figures per image (`images`, `neg_elbo`, `recon`, `kl`,
    /// `objective`), or None when the epoch has no batch left (then call `end_epoch`).
    fn step<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        guarded(|| {
            let sums = self.run(py, |t, _, _, _| t.step());
            match sums {
                Ok(Some(s)) => Ok(Some(sums_dict(py, &s)?)),
                Ok(None) => Ok(None),
                Err(d) => Err(to_py(anyhow::Error::new(d).context("training diverged"))),
            }
        })
    }

    /// Closes a complete epoch: evaluates on the test split, records the metrics, writes
    /// the checkpoint and `metrics.csv`, and returns the epoch's metrics.
    fn end_epoch<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guarded(|| {
            let (m, saved) = self.run(py, |t, test, dir, extra| {
                let m = t.end_epoch(test);
                (m, save(t, dir, extra))
            });
            saved.map_err(to_py)?;
            metrics_dict(py, &m)
        })
    }

    /// Trains the rest of the epoch and closes it (`end_epoch`); returns its metrics. A
    /// SIGINT, SIGTERM or SIGHUP stops it after the batch with a checkpoint and raises
    /// `vae.Interrupted`.
    fn epoch<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guarded(|| {
            let handlers = signals::install();
            py.check_signals()?;
            let end = self.run(py, |t, _, dir, extra| {
                let end = t.run_epoch(|_, _| {
                    if vae_train::signals::requested().is_some() {
                        Control::Stop
                    } else {
                        Control::Continue
                    }
                });
                match end {
                    Ok(EpochEnd::Stopped) => save(t, dir, extra).map(|()| Some(dir.to_path_buf())),
                    Ok(EpochEnd::Complete) => Ok(None),
                    Err(d) => Err(anyhow::Error::new(d).context("training diverged")),
                }
            });
            drop(handlers);
            match end.map_err(to_py)? {
                Some(run_dir) => {
                    let signal = vae_train::signals::requested().unwrap_or(Signal::Interrupt);
                    Err(interrupted(py, &session::Interrupted { run_dir, signal }))
                }
                None => self.end_epoch(py),
            }
        })
    }

    /// Writes the checkpoint now (also in the middle of an epoch: `vae-train train --resume`
    /// and `vae.Trainer(resume=...)` continue from it exactly) and `metrics.csv`.
    fn checkpoint(&self, py: Python<'_>) -> PyResult<()> {
        guarded(|| self.run(py, |t, _, dir, extra| save(t, dir, extra)).map_err(to_py))
    }

    /// The model as it is now (a copy: training goes on without changing it).
    #[getter]
    fn model(&self, py: Python<'_>) -> PyResult<Model> {
        guarded(|| {
            let (vae, metrics) = self.run(py, |t, _, _, _| (copy_model(t.model()), t.metrics().to_vec()));
            let state = self.lock();
            let table = state.live.borrow_owner().dataset.table.clone();
            let mut meta = state.extra.clone();
            let (epochs, batches) = state
                .live
                .with_dependent(|_, t| (t.position().epochs_done, t.position().batches_done));
            meta.insert("epochs_done".into(), epochs.to_string());
            meta.insert("batches_done".into(), batches.to_string());
            Ok(Model::new(
                vae,
                state.recipe.training.threads,
                Some(state.run_dir.clone()),
                state.recipe.clone(),
                table,
                metrics,
                meta,
            ))
        })
    }

    /// `(epochs_done, batches_done)`: whole epochs, and batches into the next.
    #[getter]
    fn position(&self) -> (usize, usize) {
        let state = self.lock();
        state
            .live
            .with_dependent(|_, t| (t.position().epochs_done, t.position().batches_done))
    }

    /// One dict per epoch closed, keyed as `metrics.csv`'s columns.
    #[getter]
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let state = self.lock();
        let metrics = state.live.with_dependent(|_, t| t.metrics().to_vec());
        metrics.iter().map(|m| metrics_dict(py, m)).collect()
    }

    /// The epochs the recipe asks for (`epochs`).
    #[getter]
    fn epochs(&self) -> usize {
        self.lock().recipe.training.epochs
    }

    /// Batches in an epoch.
    #[getter]
    fn batches_per_epoch(&self) -> usize {
        self.lock().live.with_dependent(|_, t| t.batches_per_epoch())
    }

    /// Training images in an epoch.
    #[getter]
    fn images_per_epoch(&self) -> usize {
        self.lock().live.with_dependent(|_, t| t.images_per_epoch())
    }

    /// The learning rate of the current epoch.
    #[getter]
    fn lr(&self) -> f64 {
        self.lock().live.with_dependent(|_, t| t.current_lr())
    }

    /// The KL weight of the last batch (β times the warm-up).
    #[getter]
    fn kl_weight(&self) -> f64 {
        self.lock().live.with_dependent(|_, t| t.current_kl_weight())
    }

    /// The run directory.
    #[getter]
    fn run_dir(&self) -> PathBuf {
        self.lock().run_dir.clone()
    }
}
