//! Small statistics the commands need: the inverse normal CDF, principal components, AUROC.

use ndarray::{Array1, Array2, ArrayView2, Axis};

/// The inverse of the standard normal CDF by Acklam's rational approximation (relative error
/// below 1.2e-9). `p` must lie in (0, 1).
pub fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.02425;
    if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -inverse_normal_cdf(1.0 - p)
    }
}

/// Projects the rows of `x` (n x d) on their top two principal components (by power
/// iteration with deflation on the d x d covariance). With d <= 2 the columns are returned
/// as they are (padded with zeros for d = 1).
pub fn top2(x: ArrayView2<f64>) -> Array2<f64> {
    let (n, d) = x.dim();
    if d <= 2 {
        let mut out = Array2::zeros((n, 2));
        out.slice_mut(ndarray::s![.., ..d]).assign(&x);
        return out;
    }
    let mean = x.mean_axis(Axis(0)).expect("non-empty");
    let centred = &x - &mean;
    let mut cov = centred.t().dot(&centred) / (n.max(2) - 1) as f64;
    let mut comps = Vec::new();
    for k in 0..2 {
        let mut v = Array1::from_shape_fn(d, |i| 1.0 + (i as f64 + k as f64 * 0.37).sin());
        let mut lambda = 0.0;
        for _ in 0..500 {
            let w = cov.dot(&v);
            let norm = w.dot(&w).sqrt();
            if norm == 0.0 {
                break;
            }
            lambda = norm;
            v = w / norm;
        }
        // Deflate.
        let outer = v.view().insert_axis(Axis(1)).dot(&v.view().insert_axis(Axis(0)));
        cov = cov - outer * lambda;
        comps.push(v);
    }
    let mut out = Array2::zeros((n, 2));
    for (k, v) in comps.iter().enumerate() {
        out.column_mut(k).assign(&centred.dot(v));
    }
    out
}

/// Area under the ROC curve of `scores` for separating positives (higher scores) from
/// negatives: the Mann-Whitney statistic, ties counted half.
pub fn auroc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut n_pos) = (0.0, 0usize);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if positive[k] {
                rank_sum += avg_rank;
                n_pos += 1;
            }
        }
        i = j + 1;
    }
    let n_neg = scores.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    Some((rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0) / (n_pos * n_neg) as f64)
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn inverse_normal_cdf_known_values() {
        for (p, x) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.001, -3.090_232_306_167_813_6),
        ] {
            assert!(
                (inverse_normal_cdf(p) - x).abs() < 1e-8,
                "{p}: {}",
                inverse_normal_cdf(p)
            );
        }
    }

    #[test]
    fn auroc_of_perfect_random_and_tied_scores() {
        assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), Some(1.0));
        assert_eq!(auroc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), Some(0.0));
        assert_eq!(auroc(&[0.5, 0.5, 0.5, 0.5], &[false, true, false, true]), Some(0.5));
        assert_eq!(auroc(&[1.0, 2.0], &[true, true]), None);
    }

    #[test]
    fn principal_components_find_the_long_axis() {
        // Points along (1, 1, 0) with a little spread along (0, 0, 1).
        let x = Array2::from_shape_fn((50, 3), |(i, j)| {
            let t = i as f64 - 25.0;
            [t, t, 0.1 * (i % 3) as f64][j]
        });
        let p = top2(x.view());
        let spread = |c: usize| p.column(c).iter().map(|v| v * v).sum::<f64>();
        assert!(spread(0) > 100.0 * spread(1));
        assert_eq!(top2(array![[1.0, 2.0]].view()), array![[1.0, 2.0]]);
    }
}
