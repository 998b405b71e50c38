//! The data movement of the convolutions: a window slid over a batch of images, unfolded
//! into the columns of a matrix (`im2col`) and folded back with sums (`col2im`, its
//! adjoint), and the moves between a batch of flattened `[C, H, W]` rows and one `C x (n P)`
//! matrix (`gather`, `scatter`). The arithmetic is the GEMM's.

use std::cell::RefCell;

use crate::Float;

/// A `kernel` window moved by `stride` over an image of `channels x height x width`
/// zero-padded by `padding` on every side; its positions form a `grid` (rows, columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub grid: (usize, usize),
}

impl Window {
    /// Rows of the unfolded matrix: one per (channel, kernel row, kernel column).
    pub fn rows(&self) -> usize {
        self.channels * self.kernel.0 * self.kernel.1
    }

    /// Window positions per image: the columns of one image's unfolded matrix.
    pub fn positions(&self) -> usize {
        self.grid.0 * self.grid.1
    }

    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The window positions `lo..hi` along one axis at which kernel offset `k` reads inside
    /// an image `len` wide (the others read padding).
    fn inside(len: usize, grid: usize, k: usize, stride: usize, pad: usize) -> (usize, usize) {
        let lo = if pad > k { (pad - k).div_ceil(stride) } else { 0 };
        let hi = if len + pad > k {
            ((len + pad - 1 - k) / stride + 1).min(grid)
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// Calls `f(at, image_at, (x_lo, x_hi))` for every grid row of every kernel offset and
    /// image: the row's entries start at `cols[at]`, and entry `x` (for `x` in
    /// `x_lo..x_hi`) reads the image value at `image_at + (x - x_lo) * stride`; the others,
    /// and whole rows with `image_at = None`, read padding.
    fn for_runs(&self, images: usize, mut f: impl FnMut(usize, Option<usize>, (usize, usize))) {
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (ph, pw) = self.padding;
        let (gh, gw) = self.grid;
        let p = self.positions();
        let plane = self.height * self.width;
        for c in 0..self.channels {
            for ki in 0..kh {
                let (y_lo, y_hi) = Self::inside(self.height, gh, ki, sh, ph);
                for kj in 0..kw {
                    let row = (c * kh + ki) * kw + kj;
                    let xs = Self::inside(self.width, gw, kj, sw, pw);
                    for j in 0..images {
                        for y in 0..gh {
                            let dst = row * images * p + j * p + y * gw;
                            let src = ((y_lo..y_hi).contains(&y) && xs.0 < xs.1).then(|| {
                                let iy = y * sh + ki - ph;
                                j * self.image_len() + c * plane + iy * self.width + xs.0 * sw + kj - pw
                            });
                            f(dst, src, xs);
                        }
                    }
                }
            }
        }
    }

    /// Unfolds `images` images (`src`, one after another) into `cols`, `rows() x (images
    /// positions())`: `cols[(c, ki, kj)][j P + (y, x)]` is image `j`'s value under kernel
    /// offset `(ki, kj)` at window position `(y, x)`, zero in the padding.
    pub fn im2col<T: Float>(&self, src: &[T], images: usize, cols: &mut [T]) {
        debug_assert_eq!(src.len(), images * self.image_len());
        debug_assert_eq!(cols.len(), self.rows() * images * self.positions());
        let (gw, sw) = (self.grid.1, self.stride.1);
        self.for_runs(images, |dst, src_at, (lo, hi)| {
            let out = &mut cols[dst..dst + gw];
            let Some(s) = src_at else {
                out.fill(T::zero());
                return;
            };
            out[..lo].fill(T::zero());
            out[hi..].fill(T::zero());
            let run = &mut out[lo..hi];
            if sw == 1 {
                run.copy_from_slice(&src[s..s + run.len()]);
            } else {
                for (i, o) in run.iter_mut().enumerate() {
                    *o = src[s + i * sw];
                }
            }
        });
    }

    /// The adjoint of [`Window::im2col`]: adds every column entry back onto the image value
    /// it was read from (entries in the padding are dropped).
    pub fn col2im_add<T: Float>(&self, cols: &[T], images: usize, dst: &mut [T]) {
        debug_assert_eq!(dst.len(), images * self.image_len());
        debug_assert_eq!(cols.len(), self.rows() * images * self.positions());
        let sw = self.stride.1;
        self.for_runs(images, |at, dst_at, (lo, hi)| {
            let Some(d) = dst_at else { return };
            let run = &cols[at + lo..at + hi];
            if sw == 1 {
                for (o, &v) in dst[d..d + run.len()].iter_mut().zip(run) {
                    *o = *o + v;
                }
            } else {
                for (i, &v) in run.iter().enumerate() {
                    dst[d + i * sw] = dst[d + i * sw] + v;
                }
            }
        });
    }
}

/// `dst[c][j P + p] = src[j][c P + p]`: `images` rows of `channels x P` values as one
/// `channels x (images P)` matrix.
pub(crate) fn gather<T: Float>(src: &[T], images: usize, channels: usize, p: usize, dst: &mut [T]) {
    for j in 0..images {
        for c in 0..channels {
            let from = &src[(j * channels + c) * p..][..p];
            dst[(c * images + j) * p..][..p].copy_from_slice(from);
        }
    }
}

/// The inverse of [`gather`], adding to `dst` when `add`.
pub(crate) fn scatter<T: Float>(src: &[T], images: usize, channels: usize, p: usize, dst: &mut [T], add: bool) {
    for j in 0..images {
        for c in 0..channels {
            let from = &src[(c * images + j) * p..][..p];
            let to = &mut dst[(j * channels + c) * p..][..p];
            if add {
                to.iter_mut().zip(from).for_each(|(t, &f)| *t = *t + f);
            } else {
                to.copy_from_slice(from);
            }
        }
    }
}

/// Adds `bias[c]` to channel `c` of each of `images` rows of `channels x p` values.
pub(crate) fn add_channel_bias<T: Float>(rows: &mut [T], bias: &[T], p: usize) {
    for (plane, &b) in rows.chunks_exact_mut(p).zip(bias.iter().cycle()) {
        plane.iter_mut().for_each(|v| *v = *v + b);
    }
}

/// Adds channel `c`'s sum over `p` positions of each of the rows to `sums[c]`.
pub(crate) fn add_channel_sums<T: Float>(rows: &[T], sums: &mut [T], p: usize) {
    let channels = sums.len();
    for (i, plane) in rows.chunks_exact(p).enumerate() {
        let s = plane.iter().fold(T::zero(), |a, &v| a + v);
        sums[i % channels] = sums[i % channels] + s;
    }
}

/// Images per piece of a batch of `n`: about [`COLUMNS`] window positions per piece (the
/// unfolded matrix of a piece stays in L2), pieces of equal size. Depends on the shapes
/// only, never on the thread count, so results do not either.
pub(crate) fn plan(n: usize, positions: usize) -> (usize, usize) {
    let per = COLUMNS.div_ceil(positions.max(1)).clamp(1, n.max(1));
    let pieces = n.div_ceil(per).max(1);
    (pieces, n.div_ceil(pieces))
}

/// Window positions per piece (see [`plan`]).
const COLUMNS: usize = 512;

thread_local! {
    /// Each thread's working buffers for the pieces it runs, grown as needed and kept.
    static SCRATCH: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// The calling thread's per-piece partial weight gradients.
    static PARTIALS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on buffers of `lens` elements from `cell` (grown to fit, never shrunk): no
/// allocation once warm. Their contents are whatever the last user left.
fn with_buffers<T: Float, R, const K: usize>(
    cell: &'static std::thread::LocalKey<RefCell<Vec<u64>>>,
    lens: [usize; K],
    f: impl FnOnce([&mut [T]; K]) -> R,
) -> R {
    // f32 and f64 (the only `Float`s) fit u64's alignment and accept any bit pattern.
    const { assert!(std::mem::align_of::<T>() <= 8 && std::mem::size_of::<T>() <= 8) };
    let total: usize = lens.iter().sum();
    let words = (total * std::mem::size_of::<T>()).div_ceil(8);
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
        // SAFETY: `buf` holds at least `total` T's worth of initialised, aligned bytes.
        let all = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<T>(), total) };
        let mut rest = all;
        let parts = lens.map(|len| {
            let (a, b) = std::mem::take(&mut rest).split_at_mut(len);
            rest = b;
            a
        });
        f(parts)
    })
}

/// A piece's working buffers of `lens` elements (see [`with_buffers`]).
pub(crate) fn with_scratch<T: Float, R, const K: usize>(lens: [usize; K], f: impl FnOnce([&mut [T]; K]) -> R) -> R {
    with_buffers(&SCRATCH, lens, f)
}

/// The caller's buffer for the per-piece partial gradients.
pub(crate) fn with_partials<T: Float, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    with_buffers(&PARTIALS, [len], |[x]| f(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(c: usize, h: usize, w: usize, k: usize, s: usize, p: usize) -> Window {
        let g = |len: usize| (len + 2 * p - k) / s + 1;
        Window {
            channels: c,
            height: h,
            width: w,
            kernel: (k, k),
            stride: (s, s),
            padding: (p, p),
            grid: (g(h), g(w)),
        }
    }

    /// The definition, one entry at a time.
    fn naive(win: &Window, src: &[f64], images: usize) -> Vec<f64> {
        let (kh, kw) = win.kernel;
        let (gh, gw) = win.grid;
        let mut cols = vec![0.0; win.rows() * images * win.positions()];
        for c in 0..win.channels {
            for ki in 0..kh {
                for kj in 0..kw {
                    for j in 0..images {
                        for y in 0..gh {
                            for x in 0..gw {
                                let iy = (y * win.stride.0 + ki) as isize - win.padding.0 as isize;
                                let ix = (x * win.stride.1 + kj) as isize - win.padding.1 as isize;
                                let inside =
                                    (0..win.height as isize).contains(&iy) && (0..win.width as isize).contains(&ix);
                                let v = if inside {
                                    src[j * win.image_len()
                                        + c * win.height * win.width
                                        + iy as usize * win.width
                                        + ix as usize]
                                } else {
                                    0.0
                                };
                                let row = (c * kh + ki) * kw + kj;
                                cols[row * images * win.positions() + j * win.positions() + y * gw + x] = v;
                            }
                        }
                    }
                }
            }
        }
        cols
    }

    #[test]
    fn im2col_matches_the_definition_and_col2im_is_its_adjoint() {
        for (c, h, w, k, s, p) in [
            (1, 5, 5, 3, 1, 1),
            (2, 7, 6, 3, 2, 1),
            (3, 4, 4, 2, 2, 0),
            (1, 6, 3, 5, 1, 2),
            (2, 9, 9, 3, 3, 2),
        ] {
            let win = window(c, h, w, k, s, p);
            let images = 3;
            let src: Vec<f64> = (0..images * win.image_len()).map(|i| (i as f64 * 0.37).sin()).collect();
            let mut cols = vec![f64::NAN; win.rows() * images * win.positions()];
            win.im2col(&src, images, &mut cols);
            assert_eq!(cols, naive(&win, &src, images), "{win:?}");
            // <im2col(x), y> = <x, col2im(y)>
            let y: Vec<f64> = (0..cols.len()).map(|i| (i as f64 * 0.11).cos()).collect();
            let mut back = vec![0.0; src.len()];
            win.col2im_add(&y, images, &mut back);
            let lhs: f64 = cols.iter().zip(&y).map(|(a, b)| a * b).sum();
            let rhs: f64 = src.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0), "{win:?}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn gather_and_scatter_are_inverse() {
        let src: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32).collect();
        let mut m = vec![0.0; src.len()];
        gather(&src, 2, 3, 4, &mut m);
        assert_eq!(&m[..8], &[0.0, 1.0, 2.0, 3.0, 12.0, 13.0, 14.0, 15.0]);
        let mut back = vec![0.0; src.len()];
        scatter(&m, 2, 3, 4, &mut back, false);
        assert_eq!(back, src);
        scatter(&m, 2, 3, 4, &mut back, true);
        assert_eq!(back, src.iter().map(|v| 2.0 * v).collect::<Vec<_>>());
    }

    #[test]
    fn plans_equal_pieces_from_the_shapes_alone() {
        assert_eq!(plan(128, 49), (12, 11));
        assert_eq!(plan(128, 784), (128, 1));
        assert_eq!(plan(3, 49), (1, 3));
        assert_eq!(plan(0, 49), (1, 0));
    }
}
