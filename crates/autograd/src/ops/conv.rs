//! 2-D convolution and transposed convolution over a batch of images, one flattened
//! `[C, H, W]` image per row (PyTorch's `flatten` order), through the GEMM core.
//!
//! A batch is cut into pieces of a few images (by the shapes alone: results never depend on
//! the thread count) that run in parallel; each piece unfolds its images' windows into a
//! matrix (`im2col`) that stays in cache and multiplies it by the weights in one sequential
//! GEMM:
//! * convolution: `Y = W cols(X)` (`W` is `[out, in kh kw]`), then the bias;
//! * transposed convolution, the adjoint: `cols = W^T X` (`W` is `[in, out kh kw]`), folded
//!   back onto the output image with sums (`col2im`), then the bias.
//!
//! The backward of each is the other's forward for the input, and one more GEMM per piece
//! for the weights, whose per-piece sums are added up in piece order.

use ndarray::{ArrayView2, ArrayViewMut2};
use vae_linalg::simd::{Accum, Unary, UnaryMap, dispatch};
use vae_linalg::team::{SendPtr, for_chunks_mut, for_parts};
use vae_linalg::{Parallelism, elementwise, gemm_with};

use super::Op;
use super::elementwise::{sl, sl_mut};
use crate::im2col::{Window, add_channel_bias, add_channel_sums, gather, plan, scatter, with_partials, with_scratch};
use crate::tape::{Grads, Tape, Values, Var};
use crate::{DenseAct, Float};

/// The shapes of a 2-D convolution (or, with `transposed`, a transposed convolution) as
/// PyTorch's `Conv2d` and `ConvTranspose2d` define them: each input row is one image of
/// `in_channels x in_size` values, each output row one of `out_channels x out_size()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// A transposed convolution (`ConvTranspose2d`) rather than a convolution.
    pub transposed: bool,
    /// Channels of each input image.
    pub in_channels: usize,
    /// Channels of each output image.
    pub out_channels: usize,
    /// (height, width) of each input image.
    pub in_size: (usize, usize),
    /// (height, width) of the kernel.
    pub kernel: (usize, usize),
    /// Steps between window positions (convolution) or between input pixels on the output
    /// (transposed convolution).
    pub stride: (usize, usize),
    /// Zero padding on each side (of the input; for the transposed convolution, taken off
    /// each side of the output, as PyTorch's `padding`).
    pub padding: (usize, usize),
    /// Extra rows and columns at the bottom and right of a transposed convolution's output
    /// (PyTorch's `output_padding`, less than the stride); zero for a convolution.
    pub output_padding: (usize, usize),
}

impl ConvGeometry {
    /// (height, width) of each output image, or why these shapes do not make one.
    pub fn out_size(&self) -> Result<(usize, usize), String> {
        let (k, s, p, op) = (self.kernel, self.stride, self.padding, self.output_padding);
        if self.in_channels == 0 || self.out_channels == 0 {
            return Err("needs at least one input and one output channel".into());
        }
        if k.0 == 0 || k.1 == 0 || s.0 == 0 || s.1 == 0 {
            return Err(format!(
                "kernel {}x{} and stride {}x{} must be at least 1",
                k.0, k.1, s.0, s.1
            ));
        }
        if self.in_size.0 == 0 || self.in_size.1 == 0 {
            return Err(format!("input {}x{} is empty", self.in_size.0, self.in_size.1));
        }
        let axis = |len: usize, k: usize, s: usize, p: usize, op: usize| -> Result<usize, String> {
            if self.transposed {
                if op >= s {
                    return Err(format!("output padding {op} must be less than the stride {s}"));
                }
                ((len - 1) * s + k + op)
                    .checked_sub(2 * p)
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("padding {p} leaves no output of an input {len} wide"))
            } else {
                if op != 0 {
                    return Err("a convolution has no output padding".into());
                }
                if len + 2 * p < k {
                    return Err(format!("kernel {k} does not fit an input {len} wide padded by {p}"));
                }
                Ok((len + 2 * p - k) / s + 1)
            }
        };
        Ok((
            axis(self.in_size.0, k.0, s.0, p.0, op.0)?,
            axis(self.in_size.1, k.1, s.1, p.1, op.1)?,
        ))
    }

    /// The weight as the tape holds it: `[out, in kh kw]` for a convolution, `[in, out kh
    /// kw]` for a transposed one (PyTorch's 4-D layouts, see [`ConvGeometry::weight_shape`],
    /// with the last three axes flattened).
    pub fn weight_dim(&self) -> (usize, usize) {
        let [a, b, kh, kw] = self.weight_shape();
        (a, b * kh * kw)
    }

    /// The weight's shape in PyTorch: `Conv2d`'s `[out, in, kh, kw]`, `ConvTranspose2d`'s
    /// `[in, out, kh, kw]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        let (a, b) = if self.transposed {
            (self.in_channels, self.out_channels)
        } else {
            (self.out_channels, self.in_channels)
        };
        [a, b, self.kernel.0, self.kernel.1]
    }

    /// Values per input row.
    pub fn input_len(&self) -> usize {
        self.in_channels * self.in_size.0 * self.in_size.1
    }

    /// Values per output row.
    ///
    /// # Panics
    /// If the shapes make no output ([`ConvGeometry::out_size`]).
    pub fn output_len(&self) -> usize {
        let (h, w) = self.out_size().unwrap_or_else(|e| panic!("conv: {e}"));
        self.out_channels * h * w
    }

    /// The window slid over the image side: the input of a convolution, the output of a
    /// transposed one; its grid is the other side's pixels.
    fn window(&self) -> Window {
        let out = self.out_size().unwrap_or_else(|e| panic!("conv: {e}"));
        let (channels, (height, width), grid) = if self.transposed {
            (self.out_channels, out, self.in_size)
        } else {
            (self.in_channels, self.in_size, out)
        };
        Window {
            channels,
            height,
            width,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            grid,
        }
    }

    /// Channels of the side that is a plain matrix (`channels x positions`): the output of
    /// a convolution, the input of a transposed one.
    fn matrix_channels(&self) -> usize {
        if self.transposed {
            self.in_channels
        } else {
            self.out_channels
        }
    }
}

impl<T: Float> Tape<T> {
    /// `act(conv2d(x, w) + b)`: PyTorch's `Conv2d` on a batch of flattened images, `w`
    /// `[out, in kh kw]`, `b` 1 x out, the activation (one whose derivative follows from its
    /// output) applied as the output is written.
    ///
    /// # Panics
    /// If `geom` is transposed or makes no output, or the shapes do not agree with it.
    pub fn conv2d(&mut self, x: Var, w: Var, b: Var, geom: &ConvGeometry, act: Option<DenseAct<T>>) -> Var {
        assert!(!geom.transposed, "conv2d: the geometry is a transposed convolution's");
        self.conv(x, w, b, geom, act)
    }

    /// `act(conv_transpose2d(x, w) + b)`: PyTorch's `ConvTranspose2d` (the adjoint of a
    /// convolution, with output padding), `w` `[in, out kh kw]`, `b` 1 x out.
    ///
    /// # Panics
    /// If `geom` is not transposed or makes no output, or the shapes do not agree with it.
    pub fn conv_transpose2d(&mut self, x: Var, w: Var, b: Var, geom: &ConvGeometry, act: Option<DenseAct<T>>) -> Var {
        assert!(geom.transposed, "conv_transpose2d: the geometry is a convolution's");
        self.conv(x, w, b, geom, act)
    }

    fn conv(&mut self, x: Var, w: Var, b: Var, geom: &ConvGeometry, act: Option<DenseAct<T>>) -> Var {
        if let Err(e) = geom.out_size() {
            panic!("conv: {e} ({geom:?})");
        }
        let (n, len) = self.dim(x);
        assert!(
            len == geom.input_len() && self.dim(w) == geom.weight_dim() && self.dim(b) == (1, geom.out_channels),
            "conv: x {:?}, w {:?} and b {:?} do not agree with {geom:?} (rows of {} values, w {:?}, b 1 x {})",
            self.dim(x),
            self.dim(w),
            self.dim(b),
            geom.input_len(),
            geom.weight_dim(),
            geom.out_channels
        );
        if let Some(DenseAct::LeakyRelu(s)) = act {
            assert!(s >= T::zero(), "conv: leaky ReLU slope {s} is negative");
        }
        let act = act.map(DenseAct::unary);
        let geom = *geom;
        self.record(
            Op::Conv { x, w, b, geom, act },
            (n, geom.output_len()),
            false,
            |out, v| forward(&geom, act, sl(v.get(x)), v.get(w), sl(v.get(b)), sl_mut(out), n),
        )
    }
}

/// `rows x cols` over `data` (row-major).
fn mat<T>(data: &[T], rows: usize, cols: usize) -> ArrayView2<'_, T> {
    ArrayView2::from_shape((rows, cols), data).expect("the buffer fits")
}

fn mat_mut<T>(data: &mut [T], rows: usize, cols: usize) -> ArrayViewMut2<'_, T> {
    ArrayViewMut2::from_shape((rows, cols), data).expect("the buffer fits")
}

/// `out = in` or, with an activation, `out = act(in)`.
fn store<T: Float>(act: Option<Unary<T>>, x: &[T], out: &mut [T]) {
    match act {
        Some(f) => dispatch(UnaryMap {
            f,
            x,
            out,
            acc: Accum::Overwrite,
        }),
        None => out.copy_from_slice(x),
    }
}

/// The images `lo..hi` of piece `i` of `pieces` of `per` images of a batch of `n`.
fn piece(i: usize, per: usize, n: usize) -> std::ops::Range<usize> {
    (i * per).min(n)..((i + 1) * per).min(n)
}

/// The rows `r` of a buffer of rows `len` values wide behind `base`.
///
/// # Safety
/// The rows must be inside the buffer, and no other live reference may overlap them.
unsafe fn rows_mut<'a, T>(base: SendPtr<T>, r: &std::ops::Range<usize>, len: usize) -> &'a mut [T] {
    // SAFETY: as the caller promises.
    unsafe { std::slice::from_raw_parts_mut(base.get().add(r.start * len), r.len() * len) }
}

fn forward<T: Float>(
    geom: &ConvGeometry,
    act: Option<Unary<T>>,
    x: &[T],
    w: ArrayView2<T>,
    b: &[T],
    out: &mut [T],
    n: usize,
) {
    let win = geom.window();
    let p = win.positions();
    let (in_len, out_len) = (geom.input_len(), geom.output_len());
    let ch = geom.matrix_channels();
    let seq = Parallelism::Sequential;
    let (pieces, per) = plan(n, p);
    let base = SendPtr(out.as_mut_ptr());
    for_parts(pieces, |i| {
        let r = piece(i, per, n);
        if r.is_empty() {
            return;
        }
        let k = r.len();
        let xs = &x[r.start * in_len..r.end * in_len];
        // SAFETY: the pieces' rows are disjoint rows of `out`.
        let o = unsafe { rows_mut(base, &r, out_len) };
        let (rows, cols) = (win.rows(), k * p);
        let lens = [rows * cols, ch * cols, k * out_len];
        with_scratch(lens, |[unfolded, m, y]| {
            if geom.transposed {
                gather(xs, k, ch, p, m);
                let x = mat(m, ch, cols);
                gemm_with(seq, T::one(), w.t(), x, T::zero(), mat_mut(unfolded, rows, cols));
                y.fill(T::zero());
                win.col2im_add(unfolded, k, y);
                add_channel_bias(y, b, out_len / geom.out_channels);
                store(act, y, o);
            } else {
                win.im2col(xs, k, unfolded);
                let u = mat(unfolded, rows, cols);
                gemm_with(seq, T::one(), w, u, T::zero(), mat_mut(m, ch, cols));
                // The bias on each channel's row, then each image's plane of it stored
                // (activated) into the image's output row.
                add_channel_bias(m, b, cols);
                for j in 0..k {
                    for c in 0..ch {
                        store(act, &m[(c * k + j) * p..][..p], &mut o[(j * ch + c) * p..][..p]);
                    }
                }
            }
        });
    });
}

/// The backward of a convolution: the pre-activation gradient (in `g`'s own buffer), then
/// the input's gradient piece by piece, the weight's and the bias's as sums of per-piece
/// parts added in piece order.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_backward<T: Float>(
    x: Var,
    w: Var,
    b: Var,
    geom: &ConvGeometry,
    act: Option<Unary<T>>,
    y: &ndarray::Array2<T>,
    g: &mut ndarray::Array2<T>,
    vals: &Values<T>,
    grads: &mut Grads<T>,
) {
    if let Some(f) = act {
        elementwise::unary_grad_from_output(f, sl(y.view()), sl_mut(g));
    }
    let g = sl(g.view());
    let n = y.nrows();
    let win = geom.window();
    let p = win.positions();
    let (in_len, out_len) = (geom.input_len(), geom.output_len());
    let ch = geom.matrix_channels();
    let (wr, wc) = geom.weight_dim();
    let wv = vals.get(w);
    let xv = sl(vals.get(x));
    let (want_x, want_w, want_b) = (vals.wants_grad(x), vals.wants_grad(w), vals.wants_grad(b));
    let (pieces, per) = plan(n, p);
    let stride = wr * wc + geom.out_channels;
    let seq = Parallelism::Sequential;
    with_partials(pieces * stride, |parts: &mut [T]| {
        let (gx_at, acc) = if want_x {
            let (gx, acc) = grads.slot(x, (n, in_len));
            (Some(SendPtr(sl_mut(gx).as_mut_ptr())), acc)
        } else {
            (None, Accum::Overwrite)
        };
        let parts_at = SendPtr(parts.as_mut_ptr());
        for_parts(pieces, |i| {
            let r = piece(i, per, n);
            // SAFETY: piece i alone writes partial row i.
            let part = unsafe { rows_mut(parts_at, &(i..i + 1), stride) };
            part.fill(T::zero());
            if r.is_empty() {
                return;
            }
            let k = r.len();
            let gs = &g[r.start * out_len..r.end * out_len];
            let xs = &xv[r.start * in_len..r.end * in_len];
            let (pw, pb) = part.split_at_mut(wr * wc);
            if want_b {
                add_channel_sums(gs, pb, out_len / geom.out_channels);
            }
            let (rows, cols) = (win.rows(), k * p);
            let lens = [rows * cols, ch * cols];
            with_scratch(lens, |[unfolded, m]| {
                let pw = mat_mut(pw, wr, wc);
                if geom.transposed {
                    win.im2col(gs, k, unfolded);
                    let gcols = mat(unfolded, rows, cols);
                    if want_w {
                        gather(xs, k, ch, p, m);
                        gemm_with(seq, T::one(), mat(m, ch, cols), gcols.t(), T::zero(), pw);
                    }
                    if let Some(at) = gx_at {
                        gemm_with(seq, T::one(), wv, gcols, T::zero(), mat_mut(m, ch, cols));
                        // SAFETY: the pieces' rows are disjoint rows of the input's gradient.
                        let gx = unsafe { rows_mut(at, &r, in_len) };
                        scatter(m, k, ch, p, gx, acc == Accum::Add);
                    }
                } else {
                    gather(gs, k, ch, p, m);
                    let gm = mat(m, ch, cols);
                    if want_w {
                        win.im2col(xs, k, unfolded);
                        gemm_with(seq, T::one(), gm, mat(unfolded, rows, cols).t(), T::zero(), pw);
                    }
                    if let Some(at) = gx_at {
                        gemm_with(seq, T::one(), wv.t(), gm, T::zero(), mat_mut(unfolded, rows, cols));
                        // SAFETY: the pieces' rows are disjoint rows of the input's gradient.
                        let gx = unsafe { rows_mut(at, &r, in_len) };
                        if acc == Accum::Overwrite {
                            gx.fill(T::zero());
                        }
                        win.col2im_add(unfolded, k, gx);
                    }
                }
            });
        });
        let parts = &*parts;
        if want_w {
            let (gw, acc) = grads.slot(w, (wr, wc));
            sum_parts(parts, pieces, stride, 0, sl_mut(gw), acc);
        }
        if want_b {
            let (gb, acc) = grads.slot(b, (1, geom.out_channels));
            sum_parts(parts, pieces, stride, wr * wc, sl_mut(gb), acc);
        }
    });
}

/// `out (+)= sum_i parts[i * stride + offset..][..out.len()]`, the pieces added in order.
fn sum_parts<T: Float>(parts: &[T], pieces: usize, stride: usize, offset: usize, out: &mut [T], acc: Accum) {
    let len = out.len();
    let chunk = elementwise::chunk_len(len, len * pieces, 16);
    for_chunks_mut(out, chunk, |start, o| {
        for (e, v) in o.iter_mut().enumerate() {
            let at = offset + start + e;
            let s = (0..pieces).fold(T::zero(), |s, i| s + parts[i * stride + at]);
            *v = if acc == Accum::Add { *v + s } else { s };
        }
    });
}
