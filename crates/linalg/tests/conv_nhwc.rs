//! The channels-last convolution kernels against the plain loops of their definitions (f64,
//! every geometry: strides 1-3, paddings 0-2, kernels 1-5, odd sizes, phases no tap reaches,
//! few and many channels on both sides, every start), and their f32 results bitwise the same
//! at every thread count and at the AVX2 and AVX-512 levels.

use vae_linalg::conv::{
    ConvMap, ConvStart, PIXELS_PER_PIECE, WeightLayout, conv_nhwc, conv_nhwc_weight_grad, image_pieces,
};
use vae_linalg::simd::{self, Accum, Level, Unary};

/// (source h, w, c), destination channels, kernel, stride, padding, output padding
/// (scatter only), scatter.
type Case = ((usize, usize, usize), usize, (usize, usize), usize, usize, usize, bool);

fn cases() -> Vec<Case> {
    vec![
        ((5, 5, 1), 2, (3, 3), 1, 1, 0, false),
        ((6, 5, 2), 3, (3, 3), 2, 1, 0, false),
        ((4, 4, 3), 2, (2, 2), 2, 0, 0, false),
        ((7, 3, 2), 2, (5, 5), 1, 2, 0, false),
        ((4, 5, 1), 1, (1, 1), 1, 0, 0, false),
        ((8, 8, 2), 2, (3, 3), 3, 2, 0, false),
        ((9, 7, 20), 50, (3, 3), 2, 1, 0, false),
        ((5, 6, 64), 17, (3, 3), 1, 1, 0, false),
        ((4, 4, 9), 130, (3, 2), 2, 0, 0, false),
        ((3, 3, 2), 1, (3, 3), 2, 1, 1, true),
        ((4, 2, 1), 3, (3, 3), 1, 1, 0, true),
        ((2, 3, 3), 2, (2, 2), 2, 0, 0, true),
        ((3, 4, 2), 2, (4, 4), 3, 1, 2, true),
        ((2, 2, 1), 2, (5, 5), 1, 2, 0, true),
        ((3, 3, 2), 2, (2, 2), 3, 0, 1, true),
        ((7, 5, 33), 40, (3, 3), 2, 1, 1, true),
        ((4, 4, 64), 1, (3, 3), 1, 1, 0, true),
        ((5, 4, 12), 70, (3, 3), 2, 2, 0, true),
        ((7, 7, 8), 8, (3, 3), 2, 1, 1, true),
        ((14, 14, 8), 8, (3, 3), 2, 1, 0, false),
        ((9, 8, 1), 32, (3, 3), 2, 1, 0, false),
        ((7, 6, 3), 32, (3, 3), 1, 1, 0, false),
        ((6, 7, 2), 48, (5, 5), 2, 2, 0, false),
        ((5, 5, 3), 16, (3, 3), 1, 1, 0, false),
        ((6, 5, 40), 3, (3, 3), 1, 1, 0, false),
        ((5, 6, 32), 4, (3, 3), 2, 1, 1, true),
        ((8, 7, 32), 40, (3, 3), 2, 1, 0, false),
        ((6, 7, 48), 20, (3, 3), 1, 1, 0, false),
        ((6, 6, 19), 1, (5, 5), 2, 2, 1, true),
        // The backward by the weights with its destination side packed per tile (128 or
        // more channels, 1 or 2 past a multiple of every tile's rows) and its panels read in
        // place (32 source channels), over blocks of 128 pixels and more.
        ((9, 9, 32), 134, (3, 3), 1, 1, 0, false),
        ((5, 5, 145), 32, (3, 3), 2, 1, 1, true),
    ]
}

fn map_of(c: &Case, batch: usize) -> ConvMap {
    let &((h, w, ch), d, k, s, p, op, scatter) = c;
    let axis = |len: usize, k: usize| {
        if scatter {
            (len - 1) * s + k + op - 2 * p
        } else {
            (len + 2 * p - k) / s + 1
        }
    };
    ConvMap {
        batch,
        src: (h, w, ch),
        dst: (axis(h, k.0), axis(w, k.1), d),
        kernel: k,
        stride: (s, s),
        padding: (p, p),
        scatter,
    }
}

fn values(n: usize, seed: f64) -> Vec<f64> {
    (0..n)
        .map(|i| (seed + 0.37 * i as f64).sin() * 0.5 + 0.01 * (i % 7) as f64)
        .collect()
}

/// The weight's value joining source channel `s` and destination channel `d` at a tap.
fn w_at(w: &[f64], m: &ConvMap, layout: WeightLayout, d: usize, s: usize, ky: usize, kx: usize) -> f64 {
    let (sc, dc) = (m.src.2, m.dst.2);
    let (kh, kw) = m.kernel;
    match layout {
        WeightLayout::DstSrc => w[((d * sc + s) * kh + ky) * kw + kx],
        WeightLayout::SrcDst => w[((s * dc + d) * kh + ky) * kw + kx],
    }
}

/// A (source pixel, destination pixel, tap) triple.
type Joint = ((usize, usize), (usize, usize), (usize, usize));

/// Every (source pixel, destination pixel, tap) the map joins, by the definitions.
fn pairs(m: &ConvMap) -> Vec<Joint> {
    let mut out = Vec::new();
    let (sh, sw, _) = m.src;
    let (dh, dw, _) = m.dst;
    let (s, p) = (m.stride.0 as isize, m.padding.0 as isize);
    for ky in 0..m.kernel.0 {
        for kx in 0..m.kernel.1 {
            let (a, b) = if m.scatter { (sh, sw) } else { (dh, dw) };
            for y in 0..a {
                for x in 0..b {
                    let ty = y as isize * s + ky as isize - p;
                    let tx = x as isize * s + kx as isize - p;
                    let (lim_y, lim_x) = if m.scatter { (dh, dw) } else { (sh, sw) };
                    if !(0..lim_y as isize).contains(&ty) || !(0..lim_x as isize).contains(&tx) {
                        continue;
                    }
                    let t = (ty as usize, tx as usize);
                    if m.scatter {
                        out.push(((y, x), t, (ky, kx)));
                    } else {
                        out.push((t, (y, x), (ky, kx)));
                    }
                }
            }
        }
    }
    out
}

fn naive(m: &ConvMap, src: &[f64], w: &[f64], layout: WeightLayout, bias: Option<&[f64]>) -> Vec<f64> {
    let (_, sw, sc) = m.src;
    let (dh, dw, dc) = m.dst;
    let mut dst = vec![0.0; m.batch * dh * dw * dc];
    for j in 0..m.batch {
        if let Some(b) = bias {
            for o in 0..dh * dw {
                dst[(j * dh * dw + o) * dc..][..dc].copy_from_slice(b);
            }
        }
        for &((sy, sx), (oy, ox), (ky, kx)) in &pairs(m) {
            for d in 0..dc {
                for s in 0..sc {
                    let v = src[((j * m.src.0 + sy) * sw + sx) * sc + s];
                    dst[((j * dh + oy) * dw + ox) * dc + d] += v * w_at(w, m, layout, d, s, ky, kx);
                }
            }
        }
    }
    dst
}

fn naive_weight_grad(m: &ConvMap, dst_side: &[f64], src_side: &[f64]) -> Vec<f64> {
    let (_, sw, sc) = m.src;
    let (dh, dw, dc) = m.dst;
    let (kh, kw) = m.kernel;
    let mut g = vec![0.0; dc * sc * kh * kw];
    for j in 0..m.batch {
        for &((sy, sx), (oy, ox), (ky, kx)) in &pairs(m) {
            for d in 0..dc {
                for s in 0..sc {
                    let a = dst_side[((j * dh + oy) * dw + ox) * dc + d];
                    let b = src_side[((j * m.src.0 + sy) * sw + sx) * sc + s];
                    g[((d * sc + s) * kh + ky) * kw + kx] += a * b;
                }
            }
        }
    }
    g
}

fn close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
            "{what}: element {i}: {g} vs {w}"
        );
    }
}

fn sizes(m: &ConvMap) -> (usize, usize, usize) {
    (
        m.batch * m.src.0 * m.src.1 * m.src.2,
        m.src.2 * m.dst.2 * m.kernel.0 * m.kernel.1,
        m.batch * m.dst.0 * m.dst.1 * m.dst.2,
    )
}

#[test]
fn every_map_matches_its_definition() {
    for (c, batch) in cases().into_iter().flat_map(|c| [(c, 3), (c, 64)]) {
        let m = map_of(&c, batch);
        let (ns, nw, nd) = sizes(&m);
        let (src, w, bias) = (values(ns, 0.1), values(nw, 0.7), values(m.dst.2, 1.3));
        for layout in [WeightLayout::DstSrc, WeightLayout::SrcDst] {
            let what = format!("{m:?} {layout:?}");
            let mut dst = vec![f64::NAN; nd];
            conv_nhwc(&m, &src, &w, layout, ConvStart::Zero, None, &mut dst);
            close(&dst, &naive(&m, &src, &w, layout, None), &format!("{what} from zero"));
            conv_nhwc(&m, &src, &w, layout, ConvStart::Bias(&bias), None, &mut dst);
            let want = naive(&m, &src, &w, layout, Some(&bias));
            close(&dst, &want, &format!("{what} from the bias"));
            // Accumulating onto what is there, and a fused activation.
            conv_nhwc(&m, &src, &w, layout, ConvStart::Add, None, &mut dst);
            let twice: Vec<f64> = want
                .iter()
                .zip(naive(&m, &src, &w, layout, None))
                .map(|(a, b)| a + b)
                .collect();
            close(&dst, &twice, &format!("{what} added"));
            let act = Unary::LeakyRelu(0.1);
            conv_nhwc(&m, &src, &w, layout, ConvStart::Bias(&bias), Some(act), &mut dst);
            let leaky: Vec<f64> = want.iter().map(|&v| if v > 0.0 { v } else { 0.1 * v }).collect();
            close(&dst, &leaky, &format!("{what} activated"));
        }
        if !m.scatter {
            let dst_side = values(nd, 2.9);
            let mut g = vec![f64::NAN; nw];
            conv_nhwc_weight_grad(&m, &dst_side, &src, &mut g, Accum::Overwrite);
            let want = naive_weight_grad(&m, &dst_side, &src);
            close(&g, &want, &format!("{m:?} weight gradient"));
            conv_nhwc_weight_grad(&m, &dst_side, &src, &mut g, Accum::Add);
            let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
            close(&g, &twice, &format!("{m:?} weight gradient added"));
        }
    }
}

/// `values(n, seed)` rounded to f32.
fn f32_values(n: usize, seed: f64) -> Vec<f32> {
    values(n, seed).into_iter().map(|x| x as f32).collect()
}

/// A batch large enough for several pieces and parts.
fn f32_outputs(m: &ConvMap) -> Vec<Vec<f32>> {
    let (ns, nw, nd) = sizes(m);
    let (src, w, bias, other) = (
        f32_values(ns, 0.2),
        f32_values(nw, 0.4),
        f32_values(m.dst.2, 0.9),
        f32_values(nd, 1.1),
    );
    let mut dst = vec![0f32; nd];
    conv_nhwc(
        m,
        &src,
        &w,
        WeightLayout::DstSrc,
        ConvStart::Bias(&bias),
        Some(Unary::Tanh),
        &mut dst,
    );
    let mut out = vec![dst];
    if !m.scatter {
        let mut g = vec![0f32; nw];
        conv_nhwc_weight_grad(m, &other, &src, &mut g, Accum::Overwrite);
        out.push(g);
    }
    out
}

#[test]
fn f32_results_are_the_same_bits_at_every_thread_count_and_fused_level() {
    let levels: Vec<Level> = [Level::Avx2, Level::Avx512]
        .into_iter()
        .filter(|l| l.is_supported())
        .collect();
    let start = simd::level();
    for c in cases() {
        let m = map_of(&c, 37);
        let mut seen: Option<Vec<Vec<f32>>> = None;
        for &level in &levels {
            simd::force_level(level).unwrap();
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let got = pool.install(|| f32_outputs(&m));
                match &seen {
                    None => seen = Some(got),
                    Some(want) => assert!(
                        got.iter()
                            .zip(want)
                            .all(|(a, b)| a.iter().map(|x| x.to_bits()).eq(b.iter().map(|x| x.to_bits()))),
                        "{m:?}: {level} with {threads} threads differs"
                    ),
                }
            }
        }
    }
    simd::force_level(start).unwrap();
}

/// Each level's f32 kernels (their own tiles, tables and panels; the f64 tests run the
/// scalar path) against the definitions in f64 on the same values.
#[test]
fn f32_results_match_their_definition_at_every_level() {
    let start = simd::level();
    let near = |got: &[f32], want: &[f64], what: &str| {
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (f64::from(g) - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what}: element {i}: {g} vs {w}"
            );
        }
    };
    for level in [Level::Scalar, Level::Avx2, Level::Avx512] {
        if !level.is_supported() {
            continue;
        }
        simd::force_level(level).unwrap();
        for c in cases() {
            let m = map_of(&c, 37);
            let (ns, nw, nd) = sizes(&m);
            let (src, w, bias, other) = (
                f32_values(ns, 0.2),
                f32_values(nw, 0.4),
                f32_values(m.dst.2, 0.9),
                f32_values(nd, 1.1),
            );
            let wide = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
            let mut dst = vec![f32::NAN; nd];
            conv_nhwc(
                &m,
                &src,
                &w,
                WeightLayout::DstSrc,
                ConvStart::Bias(&bias),
                None,
                &mut dst,
            );
            let want = naive(&m, &wide(&src), &wide(&w), WeightLayout::DstSrc, Some(&wide(&bias)));
            near(&dst, &want, &format!("{m:?} at {level}"));
            if !m.scatter {
                let mut g = vec![f32::NAN; nw];
                conv_nhwc_weight_grad(&m, &other, &src, &mut g, Accum::Overwrite);
                let want = naive_weight_grad(&m, &wide(&other), &wide(&src));
                near(&g, &want, &format!("{m:?} weight gradient at {level}"));
            }
        }
    }
    simd::force_level(start).unwrap();
}

/// An image's output does not depend on the batch it came in: data-parallel ranks (each
/// convolving its own shard) agree with one process to the bit in the forward pass and the
/// input gradient, and differ in the weight gradient only by where the shards' sums meet.
#[test]
fn an_images_output_is_the_same_bits_in_any_batch() {
    for c in cases() {
        let (small, large) = (map_of(&c, 5), map_of(&c, 64));
        let (ns, nw, nd) = sizes(&large);
        let (src, w, bias) = (f32_values(ns, 0.2), f32_values(nw, 0.4), f32_values(large.dst.2, 0.9));
        let run = |m: &ConvMap| {
            let mut dst = vec![0f32; sizes(m).2];
            let src = &src[..sizes(m).0];
            conv_nhwc(m, src, &w, WeightLayout::DstSrc, ConvStart::Bias(&bias), None, &mut dst);
            dst
        };
        let (a, b) = (run(&small), run(&large));
        let first = a.len();
        assert!(
            a.iter().map(|x| x.to_bits()).eq(b[..first].iter().map(|x| x.to_bits())),
            "{large:?}: the first images differ between batches of 5 and 64 (nd {nd})"
        );
    }
}

/// The backward by the weights of a batch is the sum of its halves' (two ranks of a
/// data-parallel job, added after), to the bit, when a half is a whole number of pieces.
#[test]
fn a_weight_gradient_is_its_halves_sum_to_the_bit() {
    let mut compared = 0;
    for c in cases() {
        let (half, whole) = (map_of(&c, 64), map_of(&c, 128));
        let (per, _) = image_pieces(128, whole.dst.0 * whole.dst.1, PIXELS_PER_PIECE);
        if whole.scatter || 64 % per != 0 {
            continue;
        }
        let (ns, nw, nd) = sizes(&whole);
        let (src, other) = (f32_values(ns, 0.2), f32_values(nd, 1.1));
        let mut g = vec![0f32; nw];
        conv_nhwc_weight_grad(&whole, &other, &src, &mut g, Accum::Overwrite);
        let (hs, hd) = (ns / 2, nd / 2);
        let mut halves = vec![0f32; nw];
        conv_nhwc_weight_grad(&half, &other[..hd], &src[..hs], &mut halves, Accum::Overwrite);
        let mut second = vec![0f32; nw];
        conv_nhwc_weight_grad(&half, &other[hd..], &src[hs..], &mut second, Accum::Overwrite);
        for (a, b) in halves.iter_mut().zip(second) {
            *a += b;
        }
        assert!(
            g.iter().map(|x| x.to_bits()).eq(halves.iter().map(|x| x.to_bits())),
            "{whole:?}: the gradient of 128 images is not the sum of its halves'"
        );
        compared += 1;
    }
    assert!(compared >= 3, "only {compared} maps compared");
}
