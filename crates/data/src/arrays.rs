//! NumPy arrays as a data source: one `.npy` of images (`N x H x W`, `N x H x W x C` as
//! Keras stores them, or rows `N x D`), split by a seeded test share, or an `.npz` with
//! train and test arrays and, optionally, their labels (`x_train`, `y_train`, `x_test`,
//! `y_test` by default, as in Keras' `mnist.npz`). Bytes stay bytes; floats must lie in
//! [0, 1].

use std::path::Path;

use ndarray::Array2;

use crate::folder::test_rows;
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
    DatasetError::Unrecognised {
        path: path.into(),
        reason,
    }
}

/// The images of `a` as rows of values, with their shape (channels moved outermost).
fn images(path: &Path, a: NpyArray) -> Result<(Values, ImageShape), DatasetError> {
    let (n, shape, hwc) = match a.shape[..] {
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
                    "an array of shape {:?}: expected images N x H x W, N x H x W x C (C = 1 or 3) or rows N x D",
                    a.shape
                ),
            ));
        }
    };
    if n == 0 || shape.is_empty() {
        return Err(bad(path, format!("an empty array (shape {:?})", a.shape)));
    }
    // N x H x W x C to N x C x H x W.
    fn planar<E: Copy + Default>(v: Vec<E>, s: ImageShape, hwc: bool) -> Vec<E> {
        if !hwc {
            return v;
        }
        let (plane, c) = (s.height * s.width, s.channels);
        let mut out = vec![E::default(); v.len()];
        for (img, dst) in v.chunks_exact(s.len()).zip(out.chunks_exact_mut(s.len())) {
            for p in 0..plane {
                for ch in 0..c {
                    dst[ch * plane + p] = img[p * c + ch];
                }
            }
        }
        out
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
    let values = match a.data {
        NpyData::U8(v) => {
            Values::U8(Array2::from_shape_vec((n, shape.len()), planar(v, shape, hwc)).expect("sized by the header"))
        }
        NpyData::F32(v) => {
            let i = v.iter().position(|x| !(0.0..=1.0).contains(x));
            check(i, i.map_or(0.0, |i| f64::from(v[i])))?;
            Values::F32(Array2::from_shape_vec((n, shape.len()), planar(v, shape, hwc)).expect("sized by the header"))
        }
        NpyData::F64(v) => {
            let i = v.iter().position(|x| !(0.0..=1.0).contains(x));
            check(i, i.map_or(0.0, |i| v[i]))?;
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Values::F32(Array2::from_shape_vec((n, shape.len()), planar(v, shape, hwc)).expect("sized by the header"))
        }
    };
    Ok((values, shape))
}

/// Labels from a 1-d array of small non-negative integers.
fn labels(path: &Path, key: &str, a: NpyArray, n: usize) -> Result<Vec<u8>, DatasetError> {
    if a.shape != [n] {
        return Err(bad(
            path,
            format!("'{key}' has shape {:?}, expected [{n}] (one label per image)", a.shape),
        ));
    }
    let as_label = |v: f64| (v.fract() == 0.0 && (0.0..=255.0).contains(&v)).then_some(v as u8);
    let out: Option<Vec<u8>> = match a.data {
        NpyData::U8(v) => Some(v),
        NpyData::F32(v) => v.iter().map(|&x| as_label(f64::from(x))).collect(),
        NpyData::F64(v) => v.iter().map(|&x| as_label(x)).collect(),
    };
    out.ok_or_else(|| {
        bad(
            path,
            format!("'{key}' holds values that are not integers from 0 to 255"),
        )
    })
}

/// The train and test splits of a `.npy` file (test share split off with `seed`).
pub fn load_npy(path: &Path, limits: &Limits, test_fraction: f64, seed: u64) -> Result<(Split, Split), DatasetError> {
    let (values, shape) = images(path, read_npy(path, limits)?)?;
    split_off(path, values, None, shape, test_fraction, seed)
}

/// The train and test splits of an `.npz` archive.
pub fn load_npz(
    path: &Path,
    limits: &Limits,
    keys: &NpzKeys,
    test_fraction: f64,
    seed: u64,
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
        return split_off(path, xt, yt, shape, test_fraction, seed);
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

fn split_off(
    path: &Path,
    values: Values,
    labels: Option<Vec<u8>>,
    shape: ImageShape,
    test_fraction: f64,
    seed: u64,
) -> Result<(Split, Split), DatasetError> {
    let is_test = test_rows(path, values.nrows(), test_fraction, seed)?;
    let pick = |want: bool| -> Vec<usize> { (0..is_test.len()).filter(|&i| is_test[i] == want).collect() };
    let (tr, te) = (pick(false), pick(true));
    let make = |idx: &[usize]| Split {
        images: values.select(idx),
        labels: labels.as_ref().map(|l| idx.iter().map(|&i| l[i]).collect()),
        shape,
    };
    Ok((make(&tr), make(&te)))
}
