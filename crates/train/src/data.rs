//! The data a run trains and evaluates on, as every command opens it.

use std::borrow::Cow;
use std::path::Path;

use anyhow::Result;
use vae_data::{Dataset, DatasetError, IdxError, Limits, Split, stream_seed};
use vae_trainer::{binarized, salt};

use crate::recipe::RunConfig;

/// Opens the dataset at `path` within `limits`, saying which flag to fix on failure.
pub fn open(path: &Path, limits: &Limits) -> Result<Dataset> {
    Dataset::open_with(path, limits).map_err(|e| {
        let hint = if matches!(e, DatasetError::Idx(IdxError::TooLarge { .. })) {
            "raise --max-data-bytes if the file is genuine"
        } else {
            "give the directory holding the IDX files with --data"
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

/// Labels as a comma-separated list.
pub fn list(labels: &[u8]) -> String {
    labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
}
