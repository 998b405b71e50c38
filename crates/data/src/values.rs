//! The values of a split's images, held once in the element type of their source: bytes for
//! 8-bit images (a quarter of the memory of f32), f32 otherwise. Every reader of the values
//! sees f32 in [0, 1]: a byte `p` reads as `p as f32 * (1 / 255)`.

use std::ops::Range;

use ndarray::{Array2, ArrayView1, Axis, CowArray, Ix2, s};

/// The scale of a byte value.
const BYTE: f32 = 1.0 / 255.0;

/// n images as rows of values.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// Bytes, read as `p / 255`.
    U8(Array2<u8>),
    /// Floats in [0, 1].
    F32(Array2<f32>),
}

impl Values {
    /// (images, values per image).
    pub fn dim(&self) -> (usize, usize) {
        match self {
            Values::U8(a) => a.dim(),
            Values::F32(a) => a.dim(),
        }
    }

    /// Number of images.
    pub fn nrows(&self) -> usize {
        self.dim().0
    }

    /// Values per image.
    pub fn ncols(&self) -> usize {
        self.dim().1
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            Values::U8(a) => a.len(),
            Values::F32(a) => 4 * a.len(),
        }
    }

    /// Rows `rows` as f32: borrowed when the values are f32, converted otherwise.
    pub fn rows_f32(&self, rows: Range<usize>) -> CowArray<'_, f32, Ix2> {
        match self {
            Values::F32(a) => CowArray::from(a.slice(s![rows, ..])),
            Values::U8(a) => CowArray::from(a.slice(s![rows, ..]).mapv(|p| f32::from(p) * BYTE)),
        }
    }

    /// Every row as f32 (see [`Values::rows_f32`]).
    pub fn f32(&self) -> CowArray<'_, f32, Ix2> {
        self.rows_f32(0..self.nrows())
    }

    /// Appends row `i`, as f32, to `out`.
    pub fn push_row(&self, i: usize, out: &mut Vec<f32>) {
        match self {
            Values::U8(a) => out.extend(contiguous(a.row(i)).iter().map(|&p| f32::from(p) * BYTE)),
            Values::F32(a) => out.extend_from_slice(contiguous(a.row(i))),
        }
    }

    /// Appends row `i` binarized to `out`: each value `p` becomes 1 with probability `p` (one
    /// call of `draw` per value, a uniform number in [0, 1)), else 0.
    pub fn push_row_binarized(&self, i: usize, out: &mut Vec<f32>, mut draw: impl FnMut() -> f32) {
        let mut bit = |p: f32| if draw() < p { 1.0 } else { 0.0 };
        match self {
            Values::U8(a) => out.extend(contiguous(a.row(i)).iter().map(|&p| bit(f32::from(p) * BYTE))),
            Values::F32(a) => out.extend(contiguous(a.row(i)).iter().map(|&p| bit(p))),
        }
    }

    /// The rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Values {
        match self {
            Values::U8(a) => Values::U8(a.select(Axis(0), idx)),
            Values::F32(a) => Values::F32(a.select(Axis(0), idx)),
        }
    }

    /// The first `n` rows.
    pub fn head(&self, n: usize) -> Values {
        match self {
            Values::U8(a) => Values::U8(a.slice(s![..n, ..]).to_owned()),
            Values::F32(a) => Values::F32(a.slice(s![..n, ..]).to_owned()),
        }
    }
}

/// A row's values as a slice.
fn contiguous<E>(row: ArrayView1<'_, E>) -> &[E] {
    row.to_slice().expect("dataset images are contiguous rows")
}

impl From<Array2<f32>> for Values {
    fn from(a: Array2<f32>) -> Self {
        Values::F32(a)
    }
}

impl From<Array2<u8>> for Values {
    fn from(a: Array2<u8>) -> Self {
        Values::U8(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_the_f32_they_stand_for() {
        let b = Values::U8(Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as u8 * 51));
        let f = b.f32();
        assert_eq!(f[[1, 2]], 255.0 * BYTE);
        assert_eq!(f[[0, 1]], 51.0 * BYTE);
        let mut row = Vec::new();
        b.push_row(1, &mut row);
        assert_eq!(row, f.row(1).to_vec());
        assert_eq!(b.select(&[1]).f32().row(0), f.row(1));
        assert_eq!(b.bytes(), 6);
        let mut bin = Vec::new();
        b.push_row_binarized(0, &mut bin, || 0.0f32);
        assert_eq!(bin, [0.0, 1.0, 1.0]);
    }
}
