//! [`conv_nhwc`](super::conv_nhwc) for a few destination channels (an image's last layer, the
//! backward by the input of its first) on maps whose destination reads each source pixel
//! under a tap at most once: scatter maps and gathers of stride 1.
//!
//! Per image, first the products of every tap's weight with every source pixel, `U = W' X`
//! (`W'` the weight as `[tap, destination channel][source channel]`, `X` the image seen as
//! `[channel][pixel]`): a GEMM through the packed tile, one row of `U` per (tap, channel),
//! its pixels along the vectors. Then each destination value is its start plus the `U`
//! values of the taps that reach it, added in tap order; [`BLOCK`] destination columns of
//! a phase that read consecutive source pixels are added as vectors. Each `U` value is one
//! multiply-add chain over the source channels and every sum runs in a fixed order, lane by
//! lane: the same bits at every thread count and at AVX2 and AVX-512. Against a dot product
//! per pixel and channel ([`ConvDot`](super::ConvDot)) there is no horizontal sum and no
//! table of rows per tile; a gather of stride `s` would compute `s^2` times the products it
//! needs, so those keep the dot products.

use std::cell::RefCell;
use std::ops::Range;

use super::{ConvMap, ConvStart, DOT_MAX, Lanes, PACKED, TILE, WeightLayout, prefetch, with_buffer};
use crate::Float;
use ndarray::{ArrayView2, ShapeBuilder};

use crate::packed::{RowsOf, Start, Tile, pack_b};
use crate::simd::{Kernel, Unary, Vector, dispatch, unary_vector};
use crate::team::{SendPtr, cut, for_parts};

thread_local! {
    /// The per-axis lists of (tap, source) offsets of the call in progress on this thread.
    static LISTS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Whether [`conv`] computes `map`.
pub(super) fn applies(map: &ConvMap) -> bool {
    map.dst.2 <= DOT_MAX && (map.scatter || map.stride == (1, 1))
}

/// The tile of `U`'s GEMM at a vector width for `n` rows of `U`: (vectors NV, rows MR). At 8
/// lanes, 9 rows (one channel of a 3 x 3 kernel) take one tile of 9 x 8 rather than tiles of 6
/// and 3 rows x 16 (a quarter of their rows wasted: keras-conv's out forward ran 36% -> 41%
/// of the peak on a Zen 3).
fn tile_of(lanes: usize, n: usize) -> (usize, usize) {
    match lanes {
        16 => (2, 9),
        8 if n == 9 => (1, 9),
        8 => (2, 6),
        _ => (4, 4),
    }
}

/// `dst = act(start + conv(src, weight))` for a map that [`applies`].
pub(super) fn conv<T: Float>(
    map: &ConvMap,
    src: &[T],
    weight: &[T],
    layout: WeightLayout,
    start: ConvStart<'_, T>,
    act: Option<Unary<T>>,
    dst: &mut [T],
) {
    let (sh, sw, s_ch) = map.src;
    let (dh, dw, d_ch) = map.dst;
    let (kh, kw) = map.kernel;
    let taps = kh * kw;
    let n = taps * d_ch;
    let lanes = dispatch::<T, _>(Lanes);
    let nr = tile_of(lanes, n).0 * lanes;
    // A row of U: the image's pixels, whole panels.
    let row = (sh * sw).next_multiple_of(nr);
    let (ay, ax) = map.axes();
    with_buffer(
        &LISTS,
        dh * (kh + 1) + dw * (kw + 1) + 3 * dw,
        |lists: &mut [isize]| {
            // Per destination row (column): the number of taps that reach it, then for each, in
            // tap order, the offset in U of its source row (column) and tap row (column).
            let (ylist, rest) = lists.split_at_mut(dh * (kh + 1));
            let (xlist, blocks) = rest.split_at_mut(dw * (kw + 1));
            let tap_row = (d_ch * row) as isize;
            axis_list(
                ay.stride,
                ay.pad,
                ay.scatter,
                kh,
                sh,
                sw as isize,
                kw as isize * tap_row,
                ylist,
            );
            axis_list(ax.stride, ax.pad, ax.scatter, kw, sw, 1, tap_row, xlist);
            let step = if map.scatter { map.stride.1 } else { 1 };
            let nblocks = x_blocks(xlist, kw, step, blocks);
            let (ylist, xlist, blocks) = (&*ylist, &*xlist, &blocks[..3 * nblocks]);
            with_buffer(&PACKED, n * s_ch, |packed: &mut [T]| {
                // W': row (tap, d), column s.
                for (i, v) in packed.iter_mut().enumerate() {
                    let (tap, d, s) = (i / (d_ch * s_ch), i / s_ch % d_ch, i % s_ch);
                    *v = weight[match layout {
                        WeightLayout::DstSrc => (d * s_ch + s) * taps + tap,
                        WeightLayout::SrcDst => (s * d_ch + d) * taps + tap,
                    }];
                }
                let packed = &*packed;
                let parts = map.batch.min(8 * rayon::current_num_threads()).max(1);
                let out = SendPtr(dst.as_mut_ptr());
                for_parts(parts, |i| {
                    let images = cut(map.batch, parts, 1, i);
                    if images.is_empty() {
                        return;
                    }
                    // U for one image and a packed panel, taken here: the kernel is compiled
                    // whole at the level's instructions only if no closure stands between it and
                    // `dispatch`.
                    with_buffer(&TILE, n * row + BLOCK, |u: &mut [T]| {
                        T::with_scratch(s_ch * nr + 16, |panel| {
                            dispatch(TapSums {
                                map,
                                packed,
                                nr,
                                row,
                                ylist,
                                xlist,
                                blocks,
                                src,
                                start,
                                act,
                                dst: out,
                                images,
                                u,
                                panel,
                            })
                        })
                    })
                });
            });
        },
    );
}

/// Writes an axis's lists: for each destination coordinate `o`, at `o (k + 1)`, how many
/// taps reach it, then for each such tap `t` (ascending) reading source coordinate `i`,
/// `i src_step + t tap_step`.
#[allow(clippy::too_many_arguments)]
fn axis_list(
    stride: usize,
    pad: usize,
    scatter: bool,
    k: usize,
    len: usize,
    src_step: isize,
    tap_step: isize,
    list: &mut [isize],
) {
    for (o, entry) in list.chunks_exact_mut(k + 1).enumerate() {
        let mut count = 0;
        for t in 0..k {
            let i = if scatter {
                // o receives source i where i stride + t - pad = o.
                let at = (o + pad) as isize - t as isize;
                if at < 0 || at % stride as isize != 0 {
                    continue;
                }
                at / stride as isize
            } else {
                (o * stride + t) as isize - pad as isize
            };
            if (0..len as isize).contains(&i) {
                count += 1;
                entry[count] = i * src_step + t as isize * tap_step;
            }
        }
        entry[0] = count as isize;
    }
}

/// Cuts a row's destination columns into blocks summed together by [`TapSums::sum_row`]:
/// up to [`BLOCK`] columns `x0 + i step` of one phase reached by the same taps. A block whose
/// column `i` reads `i` source pixels past column `x0` under every tap (no tap in the
/// padding) is *shifted*: its sums are vector adds of `U`'s rows, the list of `x0` alone
/// (and [`BLOCK`] columns are summed whatever its width, the extra ones discarded). Writes
/// `(x0, columns, shifted)` per block into `out` and returns how many.
fn x_blocks(xlist: &[isize], kw: usize, step: usize, out: &mut [isize]) -> usize {
    let dw = xlist.len() / (kw + 1);
    let xl = |x: usize| &xlist[x * (kw + 1)..(x + 1) * (kw + 1)];
    let mut n = 0;
    for phase in 0..step.min(dw) {
        let mut x = phase;
        while x < dw {
            let x0 = x;
            let taps = 1..=xl(x0)[0] as usize;
            let mut cols = 0;
            let mut shifted = true;
            while cols < BLOCK && x < dw && xl(x)[0] == xl(x0)[0] {
                shifted &= xl(x)[taps.clone()]
                    .iter()
                    .zip(&xl(x0)[taps.clone()])
                    .all(|(a, b)| *a == *b + cols as isize);
                cols += 1;
                x += step;
            }
            out[3 * n..3 * n + 3].copy_from_slice(&[x0 as isize, cols as isize, shifted as isize]);
            n += 1;
        }
    }
    n
}

/// Images `images` of [`conv`] on one thread, `u` its room for one image's products.
struct TapSums<'a, T> {
    map: &'a ConvMap,
    /// `W'`: `taps x D` rows of `S` values.
    packed: &'a [T],
    nr: usize,
    /// Values per row of `U` (the pixels, whole panels).
    row: usize,
    ylist: &'a [isize],
    xlist: &'a [isize],
    /// The destination columns in blocks (see [`x_blocks`]).
    blocks: &'a [isize],
    src: &'a [T],
    start: ConvStart<'a, T>,
    act: Option<Unary<T>>,
    dst: SendPtr<T>,
    images: Range<usize>,
    u: &'a mut [T],
    /// Room for a packed panel of the image.
    panel: &'a mut [T],
}

impl<T: Float> Kernel<T> for TapSums<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        // The tile of `tile_of`; G vectors make the BLOCK lanes of a sum.
        match V::LANES {
            16 => self.drive::<V, 2, 9, 1>(),
            8 if self.nr == 8 => self.drive::<V, 1, 9, 2>(),
            8 => self.drive::<V, 2, 6, 2>(),
            4 => self.drive::<V, 4, 4, 4>(),
            _ => self.drive::<V, 4, 4, 16>(),
        }
    }
}

impl<T: Float> TapSums<'_, T> {
    #[inline(always)]
    fn drive<V: Vector<E = T>, const NV: usize, const MR: usize, const G: usize>(mut self) {
        debug_assert_eq!((NV * V::LANES, G * V::LANES), (self.nr, BLOCK));
        let (sh, sw, s_ch) = self.map.src;
        let (dh, dw, d_ch) = self.map.dst;
        let kh = self.map.kernel.0;
        let (nr, row) = (self.nr, self.row);
        let n = self.packed.len() / s_ch;
        let pixels = sh * sw;
        // Past the last row, what a shifted block's extra columns read.
        self.u[n * row..].fill(T::zero());
        let u = self.u.as_mut_ptr();
        let panel = std::mem::take(&mut self.panel);
        let skip = panel.as_ptr().align_offset(64).min(16);
        let panel = &mut panel[skip..];
        for j in self.images.clone() {
            for j0 in (0..pixels).step_by(nr) {
                let cols = nr.min(pixels - j0);
                // SAFETY: pixels j0 .. j0 + cols of image j, s_ch values each: seen as
                // s_ch x cols, column p at p s_ch.
                let x = unsafe {
                    ArrayView2::from_shape_ptr(
                        (s_ch, cols).strides((1, s_ch)),
                        self.src[(j * pixels + j0) * s_ch..].as_ptr(),
                    )
                };
                // The next panel's pixels on their way while this one is multiplied.
                let next = (j * pixels + j0 + nr) * s_ch;
                prefetch(self.src.as_ptr().wrapping_add(next), nr * s_ch);
                pack_b::<V>(x, T::one(), nr, panel);
                let mut i0 = 0;
                while i0 < n {
                    let tile = Tile {
                        a: RowsOf::Strided {
                            a: self.packed.as_ptr(),
                            rsa: s_ch as isize,
                            csa: 1,
                            i0,
                        },
                        rows: MR.min(n - i0),
                        kc: s_ch,
                        panel: panel.as_ptr(),
                        nr,
                        b_rows: std::ptr::null(),
                        b_col: 0,
                        // SAFETY: row i0 < n, column j0 < row of U.
                        c: unsafe { u.add(i0 * row + j0) },
                        rsc: row as isize,
                        c_rows: std::ptr::null(),
                        c_col: 0,
                        csc: 1,
                        cols: nr,
                        start: Start::Zero,
                        act: None,
                    };
                    // SAFETY: the tile's rows of W' hold s_ch values, the panel s_ch x nr,
                    // and the tile lies in U (n rows of `row`, j0 + nr <= row).
                    unsafe { tile.run::<V, NV, MR>() };
                    i0 += MR;
                }
            }
            let row_len = dw * d_ch;
            for y in 0..dh {
                let yl = &self.ylist[y * (kh + 1)..(y + 1) * (kh + 1)];
                let ys = &yl[1..=yl[0] as usize];
                // SAFETY: row y of image j of the destination, written by this part alone.
                let out =
                    unsafe { std::slice::from_raw_parts_mut(self.dst.get().add((j * dh + y) * row_len), row_len) };
                self.sum_row::<V, G>(ys, out);
                if let Some(f) = self.act {
                    activate::<T, V>(f, out);
                }
            }
        }
    }

    /// One destination row's sums, `ys` the row's (source row, tap row) offsets in `U`. A
    /// shifted block's [`BLOCK`] columns are summed as `G` vectors, lane by lane in the same
    /// order as alone.
    #[inline(always)]
    fn sum_row<V: Vector<E = T>, const G: usize>(&self, ys: &[isize], out: &mut [T]) {
        let (_, _, d_ch) = self.map.dst;
        let kw = self.map.kernel.1;
        let step = if self.map.scatter { self.map.stride.1 } else { 1 };
        let u = self.u.as_ptr();
        let row = self.row as isize;
        let start = |d: usize, out: T| match self.start {
            ConvStart::Zero => T::zero(),
            ConvStart::Bias(b) => b[d],
            ConvStart::Add => out,
        };
        for block in self.blocks.chunks_exact(3) {
            let (x0, cols, shifted) = (block[0] as usize, block[1] as usize, block[2] != 0);
            let list = &self.xlist[x0 * (kw + 1)..(x0 + 1) * (kw + 1)];
            let list = &list[1..=list[0] as usize];
            if shifted {
                for d in 0..d_ch {
                    let mut lanes = [T::zero(); BLOCK];
                    let mut acc = [V::splat(start(d, T::zero())); G];
                    if let ConvStart::Add = self.start {
                        // (Loaded as vectors only here: a vector load of values just stored
                        // one by one waits for the stores.)
                        for (i, l) in lanes.iter_mut().enumerate().take(cols) {
                            *l = out[(x0 + i * step) * d_ch + d];
                        }
                        // SAFETY: `lanes` holds BLOCK = G x LANES values.
                        acc = core::array::from_fn(|q| unsafe { V::load(lanes.as_ptr().add(q * V::LANES)) });
                    }
                    for &oy in ys {
                        for &ox in list {
                            // SAFETY: the lists hold offsets of a source pixel under a tap
                            // in U, d < D; the BLOCK values from there lie in U (its slack
                            // past the last row).
                            let p = unsafe { u.offset(oy + ox + d as isize * row) };
                            for (q, a) in acc.iter_mut().enumerate() {
                                *a = a.add(unsafe { V::load(p.add(q * V::LANES)) });
                            }
                        }
                    }
                    for (q, a) in acc.iter().enumerate() {
                        // SAFETY: as above.
                        unsafe { a.store(lanes.as_mut_ptr().add(q * V::LANES)) };
                    }
                    for (i, l) in lanes.iter().enumerate().take(cols) {
                        out[(x0 + i * step) * d_ch + d] = *l;
                    }
                }
                continue;
            }
            for x in (0..cols).map(|i| x0 + i * step) {
                let xl = &self.xlist[x * (kw + 1)..(x + 1) * (kw + 1)];
                for d in 0..d_ch {
                    let o = &mut out[x * d_ch + d];
                    let mut v = start(d, *o);
                    for &oy in ys {
                        for &ox in &xl[1..=xl[0] as usize] {
                            // SAFETY: as above.
                            v = v + unsafe { *u.offset(oy + ox + d as isize * row) };
                        }
                    }
                    *o = v;
                }
            }
        }
    }
}

/// Destination columns summed side by side by [`TapSums::sum_row`].
const BLOCK: usize = 16;

/// `x = f(x)` in place, a vector at a time.
#[inline(always)]
fn activate<T: Float, V: Vector<E = T>>(f: Unary<T>, x: &mut [T]) {
    let mut chunks = x.chunks_exact_mut(V::LANES);
    for c in &mut chunks {
        // SAFETY: the chunk holds LANES values.
        unsafe { unary_vector(f, V::load(c.as_ptr())).store(c.as_mut_ptr()) };
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut t = [T::zero(); 16];
        t[..rest.len()].copy_from_slice(rest);
        // SAFETY: t holds 16 >= LANES values.
        unsafe { unary_vector(f, V::load(t.as_ptr())).store(t.as_mut_ptr()) };
        rest.copy_from_slice(&t[..rest.len()]);
    }
}
