//! The data a run trains and evaluates on, as every command opens it.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use anyhow::Result;
use vae_data::{DEFAULT_DIR, Dataset, DatasetError, IdxError, OpenOptions, SizeError, Split, TableInfo, stream_seed};
use vae_trainer::{binarized, salt};

use crate::recipe::RunConfig;

/// The environment variable that names the data directory when `--data` is not given.
pub const DATA_ENV: &str = "VAE_DATA";

/// The repository's copy of MNIST as the binary's build saw it (`data/mnist` beside the
/// workspace this crate was built from, also after `cargo install --path crates/train`).
pub fn repository_copy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .join(DEFAULT_DIR)
}

/// `$VAE_DATA`, when it is set and not empty.
fn from_env() -> Option<PathBuf> {
    std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The data directory of a new run given no `--data`: `$VAE_DATA` if set, else `data/mnist`
/// in the current directory if it is there, else the repository's copy if it is there
/// (absolute, so that the run's later commands find it from anywhere), else `data/mnist`
/// (whose absence [`open`] explains).
pub fn default_dir() -> PathBuf {
    from_env().unwrap_or_else(|| locate(Path::new(DEFAULT_DIR)))
}

/// Where the data a run recorded is now: `recorded` if it exists, else `$VAE_DATA`, else,
/// for the default `data/mnist` (relative to wherever the run was started), the
/// repository's copy if it exists; else `recorded`.
pub fn locate(recorded: &Path) -> PathBuf {
    if recorded.exists() {
        return recorded.to_path_buf();
    }
    if let Some(p) = from_env() {
        return p;
    }
    let repo = repository_copy();
    if recorded == Path::new(DEFAULT_DIR) && repo.is_dir() {
        return std::path::absolute(&repo).unwrap_or(repo);
    }
    recorded.to_path_buf()
}

/// Opens the dataset at `path` as `opts` say, with a progress bar while a folder decodes,
/// saying which flag to fix on failure.
pub fn open(path: &Path, opts: &OpenOptions) -> Result<Dataset> {
    let bar = crate::report::Counter::new("decoding images");
    let data = Dataset::open_with(path, opts, &|done, total| bar.set(done, total));
    bar.finish();
    data.map_err(|e| {
        let hint = if matches!(e, DatasetError::Idx(IdxError::Size { size: SizeError::TooLarge { .. }, .. })) {
            "raise --max-data-bytes if the file is genuine".to_string()
        } else if !path.exists() {
            let cwd = std::env::current_dir().map_or_else(|_| "?".into(), |d| d.display().to_string());
            format!(
                "it does not exist (relative paths start at the current directory, {cwd}); give the data \
                 with --data DIR or set {DATA_ENV}=DIR (the repository ships MNIST in data/mnist; {} is not there)",
                repository_copy().display()
            )
        } else if matches!(e, DatasetError::Missing { .. } | DatasetError::Unrecognised { .. }) {
            format!(
                "give a directory of IDX files, a folder of images, a .npy/.npz or a .csv with --data DIR or set {DATA_ENV}=DIR"
            )
        } else if matches!(e, DatasetError::Invalid { .. }) {
            "the file was found and read: change in it what the message says, or the flag it names".to_string()
        } else {
            "fix the file or the flags named".to_string()
        };
        anyhow::Error::new(e).context(format!("loading the data at {} ({hint})", path.display()))
    })
}

/// The test split a run evaluates on: binarized once (with the recipe's test seed, or for
/// runs saved before it was fixed, their own seed) if the run trains on binarized images.
pub fn test_split<'a>(recipe: &RunConfig, data: &'a Dataset) -> Cow<'a, Split> {
    if recipe.training.binarize {
        let seed = recipe.data.test_binarize_seed.unwrap_or(recipe.training.seed);
        Cow::Owned(binarized(&data.test, stream_seed(seed, 0, salt::TEST_BINARIZE)))
    } else {
        Cow::Borrowed(&data.test)
    }
}

/// The table a checkpoint's metadata describes, if the model was trained on one.
pub fn stored_table(meta: &std::collections::HashMap<String, String>, path: &Path) -> Result<Option<TableInfo>> {
    meta.get(crate::run::TABLE_KEY)
        .map(|json| {
            serde_json::from_str::<TableInfo>(json)
                .map_err(|e| anyhow::anyhow!("{}: invalid '{}': {e}", path.display(), crate::run::TABLE_KEY))
        })
        .transpose()
}

/// The labels present in `split`, each with its class name where `data` names them
/// (`0 benign, 1 malignant`; `3, 7, 200`).
pub fn present(split: &Split, data_classes: Option<&[String]>) -> String {
    vae_data::label::numbered(&split.classes(), data_classes)
}

/// The training split a run trains on: without the class `--exclude-label` names, if it
/// names one (refused, listing the classes, if no training image has it).
pub fn training_split<'a>(recipe: &RunConfig, data: &'a Dataset) -> Result<Cow<'a, Split>> {
    let Some(label) = &recipe.data.exclude_label else {
        return Ok(Cow::Borrowed(&data.train));
    };
    let names = data.classes.as_deref();
    let d = label
        .resolve(names)
        .map_err(|e| anyhow::anyhow!("--exclude-label {label}: {e}"))?;
    anyhow::ensure!(
        data.train.classes().contains(&d),
        "--exclude-label {label}: no training image has label {label} (labels present: {})",
        present(&data.train, names)
    );
    Ok(Cow::Owned(data.train.filter(|l| l != d)))
}
