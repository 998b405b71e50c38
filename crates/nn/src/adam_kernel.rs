//! Adam's update as one SIMD [`Kernel`], [`AdamUpdate`] (weight, gradient and both moments
//! in one pass, written once over `vae_linalg::simd::Vector` without fused multiply-add, so
//! bitwise the same at every SIMD level), and [`adam`], which runs it at the level in force
//! on one contiguous chunk of a parameter per thread.

use vae_autograd::Float;
use vae_linalg::elementwise::chunk_len;
use vae_linalg::simd::{Kernel, REDUCE_LANES, Vector, dispatch};
use vae_linalg::team::{SendPtr, for_parts};

/// The constants of one Adam update (see [`Adam`](crate::Adam)).
#[derive(Clone, Copy, Debug)]
pub struct AdamStep<T> {
    /// `lr / (1 - beta1^t)`.
    pub step_size: T,
    /// `sqrt(1 - beta2^t)`.
    pub bc2_sqrt: T,
    /// Decay of the first moment.
    pub beta1: T,
    /// Decay of the second moment.
    pub beta2: T,
    /// Added to the denominator.
    pub eps: T,
    /// L2 penalty added to the gradient (0: none).
    pub weight_decay: T,
}

/// One Adam update, in `torch.optim.Adam`'s order: `g += wd w`, `m = b1 m + (1 - b1) g`,
/// `v = b2 v + (1 - b2) g g`, `w -= step_size m / (sqrt(v) / bc2_sqrt + eps)`.
pub struct AdamUpdate<'a, T> {
    /// Parameters.
    pub w: &'a mut [T],
    /// Their gradient.
    pub g: &'a [T],
    /// First moments.
    pub m: &'a mut [T],
    /// Second moments.
    pub v: &'a mut [T],
    /// The constants.
    pub h: AdamStep<T>,
}

impl<T: Float> Kernel<T> for AdamUpdate<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let AdamUpdate { w, g, m, v, h } = self;
        let n = w.len();
        assert!(g.len() == n && m.len() == n && v.len() == n, "adam: lengths differ");
        let (b1, b2) = (V::splat(h.beta1), V::splat(h.beta2));
        let (ob1, ob2) = (V::splat(T::one() - h.beta1), V::splat(T::one() - h.beta2));
        let (step, bc2, eps, wd) = (
            V::splat(h.step_size),
            V::splat(h.bc2_sqrt),
            V::splat(h.eps),
            V::splat(h.weight_decay),
        );
        let decay = h.weight_decay != T::zero();
        let k = AdamConsts {
            b1,
            b2,
            ob1,
            ob2,
            step,
            bc2,
            eps,
            wd,
            decay,
        };
        let l = V::LANES;
        let mut i = 0;
        while i + l <= n {
            // SAFETY: i + l <= n, the length of all four slices.
            unsafe {
                let (wv, mv, vv) = k.update(
                    V::load(w.as_ptr().add(i)),
                    V::load(g.as_ptr().add(i)),
                    V::load(m.as_ptr().add(i)),
                    V::load(v.as_ptr().add(i)),
                );
                wv.store(w.as_mut_ptr().add(i));
                mv.store(m.as_mut_ptr().add(i));
                vv.store(v.as_mut_ptr().add(i));
            }
            i += l;
        }
        for j in i..n {
            // SAFETY: one-element views of in-bounds values.
            unsafe {
                let (wv, mv, vv) = k.update(
                    Scalar1::load::<V>(&w[j]),
                    Scalar1::load::<V>(&g[j]),
                    Scalar1::load::<V>(&m[j]),
                    Scalar1::load::<V>(&v[j]),
                );
                w[j] = Scalar1::first(wv);
                m[j] = Scalar1::first(mv);
                v[j] = Scalar1::first(vv);
            }
        }
    }
}

/// Adam's constants as vectors.
struct AdamConsts<V> {
    b1: V,
    b2: V,
    ob1: V,
    ob2: V,
    step: V,
    bc2: V,
    eps: V,
    wd: V,
    decay: bool,
}

impl<V: Vector> AdamConsts<V> {
    /// The updated weight and moments.
    #[inline(always)]
    fn update(&self, w: V, g: V, m: V, v: V) -> (V, V, V) {
        let g = if self.decay { g.add(self.wd.mul(w)) } else { g };
        let m = self.b1.mul(m).add(self.ob1.mul(g));
        let v = self.b2.mul(v).add(self.ob2.mul(g).mul(g));
        let denom = v.sqrt().div(self.bc2).add(self.eps);
        (w.sub(self.step.mul(m.div(denom))), m, v)
    }
}

/// One value in a vector's first lane (the rest padded), for tails.
struct Scalar1;

impl Scalar1 {
    /// A vector whose first lane is `*x` (the others zero).
    ///
    /// # Safety
    /// None beyond `x` being a valid reference.
    #[inline(always)]
    unsafe fn load<V: Vector>(x: &V::E) -> V {
        let mut b = [V::E::c(0.0); REDUCE_LANES];
        b[0] = *x;
        // SAFETY: 16 >= LANES values.
        unsafe { V::load(b.as_ptr()) }
    }
    /// The first lane of `v`.
    #[inline(always)]
    fn first<V: Vector>(v: V) -> V::E {
        let mut b = [V::E::c(0.0); REDUCE_LANES];
        // SAFETY: 16 >= LANES values.
        unsafe { v.store(b.as_mut_ptr()) };
        b[0]
    }
}

/// One Adam update of `w` from its gradient `g` and moments `m`, `v` (see [`AdamUpdate`]),
/// in contiguous chunks across the pool.
pub fn adam<T: Float>(w: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: AdamStep<T>) {
    let len = chunk_len(w.len(), w.len(), 16);
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
