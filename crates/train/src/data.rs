//! The data a run trains and evaluates on, as every command opens it.

use std::borrow::Cow;
use std::path::Path;

use anyhow::Result;
use vae_data::{Dataset, DatasetError, IdxError, OpenOptions, Split, TableInfo, stream_seed};
use vae_trainer::{binarized, salt};

use crate::recipe::RunConfig;

/// Opens the dataset at `path` as `opts` say, with a progress bar while a folder decodes,
/// saying which flag to fix on failure.
pub fn open(path: &Path, opts: &OpenOptions) -> Result<Dataset> {
    let bar = crate::report::Counter::new("decoding images");
    let data = Dataset::open_with(path, opts, &|done, total| bar.set(done, total));
    bar.finish();
    data.map_err(|e| {
        let hint = match &e {
            DatasetError::Idx(IdxError::TooLarge { .. }) => "raise --max-data-bytes if the file is genuine",
            DatasetError::Missing { .. } | DatasetError::Unrecognised { .. } => {
                "give a directory of IDX files or a folder of images with --data"
            }
            _ => "fix the file or the flags named",
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
    meta.get(crate::session::TABLE_KEY)
        .map(|json| {
            serde_json::from_str::<TableInfo>(json)
                .map_err(|e| anyhow::anyhow!("{}: invalid '{}': {e}", path.display(), crate::session::TABLE_KEY))
        })
        .transpose()
}

/// Labels as a comma-separated list.
pub fn list(labels: &[u8]) -> String {
    labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
}
