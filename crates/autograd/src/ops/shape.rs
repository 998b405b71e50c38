//! Ops that move values around without arithmetic: repeating rows, reshaping, the layout
//! of images (channels first or last), and the
//! identity whose backward reweights rows (for importance-weighted gradient estimators).

use ndarray::Array2;
use vae_linalg::simd::Accum;

use super::Op;
use crate::Float;
use crate::kernels::put;
use crate::ops::elementwise::{sl, sl_mut};
use crate::tape::{Grads, Tape, Values, Var};

impl<T: Float> Tape<T> {
    /// Each row of `x` repeated `k` times in a row: row `i * k + j` of the (m k) x n result
    /// is row `i` of `x`. The gradient sums each group of `k` rows.
    ///
    /// # Panics
    /// If `k` is 0.
    pub fn repeat_rows(&mut self, x: Var, k: usize) -> Var {
        assert!(k > 0, "repeat_rows: k must be at least 1");
        let (m, n) = self.dim(x);
        self.record(Op::RepeatRows(x, k), (m * k, n), false, |out, v| {
            let xs = sl(v.get(x));
            for (i, chunk) in sl_mut(out).chunks_exact_mut(n.max(1) * k).enumerate() {
                let row = &xs[i * n..(i + 1) * n];
                for dst in chunk.chunks_exact_mut(n.max(1)) {
                    dst.copy_from_slice(row);
                }
            }
        })
    }

    /// The same elements in row-major order, shaped `dim`.
    ///
    /// # Panics
    /// If `dim` holds a different number of elements.
    pub fn reshape(&mut self, x: Var, dim: (usize, usize)) -> Var {
        let from = self.dim(x);
        assert_eq!(
            from.0 * from.1,
            dim.0 * dim.1,
            "reshape: {from:?} and {dim:?} hold different numbers of elements"
        );
        self.record(Op::Reshape(x), dim, false, |out, v| {
            sl_mut(out).copy_from_slice(sl(v.get(x)))
        })
    }

    /// Each row of `x`, an image of `channels` planes (`[C, H, W]`, PyTorch's flatten
    /// order), as channels-last (`[H, W, C]`), the layout of the convolution ops.
    ///
    /// # Panics
    /// If `channels` does not divide the rows' width.
    pub fn channels_last(&mut self, x: Var, channels: usize) -> Var {
        let width = self.dim(x).1;
        assert!(
            channels > 0 && width.is_multiple_of(channels),
            "channels_last: rows of {width} values are not {channels} planes"
        );
        self.transpose_rows(x, channels, width / channels)
    }

    /// The inverse of [`Tape::channels_last`]: channels-last rows back to `[C, H, W]`.
    ///
    /// # Panics
    /// If `channels` does not divide the rows' width.
    pub fn channels_first(&mut self, x: Var, channels: usize) -> Var {
        let width = self.dim(x).1;
        assert!(
            channels > 0 && width.is_multiple_of(channels),
            "channels_first: rows of {width} values are not pixels of {channels} channels"
        );
        self.transpose_rows(x, width / channels, channels)
    }

    /// Each row, a `rows x cols` matrix, transposed: `x` itself for one row or one column
    /// (a grey image), whose transpose is the same values in the same order.
    fn transpose_rows(&mut self, x: Var, rows: usize, cols: usize) -> Var {
        if rows == 1 || cols == 1 {
            return x;
        }
        let dim = self.dim(x);
        self.record(Op::TransposeRows { x, rows, cols }, dim, false, |out, v| {
            transpose_each(sl(v.get(x)), rows, cols, sl_mut(out), Accum::Overwrite)
        })
    }

    /// A constant copy of `v`'s current value: what flows on from it gets no gradient back
    /// (a stop-gradient). Detaching a parameter reads it without training it.
    pub fn detach(&mut self, v: Var) -> Var {
        self.record(Op::Leaf, self.dim(v), false, |out, vals| out.assign(&vals.get(v)))
    }

    /// The identity forward; backward multiplies row `i` of the gradient by `w[i]` (`w` is
    /// m x 1 and receives no gradient). `w` may be a constant filled in after the forward
    /// pass with [`Tape::set_constant`]: only the backward reads it. The doubly
    /// reparameterised IWAE gradient uses it to weight each sample's path to the encoder.
    ///
    /// # Panics
    /// If `w` is not m x 1 for an m-row `x`, or `w` needs a gradient.
    pub fn scale_grad_rows(&mut self, x: Var, w: Var) -> Var {
        let dim = self.dim(x);
        assert_eq!(
            self.dim(w),
            (dim.0, 1),
            "scale_grad_rows: the weights must be {} x 1",
            dim.0
        );
        assert!(
            !self.requires_grad(w),
            "scale_grad_rows: the weights must be a constant (they get no gradient)"
        );
        self.record(Op::ScaleGradRows { x, w }, dim, false, |out, v| {
            sl_mut(out).copy_from_slice(sl(v.get(x)))
        })
    }
}

pub(super) fn repeat_rows_backward<T: Float>(x: Var, k: usize, g: &Array2<T>, vals: &Values<T>, grads: &mut Grads<T>) {
    if !vals.wants_grad(x) {
        return;
    }
    let dim = vals.get(x).dim();
    let n = dim.1.max(1);
    let gs = g.as_slice().expect("gradients are contiguous");
    let (gx, acc) = grads.slot(x, dim);
    for (i, dst) in sl_mut(gx).chunks_exact_mut(n).enumerate() {
        for j in 0..k {
            let src = &gs[(i * k + j) * n..(i * k + j + 1) * n];
            let acc = if j == 0 { acc } else { Accum::Add };
            for (d, &s) in dst.iter_mut().zip(src) {
                put(d, s, acc);
            }
        }
    }
}

/// `out (+)=` the transpose of each `rows x cols` matrix of `src`, images split across
/// the pool (each output element written by one thread: any split gives the same bits).
fn transpose_each<T: Float>(src: &[T], rows: usize, cols: usize, out: &mut [T], acc: Accum) {
    let len = rows * cols;
    if len == 0 {
        return;
    }
    let per = vae_linalg::elementwise::chunk_len(src.len() / len, src.len(), 1) * len;
    vae_linalg::team::for_chunks_mut(out, per, |start, o| {
        let s = &src[start..start + o.len()];
        for (si, oi) in s.chunks_exact(len).zip(o.chunks_exact_mut(len)) {
            match acc {
                Accum::Overwrite => transpose_one::<T, false>(si, rows, cols, oi),
                Accum::Add => transpose_one::<T, true>(si, rows, cols, oi),
            }
        }
    });
}

/// `out (+)=` the transpose of one `rows x cols` matrix, in 8 x 8 blocks (both sides stay
/// in cache lines), each output row of a block written as one run.
fn transpose_one<T: Float, const ADD: bool>(src: &[T], rows: usize, cols: usize, out: &mut [T]) {
    for r0 in (0..rows).step_by(8) {
        let r1 = (r0 + 8).min(rows);
        let block = &src[r0 * cols..r1 * cols];
        for c0 in (0..cols).step_by(8) {
            for c in c0..(c0 + 8).min(cols) {
                let run = &mut out[c * rows + r0..c * rows + r1];
                for (d, &v) in run.iter_mut().zip(block[c..].iter().step_by(cols)) {
                    *d = if ADD { *d + v } else { v };
                }
            }
        }
    }
}

pub(super) fn transpose_rows_backward<T: Float>(
    x: Var,
    rows: usize,
    cols: usize,
    g: &Array2<T>,
    vals: &Values<T>,
    grads: &mut Grads<T>,
) {
    if !vals.wants_grad(x) {
        return;
    }
    let gs = g.as_slice().expect("gradients are contiguous");
    let (gx, acc) = grads.slot(x, vals.get(x).dim());
    transpose_each(gs, cols, rows, sl_mut(gx), acc);
}

pub(super) fn reshape_backward<T: Float>(x: Var, g: &Array2<T>, vals: &Values<T>, grads: &mut Grads<T>) {
    if !vals.wants_grad(x) {
        return;
    }
    let gs = g.as_slice().expect("gradients are contiguous");
    let (gx, acc) = grads.slot(x, vals.get(x).dim());
    for (d, &s) in sl_mut(gx).iter_mut().zip(gs) {
        put(d, s, acc);
    }
}

pub(super) fn scale_grad_rows_backward<T: Float>(
    x: Var,
    w: Var,
    g: &Array2<T>,
    vals: &Values<T>,
    grads: &mut Grads<T>,
) {
    if !vals.wants_grad(x) {
        return;
    }
    let ws = sl(vals.get(w));
    let n = g.ncols().max(1);
    let gs = g.as_slice().expect("gradients are contiguous");
    let (gx, acc) = grads.slot(x, vals.get(x).dim());
    for ((dst, src), &wi) in sl_mut(gx).chunks_exact_mut(n).zip(gs.chunks_exact(n)).zip(ws) {
        for (d, &s) in dst.iter_mut().zip(src) {
            put(d, wi * s, acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transpose_one;

    /// The blocked transpose against its definition, on whole blocks, edges of every width,
    /// and both the overwrite and the add.
    #[test]
    fn transpose_one_is_the_transpose() {
        for (rows, cols) in [
            (1, 1),
            (1, 9),
            (9, 1),
            (8, 8),
            (16, 24),
            (7, 13),
            (64, 49),
            (49, 64),
            (17, 31),
        ] {
            let src: Vec<f64> = (0..rows * cols).map(|i| i as f64 * 0.5 - 3.0).collect();
            let want = |r: usize, c: usize| src[r * cols + c];
            let mut out = vec![f64::NAN; rows * cols];
            transpose_one::<f64, false>(&src, rows, cols, &mut out);
            let mut added: Vec<f64> = (0..rows * cols).map(|i| i as f64).collect();
            transpose_one::<f64, true>(&src, rows, cols, &mut added);
            for c in 0..cols {
                for r in 0..rows {
                    assert_eq!(out[c * rows + r], want(r, c), "{rows} x {cols} at ({r}, {c})");
                    assert_eq!(added[c * rows + r], (c * rows + r) as f64 + want(r, c));
                }
            }
        }
    }
}
