//! [`conv_nhwc`](super::conv_nhwc) for a few destination channels (an image's last layer, the
//! backward by the input of its first) on maps whose destination reads each source pixel
//! under a tap at most once: scatter maps and gathers of stride 1.
//!
//! Per image, first the products of every source pixel with every tap's weight, `U = src W'`
//! (`W'` the weight as `[source channel][tap, destination channel]`): a GEMM through the
//! packed tile, the image read in place as `A`, `taps x D` columns. Then each destination
//! value is its start plus the `U` values of the taps that reach it, added in tap order.
//! Each `U` value is one multiply-add chain over the source channels and the sums run in a
//! fixed order: the same bits at every thread count and at AVX2 and AVX-512. Against a dot
//! product per pixel and channel ([`ConvDot`](super::ConvDot)), there is no horizontal sum
//! and no table of rows per tile; a gather of stride `s` would compute `s^2` times the
//! products it needs, so those keep the dot products.

use std::cell::RefCell;
use std::ops::Range;

use super::{ConvMap, ConvStart, DOT_MAX, Lanes, PACKED, TILE, WeightLayout, with_buffer};
use crate::Float;
use crate::packed::{RowsOf, Start, Tile};
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

/// The panel width for `n` columns of `U` at a vector width (see [`TapSums::run`]).
fn panel_width(lanes: usize, n: usize) -> usize {
    match lanes {
        16 if n <= 16 => 16,
        16 if n <= 32 => 32,
        16 => 48,
        8 if n <= 8 => 8,
        8 => 16,
        _ => 4,
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
    let n = kh * kw * d_ch;
    let nr = panel_width(dispatch::<T, _>(Lanes), n);
    let npad = n.next_multiple_of(nr);
    let panels = npad / nr;
    let (ay, ax) = map.axes();
    with_buffer(
        &LISTS,
        dh * (kh + 1) + dw * (kw + 1) + 3 * dw,
        |lists: &mut [isize]| {
            // Per destination row (column): the number of taps that reach it, then for each, in
            // tap order, the offset in U of its source row (column) and tap row (column).
            let (ylist, rest) = lists.split_at_mut(dh * (kh + 1));
            let (xlist, blocks) = rest.split_at_mut(dw * (kw + 1));
            axis_list(
                ay.stride,
                ay.pad,
                ay.scatter,
                kh,
                sh,
                (sw * npad) as isize,
                (kw * d_ch) as isize,
                ylist,
            );
            axis_list(
                ax.stride,
                ax.pad,
                ax.scatter,
                kw,
                sw,
                npad as isize,
                d_ch as isize,
                xlist,
            );
            let step = if map.scatter { map.stride.1 } else { 1 };
            let nblocks = x_blocks(xlist, kw, step, npad as isize, blocks);
            let (ylist, xlist, blocks) = (&*ylist, &*xlist, &blocks[..3 * nblocks]);
            with_buffer(&PACKED, panels * s_ch * nr + 16, |packed: &mut [T]| {
                let at = |d: usize, s: usize, tap: usize| match layout {
                    WeightLayout::DstSrc => (d * s_ch + s) * kh * kw + tap,
                    WeightLayout::SrcDst => (s * d_ch + d) * kh * kw + tap,
                };
                // Panel p, row s: columns p nr .. of [tap, destination channel], zero past n.
                for (i, v) in packed[..panels * s_ch * nr].iter_mut().enumerate() {
                    let (p, s, j) = (i / (s_ch * nr), i / nr % s_ch, i % nr);
                    let col = p * nr + j;
                    *v = if col < n {
                        weight[at(col % d_ch, s, col / d_ch)]
                    } else {
                        T::zero()
                    };
                }
                let packed = &*packed;
                let parts = map.batch.min(8 * rayon::current_num_threads()).max(1);
                let out = SendPtr(dst.as_mut_ptr());
                for_parts(parts, |i| {
                    let images = cut(map.batch, parts, 1, i);
                    if images.is_empty() {
                        return;
                    }
                    // U for one image, taken here: the kernel is compiled whole at the level's
                    // instructions only if no closure stands between it and `dispatch`.
                    with_buffer(&TILE, (sh * sw + BLOCK) * npad, |u: &mut [T]| {
                        dispatch(TapSums {
                            map,
                            packed,
                            nr,
                            npad,
                            ylist,
                            xlist,
                            blocks,
                            src,
                            start,
                            act,
                            dst: out,
                            images,
                            u,
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
/// column `i` reads `i npad` past column `x0` under every tap (no tap in the padding) is
/// *shifted*: its sums read `U` at fixed strides, the list of `x0` alone (and [`BLOCK`]
/// columns are summed whatever its width, the extra ones discarded). Writes `(x0,
/// columns, shifted)` per block into `out` and returns how many.
fn x_blocks(xlist: &[isize], kw: usize, step: usize, npad: isize, out: &mut [isize]) -> usize {
    let dw = xlist.len() / (kw + 1);
    let xl = |x: usize| &xlist[x * (kw + 1)..(x + 1) * (kw + 1)];
    let mut n = 0;
    for phase in 0..step.min(dw) {
        let mut x = phase;
        while x < dw {
            let x0 = x;
            let mut cols = 0;
            let mut shifted = true;
            while cols < BLOCK && x < dw && xl(x)[0] == xl(x0)[0] {
                let taps = 1..=xl(x0)[0] as usize;
                shifted &= xl(x)[taps.clone()]
                    .iter()
                    .zip(&xl(x0)[taps])
                    .all(|(a, b)| *a == *b + cols as isize * npad);
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
    /// `W'` in panels of `nr` columns, `npad` in all.
    packed: &'a [T],
    nr: usize,
    npad: usize,
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
}

impl<T: Float> Kernel<T> for TapSums<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        // Panels of one to three vectors, as wide as `panel_width` chose.
        match (V::LANES, self.nr) {
            (16, 16) | (8, 8) => self.drive::<V, 1, 12>(),
            (16, 32) => self.drive::<V, 2, 12>(),
            (16, _) => self.drive::<V, 3, 8>(),
            (8, _) => self.drive::<V, 2, 6>(),
            _ => self.drive::<V, 4, 4>(),
        }
    }
}

impl<T: Float> TapSums<'_, T> {
    #[inline(always)]
    fn drive<V: Vector<E = T>, const NV: usize, const MR: usize>(self) {
        debug_assert_eq!(NV * V::LANES, self.nr);
        let (sh, sw, s_ch) = self.map.src;
        let (dh, dw, d_ch) = self.map.dst;
        let kh = self.map.kernel.0;
        let (nr, npad) = (self.nr, self.npad);
        let pixels = sh * sw;
        // Past the image's products, what a shifted block's extra columns read.
        self.u[pixels * npad..].fill(T::zero());
        let u = self.u.as_mut_ptr();
        for j in self.images.clone() {
            let img = self.src[j * pixels * s_ch..].as_ptr();
            for panel in 0..npad / nr {
                let w = self.packed[panel * s_ch * nr..].as_ptr();
                let mut i0 = 0;
                while i0 < pixels {
                    let tile = Tile {
                        a: RowsOf::Strided {
                            a: img,
                            rsa: s_ch as isize,
                            csa: 1,
                            i0,
                        },
                        rows: MR.min(pixels - i0),
                        kc: s_ch,
                        panel: w,
                        nr,
                        // SAFETY: row i0 < pixels, column panel nr < npad of U.
                        c: unsafe { u.add(i0 * npad + panel * nr) },
                        rsc: npad as isize,
                        c_rows: std::ptr::null(),
                        c_col: 0,
                        csc: 1,
                        cols: nr,
                        start: Start::Zero,
                        act: None,
                    };
                    // SAFETY: the tile's rows are pixels of image j (s_ch values each), the
                    // panel s_ch x nr values, and the tile lies in U (pixels x npad).
                    unsafe { tile.run::<V, NV, MR>() };
                    i0 += MR;
                }
            }
            let row_len = dw * d_ch;
            for y in 0..dh {
                let yl = &self.ylist[y * (kh + 1)..(y + 1) * (kh + 1)];
                let ys = &yl[1..=yl[0] as usize];
                // SAFETY: row y of image j of the destination, written by this part alone.
                let row =
                    unsafe { std::slice::from_raw_parts_mut(self.dst.get().add((j * dh + y) * row_len), row_len) };
                self.sum_row(ys, row);
                if let Some(f) = self.act {
                    activate::<T, V>(f, row);
                }
            }
        }
    }

    /// One destination row's sums, `ys` the row's (source row, tap row) offsets. A sum is a
    /// chain of dependent adds, so the [`BLOCK`] columns of a shifted block are summed side
    /// by side, each in the same order as alone.
    #[inline(always)]
    fn sum_row(&self, ys: &[isize], row: &mut [T]) {
        let (_, _, d_ch) = self.map.dst;
        let kw = self.map.kernel.1;
        let step = if self.map.scatter { self.map.stride.1 } else { 1 };
        let u = self.u.as_ptr();
        let npad = self.npad;
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
                    let mut acc: [T; BLOCK] = core::array::from_fn(|i| {
                        start(d, row.get((x0 + i * step) * d_ch + d).copied().unwrap_or(T::zero()))
                    });
                    for &oy in ys {
                        for &ox in list {
                            // SAFETY: the lists hold offsets of source pixels and taps inside
                            // U, column i of a shifted block i npad further; d < D.
                            let p = unsafe { u.offset(oy + ox + d as isize) };
                            for (i, a) in acc.iter_mut().enumerate() {
                                *a = *a + unsafe { *p.add(i * npad) };
                            }
                        }
                    }
                    for (i, a) in acc.iter().enumerate().take(cols) {
                        row[(x0 + i * step) * d_ch + d] = *a;
                    }
                }
                continue;
            }
            for x in (0..cols).map(|i| x0 + i * step) {
                let xl = &self.xlist[x * (kw + 1)..(x + 1) * (kw + 1)];
                for d in 0..d_ch {
                    let out = &mut row[x * d_ch + d];
                    let mut v = start(d, *out);
                    for &oy in ys {
                        for &ox in &xl[1..=xl[0] as usize] {
                            // SAFETY: as above.
                            v = v + unsafe { *u.offset(oy + ox + d as isize) };
                        }
                    }
                    *out = v;
                }
            }
        }
    }
}

/// Destination pixels summed side by side by [`TapSums::sum_row`].
const BLOCK: usize = 8;

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
