//! The machine's multiply-add peak per SIMD level, measured: twelve independent chains of
//! vector multiply-adds held in registers (as many as hide the latency of two FMA units), so
//! the loop runs at the core's FMA throughput. The yardstick the benchmarks express their
//! rates against.

use std::hint::black_box;
use std::time::Instant;

use super::{Kernel, Level, Vector, dispatch_at};

/// Independent accumulators: more than FMA latency x FMA units on the x86 cores seen.
const CHAINS: usize = 12;
/// Rounds of the chains per loop trip.
const UNROLL: usize = 4;

struct Peak {
    iters: usize,
}

impl Kernel<f32> for Peak {
    type Output = f32;
    #[inline(always)]
    fn run<V: Vector<E = f32>>(self) -> f32 {
        let mut acc = [V::splat(black_box(1.0)); CHAINS];
        let (m, a) = (V::splat(black_box(0.999)), V::splat(black_box(0.001)));
        for _ in 0..self.iters {
            // Four rounds per trip, so the loop's own counter and branch are a small share.
            for _ in 0..UNROLL {
                for x in acc.iter_mut() {
                    *x = x.mul_add(m, a);
                }
            }
        }
        let mut out = [0.0f32; 16];
        let mut sum = V::splat(0.0);
        for x in acc {
            sum = sum.add(x);
        }
        // SAFETY: `out` holds 16 >= LANES values.
        unsafe { sum.store(out.as_mut_ptr()) };
        out.iter().sum()
    }
}

/// The f32 multiply-add rate of the calling thread at `level`, in GFLOP/s (a multiply-add
/// counts two), the best of `rounds` runs of about 20 ms each.
///
/// # Panics
/// If the CPU does not support `level`.
pub fn fma_peak(level: Level, rounds: usize) -> f64 {
    let lanes = match level {
        Level::Avx512 => 16,
        Level::Avx2 => 8,
        Level::Scalar => 1,
    };
    // Calibrate to about 20 ms.
    let mut iters = 1 << 16;
    loop {
        let t = Instant::now();
        black_box(dispatch_at(level, Peak { iters }));
        if t.elapsed().as_secs_f64() > 0.005 || iters > 1 << 30 {
            break;
        }
        iters *= 4;
    }
    let t = Instant::now();
    black_box(dispatch_at(level, Peak { iters }));
    let per_iter = t.elapsed().as_secs_f64() / iters as f64;
    let iters = ((0.02 / per_iter) as usize).max(1);
    let best = (0..rounds.max(1))
        .map(|_| {
            let t = Instant::now();
            black_box(dispatch_at(level, Peak { iters }));
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    (2 * CHAINS * UNROLL * lanes * iters) as f64 / best / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_measures_a_positive_rate_at_every_level() {
        for level in super::super::supported_levels() {
            let r = fma_peak(level, 1);
            assert!(r.is_finite() && r > 0.1, "{level}: {r}");
        }
    }
}
