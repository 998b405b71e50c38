//! `vae.Model`: a trained VAE (loaded from a run directory, or the result of training) and
//! what the command line does with one, on arrays: encode, decode, sample, reconstruct,
//! per-row ELBO, importance-sampled log-likelihood and anomaly scores.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::{PyFileExistsError, PyFileNotFoundError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vae_data::{Elements, ImageShape, TableInfo};
use vae_model::Vae;
use vae_model::checkpoint;
use vae_train::commands::score::{Method, block_scores};
use vae_train::commands::{BLOCK, RunArgs, block_rows};
use vae_train::recipe::RunConfig;
use vae_train::run::{self, EpochMetrics, RunDir};

use crate::arrays::{to_channels_last, value_error, with_elements};
use crate::errors::{guarded, to_py};
use crate::fpenv::KeepMode;

/// Rows computed at once by encode, decode and reconstruct (whole blocks of
/// [`BLOCK`]); results do not depend on it (every row is computed on its own).
const CHUNK: usize = 100 * BLOCK;

/// The network and the threads it runs on.
pub struct Engine {
    vae: Vae<f32>,
    threads: Option<usize>,
    pool: Option<rayon::ThreadPool>,
}

impl Engine {
    /// Runs `f` on the model in its thread pool (built on first use).
    fn run<R: Send>(&mut self, f: impl FnOnce(&mut Vae<f32>) -> R + Send) -> PyResult<R> {
        let Engine { vae, threads, pool } = self;
        let _mode = KeepMode::new();
        if pool.is_none() {
            *pool =
                Some(vae_linalg::fpenv::thread_pool(*threads).map_err(|e| {
                    pyo3::exceptions::PyRuntimeError::new_err(format!("starting the thread pool: {e}"))
                })?);
        }
        let pool = pool.as_ref().expect("built above");
        Ok(pool.install(|| f(vae)))
    }
}

/// How an input was laid out, to give results back the same way.
#[derive(Clone, Copy)]
enum Layout {
    /// `N x D` rows in the engine's order (channels first).
    Rows,
    /// `N x H x W [x C]` images, channels last.
    Images(ImageShape, bool),
}

/// A trained VAE.
#[pyclass(module = "vae._vae", name = "Model", frozen)]
pub struct Model {
    engine: Mutex<Engine>,
    run_dir: Option<PathBuf>,
    recipe: RunConfig,
    table: Option<TableInfo>,
    metrics: Vec<EpochMetrics>,
    /// The checkpoint's metadata (the recipe, a table's standardisation, the position).
    meta: HashMap<String, String>,
}

impl Model {
    /// A model from its parts.
    pub fn new(
        vae: Vae<f32>,
        threads: Option<usize>,
        run_dir: Option<PathBuf>,
        recipe: RunConfig,
        table: Option<TableInfo>,
        metrics: Vec<EpochMetrics>,
        meta: HashMap<String, String>,
    ) -> Self {
        Model {
            engine: Mutex::new(Engine {
                vae,
                threads,
                pool: None,
            }),
            run_dir,
            recipe,
            table,
            metrics,
            meta,
        }
    }

    /// Loads the run in `dir` as every `vae-train` command does.
    pub fn load(dir: &Path, threads: Option<usize>) -> PyResult<Self> {
        let run = RunDir(dir);
        run.require_run()
            .map_err(|e| PyFileNotFoundError::new_err(format!("{e:#}")))?;
        let args = RunArgs {
            run_dir: dir.to_path_buf(),
            data: None,
            threads,
            max_data_bytes: None,
        };
        let loaded = args.load().map_err(to_py)?;
        let (_, meta) = checkpoint::load::<f32>(&run.model()).map_err(|e| to_py(e.into()))?;
        let metrics = if run.metrics().is_file() {
            run.read_metrics().map_err(to_py)?
        } else {
            Vec::new()
        };
        Ok(Model::new(
            loaded.model,
            threads,
            Some(loaded.dir),
            loaded.config,
            loaded.table,
            metrics,
            meta,
        ))
    }

    /// The same model with these metrics (the exact figures of a session that just ended,
    /// where `metrics.csv` holds them rounded).
    pub fn with_metrics(mut self, metrics: Vec<EpochMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the model without the GIL. The model's lock is taken and given back
    /// without the GIL, so that a thread waiting for it with the GIL never blocks the one
    /// that holds it.
    fn run<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut Vae<f32>) -> R + Send) -> PyResult<R> {
        py.detach(|| self.engine().run(f))
    }

    /// The model's configuration.
    fn vae_config(&self) -> vae_model::VaeConfig {
        self.engine().vae.config().clone()
    }

    /// The inputs `x` as rows of f32 for the network (a table's standardised), and how they
    /// were laid out.
    fn inputs(&self, name: &str, x: &Bound<'_, PyAny>) -> PyResult<(Array2<f32>, Layout)> {
        let config = self.vae_config();
        let d = config.input;
        if let Some(t) = &self.table {
            return with_elements(name, x, |dims, data| {
                let &[n, cols] = dims else {
                    return Err(value_error(format!(
                        "{name}: an array of shape {dims:?}: the model takes rows N x {d} of the table's columns ({})",
                        t.columns.join(", ")
                    )));
                };
                if cols != d || n == 0 {
                    return Err(value_error(format!(
                        "{name}: an array of shape {dims:?}: the model takes rows N x {d} of the table's columns ({})",
                        t.columns.join(", ")
                    )));
                }
                let v: Vec<f32> = match data {
                    Elements::U8(v) => v.iter().map(|&b| f32::from(b)).collect(),
                    Elements::F32(v) => v.into_owned(),
                    Elements::F64(v) => v.iter().map(|&x| x as f32).collect(),
                };
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(value_error(format!(
                        "{name}: value {} at flat index {i} is not finite",
                        v[i]
                    )));
                }
                let mut v = v;
                t.standardizer.apply(&mut v).map_err(value_error)?;
                Ok((Array2::from_shape_vec((n, d), v).expect("sized"), Layout::Rows))
            });
        }
        let shape = config.image_shape();
        with_elements(name, x, |dims, data| {
            let layout = match (dims, shape) {
                ([_, cols], _) if *cols == d => Layout::Rows,
                ([_, h, w], Some(s)) if s.channels == 1 && (*h, *w) == (s.height, s.width) => Layout::Images(s, false),
                ([_, h, w, c], Some(s)) if (*h, *w, *c) == (s.height, s.width, s.channels) => Layout::Images(s, true),
                _ => {
                    let images = shape.map_or_else(String::new, |s| {
                        if s.channels == 1 {
                            format!(" or images N x {} x {}", s.height, s.width)
                        } else {
                            format!(" or images N x {} x {} x {}", s.height, s.width, s.channels)
                        }
                    });
                    return Err(value_error(format!(
                        "{name}: an array of shape {dims:?}: the model takes rows N x {d}{images}"
                    )));
                }
            };
            let (values, _) = vae_data::arrays::images_of(Path::new(name), dims, data).map_err(value_error)?;
            Ok((values.f32().into_owned(), layout))
        })
    }

    /// Network outputs (rows) as the caller's layout: a table's back in its units.
    fn outputs<'py>(&self, py: Python<'py>, mut rows: Array2<f32>, layout: Layout) -> PyResult<Bound<'py, PyAny>> {
        if let Some(t) = &self.table {
            for mut row in rows.rows_mut() {
                t.standardizer
                    .invert(row.as_slice_mut().expect("standard layout"))
                    .map_err(value_error)?;
            }
        }
        let n = rows.nrows();
        Ok(match layout {
            Layout::Rows => rows.into_pyarray(py).into_any(),
            Layout::Images(s, channels_last) => {
                let v = rows.into_raw_vec_and_offset().0;
                let (v, dims) = if s.channels == 1 && !channels_last {
                    (v, vec![n, s.height, s.width])
                } else {
                    (to_channels_last(&v, s), vec![n, s.height, s.width, s.channels])
                };
                let a = ndarray::ArrayD::from_shape_vec(dims, v).expect("sized");
                a.into_pyarray(py).into_any()
            }
        })
    }

    /// How decoded images are given back: images for a model of images, rows otherwise.
    fn image_layout(&self) -> Layout {
        match self.vae_config().image_shape() {
            Some(s) if self.table.is_none() && s.height > 1 => Layout::Images(s, s.channels > 1),
            _ => Layout::Rows,
        }
    }

    /// Per-row scores in blocks of [`BLOCK`] rows, each with its block's random stream, as
    /// `vae-train score` computes them.
    fn scores(&self, py: Python<'_>, x: &Bound<'_, PyAny>, method: Method, k: usize, seed: u64) -> PyResult<Vec<f64>> {
        if k == 0 {
            return Err(value_error("k must be at least 1"));
        }
        let (rows, _) = self.inputs("x", x)?;
        let n = rows.nrows();
        self.run(py, |vae| {
            let mut out = vec![0.0f64; n];
            for b in 0..n.div_ceil(BLOCK) {
                let r = block_rows(b, n);
                block_scores(vae, rows.slice(s![r.clone(), ..]), b, method, k, seed, &mut out[r]);
            }
            out
        })
    }
}

/// Runs `f` on `x` in chunks of [`CHUNK`] rows, stacking the results.
fn chunked(x: ArrayView2<f32>, mut f: impl FnMut(ArrayView2<f32>) -> Array2<f32>) -> Array2<f32> {
    let parts: Vec<Array2<f32>> = x.axis_chunks_iter(Axis(0), CHUNK).map(&mut f).collect();
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).expect("equal widths")
}

fn levels_chunked(vae: &mut Vae<f32>, x: ArrayView2<f32>) -> Vec<(Array2<f32>, Array2<f32>)> {
    let mut parts: Vec<Vec<(Array2<f32>, Array2<f32>)>> = Vec::new();
    for c in x.axis_chunks_iter(Axis(0), CHUNK) {
        parts.push(vae.encode_levels(c));
    }
    let levels = parts.first().map_or(0, Vec::len);
    (0..levels)
        .map(|l| {
            let mu: Vec<_> = parts.iter().map(|p| p[l].0.view()).collect();
            let lv: Vec<_> = parts.iter().map(|p| p[l].1.view()).collect();
            (
                ndarray::concatenate(Axis(0), &mu).expect("equal widths"),
                ndarray::concatenate(Axis(0), &lv).expect("equal widths"),
            )
        })
        .collect()
}

/// Metrics as dicts keyed by the metrics file's column names.
pub fn metrics_dict<'py>(py: Python<'py>, m: &EpochMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for f in vae_trainer::FIELDS {
        let v = (f.get)(m);
        if f.name == "epoch" {
            d.set_item(f.name, v as usize)?;
        } else {
            d.set_item(f.name, v)?;
        }
    }
    Ok(d)
}

#[pymethods]
impl Model {
    /// The top level's posterior means and log-variances of `x`: `(mu, logvar)`, each
    /// `N x latent` float32 (what `decode` takes; `encode_levels` gives every level).
    fn encode<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        guarded(|| {
            let mut levels = self.encode_levels_rows(py, x)?;
            let (mu, lv) = levels.pop().expect("a VAE has a level");
            Ok((mu.into_pyarray(py).into_any(), lv.into_pyarray(py).into_any()))
        })
    }

    /// Every level's `(mu, logvar)`, z1 first, each level encoding the mean of the one below
    /// (as `vae-train eval` and the ONNX encoder do).
    fn encode_levels<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        guarded(|| {
            let levels = self.encode_levels_rows(py, x)?;
            let items: Vec<_> = levels
                .into_iter()
                .map(|(mu, lv)| (mu.into_pyarray(py), lv.into_pyarray(py)))
                .collect();
            PyList::new(py, items)
        })
    }

    /// The decoder's mean for each row of `z` (`N x` the top latent): pixel probabilities
    /// (Bernoulli) or means (Gaussian), as images `N x H x W [x C]` (rows for a table, in its
    /// units).
    fn decode<'py>(&self, py: Python<'py>, z: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        guarded(|| {
            let top = self.vae_config().top_latent();
            let z = with_elements("z", z, |dims, data| {
                let &[n, width] = dims else {
                    return Err(value_error(format!(
                        "z: an array of shape {dims:?}: expected latent rows N x {top}"
                    )));
                };
                if width != top || n == 0 {
                    return Err(value_error(format!(
                        "z: an array of shape {dims:?}: expected latent rows N x {top}"
                    )));
                }
                let v: Vec<f32> = match data {
                    Elements::U8(v) => v.iter().map(|&b| f32::from(b)).collect(),
                    Elements::F32(v) => v.into_owned(),
                    Elements::F64(v) => v.iter().map(|&x| x as f32).collect(),
                };
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(value_error(format!(
                        "z: value {} at flat index {i} is not finite",
                        v[i]
                    )));
                }
                Ok(Array2::from_shape_vec((n, top), v).expect("sized"))
            })?;
            let out = self.run(py, |vae| chunked(z.view(), |c| vae.decode(c)))?;
            self.outputs(py, out, self.image_layout())
        })
    }

    /// Each row's reconstruction (the decoder's mean of its posterior mean), laid out as `x`.
    fn reconstruct<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        guarded(|| {
            let (rows, layout) = self.inputs("x", x)?;
            let out = self.run(py, |vae| chunked(rows.view(), |c| vae.reconstruct(c)))?;
            self.outputs(py, out, layout)
        })
    }

    /// `n` draws from the model (the decoder's mean of z drawn from the prior); `seed` as
    /// `vae-train sample --seed` (the same images for `n` = its `--n` squared), fresh
    /// randomness if `None`.
    #[pyo3(signature = (n, seed=None))]
    fn sample<'py>(&self, py: Python<'py>, n: usize, seed: Option<u64>) -> PyResult<Bound<'py, PyAny>> {
        guarded(|| {
            if n == 0 {
                return Err(value_error("n must be at least 1"));
            }
            let mut rng = match seed {
                Some(s) => StdRng::seed_from_u64(s),
                None => StdRng::from_os_rng(),
            };
            let out = self.run(py, |vae| vae.sample(n, &mut rng))?;
            self.outputs(py, out, self.image_layout())
        })
    }

    /// The ELBO of each row (nats, averaged over `k` draws of z), float64; the negative of
    /// `vae-train score --method elbo --k K --seed SEED` on the same rows.
    #[pyo3(signature = (x, k=1, seed=0))]
    fn elbo<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        k: usize,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        guarded(|| {
            let s = self.scores(py, x, Method::Elbo, k, seed)?;
            Ok(Array1::from_iter(s.into_iter().map(|v| -v)).into_pyarray(py))
        })
    }

    /// The importance-sampled estimate of log p(x) of each row with `k` samples (nats),
    /// float64; the negative of `vae-train score --method iwae --k K --seed SEED`.
    #[pyo3(signature = (x, k=5000, seed=0))]
    fn log_likelihood<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        k: usize,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        guarded(|| {
            let s = self.scores(py, x, Method::Iwae, k, seed)?;
            Ok(Array1::from_iter(s.into_iter().map(|v| -v)).into_pyarray(py))
        })
    }

    /// Anomaly scores (higher: more anomalous) as `vae-train score` computes them:
    /// `method` "elbo" (the negative ELBO averaged over `k` draws) or "iwae" (-log p(x) from
    /// `k` importance samples).
    #[pyo3(signature = (x, method="elbo", k=10, seed=0))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        method: &str,
        k: usize,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        guarded(|| Ok(Array1::from(self.scores(py, x, method_of(method)?, k, seed)?).into_pyarray(py)))
    }

    /// The AUROC of telling the rows of `x` whose label in `y` is `anomaly_label` (a number,
    /// or a class name where `y` holds names, e.g. a table's text labels) from the others by
    /// their [`Model::score`], as `vae-train score --anomaly-label` reports it.
    #[pyo3(signature = (x, y, anomaly_label, method="elbo", k=10, seed=0))]
    #[allow(clippy::too_many_arguments, reason = "the keywords of Model.auroc")]
    fn auroc(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        anomaly_label: &Bound<'_, PyAny>,
        method: &str,
        k: usize,
        seed: u64,
    ) -> PyResult<f64> {
        guarded(|| {
            let method = method_of(method)?;
            let y = py.import("numpy")?.call_method1("asarray", (y,))?;
            let positive: Vec<bool> = y
                .call_method1("__eq__", (anomaly_label,))?
                .call_method0("ravel")?
                .call_method0("tolist")?
                .extract()
                .map_err(|_| value_error("y: expected one label per row of x"))?;
            let label = anomaly_label.str()?.to_string();
            let (hits, n) = (positive.iter().filter(|&&p| p).count(), positive.len());
            if hits == 0 || hits == n {
                return Err(value_error(format!(
                    "anomaly_label={label}: y must hold rows of label {label} and of others ({hits} of {n} rows are {label})"
                )));
            }
            let scores = self.scores(py, x, method, k, seed)?;
            if scores.len() != n {
                return Err(value_error(format!(
                    "y holds {n} labels for the {} rows of x",
                    scores.len()
                )));
            }
            Ok(vae_train::stats::auroc(&scores, &positive).expect("both classes are present"))
        })
    }

    /// Writes the model as a run directory every `vae-train` command reads (`model.safetensors`,
    /// `config.json`, `metrics.csv`; the data file of a run trained on arrays is copied
    /// along). A directory that holds a model is refused unless `overwrite`.
    #[pyo3(signature = (run_dir, overwrite=false))]
    fn save(&self, py: Python<'_>, run_dir: PathBuf, overwrite: bool) -> PyResult<()> {
        guarded(|| {
            if RunDir(&run_dir).holds_checkpoint() && !overwrite {
                return Err(PyFileExistsError::new_err(format!(
                    "{} already holds a trained model; choose another run_dir, or pass overwrite=True (nothing was overwritten)",
                    run_dir.display()
                )));
            }
            std::fs::create_dir_all(&run_dir)
                .map_err(|e| crate::errors::os_error(e.kind(), format!("creating {}: {e}", run_dir.display())))?;
            let mut recipe = self.recipe.clone();
            recipe.output.run_dir = Some(run_dir.clone());
            // A run trained on arrays keeps them beside its model: copy them along.
            if let Some(from) = &self.run_dir
                && recipe.data.path.parent() == Some(std::path::absolute(from).unwrap_or(from.clone()).as_path())
                && recipe.data.path.is_file()
            {
                let name = recipe.data.path.file_name().expect("a file").to_owned();
                let to = std::path::absolute(&run_dir).unwrap_or(run_dir.clone()).join(name);
                if to != recipe.data.path {
                    std::fs::copy(&recipe.data.path, &to).map_err(|e| {
                        crate::errors::os_error(
                            e.kind(),
                            format!("copying {} to {}: {e}", recipe.data.path.display(), to.display()),
                        )
                    })?;
                }
                recipe.data.path = to;
            }
            let mut meta = self.meta.clone();
            meta.retain(|k, _| k != checkpoint::CONFIG_KEY && k != checkpoint::CHECKSUM_KEY && k != "format");
            meta.insert(run::TRAIN_CONFIG_KEY.into(), recipe.to_json());
            py.detach(|| -> anyhow::Result<()> {
                let dir = RunDir(&run_dir);
                checkpoint::save(&self.engine().vae, &dir.model(), meta)?;
                dir.write_config(&recipe.to_json())?;
                if !self.metrics.is_empty() {
                    dir.write_metrics(&self.metrics)?;
                }
                Ok(())
            })
            .map_err(to_py)
        })
    }

    /// The run directory the model was trained in or loaded from (None for a model not
    /// saved yet).
    #[getter]
    fn run_dir(&self) -> Option<PathBuf> {
        self.run_dir.clone()
    }

    /// The run's recipe as `config.json` holds it (model, training, data, output).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?.call_method1("loads", (self.recipe.to_json(),))
    }

    /// One dict per epoch trained, keyed as `metrics.csv`'s columns.
    #[getter]
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.metrics.iter().map(|m| metrics_dict(py, m)).collect()
    }

    /// The shape of one input: `(H, W)` for grey images, `(H, W, C)` for colour, `(D,)` for
    /// rows and tables.
    #[getter]
    fn input_shape(&self) -> Vec<usize> {
        match self.image_layout() {
            Layout::Images(s, _) if s.channels == 1 => vec![s.height, s.width],
            Layout::Images(s, _) => vec![s.height, s.width, s.channels],
            Layout::Rows => vec![self.vae_config().input],
        }
    }

    /// The latent dimensions of each stochastic level, z1 first.
    #[getter]
    fn latent(&self) -> Vec<usize> {
        self.vae_config().latents()
    }

    /// The decoder's distribution, as `--likelihood` spells it.
    #[getter]
    fn likelihood(&self) -> String {
        self.vae_config().likelihood.spec()
    }

    /// The number of trained parameters.
    #[getter]
    fn num_parameters(&self) -> usize {
        self.engine().vae.num_parameters()
    }

    /// A table's feature columns (None for images).
    #[getter]
    fn columns(&self) -> Option<Vec<String>> {
        self.table.as_ref().map(|t| t.columns.clone())
    }

    fn __repr__(&self) -> String {
        let c = self.vae_config();
        format!(
            "<vae.Model {} {} {}{}>",
            c.widths(),
            c.activation,
            c.likelihood,
            self.run_dir
                .as_ref()
                .map_or_else(String::new, |d| format!(" in {}", d.display()))
        )
    }
}

impl Model {
    fn encode_levels_rows(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<Vec<(Array2<f32>, Array2<f32>)>> {
        let (rows, _) = self.inputs("x", x)?;
        self.run(py, |vae| levels_chunked(vae, rows.view()))
    }
}

/// The score `method` a keyword names ("elbo" or "iwae").
fn method_of(method: &str) -> PyResult<Method> {
    match method {
        "elbo" => Ok(Method::Elbo),
        "iwae" => Ok(Method::Iwae),
        other => Err(value_error(format!(
            "method: invalid value '{other}' (possible values: elbo, iwae)"
        ))),
    }
}

/// `vae.load(run_dir, threads=None)`.
#[pyfunction]
#[pyo3(signature = (run_dir, threads=None))]
pub fn load(run_dir: PathBuf, threads: Option<usize>) -> PyResult<Model> {
    guarded(|| {
        if threads == Some(0) {
            return Err(value_error("threads must be at least 1"));
        }
        let _mode = KeepMode::new();
        Model::load(&run_dir, threads)
    })
}
