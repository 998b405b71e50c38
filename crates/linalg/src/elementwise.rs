//! The elementwise kernels of `simd` over contiguous slices, split across rayon's pool in
//! contiguous chunks (one per thread) when they are long enough to repay it. Every element
//! is computed independently, and row reductions stay within a row, so results never depend
//! on the thread count.

use crate::Float;
use crate::simd::{
    Accum, AdamStep, AdamUpdate, AddBias, BernoulliGrad, BernoulliRows, Binary, BinaryMap, ColumnSums, GaussianGrad,
    GaussianRows, KlGradLogvar, KlNormal, Unary, UnaryGrad, UnaryGradFromOutput, UnaryMap, dispatch,
};
use crate::team::{SendPtr, for_chunks_mut, for_parts};

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

/// How many contiguous chunks of `align`-element units to cut `len` elements of work into.
fn chunk(len: usize, work: usize, align: usize) -> usize {
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
fn split<T: Float, const K: usize>(
    out: &mut [T],
    ins: [&[T]; K],
    align: usize,
    f: impl Fn(&mut [T], [&[T]; K]) + Sync + Send,
) {
    let len = chunk(out.len(), out.len(), align);
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
    let len = chunk(out.len() / n, out.len(), 1) * n;
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

/// Per row: `sum_j softplus(l) - t * l` (the Bernoulli negative log-likelihood of targets
/// `t` in [0, 1] under logits `l`; `n` columns).
pub fn bernoulli_nll_rows<T: Float>(logits: &[T], target: &[T], n: usize, out: &mut [T]) {
    let rows = chunk(out.len(), logits.len(), 1);
    if rows >= out.len() {
        return dispatch(BernoulliRows { logits, target, n, out });
    }
    let n1 = n.max(1);
    for_chunks_mut(out, rows, |row, out| {
        let r = row * n1..(row + out.len()) * n1;
        let (logits, target) = (&logits[r.clone()], &target[r]);
        dispatch(BernoulliRows { logits, target, n, out })
    });
}

/// `out[i, j] (+)= g[i] * (sigmoid(l[i, j]) - t[i, j])`.
pub fn bernoulli_nll_grad<T: Float>(g: &[T], logits: &[T], target: &[T], out: &mut [T], acc: Accum) {
    let n = logits.len() / g.len().max(1);
    let rows = chunk(g.len(), logits.len(), 1);
    let len = rows * n.max(1);
    if len >= out.len() {
        return dispatch(BernoulliGrad {
            g,
            logits,
            target,
            out,
            acc,
        });
    }
    let n1 = n.max(1);
    for_chunks_mut(out, len, |start, out| {
        let r = start..start + out.len();
        let g = &g[start / n1..(start + out.len()) / n1];
        let (logits, target) = (&logits[r.clone()], &target[r]);
        dispatch(BernoulliGrad {
            g,
            logits,
            target,
            out,
            acc,
        })
    });
}

/// Per row: the Gaussian negative log-likelihood (see [`GaussianRows`]).
pub fn gaussian_nll_rows<T: Float>(mean: &[T], target: &[T], logvar: &[T], n: usize, range: (T, T), out: &mut [T]) {
    let n1 = n.max(1);
    let shared = logvar.len() == n1;
    let rows = chunk(out.len(), mean.len(), 1);
    for_chunks_mut(out, rows, |row, out| {
        let r = row * n1..(row + out.len()) * n1;
        let lv = if shared { logvar } else { &logvar[r.clone()] };
        dispatch(GaussianRows {
            mean: &mean[r.clone()],
            target: &target[r],
            logvar: lv,
            n,
            range,
            out,
        })
    });
}

/// One gradient of the Gaussian negative log-likelihood (see [`GaussianGrad`]; `wrt`: 0 the
/// mean, 1 the target, 2 the log-variance). Split by rows across the pool, except the
/// gradient of a shared log-variance row, which sums the rows in order.
#[allow(clippy::too_many_arguments)]
pub fn gaussian_nll_grad<T: Float>(
    g: &[T],
    mean: &[T],
    target: &[T],
    logvar: &[T],
    n: usize,
    range: (T, T),
    wrt: usize,
    out: &mut [T],
    acc: Accum,
) {
    let n1 = n.max(1);
    let shared = logvar.len() == n1;
    if shared && wrt == 2 {
        return dispatch(GaussianGrad {
            g,
            mean,
            target,
            logvar,
            n,
            range,
            wrt,
            out,
            acc,
        });
    }
    let rows = chunk(g.len(), mean.len(), 1);
    for_chunks_mut(out, rows * n1, |start, out| {
        let r = start..start + out.len();
        let lv = if shared { logvar } else { &logvar[r.clone()] };
        dispatch(GaussianGrad {
            g: &g[start / n1..(start + out.len()) / n1],
            mean: &mean[r.clone()],
            target: &target[r],
            logvar: lv,
            n,
            range,
            wrt,
            out,
            acc,
        })
    });
}

/// Elementwise KL divergence of N(mu, exp(lv)) from N(0, 1) (see [`KlNormal`]).
pub fn kl_normal<T: Float>(mu: &[T], logvar: &[T], range: (T, T), out: &mut [T]) {
    split(out, [mu, logvar], 16, |out, [mu, logvar]| {
        dispatch(KlNormal { mu, logvar, range, out })
    });
}

/// The KL term's gradient with respect to the log-variance (see [`KlGradLogvar`]).
pub fn kl_normal_grad_logvar<T: Float>(g: &[T], logvar: &[T], range: (T, T), out: &mut [T], acc: Accum) {
    split(out, [g, logvar], 16, |out, [g, logvar]| {
        dispatch(KlGradLogvar {
            g,
            logvar,
            range,
            out,
            acc,
        })
    });
}

/// One Adam update of `w` from its gradient `g` and moments `m`, `v` (see [`AdamUpdate`]),
/// in contiguous chunks across the pool.
pub fn adam<T: Float>(w: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: AdamStep<T>) {
    let len = chunk(w.len(), w.len(), 16);
    if len >= w.len() {
        return dispatch(AdamUpdate { w, g, m, v, h });
    }
    let total = w.len();
    assert!(
        g.len() == total && m.len() == total && v.len() == total,
        "adam: lengths differ"
    );
    let (wp, mp, vp) = (
        SendPtr(w.as_mut_ptr()),
        SendPtr(m.as_mut_ptr()),
        SendPtr(v.as_mut_ptr()),
    );
    for_parts(total.div_ceil(len), |i| {
        let r = i * len..((i + 1) * len).min(total);
        // SAFETY: the pieces are disjoint ranges of the live, mutably borrowed `w`, `m` and
        // `v` (of equal lengths, checked), one per piece.
        let (w, m, v) = unsafe {
            (
                std::slice::from_raw_parts_mut(wp.get().add(r.start), r.len()),
                std::slice::from_raw_parts_mut(mp.get().add(r.start), r.len()),
                std::slice::from_raw_parts_mut(vp.get().add(r.start), r.len()),
            )
        };
        dispatch(AdamUpdate { w, g: &g[r], m, v, h })
    });
}
