//! 2-D convolution and transposed convolution over a batch of channels-last images, one
//! flattened `[H, W, C]` image per row, through `vae_linalg::conv`'s kernels, which read the
//! images in place (a convolution stack keeps this layout from its first layer to its last;
//! [`Tape::channels_last`] and [`Tape::channels_first`] convert at its edges, so that the
//! rows the dense layers, the losses and the files see keep PyTorch's `[C, H, W]` order).
//!
//! Each direction is one map of `vae_linalg::conv`: a convolution's forward gathers, its
//! backward by the input scatters (polyphase); a transposed convolution the other way round.
//! The backward by the weights is a gather for both, the bias's a sum over pixels in pieces
//! of whole images fixed by the shapes, added pairwise: results never depend on the thread
//! count, and a batch's sum is its halves' (as two data-parallel ranks add them).

use vae_linalg::conv::{
    ConvMap, ConvStart, WeightLayout, conv_nhwc, conv_nhwc_weight_grad, image_pieces, sum_partials, with_partials,
};
use vae_linalg::elementwise;
use vae_linalg::simd::{Accum, ActGradSums, Unary, dispatch};
use vae_linalg::team::{SendPtr, for_parts};

use super::Op;
use super::elementwise::{sl, sl_mut};
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

    /// The maps of the three products over a batch of `n`: the forward, the backward by the
    /// input, and the gather whose weight gradient is the weight's (with which side is its
    /// destination: the output's gradient for a convolution, the input for a transposed one),
    /// and the weight's layout in the first two.
    fn maps(&self, n: usize) -> [(ConvMap, WeightLayout); 2] {
        let (oh, ow) = self.out_size().unwrap_or_else(|e| panic!("conv: {e}"));
        let input = (self.in_size.0, self.in_size.1, self.in_channels);
        let output = (oh, ow, self.out_channels);
        let map = |src, dst, scatter| ConvMap {
            batch: n,
            src,
            dst,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            scatter,
        };
        let t = self.transposed;
        // The weight is [out, in, ..] for a convolution, [in, out, ..] for a transposed one.
        let (fwd, bwd) = if t {
            (WeightLayout::SrcDst, WeightLayout::DstSrc)
        } else {
            (WeightLayout::DstSrc, WeightLayout::SrcDst)
        };
        [(map(input, output, t), fwd), (map(output, input, !t), bwd)]
    }

    /// `out = act(conv(x, w) + b)` over a batch of channels-last rows: the forward as the
    /// tape runs it (for benches and tests of the kernels alone).
    ///
    /// # Panics
    /// If the buffers do not fit the shapes.
    pub fn forward_nhwc<T: Float>(&self, x: &[T], w: &[T], b: &[T], act: Option<Unary<T>>, out: &mut [T]) {
        let n = x.len() / self.input_len().max(1);
        let [(map, layout), _] = self.maps(n);
        conv_nhwc(&map, x, w, layout, ConvStart::Bias(b), act, out);
    }

    /// `gx (+)= the backward by the input of g`, channels-last rows.
    ///
    /// # Panics
    /// If the buffers do not fit the shapes.
    pub fn input_grad_nhwc<T: Float>(&self, g: &[T], w: &[T], gx: &mut [T], acc: Accum) {
        let n = gx.len() / self.input_len().max(1);
        let [_, (map, layout)] = self.maps(n);
        let start = if acc == Accum::Add {
            ConvStart::Add
        } else {
            ConvStart::Zero
        };
        conv_nhwc(&map, g, w, layout, start, None, gx);
    }

    /// `gw (+)= the backward by the weight` (PyTorch's layout), channels-last rows.
    ///
    /// # Panics
    /// If the buffers do not fit the shapes.
    pub fn weight_grad_nhwc<T: Float>(&self, x: &[T], g: &[T], gw: &mut [T], acc: Accum) {
        let n = x.len() / self.input_len().max(1);
        let [fwd, bwd] = self.maps(n);
        if self.transposed {
            conv_nhwc_weight_grad(&bwd.0, x, g, gw, acc);
        } else {
            conv_nhwc_weight_grad(&fwd.0, g, x, gw, acc);
        }
    }
}

impl<T: Float> Tape<T> {
    /// `act(conv2d(x, w) + b)`: PyTorch's `Conv2d` on a batch of channels-last images, `w`
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
            |out, v| geom.forward_nhwc(sl(v.get(x)), sl(v.get(w)), sl(v.get(b)), act, sl_mut(out)),
        )
    }
}

/// Rows of `[pixels, channels]` per piece of a channel sum, about (whole images, by the
/// shapes alone: [`image_pieces`]).
const SUM_ROWS: usize = 4096;

/// Rows of a piece's block that [`act_grad_and_sums`] turns to the pre-activation gradient
/// and adds while they are in L1.
const BLOCK_ROWS: usize = 64;

/// `g = g f'(y)` for the activation `f` (if any), and `out (+)=` the sum over the rows of
/// the result (`g` holds images of `pixels` rows of `out.len()` channels) when `out` is
/// given: both in one pass over `g`, per piece of whole images a block of rows at a time.
/// Per-piece sums are added pairwise ([`sum_partials`]); each row is added in order, so the
/// sum's bits are those of the gradient's rows added one after the other, at every thread
/// count.
fn act_grad_and_sums<T: Float>(
    act: Option<Unary<T>>,
    y: &[T],
    g: &mut [T],
    pixels: usize,
    out: Option<(&mut [T], Accum)>,
) {
    let Some((out, acc)) = out else {
        if let Some(f) = act {
            elementwise::unary_grad_from_output(f, y, g);
        }
        return;
    };
    let c = out.len().max(1);
    let images = g.len() / (c * pixels).max(1);
    let (per, pieces) = image_pieces(images, pixels, SUM_ROWS);
    // One piece's rows: the activation's derivative and the sums, block by block.
    let piece = |g: &mut [T], y: &[T], dst: &mut [T], acc: Accum| {
        let block = BLOCK_ROWS * c;
        let mut acc = acc;
        for (gb, yb) in g.chunks_mut(block).zip(y.chunks(block)) {
            dispatch(ActGradSums {
                f: act,
                y: yb,
                g: gb,
                dst,
                acc,
            });
            acc = Accum::Add;
        }
        if acc == Accum::Overwrite {
            dst.fill(T::zero());
        }
    };
    if pieces <= 1 {
        return piece(g, y, out, acc);
    }
    with_partials(pieces * c, |parts: &mut [T]| {
        let at = SendPtr(parts.as_mut_ptr());
        let gp = SendPtr(g.as_mut_ptr());
        for_parts(pieces, |i| {
            let r = i * per * pixels * c..((i + 1) * per).min(images) * pixels * c;
            // SAFETY: piece i alone writes partial row i and its own rows of g.
            let (dst, gi) = unsafe {
                (
                    std::slice::from_raw_parts_mut(at.get().add(i * c), c),
                    std::slice::from_raw_parts_mut(gp.get().add(r.start), r.len()),
                )
            };
            piece(gi, &y[r], dst, Accum::Overwrite);
        });
        sum_partials(parts, c, pieces);
        for (o, &s) in out.iter_mut().zip(&parts[..c]) {
            *o = if acc == Accum::Add { *o + s } else { s };
        }
    });
}

/// The backward of a convolution: the pre-activation gradient (in `g`'s own buffer), then
/// the input's, the weight's and the bias's.
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
    let pixels = geom.output_len() / geom.out_channels.max(1);
    let bias = vals
        .wants_grad(b)
        .then(|| grads.slot(b, (1, geom.out_channels)))
        .map(|(gb, acc)| (sl_mut(gb), acc));
    act_grad_and_sums(act, sl(y.view()), sl_mut(g), pixels, bias);
    let g = sl(g.view());
    let n = y.nrows();
    let wv = sl(vals.get(w));
    let xv = sl(vals.get(x));
    if vals.wants_grad(w) {
        let (gw, acc) = grads.slot(w, geom.weight_dim());
        geom.weight_grad_nhwc(xv, g, sl_mut(gw), acc);
    }
    if vals.wants_grad(x) {
        let (gx, acc) = grads.slot(x, (n, geom.input_len()));
        geom.input_grad_nhwc(g, wv, sl_mut(gx), acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused pass gives the activation's derivative bit for bit and the channel sums of
    /// its result, over one piece and over many, overwriting or adding.
    #[test]
    fn act_grad_and_sums_match_the_plain_loops() {
        let (pixels, c) = (49, 24);
        for images in [1, 3, 300] {
            let n = images * pixels * c;
            let y: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin()).collect();
            let g0: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.11 + 1.0).cos()).collect();
            let want_g: Vec<f32> = g0
                .iter()
                .zip(&y)
                .map(|(&g, &y)| if y > 0.0 { g } else { g * 0.1 })
                .collect();
            for acc in [Accum::Overwrite, Accum::Add] {
                let mut g = g0.clone();
                let mut out = vec![1.0f32; c];
                act_grad_and_sums(Some(Unary::LeakyRelu(0.1)), &y, &mut g, pixels, Some((&mut out, acc)));
                assert!(g == want_g, "{images} images: the derivative differs");
                for (ch, &o) in out.iter().enumerate() {
                    let sum: f64 = want_g.iter().skip(ch).step_by(c).map(|&v| f64::from(v)).sum();
                    let want = sum + if acc == Accum::Add { 1.0 } else { 0.0 };
                    assert!(
                        (f64::from(o) - want).abs() < 1e-3,
                        "{images} images, channel {ch}: {o} vs {want}"
                    );
                }
            }
        }
    }
}
