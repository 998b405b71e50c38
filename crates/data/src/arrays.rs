//! NumPy arrays as a data source: one `.npy` of images (`N x H x W`, `N x H x W x C` as
//! Keras stores them, or rows `N x D`), split by a seeded test share, or an `.npz` with
//! train and test arrays and, optionally, their labels (`x_train`, `y_train`, `x_test`,
//! `y_test` by default, as in Keras' `mnist.npz`). Bytes stay bytes; floats must lie in
//! [0, 1].

use std::borrow::Cow;
use std::path::Path;

use ndarray::Array2;

use crate::folder::{FolderOptions, test_rows};
use crate::npy::{NpyArray, NpyData, npz_keys, read_npy, read_npz};
use crate::{DatasetError, ImageShape, Limits, Split, Values};

/// The keys of an `.npz` archive's arrays: train images, train labels, test images, test
/// labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpzKeys {
    /// Training images (required).
    pub x_train: String,
    /// Training labels (optional in the archive).
    pub y_train: String,
    /// Test images (optional: without them the test share is split off).
    pub x_test: String,
    /// Test labels (optional).
    pub y_test: String,
}

impl Default for NpzKeys {
    fn default() -> Self {
        NpzKeys {
            x_train: "x_train".into(),
            y_train: "y_train".into(),
            x_test: "x_test".into(),
            y_test: "y_test".into(),
        }
    }
}

fn bad(path: &Path, reason: String) -> DatasetError {
    DatasetError::Invalid {
        path: path.into(),
        reason,
    }
}

/// The elements of an array of one of the dtypes read, in row-major order: owned (read from
/// a file) or borrowed (an array in memory, e.g. from NumPy).
#[derive(Clone, Debug)]
pub enum Elements<'a> {
    /// uint8.
    U8(Cow<'a, [u8]>),
    /// float32.
    F32(Cow<'a, [f32]>),
    /// float64.
    F64(Cow<'a, [f64]>),
}

impl Elements<'_> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Elements::U8(v) => v.len(),
            Elements::F32(v) => v.len(),
            Elements::F64(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<NpyData> for Elements<'static> {
    fn from(d: NpyData) -> Self {
        match d {
            NpyData::U8(v) => Elements::U8(Cow::Owned(v)),
            NpyData::F32(v) => Elements::F32(Cow::Owned(v)),
            NpyData::F64(v) => Elements::F64(Cow::Owned(v)),
        }
    }
}

/// The images of `a` as rows of values, with their shape (channels moved outermost).
fn images(path: &Path, a: NpyArray) -> Result<(Values, ImageShape), DatasetError> {
    images_of(path, &a.shape, a.data.into())
}

/// The images of an array of shape `dims` (`N x H x W`, `N x H x W x C` with C = 1 or 3, or
/// rows `N x D`) holding `data`, as rows of values with their shape: channels moved
/// outermost, bytes kept as bytes, float64 rounded to float32, each value copied once (owned
/// rows that need no reordering are not copied at all). Floats outside [0, 1] (NaN among
/// them), other shapes and empty arrays are refused; `path` names the array in errors.
pub fn images_of(path: &Path, dims: &[usize], data: Elements<'_>) -> Result<(Values, ImageShape), DatasetError> {
    let (n, shape, hwc) = match dims[..] {
        [n, d] => (n, ImageShape::grey(1, d), false),
        [n, h, w] => (n, ImageShape::grey(h, w), false),
        [n, h, w, c @ (1 | 3)] => (
            n,
            ImageShape {
                height: h,
                width: w,
                channels: c,
            },
            c == 3,
        ),
        _ => {
            return Err(bad(
                path,
                format!(
                    "an array of shape {dims:?}: expected images N x H x W, N x H x W x C (C = 1 or 3) or rows N x D"
                ),
            ));
        }
    };
    if n == 0 || shape.is_empty() {
        return Err(bad(path, format!("an empty array (shape {dims:?})")));
    }
    if n.checked_mul(shape.len()) != Some(data.len()) {
        return Err(bad(path, format!("{} values do not fill shape {dims:?}", data.len())));
    }
    // N x H x W x C to N x C x H x W, converting each value on the way.
    fn planar<S: Copy, E: Copy + Default>(v: &[S], s: ImageShape, hwc: bool, f: impl Fn(S) -> E) -> Vec<E> {
        if !hwc {
            return v.iter().map(|&x| f(x)).collect();
        }
        let (plane, c) = (s.height * s.width, s.channels);
        let mut out = vec![E::default(); v.len()];
        for (img, dst) in v.chunks_exact(s.len()).zip(out.chunks_exact_mut(s.len())) {
            for p in 0..plane {
                for ch in 0..c {
                    dst[ch * plane + p] = f(img[p * c + ch]);
                }
            }
        }
        out
    }
    // Rows that need no reordering: moved if owned, copied once if borrowed.
    fn rows<E: Copy + Default>(v: Cow<'_, [E]>, s: ImageShape, hwc: bool) -> Vec<E> {
        if hwc {
            planar(&v, s, true, |x| x)
        } else {
            v.into_owned()
        }
    }
    let check = |i: Option<usize>, v: f64| match i {
        Some(i) => Err(bad(
            path,
            format!(
                "value {v} at flat index {i} is outside [0, 1]: float images must be scaled to [0, 1] (divide bytes by 255)"
            ),
        )),
        None => Ok(()),
    };
    let len = shape.len();
    fn sized<E>(n: usize, len: usize, v: Vec<E>) -> Array2<E> {
        Array2::from_shape_vec((n, len), v).expect("sized above")
    }
    let values = match data {
        Elements::U8(v) => Values::U8(sized(n, len, rows(v, shape, hwc))),
        Elements::F32(v) => {
            let i = v.iter().position(|x| !(0.0..=1.0).contains(x));
            check(i, i.map_or(0.0, |i| f64::from(v[i])))?;
            Values::F32(sized(n, len, rows(v, shape, hwc)))
        }
        Elements::F64(v) => {
            let i = v.iter().position(|x| !(0.0..=1.0).contains(x));
            check(i, i.map_or(0.0, |i| v[i]))?;
            Values::F32(sized(n, len, planar(&v, shape, hwc, |x| x as f32)))
        }
    };
    Ok((values, shape))
}

/// Labels from a 1-d array of small non-negative integers.
fn labels(path: &Path, key: &str, a: NpyArray, n: usize) -> Result<Vec<u8>, DatasetError> {
    labels_of(path, key, &a.shape, a.data.into(), n)
}

/// The labels of `n` images from an array of shape `dims` holding `data`, which must be 1-d
/// with `n` integers from 0 to 255 (`key` names the array in errors, `path` its file).
pub fn labels_of(
    path: &Path,
    key: &str,
    dims: &[usize],
    data: Elements<'_>,
    n: usize,
) -> Result<Vec<u8>, DatasetError> {
    if dims != [n] || data.len() != n {
        return Err(bad(
            path,
            format!("'{key}' has shape {dims:?}, expected [{n}] (one label per image)"),
        ));
    }
    let as_label = |v: f64| (v.fract() == 0.0 && (0.0..=255.0).contains(&v)).then_some(v as u8);
    let out: Option<Vec<u8>> = match data {
        Elements::U8(v) => Some(v.into_owned()),
        Elements::F32(v) => v.iter().map(|&x| as_label(f64::from(x))).collect(),
        Elements::F64(v) => v.iter().map(|&x| as_label(x)).collect(),
    };
    out.ok_or_else(|| {
        bad(
            path,
            format!("'{key}' holds values that are not integers from 0 to 255"),
        )
    })
}

/// The train and test splits of a `.npy` file (its test share set aside as `holdout` says).
pub fn load_npy(path: &Path, limits: &Limits, holdout: &FolderOptions) -> Result<(Split, Split), DatasetError> {
    let (values, shape) = images(path, read_npy(path, limits)?)?;
    split_off(path, values, None, shape, holdout)
}

/// The train and test splits of an `.npz` archive.
pub fn load_npz(
    path: &Path,
    limits: &Limits,
    keys: &NpzKeys,
    holdout: &FolderOptions,
) -> Result<(Split, Split), DatasetError> {
    let present = npz_keys(path)?;
    let has = |k: &str| present.iter().any(|p| p == k || p.strip_suffix(".npy") == Some(k));
    if !has(&keys.x_train) {
        return Err(bad(
            path,
            format!(
                "no array '{}' (the archive holds: {}); name the arrays with --npz-keys X_TRAIN,Y_TRAIN,X_TEST,Y_TEST",
                keys.x_train,
                present.join(", ")
            ),
        ));
    }
    let one = |k: &str| -> Result<NpyArray, DatasetError> { Ok(read_npz(path, limits, &[k])?.remove(0)) };
    let (xt, shape) = images(path, one(&keys.x_train)?)?;
    let yt = if has(&keys.y_train) {
        Some(labels(path, &keys.y_train, one(&keys.y_train)?, xt.nrows())?)
    } else {
        None
    };
    if !has(&keys.x_test) {
        return split_off(path, xt, yt, shape, holdout);
    }
    let (xs, test_shape) = images(path, one(&keys.x_test)?)?;
    if test_shape != shape {
        return Err(bad(
            path,
            format!(
                "'{}' holds {shape} images but '{}' holds {test_shape}",
                keys.x_train, keys.x_test
            ),
        ));
    }
    let ys = match (has(&keys.y_test), &yt) {
        (true, Some(_)) => Some(labels(path, &keys.y_test, one(&keys.y_test)?, xs.nrows())?),
        (false, None) => None,
        _ => {
            return Err(bad(
                path,
                format!(
                    "labels for one split only: give both '{}' and '{}' or neither",
                    keys.y_train, keys.y_test
                ),
            ));
        }
    };
    Ok((
        Split {
            images: xt,
            labels: yt,
            shape,
        },
        Split {
            images: xs,
            labels: ys,
            shape,
        },
    ))
}

/// Splits `values` (and their labels) into train and test rows: the seeded test share of
/// `holdout` (its test fraction, seed and stratification) of a `.npy` array or of an
/// archive without test arrays.
pub fn split_off(
    path: &Path,
    values: Values,
    labels: Option<Vec<u8>>,
    shape: ImageShape,
    holdout: &FolderOptions,
) -> Result<(Split, Split), DatasetError> {
    let is_test = test_rows(path, values.nrows(), labels.as_deref(), holdout)?;
    let pick = |want: bool| -> Vec<usize> { (0..is_test.len()).filter(|&i| is_test[i] == want).collect() };
    let (tr, te) = (pick(false), pick(true));
    let make = |idx: &[usize]| Split {
        images: values.select(idx),
        labels: labels.as_ref().map(|l| idx.iter().map(|&i| l[i]).collect()),
        shape,
    };
    Ok((make(&tr), make(&te)))
}
