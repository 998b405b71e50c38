//! The elementwise kernels of `simd` over contiguous slices, split across rayon's pool in
//! contiguous chunks (one per thread) when they are long enough to repay it. Every element
//! is computed independently, and row reductions stay within a row, so results never depend
//! on the thread count. [`chunk_len`] and [`split`] are public for the kernels of the other
//! crates (the losses in `vae-autograd`, Adam in `vae-nn`), which split the same way.

use crate::Float;
use crate::simd::{
    Accum, AddBias, Binary, BinaryMap, ColumnSums, Unary, UnaryGrad, UnaryGradFromOutput, UnaryMap, dispatch,
};
use crate::team::for_chunks_mut;

/// Below this many elements a kernel runs on the calling thread.
pub const PAR_MIN_LEN: usize = 1 << 15;
/// The same inside a team (`team::with_team`), where a fork-join costs no wake-up.
pub const PAR_MIN_LEN_TEAM: usize = 1 << 12;

/// The fewest elements worth splitting across threads on the calling thread now:
/// [`PAR_MIN_LEN_TEAM`] inside a team, [`PAR_MIN_LEN`] outside.
pub fn par_min_len() -> usize {
    if crate::team::in_team() {
        PAR_MIN_LEN_TEAM
    } else {
        PAR_MIN_LEN
    }
}

/// The length (a multiple of `align`) of the contiguous chunks to cut `len` units into, for
/// `work` elements of work in all: `len` rounded up to `align` when the work is too small to
/// split ([`par_min_len`]), else about one chunk per thread.
pub fn chunk_len(len: usize, work: usize, align: usize) -> usize {
    let min = par_min_len();
    let parts = if work < min {
        1
    } else {
        rayon::current_num_threads().min(work / (min / 4)).max(1)
    };
    let units = len.div_ceil(align.max(1));
    units.div_ceil(parts).max(1) * align.max(1)
}

/// Runs `f` on matching chunks of `out` and `ins` (chunk length a multiple of `align`), in
/// parallel when the work is large.
pub fn split<T: Float, const K: usize>(
    out: &mut [T],
    ins: [&[T]; K],
    align: usize,
    f: impl Fn(&mut [T], [&[T]; K]) + Sync + Send,
) {
    let len = chunk_len(out.len(), out.len(), align);
    if len >= out.len() {
        return f(out, ins);
    }
    for_chunks_mut(out, len, |start, o| {
        let r = start..start + o.len();
        f(o, core::array::from_fn(|j| &ins[j][r.clone()]));
    });
}

/// `out = f(x)`.
pub fn unary<T: Float>(f: Unary<T>, x: &[T], out: &mut [T]) {
    let acc = Accum::Overwrite;
    split(out, [x], 16, |out, [x]| dispatch(UnaryMap { f, x, out, acc }));
}

/// `out (+)= g * f'(x)`, from the forward input `x` and output `y`.
pub fn unary_grad<T: Float>(f: Unary<T>, g: &[T], x: &[T], y: &[T], out: &mut [T], acc: Accum) {
    split(out, [g, x, y], 16, |out, [g, x, y]| {
        dispatch(UnaryGrad { f, g, x, y, out, acc })
    });
}

/// `g = g * f'(x)` in place, from the output `y = f(x)` alone (see [`UnaryGradFromOutput`]).
pub fn unary_grad_from_output<T: Float>(f: Unary<T>, y: &[T], g: &mut [T]) {
    split(g, [y], 16, |g, [y]| dispatch(UnaryGradFromOutput { f, y, g }));
}

/// `out (+)= a op b`.
pub fn binary<T: Float>(op: Binary, a: &[T], b: &[T], out: &mut [T], acc: Accum) {
    split(out, [a, b], 16, |out, [a, b]| {
        dispatch(BinaryMap { op, a, b, out, acc })
    });
}

/// `out (+)= c * x`.
pub fn scale<T: Float>(c: T, x: &[T], out: &mut [T], acc: Accum) {
    let f = Unary::Scale(c);
    split(out, [x], 16, |out, [x]| dispatch(UnaryMap { f, x, out, acc }));
}

/// `out[i, :] = x[i, :] + bias` for a row-major `x` of `bias.len()` columns.
pub fn add_bias<T: Float>(x: &[T], bias: &[T], out: &mut [T]) {
    let n = bias.len().max(1);
    let len = chunk_len(out.len() / n, out.len(), 1) * n;
    if len >= out.len() {
        return dispatch(AddBias { x, bias, out });
    }
    for_chunks_mut(out, len, |start, out| {
        let x = &x[start..start + out.len()];
        dispatch(AddBias { x, bias, out })
    });
}

/// `dst (+)= sum over the rows of src` (row-major, `dst.len()` columns), rows in order.
pub fn column_sums<T: Float>(src: &[T], dst: &mut [T], acc: Accum) {
    dispatch(ColumnSums { src, dst, acc });
}
