//! The engine's own GEMM for outputs wider than the skinny kernel's: `B` packed into panels
//! of `NR` columns (zero-padded), `A` read in place (its `MR` values of one column are
//! broadcast straight from memory, whatever its strides), and an `MR x NR` block of `C` kept
//! in vector registers, written once over [`Vector`] and compiled per SIMD level:
//!
//! | level | vector | tile (MR x NR) | accumulators |
//! |---|---|---|---|
//! | AVX-512F | 16 lanes | 8 x 48 | 24 of 32 registers |
//! | AVX2 + FMA | 8 lanes | 6 x 16 | 12 of 16 registers |
//! | portable | 1 value | 4 x 4 | 16 |
//!
//! Every element of `C` is one multiply-add chain over `k` in order, starting from
//! `beta * C` (from `C` itself when `beta` is 1, from 0 when it is 0; `alpha` scales `B` as
//! it is packed). Blocking over `k` continues the same chain from the partial result, and the threads split `C` by columns, so the bits do not
//! depend on the block sizes, the tile shape or the thread count; the AVX2 and AVX-512
//! kernels, both fused, give the same bits (the portable one rounds the product apart).
//!
//! The packing buffer is per thread and kept between calls: a warm step allocates nothing.

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use num_traits::{One, Zero};

use crate::Float;
use crate::simd::{Kernel, Level, Unary, Vector, unary_each_linear, unary_vector};
use crate::team::for_blocks;

/// Largest block of `k` packed at once (a panel of `B` is then at most `KC_MAX x NR`, 192 KiB
/// at NR = 48: in L2). Measured at the training shapes (k = 784) on Zen 4: 128 gave 97
/// GFLOP/s on one core, 256 gave 102, 512 gave 107, 1024 (one block) 109: reloading the
/// partial C tiles costs more than streaming the panel from L2.
const KC_MAX: usize = 1024;
/// Columns of `C` per parallel block: whole panels at every level (48 = the AVX-512 NR,
/// three AVX2 NR).
const SPLIT_ALIGN: usize = 48;
/// Blocks per thread when a product is split: enough for the threads to even out.
const BLOCKS_PER_THREAD: usize = 4;

/// `C = alpha * A * B + beta * C` with the columns of `C` cut into blocks of whole panels
/// for `parts` threads, each block packing its own columns of `B`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn packed_gemm<T: Float>(
    level: Level,
    parts: usize,
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    c: ArrayViewMut2<T>,
    epi: Epilogue<'_, T>,
) {
    let n = c.ncols();
    // More blocks than threads, whole panels each, claimed as threads come free: a thread
    // that finishes early takes the next block (packing stays per panel either way).
    let parts = if parts <= 1 || n < 2 * SPLIT_ALIGN {
        1
    } else {
        n.div_ceil(SPLIT_ALIGN).min(BLOCKS_PER_THREAD * parts)
    };
    for_blocks(c, Axis(1), parts, SPLIT_ALIGN, |cols, c| {
        let epi = Epilogue {
            bias: epi.bias.map(|bias| &bias[cols.clone()]),
            act: epi.act,
        };
        let b = b.slice(ndarray::s![.., cols]);
        // Room for one panel at any level's NR (at most 48 columns): the buffer is taken
        // here, outside the kernel, so that the kernel is compiled whole with the level's
        // instructions.
        let k = a.ncols();
        let kc_max = k.div_ceil(k.div_ceil(KC_MAX).max(1));
        T::with_scratch(48 * kc_max + 16, |buf| {
            T::dispatch_at(
                level,
                Packed {
                    alpha,
                    a,
                    b,
                    beta,
                    c,
                    buf,
                    epi,
                },
            )
        });
    });
}

/// One block of `C` on the calling thread, with the buffer its panels are packed into.
struct Packed<'a, T> {
    alpha: T,
    a: ArrayView2<'a, T>,
    b: ArrayView2<'a, T>,
    beta: T,
    c: ArrayViewMut2<'a, T>,
    buf: &'a mut [T],
    epi: Epilogue<'a, T>,
}

/// What the last `k` block does to the tiles of `C` as it stores them: `C = act(A B + bias)`,
/// the bias being where each element's chain starts (the product's `beta` must be 0).
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a, T> {
    /// One value per column of `C`, the start of each chain (instead of 0).
    pub bias: Option<&'a [T]>,
    /// Applied to each element as it is stored (by `simd::unary_vector`).
    pub act: Option<Unary<T>>,
}

impl<T> Epilogue<'_, T> {
    /// Neither a bias nor an activation.
    pub fn none() -> Self {
        Epilogue { bias: None, act: None }
    }
}

impl<T: Float> Kernel<T> for Packed<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        match V::LANES {
            16 => drive::<V, 3, 8>(self),
            8 => drive::<V, 2, 6>(self),
            _ => drive::<V, 4, 4>(self),
        }
    }
}

/// How `C` starts a `k` block: from its own contents scaled by `beta` (the first block), or
/// from the partial result the previous block left there.
#[derive(Clone, Copy)]
pub(crate) enum Start<T> {
    /// `acc = 0`.
    Zero,
    /// `acc = bias`, every row of the tile from the same `cols` values.
    Bias(*const T),
    /// `acc = C`.
    Load,
    /// `acc = beta * C`.
    Scaled(T),
}

/// Blocks over `k`, packs each block of `B` one `NV * LANES`-column panel at a time, and
/// runs the tiles of each panel.
#[inline(always)]
fn drive<V: Vector, const NV: usize, const MR: usize>(p: Packed<'_, V::E>) {
    let Packed {
        alpha,
        a,
        b,
        beta,
        mut c,
        buf,
        epi,
    } = p;
    let (m, k) = a.dim();
    let n = b.ncols();
    let nr = NV * V::LANES;
    let panels = n.div_ceil(nr);
    let kblocks = k.div_ceil(KC_MAX).max(1);
    let kc_max = k.div_ceil(kblocks);
    let [rsa, csa] = [a.strides()[0], a.strides()[1]];
    let [rsc, csc] = [c.strides()[0], c.strides()[1]];
    {
        // 64-byte aligned panels: whole-cache-line vector loads.
        let skip = buf.as_ptr().align_offset(64).min(16);
        let buf = &mut buf[skip..];
        let mut k0 = 0;
        for kb in 0..kblocks {
            let kc = kc_max.min(k - k0);
            let start = match (kb, beta) {
                (0, b) if b == V::E::zero() => Start::Zero,
                (0, b) if b == V::E::one() => Start::Load,
                (0, b) => Start::Scaled(b),
                _ => Start::Load,
            };
            // SAFETY: `a` is m x k with strides (rsa, csa); column k0 exists (kc > 0).
            let a0 = unsafe { a.as_ptr().offset(k0 as isize * csa) };
            for jp in 0..panels {
                let j0 = jp * nr;
                let cols = nr.min(n - j0);
                // One panel at a time, used while it is hot in cache.
                pack_b::<V>(b.slice(ndarray::s![k0..k0 + kc, j0..j0 + cols]), alpha, nr, buf);
                let panel = &buf[..nr * kc];
                let mut i0 = 0;
                while i0 < m {
                    let rows = MR.min(m - i0);
                    let tile = Tile {
                        a: RowsOf::Strided { a: a0, rsa, csa, i0 },
                        rows,
                        kc,
                        panel: panel.as_ptr(),
                        nr,
                        b_rows: std::ptr::null(),
                        b_col: 0,
                        // SAFETY: row i0 < m and column j0 < n lie inside `c`.
                        c: unsafe { c.as_mut_ptr().offset(i0 as isize * rsc + j0 as isize * csc) },
                        rsc,
                        c_rows: std::ptr::null(),
                        c_col: 0,
                        csc,
                        cols,
                        start: match (kb, epi.bias) {
                            // SAFETY: columns j0 .. j0 + cols of the bias (one per column of C).
                            (0, Some(bias)) => Start::Bias(unsafe { bias.as_ptr().add(j0) }),
                            _ => start,
                        },
                        act: if kb + 1 == kblocks { epi.act } else { None },
                    };
                    // SAFETY: the tile lies inside `a`, the panel and `c`.
                    unsafe { tile.run_any::<V, NV, MR>() };
                    i0 += rows;
                }
            }
            k0 += kc;
        }
    }
}

/// Packs the kc x cols block `b` (times `alpha`, `cols <= nr`) into one panel at the start
/// of `buf`: `kc` rows of `nr` values, the columns past `cols` zero as far as a tile reads.
#[inline(always)]
pub(crate) fn pack_b<V: Vector>(b: ArrayView2<V::E>, alpha: V::E, nr: usize, buf: &mut [V::E]) {
    let (kc, cols) = b.dim();
    debug_assert!(cols <= nr, "one panel at a time");
    let [rsb, csb] = [b.strides()[0], b.strides()[1]];
    let src = b.as_ptr();
    let dst = &mut buf[..nr * kc];
    // A partial panel is read by a narrower tile, whose vectors (at most 16 lanes) end
    // before `pad`: only up to there must the padding be zero.
    let pad = cols.next_multiple_of(V::LANES.max(8)).min(nr);
    if csb == 1 {
        // Row-major B: each panel row is a contiguous piece of a row, copied in vectors
        // (rows are short: a call to memcpy per row would cost as much as the copy).
        let whole = if cols == nr { nr / V::LANES } else { 0 };
        for p in 0..kc {
            // SAFETY: row p < kc, columns 0 .. cols of the view; panel row p holds nr
            // values.
            unsafe {
                let s = src.offset(p as isize * rsb);
                let d = dst.as_mut_ptr().add(p * nr);
                for q in 0..whole {
                    V::load(s.add(q * V::LANES)).store(d.add(q * V::LANES));
                }
                if whole == 0 {
                    for j in 0..cols {
                        *d.add(j) = *s.add(j);
                    }
                    for j in cols..pad {
                        *d.add(j) = V::E::zero();
                    }
                }
            }
        }
    } else {
        // Column-major B (a weight matrix seen transposed) is transposed in 8 x 8 blocks;
        // other layouts and the edges value by value.
        let mut p8 = 0;
        if rsb == 1 && csb > 0 && cols == nr && nr.is_multiple_of(8) {
            p8 = kc / 8 * 8;
            for p in (0..p8).step_by(8) {
                for jb in (0..nr).step_by(8) {
                    // SAFETY: rows p .. p + 8 <= kc and columns jb .. jb + 8 <= cols of the
                    // view (column j starts csb apart, its rows contiguous); the panel
                    // rows p .. p + 8 hold nr values each.
                    unsafe {
                        V::transpose8(
                            src.offset(jb as isize * csb + p as isize),
                            csb as usize,
                            dst.as_mut_ptr().add(p * nr + jb),
                            nr,
                        )
                    };
                }
            }
        }
        for jj in 0..cols {
            // SAFETY: column jj < cols of the view.
            let col = unsafe { src.offset(jj as isize * csb) };
            for p in p8..kc {
                // SAFETY: row p < kc.
                dst[p * nr + jj] = unsafe { *col.offset(p as isize * rsb) };
            }
        }
        if cols < nr {
            for row in dst.chunks_exact_mut(nr) {
                row[cols..pad].fill(V::E::zero());
            }
        }
    }
    if alpha != V::E::one() {
        dst.iter_mut().for_each(|x| *x = alpha * *x);
    }
}

/// One `MR x (NV * LANES)` tile of `C` over one block of `k`.
pub(crate) struct Tile<T> {
    /// Where the tile's rows of `A` are read.
    pub a: RowsOf<T>,
    /// How many of the tile's `MR` rows exist (the rest are computed on a repeat of the
    /// last row and not stored).
    pub rows: usize,
    pub kc: usize,
    /// The packed panel: `kc` rows of `nr` values (if `b_rows` is null).
    pub panel: *const T,
    pub nr: usize,
    /// Null, or `kc` pointers to the rows of `B` read in place (a convolution's source
    /// pixels, or a row of zeros in the padding), its columns from `b_col` on. Only with
    /// [`RowsOf::Strided`].
    pub b_rows: *const *const T,
    pub b_col: usize,
    /// The tile's first element of `C`, its rows `rsc` apart (if `c_rows` is null).
    pub c: *mut T,
    pub rsc: isize,
    /// Null, or `MR` pointers to the starts of the tile's rows of `C` (a convolution's
    /// output pixels of one phase, not evenly spaced), its columns from `c_col` on.
    pub c_rows: *const *mut T,
    pub c_col: usize,
    pub csc: isize,
    pub cols: usize,
    pub start: Start<T>,
    /// Applied as the tile is stored (the last `k` block).
    pub act: Option<Unary<T>>,
}

/// The rows of `A` a tile multiplies.
#[derive(Clone, Copy)]
pub(crate) enum RowsOf<T> {
    /// A strided matrix: `A[i, p]` at `a + i * rsa + p * csa`, the tile's rows from `i0`.
    Strided {
        a: *const T,
        rsa: isize,
        csa: isize,
        i0: usize,
    },
    /// An indirect one (a convolution's windows): `k` in `nseg` segments of `seg_len`
    /// contiguous values; row `r`'s segment `s` starts at `table[s * MR + r]`.
    Indirect {
        table: *const *const T,
        nseg: usize,
        seg_len: usize,
    },
    /// Rows that share their layout (a convolution's windows inside the image): `A[r, p]`
    /// at `bases[r] + offsets[p]`.
    Offsets {
        bases: *const *const T,
        offsets: *const isize,
    },
}

/// `acc[r] += A[r, p] B[p]` for `p` in `0..kc`, in order (the accumulators by value: behind
/// a reference, the compiler stores them back after every multiply-add): `A[r, p]` at
/// `rows[r] + off(p)`, `B`'s row `p` at `b_row(p)`.
///
/// # Safety
/// The rows (at every `off(p)`) and `B`'s rows must hold what is read.
#[inline(always)]
unsafe fn chain<V: Vector, const NV: usize, const MR: usize>(
    mut acc: [[V; NV]; MR],
    rows: [*const V::E; MR],
    off: impl Fn(usize) -> isize,
    kc: usize,
    b_row: impl Fn(usize) -> *const V::E,
) -> [[V; NV]; MR] {
    for p in 0..kc {
        let off = off(p);
        let bp = b_row(p);
        // SAFETY: B's row p holds NV * LANES values.
        let bv: [V; NV] = core::array::from_fn(|q| unsafe { V::load(bp.add(q * V::LANES)) });
        for (r, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: column p < kc of row `rows[r]`.
            let av = V::splat(unsafe { *rows[r].offset(off) });
            for q in 0..NV {
                acc_row[q] = av.mul_add(bv[q], acc_row[q]);
            }
        }
    }
    acc
}

impl<T: Float> Tile<T> {
    /// Applies `f` to the stored `rows x cols` block (after the registers are free: keeping
    /// the activation's code beside the accumulators costs the main loop its registers).
    ///
    /// # Safety
    /// As for [`Tile::run`].
    #[inline(always)]
    unsafe fn activate<V: Vector<E = T>, const NV: usize>(&self, f: Unary<T>) {
        for r in 0..self.rows {
            // SAFETY: row r < rows of the C block.
            let row = unsafe { self.c_row(r) };
            for q in 0..NV {
                let j0 = q * V::LANES;
                if self.csc == 1 && j0 + V::LANES <= self.cols {
                    // SAFETY: columns j0 .. j0 + LANES <= cols, contiguous.
                    unsafe {
                        let p = row.add(j0);
                        unary_vector(f, V::load(p)).store(p);
                    }
                } else {
                    let mut t = [T::zero(); 16];
                    let n = self.cols.saturating_sub(j0).min(V::LANES);
                    for (l, t) in t.iter_mut().enumerate().take(n) {
                        // SAFETY: column j0 + l < cols.
                        *t = unsafe { *row.offset((j0 + l) as isize * self.csc) };
                    }
                    // SAFETY: t holds 16 >= LANES values.
                    let v = unary_vector(f, unsafe { V::load(t.as_ptr()) });
                    // SAFETY: as above.
                    unsafe { v.store(t.as_mut_ptr()) };
                    for (l, &x) in t.iter().enumerate().take(n) {
                        // SAFETY: column j0 + l < cols.
                        unsafe { *row.offset((j0 + l) as isize * self.csc) = x };
                    }
                }
            }
        }
    }

    /// Row `r` of the tile in `C`.
    ///
    /// # Safety
    /// `r < rows`, and the row table (if any) holds `rows` pointers.
    #[inline(always)]
    unsafe fn c_row(&self, r: usize) -> *mut T {
        // SAFETY: as the caller promises.
        unsafe {
            if self.c_rows.is_null() {
                self.c.offset(r as isize * self.rsc)
            } else {
                (*self.c_rows.add(r)).add(self.c_col)
            }
        }
    }

    /// Runs the tile with as many vectors as its columns need (at most `NV`; half-width
    /// ones for the last few columns at 16 lanes).
    ///
    /// # Safety
    /// As for [`Tile::run`] with `NV * LANES <= nr`.
    #[inline(always)]
    pub(crate) unsafe fn run_any<V: Vector<E = T>, const NV: usize, const MR: usize>(&self) {
        // SAFETY (each arm): nv vectors cover `cols <= nr` columns.
        unsafe {
            match self.cols.div_ceil(V::LANES) {
                // The last few columns (n = 100 leaves 4): half-width vectors.
                1 if V::LANES == 16 && self.cols <= 8 => self.run::<V::Half, 1, MR>(),
                n if n >= NV => self.run::<V, NV, MR>(),
                1 => self.run::<V, 1, MR>(),
                2 => self.run::<V, 2, MR>(),
                3 => self.run::<V, 3, MR>(),
                _ => self.run::<V, NV, MR>(),
            }
        }
    }

    /// # Safety
    /// Rows `i0 .. i0 + rows` and columns `0 .. kc` of `a`, `kc * nr` values of the panel,
    /// and the `rows x cols` block at `c` must be valid; `NV * LANES <= nr` and
    /// `cols <= NV * LANES`.
    #[inline(always)]
    pub(crate) unsafe fn run<V: Vector<E = T>, const NV: usize, const MR: usize>(&self) {
        // SAFETY: as the caller promises.
        unsafe { self.run_with::<V, NV, MR, false>() }
    }

    /// [`Tile::run`] with a piecewise linear activation applied in the registers before the
    /// store (others after it, as [`Tile::run`] does): the convolutions' tiles, where reading
    /// the tile back cost more than the registers the activation takes (fastest of 7
    /// alternated runs on a Zen 3: conv64 dec4's forward 73 -> 77 GFLOP/s, keras-conv dec0's
    /// 75 -> 82); the dense layers' long chains keep [`Tile::run`]. A tile narrower than its
    /// panel runs as [`Tile::run_any`] does (fewer vectors, the activation after the store).
    ///
    /// # Safety
    /// As for [`Tile::run_any`].
    #[inline(always)]
    pub(crate) unsafe fn run_fused<V: Vector<E = T>, const NV: usize, const MR: usize>(&self) {
        // SAFETY: as the caller promises.
        unsafe {
            if self.cols == self.nr {
                self.run_with::<V, NV, MR, true>()
            } else {
                self.run_any::<V, NV, MR>()
            }
        }
    }

    /// # Safety
    /// As for [`Tile::run`].
    #[inline(always)]
    unsafe fn run_with<V: Vector<E = T>, const NV: usize, const MR: usize, const FUSE: bool>(&self) {
        let zero = T::zero();
        let mut acc = [[V::splat(zero); NV]; MR];
        let w = NV * V::LANES;
        let full = self.rows == MR && self.cols == w && self.csc == 1;
        // The starting values.
        match self.start {
            Start::Zero => {}
            Start::Bias(_) | Start::Load | Start::Scaled(_) => {
                let scale = match self.start {
                    Start::Scaled(s) => Some(V::splat(s)),
                    _ => None,
                };
                // A bias start reads the same contiguous row for every row of the tile.
                let (cs, full) = match self.start {
                    Start::Bias(_) => (1, self.cols == w),
                    _ => (self.csc, full),
                };
                for (r, acc_row) in acc.iter_mut().enumerate().take(self.rows) {
                    // SAFETY: row r < rows of the C block (or the bias row).
                    let row = match self.start {
                        Start::Bias(b) => b,
                        _ => unsafe { self.c_row(r) }.cast_const(),
                    };
                    for (q, v) in acc_row.iter_mut().enumerate() {
                        *v = if full {
                            // SAFETY: q * LANES + LANES <= w = cols, contiguous (csc == 1).
                            unsafe { V::load(row.add(q * V::LANES)) }
                        } else {
                            let mut t = [zero; 16];
                            for (l, t) in t.iter_mut().enumerate().take(V::LANES) {
                                let j = q * V::LANES + l;
                                if j < self.cols {
                                    // SAFETY: column j < cols.
                                    *t = unsafe { *row.offset(j as isize * cs) };
                                }
                            }
                            // SAFETY: t holds 16 >= LANES values.
                            unsafe { V::load(t.as_ptr()) }
                        };
                        if let Some(s) = scale {
                            *v = s.mul(*v);
                        }
                    }
                }
            }
        }
        match self.a {
            RowsOf::Strided { a, rsa, csa, i0 } => {
                // Row pointers into A (rows past the block repeat its last row).
                let rows: [*const T; MR] = core::array::from_fn(|r| {
                    let i = i0 + r.min(self.rows - 1);
                    // SAFETY: row i < i0 + rows lies inside `a`.
                    unsafe { a.offset(i as isize * rsa) }
                });
                let (panel, nr) = (self.panel, self.nr);
                let (b_rows, b_col) = (self.b_rows, self.b_col);
                // SAFETY: as the caller promises.
                acc = unsafe {
                    if b_rows.is_null() {
                        chain::<V, NV, MR>(acc, rows, |p| p as isize * csa, self.kc, |p| panel.add(p * nr))
                    } else {
                        chain::<V, NV, MR>(
                            acc,
                            rows,
                            |p| p as isize * csa,
                            self.kc,
                            |p| (*b_rows.add(p)).add(b_col),
                        )
                    }
                };
            }
            RowsOf::Indirect { table, nseg, seg_len } => {
                for s in 0..nseg {
                    // SAFETY: the table holds nseg * MR row pointers, each to seg_len
                    // values; segment s is rows s * seg_len .. of the panel.
                    unsafe {
                        let rows: [*const T; MR] = core::array::from_fn(|r| *table.add(s * MR + r));
                        let (panel, nr) = (self.panel.add(s * seg_len * self.nr), self.nr);
                        acc = chain::<V, NV, MR>(acc, rows, |p| p as isize, seg_len, |p| panel.add(p * nr));
                    }
                }
            }
            RowsOf::Offsets { bases, offsets } => {
                // SAFETY: the table holds MR row bases, each with kc values at `offsets`.
                unsafe {
                    let rows: [*const T; MR] = core::array::from_fn(|r| *bases.add(r));
                    let (panel, nr) = (self.panel, self.nr);
                    acc = chain::<V, NV, MR>(acc, rows, |p| *offsets.add(p), self.kc, |p| panel.add(p * nr));
                }
            }
        }
        // Piecewise linear activations in the registers; the others after the store.
        let fused = FUSE && self.act.is_some_and(|f| unary_each_linear(f, acc.as_flattened_mut()));
        // Store.
        for (r, acc_row) in acc.iter().enumerate().take(self.rows) {
            // SAFETY: row r < rows of the C block.
            let row = unsafe { self.c_row(r) };
            for (q, v) in acc_row.iter().enumerate() {
                if full {
                    // SAFETY: as for the load.
                    unsafe { v.store(row.add(q * V::LANES)) };
                } else {
                    let mut t = [zero; 16];
                    // SAFETY: t holds 16 >= LANES values.
                    unsafe { v.store(t.as_mut_ptr()) };
                    for (l, &x) in t.iter().enumerate().take(V::LANES) {
                        let j = q * V::LANES + l;
                        if j < self.cols {
                            // SAFETY: column j < cols.
                            unsafe { *row.offset(j as isize * self.csc) = x };
                        }
                    }
                }
            }
        }
        if !fused && let Some(f) = self.act {
            // SAFETY: the tile just stored, read back from L1.
            unsafe { self.activate::<V, NV>(f) };
        }
    }
}
