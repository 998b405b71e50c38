//! The vector types the kernels are written over: one `f32` (the portable reference) or
//! `f64` (the gradient checks), eight f32 (AVX2 + FMA) and sixteen (AVX-512F). Every operation but [`Vector::mul_add`] rounds
//! exactly as its scalar counterpart, so a kernel that avoids `mul_add` gives bitwise the
//! same result at every width.
//!
//! The methods are `#[inline(always)]` and call `core::arch` intrinsics; they are only ever
//! inlined into functions compiled with the matching `#[target_feature]` (see `dispatch`),
//! and never called on a CPU without the feature.

use crate::Float;

/// A vector of `LANES` values of type `E`.
pub trait Vector: Copy {
    /// The element type.
    type E: Float;
    /// Number of lanes.
    const LANES: usize;
    /// The vector of half the lanes (itself below 16), usable wherever `Self` is: for the
    /// last few columns of a GEMM, where a full vector would mostly multiply padding.
    type Half: Vector<E = Self::E>;
    /// Loads `LANES` values from `p` (no alignment needed).
    ///
    /// # Safety
    /// `p` must point to `LANES` readable values.
    unsafe fn load(p: *const Self::E) -> Self;
    /// Stores the lanes to `p` (no alignment needed).
    ///
    /// # Safety
    /// `p` must point to `LANES` writable values.
    unsafe fn store(self, p: *mut Self::E);
    /// Every lane `x`.
    fn splat(x: Self::E) -> Self;
    /// Lanewise `self + o`.
    fn add(self, o: Self) -> Self;
    /// Lanewise `self - o`.
    fn sub(self, o: Self) -> Self;
    /// Lanewise `self * o`.
    fn mul(self, o: Self) -> Self;
    /// Lanewise `self / o`.
    fn div(self, o: Self) -> Self;
    /// Lanewise square root.
    fn sqrt(self) -> Self;
    /// Lanewise `if self > o { self } else { o }` (x86's `maxps`: NaN in `self` gives `o`).
    fn max(self, o: Self) -> Self;
    /// Lanewise `if self < o { self } else { o }` (x86's `minps`).
    fn min(self, o: Self) -> Self;
    /// Lanewise `|self|` (clears the sign bit).
    fn abs(self) -> Self;
    /// Lanewise `-self` (flips the sign bit).
    fn neg(self) -> Self;
    /// Lanewise `if a > b { t } else { f }`.
    fn select_gt(a: Self, b: Self, t: Self, f: Self) -> Self;
    /// Lanewise `2^k` for integral `k` in [-126, 127].
    fn pow2i(k: Self) -> Self;
    /// Lanewise `self * b + c`: fused where the vector type has FMA (AVX2, AVX-512), two
    /// roundings in the scalar reference. For GEMM only.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// Lanewise `exp(self)`: the f32 polynomial of [`exp_f32`] (the same at every width),
    /// the standard library's for f64.
    fn exp(self) -> Self;
    /// Lanewise `ln(1 + self)` for `self` in [0, 1] (see [`ln_1p_unit_f32`]).
    fn ln_1p_unit(self) -> Self;
    /// Lanewise natural logarithm (the standard library's, lane by lane: not a hot path).
    fn ln(self) -> Self;

    /// Copies the 8 x 8 block at `src` (rows `ld` apart) to `dst` transposed (rows `ldd`
    /// apart): `dst[j * ldd + i] = src[i * ld + j]`. With shuffles at the x86 levels.
    ///
    /// # Safety
    /// Both blocks must be valid for reads and writes respectively, and must not overlap.
    #[inline(always)]
    unsafe fn transpose8(src: *const Self::E, ld: usize, dst: *mut Self::E, ldd: usize) {
        for i in 0..8 {
            for j in 0..8 {
                // SAFETY: the caller's contract.
                unsafe { *dst.add(j * ldd + i) = *src.add(i * ld + j) };
            }
        }
    }
}

/// One value: the portable reference every other width must match (f32), and the f64
/// path of the gradient checks.
#[derive(Clone, Copy, Debug)]
pub struct Scalar<T>(pub T);

macro_rules! scalar_vector {
    ($t:ty, $abs:expr, $sign:expr, { $($math:tt)* }) => {
        impl Vector for Scalar<$t> {
            type E = $t;
            const LANES: usize = 1;
            type Half = Self;
            #[inline(always)]
            unsafe fn load(p: *const $t) -> Self {
                // SAFETY: the caller's contract.
                Scalar(unsafe { *p })
            }
            #[inline(always)]
            unsafe fn store(self, p: *mut $t) {
                // SAFETY: the caller's contract.
                unsafe { *p = self.0 }
            }
            #[inline(always)]
            fn splat(x: $t) -> Self {
                Scalar(x)
            }
            #[inline(always)]
            fn add(self, o: Self) -> Self {
                Scalar(self.0 + o.0)
            }
            #[inline(always)]
            fn sub(self, o: Self) -> Self {
                Scalar(self.0 - o.0)
            }
            #[inline(always)]
            fn mul(self, o: Self) -> Self {
                Scalar(self.0 * o.0)
            }
            #[inline(always)]
            fn div(self, o: Self) -> Self {
                Scalar(self.0 / o.0)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                Scalar(self.0.sqrt())
            }
            #[inline(always)]
            fn max(self, o: Self) -> Self {
                Scalar(if self.0 > o.0 { self.0 } else { o.0 })
            }
            #[inline(always)]
            fn min(self, o: Self) -> Self {
                Scalar(if self.0 < o.0 { self.0 } else { o.0 })
            }
            #[inline(always)]
            fn abs(self) -> Self {
                Scalar(<$t>::from_bits(self.0.to_bits() & $abs))
            }
            #[inline(always)]
            fn neg(self) -> Self {
                Scalar(<$t>::from_bits(self.0.to_bits() ^ $sign))
            }
            #[inline(always)]
            fn select_gt(a: Self, b: Self, t: Self, f: Self) -> Self {
                if a.0 > b.0 { t } else { f }
            }
            #[inline(always)]
            fn mul_add(self, b: Self, c: Self) -> Self {
                Scalar(self.0 * b.0 + c.0)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                Scalar(self.0.ln())
            }
            $($math)*
        }
    };
}

scalar_vector!(f32, 0x7fff_ffff, 0x8000_0000, {
    #[inline(always)]
    fn pow2i(k: Self) -> Self {
        Scalar(f32::from_bits(((k.0 as i32 + 127) as u32) << 23))
    }
    #[inline(always)]
    fn exp(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn ln_1p_unit(self) -> Self {
        ln_1p_unit_f32(self)
    }
});

scalar_vector!(f64, 0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000, {
    #[inline(always)]
    fn pow2i(k: Self) -> Self {
        Scalar(f64::from_bits(((k.0 as i64 + 1023) as u64) << 52))
    }
    #[inline(always)]
    fn exp(self) -> Self {
        Scalar(self.0.exp())
    }
    #[inline(always)]
    fn ln_1p_unit(self) -> Self {
        Scalar(self.0.ln_1p())
    }
});

/// `exp(x)` for f32 lanes, written once for every width so that all give the same bits:
/// `x` clamped to [-87, 88] (NaN passes through), `x = k ln 2 + r` with `k` rounded by the
/// 1.5 * 2^23 trick and |r| <= ln 2 / 2, a degree-7 Taylor polynomial for `e^r` (truncation
/// below 1e-8), times `2^k` built in the exponent bits. Results below about 1e-38 are not
/// subnormal: exp(-100) gives exp(-87).
#[inline(always)]
pub fn exp_f32<V: Vector<E = f32>>(x: V) -> V {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0;
    let x = V::splat(88.0).min(V::splat(-87.0).max(x));
    let k = x
        .mul(V::splat(std::f32::consts::LOG2_E))
        .add(V::splat(ROUND))
        .sub(V::splat(ROUND));
    let r = x.sub(k.mul(V::splat(LN2_HI))).sub(k.mul(V::splat(LN2_LO)));
    let mut p = V::splat(1.0 / 5040.0);
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p.mul(r).add(V::splat(c));
    }
    p.mul(V::pow2i(k))
}

/// `ln(1 + u)` for f32 lanes with `u` in [0, 1]: `2 atanh(s)` with `s = u / (2 + u)` in
/// [0, 1/3], by its odd series to s^15 (truncation below 2e-9).
#[inline(always)]
pub fn ln_1p_unit_f32<V: Vector<E = f32>>(u: V) -> V {
    let s = u.div(V::splat(2.0).add(u));
    let s2 = s.mul(s);
    let mut p = V::splat(2.0 / 15.0);
    for c in [2.0 / 13.0, 2.0 / 11.0, 2.0 / 9.0, 2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0, 2.0] {
        p = p.mul(s2).add(V::splat(c));
    }
    p.mul(s)
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Vector, exp_f32, ln_1p_unit_f32};

    /// The 8 x 8 transpose of `Vector::transpose8` in 24 AVX shuffles.
    ///
    /// # Safety
    /// As `Vector::transpose8`; only inlined into functions compiled with AVX2.
    #[inline(always)]
    unsafe fn transpose8_avx(src: *const f32, ld: usize, dst: *mut f32, ldd: usize) {
        unsafe {
            let r: [__m256; 8] = core::array::from_fn(|i| _mm256_loadu_ps(src.add(i * ld)));
            let t = [
                _mm256_unpacklo_ps(r[0], r[1]),
                _mm256_unpackhi_ps(r[0], r[1]),
                _mm256_unpacklo_ps(r[2], r[3]),
                _mm256_unpackhi_ps(r[2], r[3]),
                _mm256_unpacklo_ps(r[4], r[5]),
                _mm256_unpackhi_ps(r[4], r[5]),
                _mm256_unpacklo_ps(r[6], r[7]),
                _mm256_unpackhi_ps(r[6], r[7]),
            ];
            let s = [
                _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
            ];
            for j in 0..4 {
                _mm256_storeu_ps(dst.add(j * ldd), _mm256_permute2f128_ps::<0x20>(s[j], s[j + 4]));
                _mm256_storeu_ps(dst.add((j + 4) * ldd), _mm256_permute2f128_ps::<0x31>(s[j], s[j + 4]));
            }
        }
    }

    /// Eight f32 lanes in a `__m256` (AVX2 + FMA).
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Avx2(__m256);

    // SAFETY (every method below): these are only inlined into `#[target_feature(enable =
    // "avx2,fma")]` functions, which run only after the CPU was found to have AVX2 and FMA.
    impl Vector for Avx2 {
        type E = f32;
        const LANES: usize = 8;
        type Half = Self;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx2(unsafe { _mm256_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            Avx2(unsafe { _mm256_set1_ps(x) })
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            Avx2(unsafe { _mm256_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            Avx2(unsafe { _mm256_sub_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            Avx2(unsafe { _mm256_mul_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn div(self, o: Self) -> Self {
            Avx2(unsafe { _mm256_div_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sqrt(self) -> Self {
            Avx2(unsafe { _mm256_sqrt_ps(self.0) })
        }
        #[inline(always)]
        fn max(self, o: Self) -> Self {
            Avx2(unsafe { _mm256_max_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn min(self, o: Self) -> Self {
            Avx2(unsafe { _mm256_min_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn abs(self) -> Self {
            Avx2(unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0) })
        }
        #[inline(always)]
        fn neg(self) -> Self {
            Avx2(unsafe { _mm256_xor_ps(_mm256_set1_ps(-0.0), self.0) })
        }
        #[inline(always)]
        fn select_gt(a: Self, b: Self, t: Self, f: Self) -> Self {
            unsafe {
                let m = _mm256_cmp_ps::<_CMP_GT_OQ>(a.0, b.0);
                Avx2(_mm256_blendv_ps(f.0, t.0, m))
            }
        }
        #[inline(always)]
        fn pow2i(k: Self) -> Self {
            unsafe {
                let i = _mm256_add_epi32(_mm256_cvtps_epi32(k.0), _mm256_set1_epi32(127));
                Avx2(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(i)))
            }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            Avx2(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        unsafe fn transpose8(src: *const f32, ld: usize, dst: *mut f32, ldd: usize) {
            unsafe { transpose8_avx(src, ld, dst, ldd) }
        }
        #[inline(always)]
        fn exp(self) -> Self {
            exp_f32(self)
        }
        #[inline(always)]
        fn ln_1p_unit(self) -> Self {
            ln_1p_unit_f32(self)
        }
        #[inline(always)]
        fn ln(self) -> Self {
            let mut a = [0.0f32; 8];
            unsafe { self.store(a.as_mut_ptr()) };
            a.iter_mut().for_each(|x| *x = x.ln());
            unsafe { Self::load(a.as_ptr()) }
        }
    }

    /// Sixteen f32 lanes in a `__m512` (AVX-512F).
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Avx512(__m512);

    // SAFETY (every method below): only inlined into `#[target_feature(enable = "avx512f")]`
    // functions, which run only after the CPU was found to have AVX-512F.
    impl Vector for Avx512 {
        type E = f32;
        const LANES: usize = 16;
        // AVX-512F implies AVX2 and FMA: eight lanes run inside the same functions.
        type Half = Avx2;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx512(unsafe { _mm512_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            Avx512(unsafe { _mm512_set1_ps(x) })
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            Avx512(unsafe { _mm512_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            Avx512(unsafe { _mm512_sub_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            Avx512(unsafe { _mm512_mul_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn div(self, o: Self) -> Self {
            Avx512(unsafe { _mm512_div_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sqrt(self) -> Self {
            Avx512(unsafe { _mm512_sqrt_ps(self.0) })
        }
        #[inline(always)]
        fn max(self, o: Self) -> Self {
            Self::select_gt(self, o, self, o)
        }
        #[inline(always)]
        fn min(self, o: Self) -> Self {
            Self::select_gt(o, self, self, o)
        }
        #[inline(always)]
        fn abs(self) -> Self {
            Avx512(unsafe {
                _mm512_castsi512_ps(_mm512_and_si512(
                    _mm512_castps_si512(self.0),
                    _mm512_set1_epi32(0x7fff_ffff),
                ))
            })
        }
        #[inline(always)]
        fn neg(self) -> Self {
            Avx512(unsafe {
                _mm512_castsi512_ps(_mm512_xor_si512(
                    _mm512_castps_si512(self.0),
                    _mm512_set1_epi32(i32::MIN),
                ))
            })
        }
        #[inline(always)]
        fn select_gt(a: Self, b: Self, t: Self, f: Self) -> Self {
            unsafe {
                let m = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a.0, b.0);
                Avx512(_mm512_mask_blend_ps(m, f.0, t.0))
            }
        }
        #[inline(always)]
        fn pow2i(k: Self) -> Self {
            unsafe {
                let i = _mm512_add_epi32(_mm512_cvtps_epi32(k.0), _mm512_set1_epi32(127));
                Avx512(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(i)))
            }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            Avx512(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        unsafe fn transpose8(src: *const f32, ld: usize, dst: *mut f32, ldd: usize) {
            // AVX-512F implies AVX2.
            unsafe { transpose8_avx(src, ld, dst, ldd) }
        }
        #[inline(always)]
        fn exp(self) -> Self {
            exp_f32(self)
        }
        #[inline(always)]
        fn ln_1p_unit(self) -> Self {
            ln_1p_unit_f32(self)
        }
        #[inline(always)]
        fn ln(self) -> Self {
            let mut a = [0.0f32; 16];
            unsafe { self.store(a.as_mut_ptr()) };
            a.iter_mut().for_each(|x| *x = x.ln());
            unsafe { Self::load(a.as_ptr()) }
        }
    }
}
