//! Convolutions of channels-last (`[H, W, C]`) images read in place: the GEMM's micro-kernel
//! (the `packed` module's tile) with its rows of `A` taken through a table of pointers, one
//! per (output pixel, kernel tap), to the `C` contiguous values of the input pixel the tap
//! reads, or to a row of zeros in the padding (the indirect convolution). Nothing is
//! unfolded, scattered or zeroed.
//!
//! One routine, [`conv_nhwc`], computes every product a convolution layer needs, read as a
//! map from a *source* image to a *destination* image ([`ConvMap`]):
//! * **gather**: destination pixel `o` reads source pixel `o s + k - p` under tap `k`: a
//!   convolution's forward, and a transposed convolution's backward by the input;
//! * **scatter**: destination pixel `o` receives source pixel `i` where `i s + k - p = o`: a
//!   transposed convolution's forward and a convolution's backward by the input. Split by
//!   the parity (the phase) of `o + p` along each axis, each phase is a small gather with
//!   only the taps that reach it (for 3x3 stride 2: 1, 2, 2 and 4 taps): no multiply by a
//!   structural zero, every output written once (polyphase).
//!
//! The weight is packed once per call into panels of the tile's width (one per phase), the
//! destination pixels of one row of one phase are the tile's rows, and the chain of every
//! output element runs over (tap, channel) in the same order whatever the thread count, the
//! tiling or the SIMD level (AVX2 and AVX-512 fuse alike): bitwise reproducible. Gathers from
//! sources of fewer than [`GATHER_BELOW`] channels (an image's first layer) read a zero-padded
//! copy of each image in place (the `padded` module), the same chain in the same order.
//! Destinations of at most four channels (an image's last layer) go to the `tap_sums` module
//! (scatter maps, gathers of stride 1) or to dot products along the source's channels.
//!
//! [`conv_nhwc_weight_grad`] is the backward by the weights: a GEMM over the destination's
//! pixels whose `B` operand is packed straight from the source image through the same
//! window, summed per batch piece (pieces cut by the shapes alone) in piece order.

use std::cell::RefCell;
use std::ops::Range;

use crate::Float;
use crate::packed::{RowsOf, Start, Tile};
use crate::simd::{Accum, Kernel, Unary, Vector, dispatch};
use crate::team::{SendPtr, cut, for_parts};
use padded::{pad_images, padded_dims};

mod padded;
mod tap_sums;

/// Sources with fewer channels than this are copied into a contiguous block per tile: a
/// segment of one to a few values would spend more on its pointer than on its multiplies.
pub const GATHER_BELOW: usize = 8;
/// Source bytes per chunk of images that [`conv_nhwc`] tiles on its own (in L2 with a
/// panel of the weight).
const CHUNK_BYTES: usize = 256 << 10;
/// Destination pixels per batch piece of the backward by the weights, about (whole images,
/// see [`image_pieces`]; a piece's partial sum is one weight-sized buffer).
pub const PIXELS_PER_PIECE: usize = 2048;
/// Pixels per block of the backward by the weights turned over (few source channels).
const KC: usize = 512;
/// Pixels per block of the backward by the weights with packed panels (measured on a Zen 3:
/// 256 ran 5-18% faster than 512 on conv64's layers of 128-512 source channels).
const KC_PACKED: usize = 256;
/// Pixels per block of the backward by the weights with its panels read in place: a tile's
/// rows of both operands (one cache line each per pixel) stay in L1 (measured on a Zen 3:
/// 64-128 pixels 15-25% faster than 512).
const KC_IN_PLACE: usize = 128;

/// How a source image maps onto a destination image: both channels-last, `batch` of each
/// one after the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvMap {
    /// Images in the batch.
    pub batch: usize,
    /// (height, width, channels) of each source image.
    pub src: (usize, usize, usize),
    /// (height, width, channels) of each destination image.
    pub dst: (usize, usize, usize),
    /// (height, width) of the kernel.
    pub kernel: (usize, usize),
    /// Steps of the window (gather) or between source pixels on the destination (scatter).
    pub stride: (usize, usize),
    /// Padding (gather: of the source; scatter: taken off the destination).
    pub padding: (usize, usize),
    /// Scatter (a transposed convolution's direction) rather than gather.
    pub scatter: bool,
}

/// The axes of a weight given to [`conv_nhwc`]: PyTorch's 4-D weights are `[dst, src, kh,
/// kw]` or `[src, dst, kh, kw]` depending on the layer and the direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[dst channels, src channels, kh, kw]`.
    DstSrc,
    /// `[src channels, dst channels, kh, kw]`.
    SrcDst,
}

/// Where each destination value's chain starts (the epilogue's first half; the activation
/// is the second).
#[derive(Clone, Copy, Debug)]
pub enum ConvStart<'a, T> {
    /// From zero.
    Zero,
    /// From the channel's bias (one value per destination channel).
    Bias(&'a [T]),
    /// From the destination's current value (accumulating a gradient).
    Add,
}

/// The phases of one axis: for scatter, destination coordinates of one parity of `o + p`
/// and the taps that reach them; for gather, one phase of everything.
#[derive(Clone, Copy, Debug)]
struct Phase {
    /// Destination coordinates `first + i step` for `i < count`.
    first: usize,
    step: usize,
    count: usize,
    /// Taps `k0 + t kstep` for `t < taps`.
    k0: usize,
    kstep: usize,
    taps: usize,
    /// Destination `i` of the phase reads source coordinate `a i + b t + c` under its tap
    /// `t` (no division in the tile loop).
    a: isize,
    b: isize,
    c: isize,
}

impl Phase {
    /// The source coordinate destination `i` of the phase reads under its tap `t`, if
    /// inside `0..len`.
    #[inline(always)]
    fn src(&self, i: usize, t: usize, len: usize) -> Option<usize> {
        let at = self.a * i as isize + self.b * t as isize + self.c;
        (0..len as isize).contains(&at).then_some(at as usize)
    }

    /// The destinations `lo..hi` of the phase whose every tap reads inside `0..len` (the
    /// interior, possibly empty).
    fn interior(&self, len: usize) -> (usize, usize) {
        if self.taps == 0 {
            return (0, self.count);
        }
        let (e0, e1) = (self.c, self.b * (self.taps as isize - 1) + self.c);
        let (emin, emax) = (e0.min(e1), e0.max(e1));
        // a i + emin >= 0 and a i + emax <= len - 1, with a > 0.
        let lo = if emin >= 0 { 0 } else { (-emin + self.a - 1) / self.a };
        let room = len as isize - 1 - emax;
        let hi = if room < 0 { 0 } else { room / self.a + 1 };
        let (lo, hi) = ((lo as usize).min(self.count), (hi as usize).min(self.count));
        (lo, hi.max(lo))
    }
}

/// One axis of a [`ConvMap`].
#[derive(Clone, Copy, Debug)]
struct AxisMap {
    dst: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    scatter: bool,
}

impl AxisMap {
    fn phases(&self) -> usize {
        if self.scatter { self.stride } else { 1 }
    }

    fn phase(&self, f: usize) -> Phase {
        let (k, s, p) = (self.kernel as isize, self.stride as isize, self.pad as isize);
        if !self.scatter {
            // o reads o s + t - p.
            return Phase {
                first: 0,
                step: 1,
                count: self.dst,
                k0: 0,
                kstep: 1,
                taps: self.kernel,
                a: s,
                b: 1,
                c: -p,
            };
        }
        // o = first + i s receives source (o + p - k) / s under tap k = f + t s: that is
        // (first + p - f) / s + i - t, the division exact.
        let f = f as isize;
        let first = (f + s - p % s) % s;
        let dst = self.dst as isize;
        Phase {
            first: first as usize,
            step: s as usize,
            count: if first < dst {
                ((dst - first) + s - 1) as usize / s as usize
            } else {
                0
            },
            k0: f as usize,
            kstep: s as usize,
            taps: if f < k {
                ((k - f) + s - 1) as usize / s as usize
            } else {
                0
            },
            a: 1,
            b: -1,
            c: (first + p - f) / s,
        }
    }
}

impl ConvMap {
    fn axes(&self) -> (AxisMap, AxisMap) {
        let axis = |i: usize| AxisMap {
            dst: [self.dst.0, self.dst.1][i],
            kernel: [self.kernel.0, self.kernel.1][i],
            stride: [self.stride.0, self.stride.1][i],
            pad: [self.padding.0, self.padding.1][i],
            scatter: self.scatter,
        };
        (axis(0), axis(1))
    }

    fn src_len(&self) -> usize {
        self.src.0 * self.src.1 * self.src.2
    }

    fn dst_len(&self) -> usize {
        self.dst.0 * self.dst.1 * self.dst.2
    }

    fn check(&self, src: usize, weight: usize, dst: usize) {
        let (kh, kw) = self.kernel;
        assert!(
            src == self.batch * self.src_len()
                && dst == self.batch * self.dst_len()
                && weight == self.src.2 * self.dst.2 * kh * kw
                && self.stride.0 > 0
                && self.stride.1 > 0,
            "conv_nhwc: buffers of {src}, {weight} and {dst} values do not fit {self:?}"
        );
    }
}

/// The tile shape at a vector width: (rows MR, panel width NR) of the GEMM's (the backward
/// by the weights).
fn tile_shape(lanes: usize) -> (usize, usize) {
    match lanes {
        16 => (8, 48),
        8 => (6, 16),
        _ => (4, 4),
    }
}

/// The tile shape of [`conv_nhwc`] for `d` destination channels: at 16 lanes, panels of 48
/// (8 x 3 vectors) when they divide `d`, else of 32 (12 x 2): 24 accumulators each, and no
/// last panel of a third of a tile (64 channels as 48 + 16 ran the 16 at a third of the
/// rate; as 2 x 32 the backward by the input of keras-conv's dec0 went 108 -> 132 GFLOP/s).
fn conv_tile_shape(lanes: usize, d: usize) -> (usize, usize) {
    match lanes {
        16 if !d.is_multiple_of(48) => (12, 32),
        _ => tile_shape(lanes),
    }
}

/// The tile (rows MR, columns) of the backward by the weights with its panels read in
/// place: 24 accumulators at 16 lanes (12 x 2 vectors), 12 at 8, 16 scalars; the source's
/// channels must be a multiple of the columns.
fn in_place_tile(lanes: usize) -> (usize, usize) {
    match lanes {
        16 => (12, 32),
        8 => (6, 16),
        _ => (4, 4),
    }
}

/// The vector width of the level in force for `T`.
struct Lanes;

impl<T: Float> Kernel<T> for Lanes {
    type Output = usize;
    fn run<V: Vector<E = T>>(self) -> usize {
        V::LANES
    }
}

thread_local! {
    /// The packed weight (and a row of zeros) of the call in progress on this thread.
    static PACKED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// The per-piece partial sums of the call in progress on this thread.
    static PARTIALS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Each thread's tile tables and gathered blocks.
    static TILE: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Each thread's pixel offsets of a block of the backward by the weights, turned over.
    static WINDOWS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` elements of the calling thread's buffer for per-piece partial sums
/// (grown to fit, never shrunk: no allocation once warm; the contents are whatever the last
/// user left): for reductions over [`image_pieces`] added by [`sum_partials`], as the
/// backward by the weights does, and the bias's channel sums in `vae-autograd`.
pub fn with_partials<T: Float, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    with_buffer(&PARTIALS, len, f)
}

/// How a sum over a batch's images is cut: `(per, pieces)`, pieces of `per` whole images,
/// `per` the largest power of two with at most about `rows` rows (`rows_per_image` each; at
/// least one image). The pieces of a batch are then its halves' pieces whenever a half holds
/// a multiple of `per` images, and [`sum_partials`] adds the halves' sums last: ranks of a
/// data-parallel job holding such halves get the same bits as one process.
pub fn image_pieces(batch: usize, rows_per_image: usize, rows: usize) -> (usize, usize) {
    let per = (rows / rows_per_image.max(1)).max(1);
    let per = 1 << per.ilog2();
    (per, batch.div_ceil(per))
}

/// Adds `pieces` partial sums of `len` values, laid one after the other in `parts`, into the
/// first: pairwise, as a binary tree over the piece index (pieces `2i` and `2i + 1` first),
/// so that the sum over pieces `0..2^k` is computed alone before it meets the rest.
pub fn sum_partials<T: Float>(parts: &mut [T], len: usize, pieces: usize) {
    assert!(
        parts.len() >= len * pieces,
        "sum_partials: {pieces} pieces of {len} in {}",
        parts.len()
    );
    // SAFETY: the columns 0..len of every piece are inside `parts`, borrowed mutably here.
    unsafe { pairwise(parts.as_mut_ptr(), len, pieces, 0..len) }
}

/// [`sum_partials`] on the columns `cols` of pieces `stride` apart from `base`.
///
/// # Safety
/// Those columns of every piece are valid for reads and writes and used by nothing else.
unsafe fn pairwise<T: Float>(base: *mut T, stride: usize, pieces: usize, cols: Range<usize>) {
    let mut step = 1;
    while step < pieces {
        for i in (0..pieces - step).step_by(2 * step) {
            for c in cols.clone() {
                // SAFETY: as the caller promises; pieces i and i + step are distinct.
                unsafe { *base.add(i * stride + c) = *base.add(i * stride + c) + *base.add((i + step) * stride + c) };
            }
        }
        step *= 2;
    }
}

/// Runs `f` on `len` elements of the buffer in `cell`, grown to fit and kept: no
/// allocation once warm. The contents are whatever the last user left.
fn with_buffer<T: Copy, R>(
    cell: &'static std::thread::LocalKey<RefCell<Vec<u64>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    // Every T used here (f32, f64, pointers) fits u64's alignment and any bit pattern is
    // overwritten before it is read.
    const { assert!(std::mem::align_of::<T>() <= 8 && std::mem::size_of::<T>() <= 8) };
    let words = (len * std::mem::size_of::<T>()).div_ceil(8);
    cell.with(|c| {
        let mut held = c.try_borrow_mut();
        let mut own = Vec::new();
        let buf: &mut Vec<u64> = match held.as_deref_mut() {
            Ok(b) => b,
            Err(_) => &mut own,
        };
        if buf.len() < words {
            buf.resize(words, 0);
        }
        // SAFETY: `buf` holds at least `len` T's worth of initialised, aligned bytes, and
        // T (a float or a pointer) accepts them.
        f(unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<T>(), len) })
    })
}

/// One 2-D phase: its weight packed for the tiles (`panels` panels of `k = taps S` rows of
/// `nr` values: destination channels, zero past `D`) and its share of the tiles.
#[derive(Clone, Copy, Debug)]
struct PhasePack {
    y: Phase,
    x: Phase,
    /// Offset of the phase's first panel in the packed buffer.
    at: usize,
    /// Rows of each panel: taps x source channels.
    k: usize,
    /// The phase's destination pixels over the batch (its tiles' rows), and the index of
    /// its first tile among all phases'.
    pixels: usize,
    tile0: usize,
    /// The interior (every tap inside the source): rows `y_in` x columns `x_in` of each
    /// image, `inner` pixels over the batch, tiled first; the frame around it after.
    y_in: (usize, usize),
    x_in: (usize, usize),
    inner: usize,
}

impl PhasePack {
    /// Tiles of `mr` rows over the interior.
    #[inline(always)]
    fn inner_tiles(&self, mr: usize) -> usize {
        self.inner.div_ceil(mr)
    }

    /// Tiles of `mr` rows over the interior, then over the frame.
    #[inline(always)]
    fn tiles(&self, mr: usize) -> usize {
        self.inner_tiles(mr) + (self.pixels - self.inner).div_ceil(mr)
    }

    /// (image, y, x) of interior pixel `m` (counted across the batch).
    #[inline(always)]
    fn inner_pixel(&self, m: usize) -> (usize, usize, usize) {
        let w = self.x_in.1 - self.x_in.0;
        let per = (self.y_in.1 - self.y_in.0) * w;
        let (j, r) = (m / per, m % per);
        (j, self.y_in.0 + r / w, self.x_in.0 + r % w)
    }

    /// (image, y, x) of frame pixel `m` (counted across the batch): the rows above the
    /// interior, the columns left and right of it, the rows below.
    #[inline(always)]
    fn frame_pixel(&self, m: usize) -> (usize, usize, usize) {
        let (cy, cx) = (self.y.count, self.x.count);
        let (w, band) = (self.x_in.1 - self.x_in.0, self.y_in.1 - self.y_in.0);
        let per = cy * cx - band * w;
        let (j, mut r) = (m / per, m % per);
        let top = self.y_in.0 * cx;
        if r < top {
            return (j, r / cx, r % cx);
        }
        r -= top;
        let side = cx - w;
        if r < band * side {
            let col = r % side;
            return (j, self.y_in.0 + r / side, if col < self.x_in.0 { col } else { col + w });
        }
        r -= band * side;
        (j, self.y_in.1 + r / cx, r % cx)
    }

    /// The interior pixel after `(j, y, x)`.
    #[inline(always)]
    fn inner_next(&self, (mut j, mut y, mut x): (usize, usize, usize)) -> (usize, usize, usize) {
        x += 1;
        if x == self.x_in.1 {
            x = self.x_in.0;
            y += 1;
            if y == self.y_in.1 {
                y = self.y_in.0;
                j += 1;
            }
        }
        (j, y, x)
    }

    /// The frame pixel after `(j, y, x)`.
    #[inline(always)]
    fn frame_next(&self, (mut j, mut y, mut x): (usize, usize, usize)) -> (usize, usize, usize) {
        loop {
            x += 1;
            if x == self.x.count {
                x = 0;
                y += 1;
                if y == self.y.count {
                    y = 0;
                    j += 1;
                }
            }
            if !(self.y_in.0..self.y_in.1).contains(&y) || x < self.x_in.0 || x >= self.x_in.1 {
                return (j, y, x);
            }
            // Inside the interior: on to its right edge.
            x = self.x_in.1 - 1;
        }
    }
}

/// The 2-D phases of `map` (at most `stride_y x stride_x`), the packed weight's length, and
/// the number of `mr`-row tiles.
fn phases_of(map: &ConvMap, mr: usize, nr: usize) -> (Vec2Phases, usize, usize) {
    let (ay, ax) = map.axes();
    let panels = map.dst.2.div_ceil(nr);
    let mut out = Vec2Phases::default();
    let (mut at, mut tiles) = (0, 0);
    for fy in 0..ay.phases() {
        for fx in 0..ax.phases() {
            let (y, x) = (ay.phase(fy), ax.phase(fx));
            let k = y.taps * x.taps * map.src.2;
            let pixels = map.batch * y.count * x.count;
            let (mut y_in, mut x_in) = (y.interior(map.src.0), x.interior(map.src.1));
            if y_in.0 == y_in.1 || x_in.0 == x_in.1 {
                (y_in, x_in) = ((0, 0), (0, 0));
            }
            let ph = PhasePack {
                y,
                x,
                at,
                k,
                pixels,
                tile0: tiles,
                y_in,
                x_in,
                inner: map.batch * (y_in.1 - y_in.0) * (x_in.1 - x_in.0),
            };
            out.push(ph);
            at += panels * k * nr;
            tiles += ph.tiles(mr);
        }
    }
    (out, at, tiles)
}

/// Up to 64 phases without an allocation (strides up to 8 x 8); more spill to the heap.
struct Vec2Phases {
    inline: [Option<PhasePack>; 64],
    len: usize,
    more: Vec<PhasePack>,
}

impl Default for Vec2Phases {
    fn default() -> Self {
        Vec2Phases {
            inline: [None; 64],
            len: 0,
            more: Vec::new(),
        }
    }
}

impl Vec2Phases {
    fn push(&mut self, p: PhasePack) {
        if self.len < 64 {
            self.inline[self.len] = Some(p);
        } else {
            self.more.push(p);
        }
        self.len += 1;
    }

    fn get(&self, i: usize) -> PhasePack {
        if i < 64 {
            self.inline[i].expect("pushed")
        } else {
            self.more[i - 64]
        }
    }

    /// The phase tile `tile` belongs to.
    fn of_tile(&self, tile: usize) -> PhasePack {
        let mut i = 0;
        while i + 1 < self.len && self.get(i + 1).tile0 <= tile {
            i += 1;
        }
        self.get(i)
    }
}

/// `dst = act(start + conv(src, weight))` over the batch: see the module's description.
/// `weight` holds `src channels x dst channels x kh x kw` values in `layout`.
///
/// # Panics
/// If the buffers do not fit `map`.
pub fn conv_nhwc<T: Float>(
    map: &ConvMap,
    src: &[T],
    weight: &[T],
    layout: WeightLayout,
    start: ConvStart<'_, T>,
    act: Option<Unary<T>>,
    dst: &mut [T],
) {
    map.check(src.len(), weight.len(), dst.len());
    if let ConvStart::Bias(b) = start {
        assert_eq!(b.len(), map.dst.2, "conv_nhwc: one bias per destination channel");
    }
    if map.batch == 0 || map.dst_len() == 0 {
        return;
    }
    if tap_sums::applies(map) {
        return tap_sums::conv(map, src, weight, layout, start, act, dst);
    }
    if padded::applies(map) {
        return padded::conv(map, src, weight, layout, start, act, dst);
    }
    let lanes = dispatch::<T, _>(Lanes);
    // A few destination channels: one dot product per pixel and channel (see `ConvDot`),
    // the weight packed as `[d][k]` (panels one column wide).
    let dot = map.dst.2 <= DOT_MAX;
    let (mr, nr) = if dot {
        (DOT_MR, 1)
    } else {
        conv_tile_shape(lanes, map.dst.2)
    };
    // Chunks of whole images, each tiled on its own: a chunk's sources stay in L2 while the
    // tiles of every phase read them (a stride-2 scatter reads its source once per phase).
    let chunk = (CHUNK_BYTES / (map.src_len() * std::mem::size_of::<T>()).max(1)).clamp(1, map.batch);
    let chunks = map.batch.div_ceil(chunk);
    let full = ConvMap { batch: chunk, ..*map };
    let last = ConvMap {
        batch: map.batch - (chunks - 1) * chunk,
        ..*map
    };
    let (phases, packed_len, tiles) = phases_of(&full, mr, nr);
    let (last_phases, _, last_tiles) = phases_of(&last, mr, nr);
    let s = map.src.2;
    with_buffer(&PACKED, packed_len + s + 16, |packed: &mut [T]| {
        pack_weight(map, &phases, weight, layout, nr, packed);
        packed[packed_len..].fill(T::zero());
        let packed = &*packed;
        // A chunk's tiles of MR destination pixels of one phase (across rows and images),
        // cut so that there are about 8 parts a thread: every output element is computed
        // whole by one tile, so any cut gives the same bits.
        let splits = (8 * rayon::current_num_threads())
            .div_ceil(chunks)
            .clamp(1, tiles.max(1));
        let out = SendPtr(dst.as_mut_ptr());
        let words = BufLayout::new(map, mr).words(map);
        for_parts(chunks * splits, |i| {
            let c = i / splits;
            let (m, phases, tiles) = if c + 1 == chunks {
                (&last, &last_phases, last_tiles)
            } else {
                (&full, &phases, tiles)
            };
            let r = cut(tiles, splits, 1, i % splits);
            if r.is_empty() {
                return;
            }
            let j0 = c * chunk;
            // The tile's tables and, for few channels, its gathered block, taken here: the
            // kernel is compiled whole at the level's instructions only if no closure
            // stands between it and `dispatch`.
            with_buffer(&TILE, words, |buf: &mut [u64]| {
                let job = ConvTiles {
                    map: m,
                    phases,
                    packed,
                    zeros: &packed[packed_len..],
                    src: &src[j0 * map.src_len()..(j0 + m.batch) * map.src_len()],
                    start,
                    act,
                    // SAFETY: image j0 of the destination.
                    dst: SendPtr(unsafe { out.get().add(j0 * map.dst_len()) }),
                    tiles: r,
                    mr,
                    nr,
                    buf,
                };
                if dot { dispatch(ConvDot(job)) } else { dispatch(job) }
            });
        });
    });
}

/// Packs every phase's panels (in parallel by panel).
fn pack_weight<T: Float>(
    map: &ConvMap,
    phases: &Vec2Phases,
    weight: &[T],
    layout: WeightLayout,
    nr: usize,
    packed: &mut [T],
) {
    let (s_ch, d_ch) = (map.src.2, map.dst.2);
    let (kh, kw) = map.kernel;
    let panels = d_ch.div_ceil(nr);
    let jobs = phases.len * panels;
    let base = SendPtr(packed.as_mut_ptr());
    // Weight (d, s, ky, kx) lies at d sd + s ss + ky kw + kx.
    let (sd, ss) = match layout {
        WeightLayout::DstSrc => (s_ch * kh * kw, kh * kw),
        WeightLayout::SrcDst => (kh * kw, d_ch * kh * kw),
    };
    let work = weight.len();
    let parts = if work < 1 << 14 { 1 } else { jobs };
    let run = |job: usize| {
        // A panel's phases one after the other: its rows of the weight, which every phase
        // reads for its own taps, stay in L2 between them.
        let (ph, panel) = (phases.get(job % phases.len), job / phases.len);
        let d0 = panel * nr;
        let cols = nr.min(d_ch - d0);
        // SAFETY: each job writes its own panel of the buffer (k x nr values at its offset).
        let out = unsafe { std::slice::from_raw_parts_mut(base.get().add(ph.at + panel * ph.k * nr), ph.k * nr) };
        // Row (tap, s) of the panel, the source channel outermost (the weights of one `s`
        // and the panel's `d` lie on a few lines that every tap reads), each row a strided
        // walk: no index arithmetic or bounds check per value, which cost a tenth of conv64
        // dec0's forward and input gradient (the loop order alone measured the same).
        for s in 0..s_ch {
            let w = &weight[d0 * sd + s * ss..];
            for ty in 0..ph.y.taps {
                let ky = ph.y.k0 + ty * ph.y.kstep;
                for tx in 0..ph.x.taps {
                    let kx = ph.x.k0 + tx * ph.x.kstep;
                    let row = (ty * ph.x.taps + tx) * s_ch + s;
                    let o = &mut out[row * nr..(row + 1) * nr];
                    for (v, x) in o[..cols].iter_mut().zip(w[ky * kw + kx..].iter().step_by(sd)) {
                        *v = *x;
                    }
                    o[cols..].fill(T::zero());
                }
            }
        }
    };
    if parts == 1 {
        (0..jobs).for_each(run);
    } else {
        for_parts(jobs, run);
    }
}

/// A range of tiles of [`conv_nhwc`] on one thread.
struct ConvTiles<'a, T> {
    map: &'a ConvMap,
    phases: &'a Vec2Phases,
    packed: &'a [T],
    zeros: &'a [T],
    src: &'a [T],
    start: ConvStart<'a, T>,
    act: Option<Unary<T>>,
    dst: SendPtr<T>,
    tiles: Range<usize>,
    mr: usize,
    nr: usize,
    /// The tables of A's and C's rows and the gathered block.
    buf: &'a mut [u64],
}

impl<T: Float> Kernel<T> for ConvTiles<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(mut self) {
        match V::LANES {
            16 if self.nr == 32 => self.drive::<V, 2, 12>(),
            16 => self.drive::<V, 3, 8>(),
            8 => self.drive::<V, 2, 6>(),
            _ => self.drive::<V, 4, 4>(),
        }
    }
}

impl<T: Float> ConvTiles<'_, T> {
    #[inline(always)]
    fn drive<V: Vector<E = T>, const NV: usize, const MR: usize>(&mut self) {
        debug_assert_eq!((MR, NV * V::LANES), (self.mr, self.nr));
        let map = self.map;
        let d_ch = map.dst.2;
        let nr = self.nr;
        let panels = d_ch.div_ceil(nr);
        let lay = BufLayout::new(map, MR);
        let buf = self.buf.as_mut_ptr();
        let offsets = lay.offsets(buf);
        let mut tile = self.tiles.start;
        while tile < self.tiles.end {
            // A block of tiles of one phase, whose rows of A stay in L2 while each panel
            // of the weight is run over all of them.
            let ph = self.phases.of_tile(tile);
            let end = (ph.tile0 + ph.tiles(MR))
                .min(self.tiles.end)
                .min(tile + block_tiles(MR * ph.k.max(1) * std::mem::size_of::<T>()));
            // SAFETY: the buffer holds the phase's offsets.
            unsafe { self.fill_offsets(&ph, offsets) };
            let mut shape = [(
                0usize,
                RowsOf::Offsets {
                    bases: std::ptr::null(),
                    offsets,
                },
            ); BLOCK_TILES];
            let mut next = None;
            for (b, t) in (tile..end).enumerate() {
                // SAFETY: the buffer holds BLOCK_TILES tiles' tables, rows and blocks.
                shape[b] = unsafe {
                    let (table, c_rows, block) = (lay.table(buf, b), lay.c_rows(buf, b), lay.block(buf, b));
                    self.tables::<MR>(t, &ph, table, c_rows, block, offsets, false, &mut next)
                };
            }
            for panel in 0..panels {
                let d0 = panel * nr;
                let n = end - tile;
                for (b, &(rows, a)) in shape.iter().enumerate().take(n) {
                    if b + 1 < n {
                        // SAFETY: the next tile's rows, filled above.
                        unsafe { prefetch_rows::<T>(lay.c_rows::<T>(buf, b + 1).cast_const(), shape[b + 1].0, d0) };
                    }
                    let tile = Tile {
                        a,
                        rows,
                        kc: ph.k,
                        panel: self.packed[ph.at + panel * ph.k * nr..].as_ptr(),
                        nr,
                        b_rows: std::ptr::null(),
                        b_col: 0,
                        c: std::ptr::null_mut(),
                        rsc: 0,
                        c_rows: lay.c_rows::<T>(buf, b).cast_const(),
                        c_col: d0,
                        csc: 1,
                        cols: nr.min(d_ch - d0),
                        start: match self.start {
                            ConvStart::Zero => Start::Zero,
                            ConvStart::Bias(b) => Start::Bias(b[d0..].as_ptr()),
                            ConvStart::Add => Start::Load,
                        },
                        act: self.act,
                    };
                    // SAFETY: the rows of A hold k values each (through the table's
                    // pointers or the offsets), the panel k x nr, and the tile's rows are
                    // destination pixels no other tile writes. A piecewise linear
                    // activation in the registers (see `Tile::run_fused`).
                    unsafe { tile.run_fused::<V, NV, MR>() };
                }
            }
            tile = end;
        }
    }

    /// Writes the source offsets of phase `ph`'s taps from the tap (0, 0) of a window: per
    /// (tap, channel) for few source channels, else per tap.
    ///
    /// # Safety
    /// `offsets` must hold taps x channels values.
    #[inline(always)]
    unsafe fn fill_offsets(&self, ph: &PhasePack, offsets: *mut isize) {
        let (_, sw, s_ch) = self.map.src;
        let per_tap = if s_ch < GATHER_BELOW { s_ch } else { 1 };
        let mut i = 0;
        for ty in 0..ph.y.taps {
            for tx in 0..ph.x.taps {
                let o = (ph.y.b * ty as isize * sw as isize + ph.x.b * tx as isize) * s_ch as isize;
                for c in 0..per_tap {
                    // SAFETY: i < taps x per_tap.
                    unsafe { *offsets.add(i) = o + c as isize };
                    i += 1;
                }
            }
        }
    }

    /// Fills tile `tile`'s tables and returns its rows and where they are read. The tile
    /// lies in the phase's interior or in its frame:
    /// * interior (no tap in the padding): each row's window is its tap-(0, 0) pixel plus
    ///   the phase's `offsets`: for few source channels the rows are read through them in
    ///   place ([`RowsOf::Offsets`], or for `dot` copied into `block`), else the table of
    ///   segments is the row's base plus each tap's offset;
    /// * frame: each (row, tap) checked, a pointer to the source pixel or to zeros, or for
    ///   few source channels the segments copied into `block` (zeros in the padding).
    ///
    /// Rows past the last repeat it.
    ///
    /// # Safety
    /// `table` must hold MR x taps pointers, `c_rows` MR, `block` MR x taps x S values,
    /// `offsets` the phase's ([`Self::fill_offsets`]).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tables<const MR: usize>(
        &self,
        tile: usize,
        ph: &PhasePack,
        table: *mut *const T,
        c_rows: *mut *mut T,
        block: *mut T,
        offsets: *const isize,
        dot: bool,
        next: &mut Option<(usize, (usize, usize, usize))>,
    ) -> (usize, RowsOf<T>) {
        let (sh, sw, s_ch) = self.map.src;
        let (dh, dw, d_ch) = self.map.dst;
        let (py, px) = (ph.y, ph.x);
        let nseg = py.taps * px.taps;
        let t = tile - ph.tile0;
        let inner_tiles = ph.inner_tiles(MR);
        let interior = t < inner_tiles;
        let (m0, n) = if interior {
            (t * MR, ph.inner)
        } else {
            ((t - inner_tiles) * MR, ph.pixels - ph.inner)
        };
        let rows = MR.min(n - m0);
        // The first pixel: where the previous tile stopped, else worked out (divisions).
        let mut at = match *next {
            Some((t, at)) if t == tile => at,
            _ if interior => ph.inner_pixel(m0),
            _ => ph.frame_pixel(m0),
        };
        let mut pixels = [(0usize, 0usize, 0usize); MR];
        for (r, p) in pixels.iter_mut().enumerate() {
            *p = at;
            let (j, iy, ix) = at;
            let (oy, ox) = (py.first + iy * py.step, px.first + ix * px.step);
            // SAFETY: pixel (j, oy, ox) lies in the destination; r < MR.
            unsafe { *c_rows.add(r) = self.dst.get().add(((j * dh + oy) * dw + ox) * d_ch) };
            if r + 1 < rows {
                at = if interior { ph.inner_next(at) } else { ph.frame_next(at) };
            }
        }
        let more = if interior {
            t + 1 < inner_tiles
        } else {
            t + 1 < ph.tiles(MR)
        };
        *next = more.then(|| (tile + 1, if interior { ph.inner_next(at) } else { ph.frame_next(at) }));
        let src = self.src.as_ptr();
        let gather = s_ch < GATHER_BELOW;
        let k = nseg * s_ch;
        if interior {
            // Source offset of each row's tap (0, 0), inside the source (interior).
            let base = |(j, iy, ix): (usize, usize, usize)| {
                let y = (j * sh) as isize + py.a * iy as isize + py.c;
                (y * sw as isize + px.a * ix as isize + px.c) * s_ch as isize
            };
            if gather && !dot {
                for (r, &p) in pixels.iter().enumerate() {
                    // SAFETY: r < MR; the window of an interior pixel lies in `src`.
                    unsafe { *table.add(r) = src.offset(base(p)) };
                }
                return (rows, RowsOf::Offsets { bases: table, offsets });
            }
            if gather {
                for (r, &p) in pixels.iter().enumerate() {
                    let b = base(p);
                    for i in 0..k {
                        // SAFETY: as above; the block holds MR x k values.
                        unsafe { *block.add(r * k + i) = *src.offset(b + *offsets.add(i)) };
                    }
                }
                // SAFETY: as above.
                return (rows, unsafe { block_rows::<T, MR>(table, block, k) });
            }
            let bases: [isize; MR] = core::array::from_fn(|r| base(pixels[r]));
            for seg in 0..nseg {
                // SAFETY: seg < taps; the table holds nseg x MR pointers.
                let o = unsafe { *offsets.add(seg) };
                for (r, &b) in bases.iter().enumerate() {
                    // SAFETY: as above.
                    unsafe { *table.add(seg * MR + r) = src.offset(b + o) };
                }
            }
            return (
                rows,
                RowsOf::Indirect {
                    table,
                    nseg,
                    seg_len: s_ch,
                },
            );
        }
        let zeros = self.zeros.as_ptr();
        for (r, &(j, iy, ix)) in pixels.iter().enumerate() {
            for ty in 0..py.taps {
                let sy = py.src(iy, ty, sh);
                for tx in 0..px.taps {
                    let seg = ty * px.taps + tx;
                    let at = match (sy, px.src(ix, tx, sw)) {
                        (Some(y), Some(x)) => Some(((j * sh + y) * sw + x) * s_ch),
                        _ => None,
                    };
                    // SAFETY: `at` is a pixel of `src`; the block holds MR x k values, the
                    // table nseg x MR pointers.
                    unsafe {
                        if gather {
                            let to = block.add(r * k + seg * s_ch);
                            match at {
                                Some(o) => std::ptr::copy_nonoverlapping(src.add(o), to, s_ch),
                                None => std::ptr::write_bytes(to, 0, s_ch),
                            }
                        } else {
                            *table.add(seg * MR + r) = at.map_or(zeros, |o| src.add(o));
                        }
                    }
                }
            }
        }
        if gather {
            // SAFETY: as above.
            return (rows, unsafe { block_rows::<T, MR>(table, block, k) });
        }
        (
            rows,
            RowsOf::Indirect {
                table,
                nseg,
                seg_len: s_ch,
            },
        )
    }
}

/// Asks for the `len` values from `p` (any address: a prefetch reads nothing).
#[inline(always)]
fn prefetch<T>(p: *const T, len: usize) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
    #[cfg(target_arch = "x86_64")]
    for l in 0..(len * size_of::<T>()).div_ceil(64) {
        // SAFETY: a prefetch reads nothing and faults on no address.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.wrapping_byte_add(64 * l).cast())
        };
    }
}

/// Asks for the line at `p` ahead of a store to it (any address: a prefetch reads nothing).
#[inline(always)]
fn prefetch_write<T>(p: *const T) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
    // SAFETY: a prefetch reads nothing and faults on no address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_ET0 }>(p.cast())
    };
}

/// Asks for the lines of `rows` destination rows at column `col` ahead of their stores.
///
/// # Safety
/// `c_rows` must hold `rows` pointers.
#[inline(always)]
unsafe fn prefetch_rows<T>(c_rows: *const *mut T, rows: usize, col: usize) {
    for r in 0..rows {
        // SAFETY: the table holds `rows` pointers.
        prefetch_write(unsafe { *c_rows.add(r) }.wrapping_add(col));
    }
}

/// The rows of a gathered block (`MR` rows of `k` values) as one segment each.
///
/// # Safety
/// `table` must hold `MR` pointers, `block` `MR x k` values.
#[inline(always)]
unsafe fn block_rows<T, const MR: usize>(table: *mut *const T, block: *mut T, k: usize) -> RowsOf<T> {
    for r in 0..MR {
        // SAFETY: as the caller promises.
        unsafe { *table.add(r) = block.add(r * k) };
    }
    RowsOf::Indirect {
        table,
        nseg: 1,
        seg_len: k,
    }
}

/// Where [`ConvTiles`] and [`ConvDot`] keep their tables in a thread's buffer of `u64`
/// words: per tile of a block its table of row pointers and its rows of C, then the
/// gathered blocks, then the phase's tap offsets.
#[derive(Clone, Copy)]
struct BufLayout {
    /// Pointers per tile: the table (MR x taps) and the rows of C (MR).
    per_tile: usize,
    table_len: usize,
    /// Values per gathered block (0 for many source channels), and the words of all of them.
    block_len: usize,
    block_words: usize,
}

impl BufLayout {
    fn new(map: &ConvMap, mr: usize) -> Self {
        let taps = map.kernel.0 * map.kernel.1;
        let table_len = mr * taps.max(1);
        let block_len = if map.src.2 < GATHER_BELOW {
            mr * taps * map.src.2
        } else {
            0
        };
        BufLayout {
            per_tile: table_len + mr,
            table_len,
            block_len,
            // Every T used here is at most 8 bytes.
            block_words: BLOCK_TILES * block_len,
        }
    }

    /// Words the buffer needs.
    fn words(&self, map: &ConvMap) -> usize {
        let offsets = map.kernel.0 * map.kernel.1 * map.src.2.max(1);
        BLOCK_TILES * self.per_tile + self.block_words + offsets + 8
    }

    fn table<T>(&self, buf: *mut u64, b: usize) -> *mut *const T {
        buf.wrapping_add(b * self.per_tile).cast()
    }

    fn c_rows<T>(&self, buf: *mut u64, b: usize) -> *mut *mut T {
        buf.wrapping_add(b * self.per_tile + self.table_len).cast()
    }

    fn block<T>(&self, buf: *mut u64, b: usize) -> *mut T {
        buf.wrapping_add(BLOCK_TILES * self.per_tile)
            .cast::<T>()
            .wrapping_add(b * self.block_len)
    }

    fn offsets(&self, buf: *mut u64) -> *mut isize {
        buf.wrapping_add(BLOCK_TILES * self.per_tile + self.block_words).cast()
    }
}

/// Destination channels up to which [`conv_nhwc`] takes dot products ([`ConvDot`]).
const DOT_MAX: usize = 4;
/// Pixels per table of [`ConvDot`].
const DOT_MR: usize = 32;
/// Virtual lanes of [`ConvDot`]'s chains: 16 at every level (one AVX-512 vector, two AVX2
/// ones), so that the levels add alike.
const DOT_LANES: usize = 16;

/// [`conv_nhwc`] for at most [`DOT_MAX`] destination channels on a gather of stride 2 or
/// more (others go to [`tap_sums`], which would compute too many products here), where a
/// tile's panel would be mostly padding: per
/// pixel and channel a dot product over (tap, source channel), vectorised along the source
/// channels. Element `k` of each contiguous run (a tap's channels, or a gathered block for
/// few source channels) goes to virtual lane `k mod 16`, each lane a chain in order, the 16
/// lanes are added in a fixed tree and the sum to the start value: the same bits at every
/// thread count and at AVX2 and AVX-512.
struct ConvDot<'a, T>(ConvTiles<'a, T>);

impl<T: Float> Kernel<T> for ConvDot<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(mut self) {
        // The accumulators in registers: G vectors of 16 lanes' worth per channel, D
        // channels, both known at compile time.
        match (V::LANES, self.0.map.dst.2) {
            (16, 1) => self.drive::<V, 1, 1, 8>(),
            (16, 2) => self.drive::<V, 1, 2, 4>(),
            (16, 3) => self.drive::<V, 1, 3, 2>(),
            (16, _) => self.drive::<V, 1, 4, 2>(),
            (8, 1) => self.drive::<V, 2, 1, 4>(),
            (8, 2) => self.drive::<V, 2, 2, 2>(),
            (8, 3) => self.drive::<V, 2, 3, 1>(),
            (8, _) => self.drive::<V, 2, 4, 1>(),
            (_, 1) => self.drive::<V, 16, 1, 1>(),
            (_, 2) => self.drive::<V, 16, 2, 1>(),
            (_, 3) => self.drive::<V, 16, 3, 1>(),
            (_, _) => self.drive::<V, 16, 4, 1>(),
        }
    }
}

impl<T: Float> ConvDot<'_, T> {
    /// Rows `R` at a time (independent chains: one accumulator's chain would wait on the
    /// multiply-add's latency), `G` vectors per 16 lanes, `D` channels.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // indices into three nested accumulator arrays
    fn drive<V: Vector<E = T>, const G: usize, const D: usize, const R: usize>(&mut self) {
        const MR: usize = DOT_MR;
        debug_assert_eq!((G * V::LANES, D), (DOT_LANES, self.0.map.dst.2));
        let t = &mut self.0;
        let lay = BufLayout::new(t.map, MR);
        let buf = t.buf.as_mut_ptr();
        let (table, c_rows, block) = (lay.table(buf, 0), lay.c_rows::<T>(buf, 0), lay.block(buf, 0));
        let offsets = lay.offsets(buf);
        let zero = T::zero();
        let mut phase = usize::MAX;
        let mut next = None;
        for tile in t.tiles.clone() {
            let ph = t.phases.of_tile(tile);
            if ph.tile0 != phase {
                phase = ph.tile0;
                // SAFETY: the buffer holds the phase's offsets.
                unsafe { t.fill_offsets(&ph, offsets) };
            }
            // SAFETY: the buffer holds a tile's table, rows and gathered block.
            let (rows, a) = unsafe { t.tables::<MR>(tile, &ph, table, c_rows, block, offsets, true, &mut next) };
            let RowsOf::Indirect { table, nseg, seg_len } = a else {
                unreachable!("dot products read tables")
            };
            let w = t.packed[ph.at..].as_ptr();
            let mut r0 = 0;
            while r0 < rows {
                let mut acc = [[[V::splat(zero); G]; D]; R];
                let mut k0 = 0;
                for seg in 0..nseg {
                    // SAFETY: the table holds nseg x MR pointers to seg_len values each (rows
                    // past the tile's last repeat it).
                    let a: [*const T; R] = core::array::from_fn(|r| unsafe { *table.add(seg * MR + r0 + r) });
                    let whole = seg_len / DOT_LANES * DOT_LANES;
                    let mut s = 0;
                    while s < whole {
                        for d in 0..D {
                            for q in 0..G {
                                // SAFETY: s + 16 <= seg_len values at each pointer; the
                                // packed row d holds ph.k values.
                                unsafe {
                                    let wv = V::load(w.add(d * ph.k + k0 + s + q * V::LANES));
                                    for r in 0..R {
                                        let av = V::load(a[r].add(s + q * V::LANES));
                                        acc[r][d][q] = av.mul_add(wv, acc[r][d][q]);
                                    }
                                }
                            }
                        }
                        s += DOT_LANES;
                    }
                    if s < seg_len {
                        // The tail, through zero-padded copies.
                        let n = seg_len - s;
                        let mut wt = [[zero; DOT_LANES]; D];
                        for (d, wt) in wt.iter_mut().enumerate() {
                            for (i, v) in wt.iter_mut().enumerate().take(n) {
                                // SAFETY: k0 + s + i < ph.k.
                                *v = unsafe { *w.add(d * ph.k + k0 + s + i) };
                            }
                        }
                        for r in 0..R {
                            let mut at = [zero; DOT_LANES];
                            for (i, v) in at.iter_mut().enumerate().take(n) {
                                // SAFETY: s + i < seg_len.
                                *v = unsafe { *a[r].add(s + i) };
                            }
                            for d in 0..D {
                                for q in 0..G {
                                    // SAFETY: 16 values in each array.
                                    unsafe {
                                        let av = V::load(at.as_ptr().add(q * V::LANES));
                                        let wv = V::load(wt[d].as_ptr().add(q * V::LANES));
                                        acc[r][d][q] = av.mul_add(wv, acc[r][d][q]);
                                    }
                                }
                            }
                        }
                    }
                    k0 += seg_len;
                }
                for (r, acc_r) in acc.iter().enumerate().take(rows - r0) {
                    // SAFETY: row r0 + r < rows; its C row holds D values.
                    let c = unsafe { *c_rows.add(r0 + r) };
                    for (d, acc_d) in acc_r.iter().enumerate() {
                        let mut lanes = [zero; DOT_LANES];
                        for (q, v) in acc_d.iter().enumerate() {
                            // SAFETY: lanes holds 16 values.
                            unsafe { v.store(lanes.as_mut_ptr().add(q * V::LANES)) };
                        }
                        // SAFETY: channel d < D of the row.
                        let out = unsafe { &mut *c.add(d) };
                        let start = match t.start {
                            ConvStart::Zero => zero,
                            ConvStart::Bias(b) => b[d],
                            ConvStart::Add => *out,
                        };
                        // A fixed tree, lane i with i + 8, then i + 4, i + 2 and i + 1:
                        // the same adds at every level, few of them in a chain.
                        let mut half = DOT_LANES / 2;
                        while half > 0 {
                            for i in 0..half {
                                lanes[i] = lanes[i] + lanes[i + half];
                            }
                            half /= 2;
                        }
                        let v = start + lanes[0];
                        *out = match t.act {
                            Some(f) => {
                                let mut o = [zero; DOT_LANES];
                                // SAFETY: o holds 16 >= LANES values.
                                unsafe { crate::simd::unary_vector(f, V::splat(v)).store(o.as_mut_ptr()) };
                                o[0]
                            }
                            None => v,
                        };
                    }
                }
                r0 += R;
            }
        }
    }
}

/// Most tiles run as one block (see [`block_tiles`]).
const BLOCK_TILES: usize = 32;
/// The most rows of a tile of the backward by the weights (see `WeightGrad::run`: 12 in
/// place at 16 lanes).
const MR_MAX: usize = 12;

/// Tiles per block for tiles whose rows of A take `bytes` each: about 256 KiB of A (in L2
/// beside a panel of the weight), at most [`BLOCK_TILES`].
fn block_tiles(bytes: usize) -> usize {
    ((256 << 10) / bytes.max(1)).clamp(1, BLOCK_TILES)
}

/// The backward by the weights of a gather map: `grad[d][s][ky][kx] (+)= sum over every
/// destination pixel o of dst_side[o][d] src_side[src(o, k)][s]` (PyTorch's `[out, in, kh,
/// kw]` for a convolution, where the destination is its output; `[in, out, kh, kw]` for a
/// transposed one, whose backward is a gather from its output's gradient onto its input).
///
/// # Panics
/// If `map` scatters or the buffers do not fit it.
pub fn conv_nhwc_weight_grad<T: Float>(map: &ConvMap, dst_side: &[T], src_side: &[T], grad: &mut [T], acc: Accum) {
    assert!(!map.scatter, "conv_nhwc_weight_grad: a gather map");
    map.check(src_side.len(), grad.len(), dst_side.len());
    let (s_ch, d_ch) = (map.src.2, map.dst.2);
    let taps = map.kernel.0 * map.kernel.1;
    let ncols = taps * s_ch;
    let wlen = d_ch * ncols;
    let pix = map.dst.0 * map.dst.1;
    if map.batch == 0 || pix == 0 || wlen == 0 {
        if acc == Accum::Overwrite {
            grad.fill(T::zero());
        }
        return;
    }
    let (per, pieces) = image_pieces(map.batch, pix, PIXELS_PER_PIECE);
    let lanes = dispatch::<T, _>(Lanes);
    let (_, nr) = tile_shape(lanes);
    // Few source channels (an image's first layer, a transposed last layer's weight): the
    // product turned over, `[tap s] x d`, its panel the destination side read in place, so
    // that the few columns of (tap, source channel) are not padded to a panel's width.
    let swapped = s_ch < GATHER_BELOW && d_ch % 16 == 0;
    // Source channels in whole panels, pixels at most 256 bytes apart: the panel's rows read
    // from the source image in place through a table of pixel pointers, nothing packed.
    // (Pixels further apart fall in a few of L1's sets: on a Zen 3, sources of 256 and 512
    // channels ran 3-10% slower in place, of 32 and 64 channels 10-25% faster.)
    let (_, width) = in_place_tile(lanes);
    let in_place = !swapped && s_ch.is_multiple_of(width) && s_ch * size_of::<T>() <= 256;
    let nr = if in_place { width } else { nr };
    let kc = if in_place { KC_IN_PLACE } else { KC_PACKED };
    let panels = if swapped { 1 } else { ncols.div_ceil(nr) };
    let groups = (4 * rayon::current_num_threads()).div_ceil(pieces).clamp(1, panels);
    with_partials(pieces * wlen, |parts: &mut [T]| {
        let base = SendPtr(parts.as_mut_ptr());
        for_parts(pieces * groups, |i| {
            let (piece, group) = (i / groups, i % groups);
            let images = piece * per..((piece + 1) * per).min(map.batch);
            let panel_range = cut(panels, groups, 1, group);
            if images.is_empty() || panel_range.is_empty() {
                return;
            }
            // The panel buffer (turned over: the piece's images padded, and a block's pixel
            // offsets), taken outside the kernel (see `conv_nhwc`).
            let room = if swapped {
                let (ph, pw) = padded_dims(map);
                per * ph * pw * s_ch
            } else if in_place {
                s_ch + if packs_a::<T>(d_ch) { kc * (d_ch + MR_MAX) } else { 0 }
            } else {
                kc * nr + kc * (d_ch + MR_MAX)
            };
            let words = if swapped {
                KC
            } else if in_place {
                kc * map.kernel.0 * map.kernel.1
            } else {
                0
            };
            with_buffer(&WINDOWS, words, |offsets: &mut [isize]| {
                T::with_scratch(room + 16, |buf| {
                    dispatch(WeightGrad {
                        map,
                        dst_side,
                        src_side,
                        // SAFETY: piece `piece` alone writes its partial's columns of this
                        // group.
                        part: SendPtr(unsafe { base.get().add(piece * wlen) }),
                        images,
                        panels: panel_range,
                        nr,
                        kc,
                        swapped,
                        in_place,
                        buf,
                        offsets,
                    })
                })
            });
        });
        // The pieces added pairwise, into PyTorch's layout.
        let out = SendPtr(grad.as_mut_ptr());
        let rows = if wlen < 1 << 14 || swapped { 1 } else { d_ch };
        for_parts(rows, |i| {
            let ds = cut(d_ch, rows, 1, i);
            let cols = if swapped {
                0..wlen
            } else {
                ds.start * ncols..ds.end * ncols
            };
            // SAFETY: part i alone reads and writes these columns of the partials.
            unsafe { pairwise(base.get(), wlen, pieces, cols) };
            for d in ds {
                for s in 0..s_ch {
                    for t in 0..taps {
                        let col = if swapped {
                            (t * s_ch + s) * d_ch + d
                        } else {
                            d * ncols + t * s_ch + s
                        };
                        // SAFETY: as above; piece 0 now holds the sum.
                        let v = unsafe { *base.get().add(col) };
                        // SAFETY: row d of the gradient is written by this part alone.
                        let g = unsafe { &mut *out.get().add((d * s_ch + s) * taps + t) };
                        *g = if acc == Accum::Add { *g + v } else { v };
                    }
                }
            }
        });
    });
}

/// One batch piece and group of panels of [`conv_nhwc_weight_grad`], into the piece's
/// partial `[d][tap s]` (or `[tap s][d]`, turned over).
struct WeightGrad<'a, T> {
    map: &'a ConvMap,
    dst_side: &'a [T],
    src_side: &'a [T],
    part: SendPtr<T>,
    images: Range<usize>,
    panels: Range<usize>,
    nr: usize,
    /// Pixels per block.
    kc: usize,
    /// The product turned over: the gathered source side is A, the destination side the
    /// panel.
    swapped: bool,
    /// The panels read in place ([`WeightGrad::in_place`]).
    in_place: bool,
    /// Room for one packed panel (turned over: the piece's source images, padded; in
    /// place: a row of zeros).
    buf: &'a mut [T],
    /// Turned over: room for a block's pixel offsets in the padded images; in place: for
    /// its pointers to the source pixels under each tap.
    offsets: &'a mut [isize],
}

impl<T: Float> Kernel<T> for WeightGrad<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(mut self) {
        if self.in_place {
            // SAFETY: as `in_place_tile` says.
            return match V::LANES {
                16 => self.in_place::<V, 2, 12>(),
                8 => self.in_place::<V, 2, 6>(),
                _ => self.in_place::<V, 4, 4>(),
            };
        }
        match V::LANES {
            // Turned over: 9 rows (3 x 3 taps of one channel, or a third of three's).
            16 if self.swapped && self.map.dst.2 <= 32 => self.drive::<V, 2, 9>(),
            16 => self.drive::<V, 3, 8>(),
            8 => self.drive::<V, 2, 6>(),
            _ => self.drive::<V, 4, 4>(),
        }
    }
}

/// Whether the in-place backward by the weights packs its destination side ([`pack_a`]):
/// pixels of at most 64 f32 channels share few enough of L1's sets (packed, keras-conv's
/// 64-channel layers ran 0-10% slower on a Zen 3).
fn packs_a<T>(d_ch: usize) -> bool {
    d_ch * size_of::<T>() >= 512
}

/// Packs the destination side's `kc` pixels from `from` (`d_ch` values each) as A's rows
/// per tile of `MR` channels, `[tile][pixel][MR]` in `a_buf`, once per block of pixels for
/// every panel: read in place, each pixel's MR values sit on a line of their own (d_ch
/// values apart, for 128-512 channels in a few of L1's sets), which the tile waited for at
/// every step (measured on a Zen 3: conv64's weight gradients of 256-512 destination
/// channels 67-72 -> 74-78 GFLOP/s at one thread).
#[inline(always)]
fn pack_a<T: Float, const MR: usize>(from: &[T], d_ch: usize, kc: usize, a_buf: &mut [T]) {
    const { assert!(MR <= MR_MAX) };
    assert!(a_buf.len() >= kc * MR * d_ch.div_ceil(MR), "pack_a: room for A");
    for p in 0..kc {
        for (t, rows) in from[p * d_ch..][..d_ch].chunks(MR).enumerate() {
            a_buf[(t * kc + p) * MR..][..rows.len()].copy_from_slice(rows);
        }
    }
}

impl<T: Float> WeightGrad<'_, T> {
    #[inline(always)]
    fn drive<V: Vector<E = T>, const NV: usize, const MR: usize>(&mut self) {
        let map = self.map;
        let (ay, ax) = map.axes();
        let (py, px) = (ay.phase(0), ax.phase(0));
        let (sh, sw, s_ch) = map.src;
        let (dh, dw, d_ch) = map.dst;
        let (kh, kw) = map.kernel;
        let ncols = kh * kw * s_ch;
        let nr = self.nr;
        let pix = dh * dw;
        let first = self.images.start * pix;
        let total = self.images.len() * pix;
        if self.swapped {
            return self.turned_over::<V, NV, MR>();
        }
        {
            let buf = std::mem::take(&mut self.buf);
            let skip = buf.as_ptr().align_offset(64).min(16);
            let (panel_buf, a_buf) = buf[skip..].split_at_mut(self.kc * nr);
            let mut k0 = 0;
            while k0 < total {
                let kc = self.kc.min(total - k0);
                pack_a::<T, MR>(&self.dst_side[(first + k0) * d_ch..], d_ch, kc, a_buf);
                for panel in self.panels.clone() {
                    let c0 = panel * nr;
                    let cols = nr.min(ncols - c0);
                    // Pack B: row p is pixel first + k0 + p, columns c0 .. c0 + cols of
                    // (tap, source channel), zero in the padding and past `cols`. No
                    // division per element: the pixel and the (tap, channel) advance.
                    let o = first + k0;
                    let (mut j, rest) = (o / pix, o % pix);
                    let (mut oy, mut ox) = (rest / dw, rest % dw);
                    let (t0, s0) = (c0 / s_ch, c0 % s_ch);
                    let (ky0, kx0) = (t0 / kw, t0 % kw);
                    for p in 0..kc {
                        let row = &mut panel_buf[p * nr..(p + 1) * nr];
                        let src_img = j * sh;
                        let (mut ky, mut kx, mut s) = (ky0, kx0, s0);
                        let mut c = 0;
                        while c < cols {
                            let run = (s_ch - s).min(cols - c);
                            let out = &mut row[c..c + run];
                            match (py.src(oy, ky, sh), px.src(ox, kx, sw)) {
                                (Some(y), Some(x)) => {
                                    let at = ((src_img + y) * sw + x) * s_ch + s;
                                    let from = &self.src_side[at..at + run];
                                    if run == 1 {
                                        out[0] = from[0];
                                    } else {
                                        // Whole vectors in registers (a call to memmove
                                        // per run of 16 values cost 2% of a conv64 step).
                                        let whole = run - run % V::LANES;
                                        for i in (0..whole).step_by(V::LANES) {
                                            // SAFETY: i + LANES <= run: inside both.
                                            unsafe { V::load(from.as_ptr().add(i)).store(out.as_mut_ptr().add(i)) };
                                        }
                                        out[whole..].copy_from_slice(&from[whole..]);
                                    }
                                }
                                _ => out.fill(T::zero()),
                            }
                            c += run;
                            s = 0;
                            kx += 1;
                            if kx == kw {
                                kx = 0;
                                ky += 1;
                            }
                        }
                        row[cols..].fill(T::zero());
                        ox += 1;
                        if ox == dw {
                            ox = 0;
                            oy += 1;
                            if oy == dh {
                                oy = 0;
                                j += 1;
                            }
                        }
                    }
                    let mut d0 = 0;
                    while d0 < d_ch {
                        let rows = MR.min(d_ch - d0);
                        let tile = Tile {
                            a: RowsOf::Strided {
                                a: a_buf[d0 / MR * kc * MR..].as_ptr(),
                                rsa: 1,
                                csa: MR as isize,
                                i0: 0,
                            },
                            rows,
                            kc,
                            panel: panel_buf.as_ptr(),
                            nr,
                            b_rows: std::ptr::null(),
                            b_col: 0,
                            // SAFETY: row d0, column c0 of the piece's partial.
                            c: unsafe { self.part.get().add(d0 * ncols + c0) },
                            rsc: ncols as isize,
                            c_rows: std::ptr::null(),
                            c_col: 0,
                            csc: 1,
                            cols,
                            start: if k0 == 0 { Start::Zero } else { Start::Load },
                            act: None,
                        };
                        // SAFETY: the tile's kc x MR packed values of A lie in a_buf; the
                        // panel holds kc x nr values; the tile lies in this piece's partial,
                        // in columns of this group's panels only.
                        unsafe { tile.run_any::<V, NV, MR>() };
                        d0 += rows;
                    }
                }
                k0 += kc;
            }
        }
    }
}

impl<T: Float> WeightGrad<'_, T> {
    /// `part[d][tap s] (+)= sum over the piece's pixels of dst_side[d] window[tap s]` with
    /// the panel (columns `s0 .. s0 + NV LANES` of one tap) read in place: per block of
    /// pixels a table of pointers, one per (tap, pixel), to the source pixel the tap reads
    /// or to a row of zeros in the padding. The same multiply-adds in the same order as the
    /// packed panel's (a zero row where the packed panel holds zeros): the same bits.
    #[inline(always)]
    fn in_place<V: Vector<E = T>, const NV: usize, const MR: usize>(&mut self) {
        let map = self.map;
        let (ay, ax) = map.axes();
        let (py, px) = (ay.phase(0), ax.phase(0));
        let (sh, sw, s_ch) = map.src;
        let (dh, dw, d_ch) = map.dst;
        let (kh, kw) = map.kernel;
        let ncols = kh * kw * s_ch;
        let nr = self.nr;
        debug_assert!(nr == NV * V::LANES && s_ch.is_multiple_of(nr));
        let pix = dh * dw;
        let first = self.images.start * pix;
        let total = self.images.len() * pix;
        // The taps this group's panels cover.
        let t0 = self.panels.start * nr / s_ch;
        let t1 = (self.panels.end * nr).div_ceil(s_ch);
        let (zeros, a_buf) = self.buf.split_at_mut(s_ch);
        zeros.fill(T::zero());
        let zeros = zeros.as_ptr();
        // SAFETY: the table needs room for kc pointers per tap (see the caller).
        let table = self.offsets.as_mut_ptr().cast::<*const T>();
        let mut k0 = 0;
        while k0 < total {
            let kc = self.kc.min(total - k0);
            let o = first + k0;
            for t in t0..t1 {
                let (ky, kx) = (t / kw, t % kw);
                let (mut j, rest) = (o / pix, o % pix);
                let (mut oy, mut ox) = (rest / dw, rest % dw);
                for p in 0..kc {
                    let at = match (py.src(oy, ky, sh), px.src(ox, kx, sw)) {
                        (Some(y), Some(x)) => self.src_side[((j * sh + y) * sw + x) * s_ch..].as_ptr(),
                        _ => zeros,
                    };
                    // SAFETY: (t - t0) kc + p < (t1 - t0) kc, inside the table.
                    unsafe { *table.add((t - t0) * kc + p) = at };
                    ox += 1;
                    if ox == dw {
                        ox = 0;
                        oy += 1;
                        if oy == dh {
                            oy = 0;
                            j += 1;
                        }
                    }
                }
            }
            let packed_a = packs_a::<T>(d_ch);
            if packed_a {
                pack_a::<T, MR>(&self.dst_side[o * d_ch..], d_ch, kc, a_buf);
            }
            for panel in self.panels.clone() {
                let c0 = panel * nr;
                let (t, s0) = (c0 / s_ch, c0 % s_ch);
                let mut d0 = 0;
                while d0 < d_ch {
                    let rows = MR.min(d_ch - d0);
                    let (a, csa, i0) = if packed_a {
                        (a_buf[d0 / MR * kc * MR..].as_ptr(), MR, 0)
                    } else {
                        (self.dst_side[o * d_ch..].as_ptr(), d_ch, d0)
                    };
                    let tile = Tile {
                        a: RowsOf::Strided {
                            a,
                            rsa: 1,
                            csa: csa as isize,
                            i0,
                        },
                        rows,
                        kc,
                        panel: std::ptr::null(),
                        nr,
                        // SAFETY: tap t's kc pointers.
                        b_rows: unsafe { table.add((t - t0) * kc) },
                        b_col: s0,
                        // SAFETY: row d0, column c0 of the piece's partial.
                        c: unsafe { self.part.get().add(d0 * ncols + c0) },
                        rsc: ncols as isize,
                        c_rows: std::ptr::null(),
                        c_col: 0,
                        csc: 1,
                        cols: nr,
                        start: if k0 == 0 { Start::Zero } else { Start::Load },
                        act: None,
                    };
                    // SAFETY: A's kc x MR values lie in a_buf (packed) or in dst_side (at
                    // kc pixels d_ch apart); each table row points at s_ch values (a source
                    // pixel or the zeros), columns s0 .. s0 + nr <= s_ch of which are read;
                    // the tile lies in this piece's partial, in columns of this group's
                    // panels only.
                    unsafe { tile.run::<V, NV, MR>() };
                    d0 += rows;
                }
            }
            k0 += kc;
        }
    }

    /// The product turned over: `part[tap s][d] (+)= sum over the piece's pixels of
    /// window[tap s] dst_side[d]`, its `A` the source images read in place, zero-padded
    /// first so that every window lies inside ([`padded_dims`]), row (tap, s) at the
    /// window's offset and each pixel at its own; the panel the destination side in place
    /// (`d_ch` a multiple of 16: whole vectors at every level).
    #[inline(always)]
    fn turned_over<V: Vector<E = T>, const NV: usize, const MR: usize>(&mut self) {
        let map = self.map;
        let s_ch = map.src.2;
        let (dh, dw, d_ch) = map.dst;
        let (kh, kw) = map.kernel;
        let (sy, sx) = map.stride;
        let (ph, pw) = padded_dims(map);
        let ncols = kh * kw * s_ch;
        let padded = &mut self.buf[..self.images.len() * ph * pw * s_ch];
        pad_images(map, self.src_side, self.images.clone(), padded);
        let padded = &*padded;
        let pix = dh * dw;
        let first = self.images.start * pix;
        let total = self.images.len() * pix;
        let w = NV * V::LANES;
        let mut at = (0usize, 0usize, 0usize);
        let mut k0 = 0;
        while k0 < total {
            let kc = KC.min(total - k0);
            // Each pixel's window (tap (0, 0)) in the padded images.
            for o in &mut self.offsets[..kc] {
                let (jl, oy, ox) = at;
                *o = (((jl * ph + oy * sy) * pw + ox * sx) * s_ch) as isize;
                at = if ox + 1 < dw {
                    (jl, oy, ox + 1)
                } else if oy + 1 < dh {
                    (jl, oy + 1, 0)
                } else {
                    (jl + 1, 0, 0)
                };
            }
            let mut i0 = 0;
            while i0 < ncols {
                // Rows (tap, s) i0.. of A (past the last, a repeat of it).
                let bases: [*const T; MR] = core::array::from_fn(|r| {
                    let i = (i0 + r).min(ncols - 1);
                    let (t, s) = (i / s_ch, i % s_ch);
                    padded[((t / kw) * pw + t % kw) * s_ch + s..].as_ptr()
                });
                let mut d0 = 0;
                while d0 < d_ch {
                    let tile = Tile {
                        a: RowsOf::Offsets {
                            bases: bases.as_ptr(),
                            offsets: self.offsets.as_ptr(),
                        },
                        rows: MR.min(ncols - i0),
                        kc,
                        panel: self.dst_side[(first + k0) * d_ch + d0..].as_ptr(),
                        nr: d_ch,
                        b_rows: std::ptr::null(),
                        b_col: 0,
                        // SAFETY: row i0, column d0 of the piece's partial.
                        c: unsafe { self.part.get().add(i0 * d_ch + d0) },
                        rsc: d_ch as isize,
                        c_rows: std::ptr::null(),
                        c_col: 0,
                        csc: 1,
                        cols: w.min(d_ch - d0),
                        start: if k0 == 0 { Start::Zero } else { Start::Load },
                        act: None,
                    };
                    // SAFETY: every window of the block's pixels lies in the padded images
                    // (row bases plus pixel offsets); the panel's kc rows of d_ch values
                    // (whole vectors: d_ch is a multiple of 16) lie in dst_side; the tile
                    // lies in this piece's partial.
                    unsafe { tile.run_any::<V, NV, MR>() };
                    d0 += w;
                }
                i0 += MR;
            }
            k0 += kc;
        }
    }
}
