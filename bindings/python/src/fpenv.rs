//! The caller's floating-point mode, kept as it was: the engine flushes subnormal floats to
//! zero on the threads it computes on, which must not change NumPy's arithmetic on the
//! interpreter's own threads.

/// Restores the calling thread's subnormal mode when dropped.
pub struct KeepMode {
    flushed: bool,
}

impl KeepMode {
    /// Remembers the calling thread's mode.
    pub fn new() -> Self {
        KeepMode {
            flushed: vae_linalg::fpenv::denormals_flushed(),
        }
    }
}

impl Drop for KeepMode {
    fn drop(&mut self) {
        if !self.flushed && vae_linalg::fpenv::denormals_flushed() {
            vae_linalg::fpenv::keep_denormals();
        }
    }
}
