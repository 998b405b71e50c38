//! CSV tables as a data source: numeric feature columns (and an optional label column),
//! split by a seeded test share, standardised with the training rows' mean and standard
//! deviation (or with a standardiser saved with a model).

use std::path::Path;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::folder::{FolderOptions, test_rows};
use crate::table::{Standardizer, read_csv};
use crate::{DatasetError, ImageShape, Limits, Split, Values};

/// What a model trained on a table must know of it: its columns and how they were scaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    /// The feature columns, in order.
    pub columns: Vec<String>,
    /// The label column, if any.
    pub label_column: Option<String>,
    /// The standardisation applied to the features.
    pub standardizer: Standardizer,
}

/// A table read as a dataset.
pub struct LoadedTable {
    /// The training rows, standardised.
    pub train: Split,
    /// The test rows, standardised.
    pub test: Split,
    /// The columns and the standardisation.
    pub info: TableInfo,
    /// The names of the label classes when the labels are text.
    pub classes: Option<Vec<String>>,
}

/// The train and test splits of the table at `path`, with what describes it.
pub fn load_table(
    path: &Path,
    limits: &Limits,
    label_column: Option<&str>,
    standardizer: Option<&Standardizer>,
    holdout: &FolderOptions,
) -> Result<LoadedTable, DatasetError> {
    let table = read_csv(path, limits, label_column)?;
    let is_test = test_rows(path, table.rows, table.labels.as_deref(), holdout)?;
    let rows = |test: bool| -> Vec<usize> { (0..table.rows).filter(|&i| is_test[i] == test).collect() };
    let (train_rows, test_rows) = (rows(false), rows(true));
    let bad = |reason: String| DatasetError::Invalid {
        path: path.into(),
        reason,
    };
    let standardizer = match standardizer {
        Some(s) if s.width() != table.width() => {
            return Err(bad(format!(
                "{} feature columns, but the model was trained on {}",
                table.width(),
                s.width()
            )));
        }
        Some(s) => s.clone(),
        None => Standardizer::fit(train_rows.iter().filter_map(|&i| table.row(i)), &table.columns)
            .map_err(|e| bad(e.to_string()))?,
    };
    let shape = ImageShape::grey(1, table.width());
    let split = |idx: &[usize]| -> Result<Split, DatasetError> {
        let mut values = Vec::with_capacity(idx.len() * table.width());
        for &i in idx {
            let row = table.row(i).expect("a row of the table");
            values.extend(standardizer.standardize(row).map_err(|e| bad(e.to_string()))?);
        }
        Ok(Split {
            images: Values::F32(Array2::from_shape_vec((idx.len(), table.width()), values).expect("sized above")),
            labels: table.labels.as_ref().map(|l| idx.iter().map(|&i| l[i]).collect()),
            shape,
        })
    };
    let info = TableInfo {
        columns: table.columns.clone(),
        label_column: label_column.map(str::to_string),
        standardizer: standardizer.clone(),
    };
    Ok(LoadedTable {
        train: split(&train_rows)?,
        test: split(&test_rows)?,
        info,
        classes: table.classes.clone(),
    })
}
