//! NumPy arrays in: uint8, float32 or float64, `N x D` rows or `N x H x W [x C]` images
//! (channels last, as NumPy and Keras hold them), checked and converted by the engine's own
//! reader of `.npy` images (`vae_data::arrays`), so a bad array is refused with the message
//! the command line gives for the same array in a file. Values are copied once, into the
//! engine's layout (channels first).

use std::borrow::Cow;
use std::path::Path;

use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use vae_data::arrays::{images_of, labels_of};
use vae_data::npy::{NpyArray, NpyData, check_descr};
use vae_data::{Elements, ImageShape, Split, Values};

/// A `ValueError` with `message`.
pub fn value_error(message: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(message.to_string())
}

/// The shape and elements of the array `obj` (named `name` in errors), borrowed.
pub fn with_elements<R>(
    name: &str,
    obj: &Bound<'_, PyAny>,
    f: impl FnOnce(&[usize], Elements<'_>) -> PyResult<R>,
) -> PyResult<R> {
    // Anything NumPy takes as an array (lists too), in native byte order.
    let Ok(obj) = obj
        .py()
        .import("numpy")
        .and_then(|np| np.call_method1("asarray", (obj,)))
    else {
        return Err(value_error(format!("{name}: not an array (numpy.asarray refuses it)")));
    };
    let dtype = obj.getattr("dtype")?;
    let obj = if dtype.getattr("isnative")?.extract::<bool>()? {
        obj
    } else {
        obj.call_method1("astype", (dtype.call_method1("newbyteorder", ("=",))?,))?
    };
    let obj = &obj;
    macro_rules! try_dtype {
        ($t:ty, $variant:ident) => {
            if let Ok(a) = obj.cast::<PyArrayDyn<$t>>() {
                let a = a.readonly();
                let dims = a.shape().to_vec();
                // (`as_slice` also takes a Fortran-ordered array, whose memory is not in
                // row-major order.)
                return match a.as_slice().ok().filter(|_| a.is_c_contiguous()) {
                    Some(s) => f(&dims, Elements::$variant(Cow::Borrowed(s))),
                    None => {
                        let owned: Vec<$t> = a.as_array().iter().copied().collect();
                        f(&dims, Elements::$variant(Cow::Owned(owned)))
                    }
                };
            }
        };
    }
    try_dtype!(u8, U8);
    try_dtype!(f32, F32);
    try_dtype!(f64, F64);
    let descr: String = match obj
        .getattr("dtype")
        .and_then(|d| d.getattr("str"))
        .and_then(|s| s.extract())
    {
        Ok(d) => d,
        Err(_) => return Err(value_error(format!("{name}: not a NumPy array"))),
    };
    match check_descr(&descr, Path::new(name)) {
        Err(e) => Err(value_error(e)),
        Ok(()) => Err(value_error(format!("{name}: dtype '{descr}' could not be read"))),
    }
}

/// Images or rows for training: the values (bytes stay bytes) and their shape.
pub fn images(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<(Values, ImageShape)> {
    with_elements(name, obj, |dims, data| {
        images_of(Path::new(name), dims, data).map_err(value_error)
    })
}

/// The labels of `n` images.
pub fn labels(name: &str, obj: &Bound<'_, PyAny>, n: usize) -> PyResult<Vec<u8>> {
    with_elements(name, obj, |dims, data| {
        labels_of(Path::new(name), name, dims, data, n).map_err(value_error)
    })
}

/// A split from images and optional labels.
pub fn split(name: &str, x: &Bound<'_, PyAny>, y: Option<(&str, &Bound<'_, PyAny>)>) -> PyResult<Split> {
    let (images, shape) = images(name, x)?;
    let labels = y.map(|(yname, y)| labels(yname, y, images.nrows())).transpose()?;
    Ok(Split { images, labels, shape })
}

/// A split's images as an array of the layout they were given in (`dims`, channels last),
/// for an `.npz` that `vae-train` reads back to the same values.
pub fn as_npy(split: &Split, dims: &[usize]) -> NpyArray {
    let s = split.shape;
    let interleave = |plane_first: &[f32]| -> Vec<f32> { to_channels_last(plane_first, s) };
    let data = match &split.images {
        Values::U8(a) => {
            let v: Vec<u8> = a.iter().copied().collect();
            NpyData::U8(if s.channels > 1 { to_channels_last(&v, s) } else { v })
        }
        Values::F32(a) => {
            let v: Vec<f32> = a.iter().copied().collect();
            NpyData::F32(if s.channels > 1 { interleave(&v) } else { v })
        }
    };
    NpyArray {
        shape: dims.to_vec(),
        data,
    }
}

/// Images of `shape` from channels first (`C x H x W`, the engine's layout) to channels last
/// (`H x W x C`), image by image.
pub fn to_channels_last<E: Copy + Default>(v: &[E], s: ImageShape) -> Vec<E> {
    let (plane, c) = (s.height * s.width, s.channels);
    let mut out = vec![E::default(); v.len()];
    for (img, dst) in v.chunks_exact(s.len()).zip(out.chunks_exact_mut(s.len())) {
        for p in 0..plane {
            for ch in 0..c {
                dst[p * c + ch] = img[ch * plane + p];
            }
        }
    }
    out
}

/// Labels as a 1-d uint8 array.
pub fn labels_npy(labels: &[u8]) -> NpyArray {
    NpyArray {
        shape: vec![labels.len()],
        data: NpyData::U8(labels.to_vec()),
    }
}

/// The dimensions of the array `obj`.
pub fn dims(obj: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
    obj.getattr("shape")?.extract()
}
