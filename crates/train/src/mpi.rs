//! Data-parallel training over MPI (the `mpi` feature): [`MpiCollective`] implements the
//! trainer's [`Collective`] with `MPI_Allreduce` on `MPI_COMM_WORLD`.

use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use vae_trainer::Collective;

/// `MPI_COMM_WORLD` as the trainer's collective, with the time spent in allreduce.
pub struct MpiCollective {
    // Dropping the universe finalises MPI: it lives as long as the collective.
    _universe: mpi::environment::Universe,
    world: SimpleCommunicator,
    recv: Vec<f32>,
    /// Seconds spent in gradient allreduces.
    pub seconds: f64,
    /// Gradient allreduces done.
    pub calls: u64,
}

// SAFETY: MPI is initialised with `Threading::Serialized`, which allows calls from any one
// thread at a time; the collective is owned by one trainer, used by one thread at a time.
unsafe impl Send for MpiCollective {}

impl MpiCollective {
    /// Initialises MPI when the process was started by `mpirun` with more than one rank;
    /// `None` for a single process (then training is exactly as without MPI).
    pub fn from_launcher() -> Option<Self> {
        let size: usize = std::env::var("OMPI_COMM_WORLD_SIZE")
            .or_else(|_| std::env::var("PMI_SIZE"))
            .ok()?
            .parse()
            .ok()?;
        if size < 2 {
            return None;
        }
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Serialized)?;
        let world = universe.world();
        Some(MpiCollective {
            _universe: universe,
            world,
            recv: Vec::new(),
            seconds: 0.0,
            calls: 0,
        })
    }

    /// Ranks on this machine (for the default thread count).
    pub fn local_size() -> usize {
        std::env::var("OMPI_COMM_WORLD_LOCAL_SIZE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1)
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn allreduce_sum(&mut self, buf: &mut [f32]) {
        let t = Instant::now();
        self.recv.resize(buf.len(), 0.0);
        self.world
            .all_reduce_into(&buf[..], &mut self.recv[..], SystemOperation::sum());
        buf.copy_from_slice(&self.recv);
        self.seconds += t.elapsed().as_secs_f64();
        self.calls += 1;
    }

    fn allreduce_sum_f64(&mut self, buf: &mut [f64]) {
        let send = buf.to_vec();
        self.world.all_reduce_into(&send[..], buf, SystemOperation::sum());
    }

    fn allreduce_stats(&self) -> (f64, u64) {
        (self.seconds, self.calls)
    }

    fn all_equal(&mut self, v: u64) -> bool {
        let (mut lo, mut hi) = (0u64, 0u64);
        self.world.all_reduce_into(&v, &mut lo, SystemOperation::min());
        self.world.all_reduce_into(&v, &mut hi, SystemOperation::max());
        lo == hi
    }
}
