//! Gathers from sources of fewer than [`GATHER_BELOW`] channels (an image's first layer, the
//! backward by the input of its last transposed layer), read through a zero-padded copy of
//! each image: every window then lies inside, so each tile's rows of `A` are the image read
//! in place at its pixels' offsets plus the taps' ([`RowsOf::Offsets`]), with no frame of
//! windows to copy and no table of segments. The chain of each output runs over (tap,
//! channel) in order from its start, as in [`ConvTiles`](super::ConvTiles): the same bits at
//! every thread count and at AVX2 and AVX-512. The backward by the weights reads the same
//! copies ([`WeightGrad`](super::WeightGrad), turned over).

use std::cell::RefCell;
use std::ops::Range;

use super::{
    ConvMap, ConvStart, DOT_MAX, GATHER_BELOW, Lanes, PACKED, TILE, WeightLayout, conv_tile_shape, pack_weight,
    phases_of, with_buffer,
};
use crate::Float;
use crate::packed::{RowsOf, Start, Tile};
use crate::simd::{Kernel, Unary, Vector, dispatch};
use crate::team::{SendPtr, cut, for_parts};

thread_local! {
    /// The taps' offsets in a padded image, for the call in progress on this thread.
    static TAPS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Whether [`conv`] computes `map`.
pub(super) fn applies(map: &ConvMap) -> bool {
    !map.scatter && map.src.2 < GATHER_BELOW && map.dst.2 > DOT_MAX
}

/// The size (rows, columns) of a gather map's source image padded so that every window lies
/// inside: the source at `(padding.0, padding.1)`, zero around it.
pub(super) fn padded_dims(map: &ConvMap) -> (usize, usize) {
    let (dh, dw, _) = map.dst;
    (
        (dh.max(1) - 1) * map.stride.0 + map.kernel.0,
        (dw.max(1) - 1) * map.stride.1 + map.kernel.1,
    )
}

/// Copies source images `images` of `src`, each padded ([`padded_dims`]), one after the other
/// into `out`.
pub(super) fn pad_images<T: Float>(map: &ConvMap, src: &[T], images: Range<usize>, out: &mut [T]) {
    let (sh, sw, s_ch) = map.src;
    let (py, px) = map.padding;
    let (ph, pw) = padded_dims(map);
    out.fill(T::zero());
    // The source rows and columns a window reaches, at (y + py, x + px).
    let (rows, cols) = (sh.min(ph.saturating_sub(py)), sw.min(pw.saturating_sub(px)) * s_ch);
    for (jl, j) in images.enumerate() {
        for y in 0..rows {
            let from = (j * sh + y) * sw * s_ch;
            let to = ((jl * ph + y + py) * pw + px) * s_ch;
            out[to..to + cols].copy_from_slice(&src[from..from + cols]);
        }
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
    let (_, _, s_ch) = map.src;
    let (kh, kw) = map.kernel;
    let (ph, pw) = padded_dims(map);
    let (mr, nr) = conv_tile_shape(dispatch::<T, _>(Lanes), map.dst.2);
    let (phases, packed_len, _) = phases_of(map, mr, nr);
    let k = kh * kw * s_ch;
    with_buffer(&TAPS, k, |taps: &mut [isize]| {
        // Tap (ky, kx), channel s, from a window's first value: the weight's row order.
        for (i, t) in taps.iter_mut().enumerate() {
            let (tap, s) = (i / s_ch, i % s_ch);
            *t = (((tap / kw) * pw + tap % kw) * s_ch + s) as isize;
        }
        let taps = &*taps;
        with_buffer(&PACKED, packed_len + 16, |packed: &mut [T]| {
            pack_weight(map, &phases, weight, layout, nr, packed);
            let packed = &packed[phases.get(0).at..packed_len];
            let parts = map.batch.min(8 * rayon::current_num_threads()).max(1);
            let out = SendPtr(dst.as_mut_ptr());
            for_parts(parts, |i| {
                let images = cut(map.batch, parts, 1, i);
                if images.is_empty() {
                    return;
                }
                // One padded image, taken here: the kernel is compiled whole at the level's
                // instructions only if no closure stands between it and `dispatch`.
                with_buffer(&TILE, ph * pw * s_ch, |image: &mut [T]| {
                    dispatch(PaddedTiles {
                        map,
                        packed,
                        nr,
                        taps,
                        src,
                        start,
                        act,
                        dst: out,
                        images,
                        image,
                    })
                })
            });
        });
    });
}

/// Images `images` of [`conv`] on one thread, `image` its room for one padded image.
struct PaddedTiles<'a, T> {
    map: &'a ConvMap,
    /// The weight in panels of `nr` columns, `taps x S` rows each.
    packed: &'a [T],
    nr: usize,
    /// Offsets of the (tap, channel) values of a window from its first.
    taps: &'a [isize],
    src: &'a [T],
    start: ConvStart<'a, T>,
    act: Option<Unary<T>>,
    dst: SendPtr<T>,
    images: Range<usize>,
    image: &'a mut [T],
}

impl<T: Float> Kernel<T> for PaddedTiles<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        // The tile shapes of `conv_tile_shape`.
        match V::LANES {
            16 if self.nr == 32 => self.drive::<V, 2, 12>(),
            16 => self.drive::<V, 3, 8>(),
            8 => self.drive::<V, 2, 6>(),
            _ => self.drive::<V, 4, 4>(),
        }
    }
}

impl<T: Float> PaddedTiles<'_, T> {
    #[inline(always)]
    fn drive<V: Vector<E = T>, const NV: usize, const MR: usize>(self) {
        debug_assert_eq!(NV * V::LANES, self.nr);
        let map = self.map;
        let (dh, dw, d_ch) = map.dst;
        let (sy, sx) = map.stride;
        let (_, pw) = padded_dims(map);
        let s_ch = map.src.2;
        let nr = self.nr;
        let k = self.taps.len();
        let pixels = dh * dw;
        for j in self.images.clone() {
            pad_images(map, self.src, j..j + 1, self.image);
            let image = self.image.as_ptr();
            for panel in 0..d_ch.div_ceil(nr) {
                let d0 = panel * nr;
                let mut at = (0, 0);
                let mut m0 = 0;
                while m0 < pixels {
                    // Each row's window in the padded image (past the last row, a repeat).
                    let mut bases = [image; MR];
                    let rows = MR.min(pixels - m0);
                    for (r, b) in bases.iter_mut().enumerate() {
                        let (oy, ox) = at;
                        // SAFETY: the window of pixel (oy, ox) lies in the padded image.
                        *b = unsafe { image.add((oy * sy * pw + ox * sx) * s_ch) };
                        if r + 1 < rows {
                            at = if ox + 1 < dw { (oy, ox + 1) } else { (oy + 1, 0) };
                        }
                    }
                    at = if at.1 + 1 < dw { (at.0, at.1 + 1) } else { (at.0 + 1, 0) };
                    let tile = Tile {
                        a: RowsOf::Offsets {
                            bases: bases.as_ptr(),
                            offsets: self.taps.as_ptr(),
                        },
                        rows,
                        kc: k,
                        panel: self.packed[panel * k * nr..].as_ptr(),
                        nr,
                        b_rows: std::ptr::null(),
                        b_col: 0,
                        // SAFETY: pixel m0 of image j, channel d0, lies in the destination.
                        c: unsafe { self.dst.get().add((j * pixels + m0) * d_ch + d0) },
                        rsc: d_ch as isize,
                        c_rows: std::ptr::null(),
                        c_col: 0,
                        csc: 1,
                        cols: nr.min(d_ch - d0),
                        start: match self.start {
                            ConvStart::Zero => Start::Zero,
                            ConvStart::Bias(b) => Start::Bias(b[d0..].as_ptr()),
                            ConvStart::Add => Start::Load,
                        },
                        act: self.act,
                    };
                    // SAFETY: the rows' windows (k values at the taps' offsets) lie in the
                    // padded image, the panel holds k x nr values, and the tile's rows are
                    // pixels of image j that this part alone writes.
                    // The activation in the registers.
                    unsafe { tile.run_fused::<V, NV, MR>() };
                    m0 += MR;
                }
            }
        }
    }
}
