//! The thread pool a command runs in.

use anyhow::{Context, Result};

/// Runs `f` on a rayon pool of `threads` threads (all cores if `None`) whose workers flush
/// subnormal floats to zero (see `vae_linalg::fpenv`).
pub fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    let pool = vae_linalg::fpenv::thread_pool(threads).context("starting the thread pool")?;
    Ok(pool.install(f))
}

/// Ranks of an MPI job on this machine (1 outside one).
pub fn local_ranks() -> usize {
    std::env::var("OMPI_COMM_WORLD_LOCAL_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// The threads of each rank when `threads` is not given: ranks on one machine share its
/// cores.
pub fn per_rank(threads: Option<usize>, distributed: bool) -> Option<usize> {
    threads.or_else(|| {
        let local = local_ranks();
        (distributed && local > 1).then(|| (std::thread::available_parallelism().map_or(1, |n| n.get()) / local).max(1))
    })
}
