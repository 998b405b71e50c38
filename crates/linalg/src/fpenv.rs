//! The floating-point environment of engine threads: subnormal numbers flushed to zero.
//!
//! Saturated tanh units, tiny Adam moments and underflowing exponentials produce subnormal
//! floats. Intel cores compute with them on a slow microcode path (measured: the two-level
//! IWAE model trains 1.8-2x slower on an Ice Lake-SP with them than without), while the
//! values themselves (below 1.2e-38 in f32, 2.2e-308 in f64) are far beneath anything a VAE's
//! loss can resolve. So every engine thread computes with flush-to-zero (results that would
//! be subnormal are 0) and denormals-are-zero (subnormal inputs read as 0): x86-64's MXCSR
//! bits FTZ and DAZ, aarch64's FPCR.FZ.
//!
//! The engine sets the mode itself: [`flush_denormals`] runs at the start of every kernel
//! (one control-register read when it is already set), and [`thread_pool`] builds rayon pools
//! whose workers set it as they start, so neither the main thread nor a worker ever computes
//! with subnormals. The mode is per thread and applies to f32 and f64 alike.

/// x86-64 MXCSR: flush-to-zero (bit 15) and denormals-are-zero (bit 6).
#[cfg(target_arch = "x86_64")]
const MXCSR_FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
/// aarch64 FPCR.FZ (bit 24): flush subnormal inputs and results to zero.
#[cfg(target_arch = "aarch64")]
const FPCR_FZ: u64 = 1 << 24;

#[cfg(target_arch = "x86_64")]
#[inline]
fn read_mxcsr() -> u32 {
    let mut v: u32 = 0;
    // SAFETY: stmxcsr stores the 32-bit control/status register to the given location,
    // which is a live local; SSE is part of the x86-64 baseline.
    unsafe { core::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags)) };
    v
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn write_mxcsr(v: u32) {
    // SAFETY: ldmxcsr loads a control word read from this same register with mode bits
    // (never reserved ones) changed.
    unsafe { core::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, preserves_flags, readonly)) };
}

#[cfg(target_arch = "aarch64")]
#[inline]
fn read_fpcr() -> u64 {
    let v: u64;
    // SAFETY: reading FPCR has no side effect.
    unsafe { core::arch::asm!("mrs {}, fpcr", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Whether the calling thread flushes subnormal floats to zero (FTZ and DAZ on x86-64,
/// FPCR.FZ on aarch64). Always `false` on other architectures.
#[inline]
pub fn denormals_flushed() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        read_mxcsr() & MXCSR_FTZ_DAZ == MXCSR_FTZ_DAZ
    }
    #[cfg(target_arch = "aarch64")]
    {
        read_fpcr() & FPCR_FZ != 0
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Sets flush-to-zero and denormals-are-zero on the calling thread (a no-op when already
/// set, and on architectures without the mode). Every kernel calls this before it computes.
#[inline]
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        let v = read_mxcsr();
        if v & MXCSR_FTZ_DAZ != MXCSR_FTZ_DAZ {
            write_mxcsr(v | MXCSR_FTZ_DAZ);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let v = read_fpcr();
        if v & FPCR_FZ == 0 {
            // SAFETY: writes FPCR back with only the FZ mode bit changed.
            unsafe { core::arch::asm!("msr fpcr, {}", in(reg) v | FPCR_FZ, options(nomem, nostack, preserves_flags)) };
        }
    }
}

/// Restores IEEE subnormal arithmetic on the calling thread (for tests that compare the two
/// modes; the engine turns flushing back on at its next kernel).
pub fn keep_denormals() {
    #[cfg(target_arch = "x86_64")]
    write_mxcsr(read_mxcsr() & !MXCSR_FTZ_DAZ);
    #[cfg(target_arch = "aarch64")]
    {
        let v = read_fpcr() & !FPCR_FZ;
        // SAFETY: writes FPCR back with only the FZ mode bit changed.
        unsafe { core::arch::asm!("msr fpcr, {}", in(reg) v, options(nomem, nostack, preserves_flags)) };
    }
}

/// A rayon pool of `threads` threads (all cores if `None`) whose workers flush subnormals to
/// zero from the moment they start.
///
/// # Errors
/// If the operating system refuses the threads.
pub fn thread_pool(threads: Option<usize>) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .start_handler(|_| flush_denormals())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn flushing_turns_subnormal_results_into_zero() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        keep_denormals();
        assert!(!denormals_flushed());
        assert!(std::hint::black_box(tiny / 4.0) > 0.0, "IEEE mode keeps subnormals");
        flush_denormals();
        assert!(denormals_flushed());
        assert_eq!(std::hint::black_box(tiny / 4.0), 0.0, "flushed to zero");
        let tiny64 = std::hint::black_box(f64::MIN_POSITIVE);
        assert_eq!(std::hint::black_box(tiny64 / 4.0), 0.0, "f64 too");
    }

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn every_pool_worker_flushes_from_its_start() {
        let pool = thread_pool(Some(3)).unwrap();
        let flushed = pool.broadcast(|_| denormals_flushed());
        assert_eq!(flushed, vec![true; 3]);
    }
}
