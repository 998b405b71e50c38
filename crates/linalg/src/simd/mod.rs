//! Explicit SIMD with run-time dispatch. Kernels are written once over the [`Vector`] trait
//! and compiled three times for f32: AVX-512F, AVX2 + FMA, and the portable scalar reference
//! (f64 always takes the scalar path). The level is detected from the CPU at first use, or
//! forced with the `VAE_SIMD` environment variable (`avx512`, `avx2` or `scalar`) or
//! [`force_level`], so that one machine can run and measure every path. Elementwise kernels
//! never use fused multiply-add, so every level gives bitwise the same results.

mod kernels;
mod peak;
mod vector;

use std::sync::atomic::{AtomicU8, Ordering};

pub use kernels::*;
pub use peak::fma_peak;
// The x86 vector types stay private: their safe methods execute AVX instructions, so they
// must only ever be reached through `dispatch`, which checks the CPU first.
#[cfg(target_arch = "x86_64")]
use vector::{Avx2, Avx512};
pub use vector::{Scalar, Vector, exp_f32, ln_1p_unit_f32};

/// An instruction-set level the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// One value at a time: the portable reference (every CPU).
    Scalar = 1,
    /// Eight f32 lanes with FMA (x86-64 with AVX2 and FMA).
    Avx2 = 2,
    /// Sixteen f32 lanes (x86-64 with AVX-512F).
    Avx512 = 3,
}

impl Level {
    /// The name `VAE_SIMD` takes.
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the level.
    pub fn is_supported(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    fn from_u8(v: u8) -> Option<Level> {
        match v {
            1 => Some(Level::Scalar),
            2 => Some(Level::Avx2),
            3 => Some(Level::Avx512),
            _ => None,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Ok(Level::Scalar),
            "avx2" => Ok(Level::Avx2),
            "avx512" | "avx-512" => Ok(Level::Avx512),
            other => Err(format!("unknown SIMD level '{other}': expected avx512, avx2 or scalar")),
        }
    }
}

/// Every level this CPU supports, best first.
pub fn supported_levels() -> Vec<Level> {
    [Level::Avx512, Level::Avx2, Level::Scalar]
        .into_iter()
        .filter(|l| l.is_supported())
        .collect()
}

/// The best level this CPU supports.
pub fn detected_level() -> Level {
    supported_levels()[0]
}

/// 0: not chosen yet.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The level in force: forced by [`force_level`], else `VAE_SIMD` if it names a level the
/// CPU supports, else the best the CPU supports. (Use [`level_from_env`] to report a bad
/// `VAE_SIMD` to the user; here it is ignored.)
pub fn level() -> Level {
    if let Some(l) = Level::from_u8(LEVEL.load(Ordering::Relaxed)) {
        return l;
    }
    let l = level_from_env().ok().flatten().unwrap_or_else(detected_level);
    LEVEL.store(l as u8, Ordering::Relaxed);
    l
}

/// The level `VAE_SIMD` asks for (`None` if it is unset or empty), or why it cannot be used.
pub fn level_from_env() -> Result<Option<Level>, String> {
    match std::env::var("VAE_SIMD") {
        Ok(v) if !v.trim().is_empty() => {
            let l: Level = v.parse().map_err(|e| format!("VAE_SIMD: {e}"))?;
            if l.is_supported() {
                Ok(Some(l))
            } else {
                Err(format!(
                    "VAE_SIMD={v}: this CPU does not support {l} (it supports {})",
                    supported_levels()
                        .iter()
                        .map(|l| l.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        _ => Ok(None),
    }
}

/// Forces every later kernel call onto `level`, process-wide.
///
/// # Errors
/// If the CPU does not support `level` (the level in force is then unchanged).
pub fn force_level(level: Level) -> Result<(), String> {
    if !level.is_supported() {
        return Err(format!("this CPU does not support {level}"));
    }
    LEVEL.store(level as u8, Ordering::Relaxed);
    Ok(())
}

/// A computation written over [`Vector`], run at the level in force by [`dispatch`].
pub trait Kernel<T> {
    /// What the kernel returns.
    type Output;
    /// Runs with vectors of type `V`.
    fn run<V: Vector<E = T>>(self) -> Self::Output;
}

/// Runs `k` at the level in force (f32), or on the scalar path (f64).
#[inline]
pub fn dispatch<T: Float, K: Kernel<T>>(k: K) -> K::Output {
    T::dispatch_at(level(), k)
}

/// Runs `k` at `level` (f32; f64 always runs on the scalar path).
///
/// # Panics
/// If the CPU does not support `level`.
#[inline]
pub fn dispatch_at<T: Float, K: Kernel<T>>(level: Level, k: K) -> K::Output {
    assert!(level.is_supported(), "this CPU does not support {level}");
    T::dispatch_at(level, k)
}

use crate::Float;

/// Runs a kernel at a level, for the two element types.
pub trait Dispatch: Sized {
    /// Runs `k` at `level`, which the CPU must support.
    fn dispatch_at<K: Kernel<Self>>(level: Level, k: K) -> K::Output;

    /// As [`Dispatch::dispatch_at`], but never with more than 8 lanes: at the AVX-512 level,
    /// 8-lane vectors compiled with AVX-512's 32 registers: for register-blocked kernels
    /// whose natural width is 8 lanes (the skinny GEMM on 20 columns pads to 24, not 32).
    fn dispatch_narrow_at<K: Kernel<Self>>(level: Level, k: K) -> K::Output {
        Self::dispatch_at(level, k)
    }
}

impl Dispatch for f64 {
    #[inline]
    fn dispatch_at<K: Kernel<f64>>(_: Level, k: K) -> K::Output {
        crate::fpenv::flush_denormals();
        k.run::<Scalar<f64>>()
    }
}

impl Dispatch for f32 {
    #[inline]
    fn dispatch_at<K: Kernel<f32>>(level: Level, k: K) -> K::Output {
        crate::fpenv::flush_denormals();
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: callers pass only levels the CPU supports (`level()` never holds
            // another, `dispatch_at` checks).
            Level::Avx512 => unsafe { run_avx512(k) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Level::Avx2 => unsafe { run_avx2(k) },
            _ => k.run::<Scalar<f32>>(),
        }
    }

    #[inline]
    fn dispatch_narrow_at<K: Kernel<f32>>(level: Level, k: K) -> K::Output {
        crate::fpenv::flush_denormals();
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `dispatch_at`; AVX-512F CPUs with VL have AVX2 and FMA as well.
            Level::Avx512 if is_x86_feature_detected!("avx512vl") => unsafe { run_avx512_narrow(k) },
            // AVX-512F without VL (Knights Landing): 8 lanes on the AVX2 path.
            #[cfg(target_arch = "x86_64")]
            // SAFETY: checked right here.
            Level::Avx512 if Level::Avx2.is_supported() => unsafe { run_avx2(k) },
            Level::Avx512 => k.run::<Scalar<f32>>(),
            _ => Self::dispatch_at(level, k),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn run_avx512_narrow<K: Kernel<f32>>(k: K) -> K::Output {
    k.run::<Avx2>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<K: Kernel<f32>>(k: K) -> K::Output {
    k.run::<Avx512>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<K: Kernel<f32>>(k: K) -> K::Output {
    k.run::<Avx2>()
}
