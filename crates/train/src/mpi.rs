//! Data-parallel training over MPI (the `mpi` feature): [`MpiCollective`] implements the
//! trainer's [`Collective`] with `MPI_Allreduce` on `MPI_COMM_WORLD`.

use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use vae_trainer::Collective;

/// MPI, initialised on the main thread when the process was started by `mpirun` with more
/// than one rank. It lives in `main` and is finalised there, on the thread that initialised
/// it, after the collectives it hands out are gone.
pub struct Mpi {
    universe: mpi::environment::Universe,
}

impl Mpi {
    /// Initialises MPI under `mpirun` with several ranks; `Ok(None)` for a single process
    /// (then everything runs exactly as without MPI).
    pub fn from_launcher() -> Result<Option<Mpi>, String> {
        let size: usize = match std::env::var("OMPI_COMM_WORLD_SIZE").or_else(|_| std::env::var("PMI_SIZE")) {
            Ok(s) => s.parse().unwrap_or(1),
            Err(_) => return Ok(None),
        };
        if size < 2 {
            return Ok(None);
        }
        let (universe, granted) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or("MPI could not be initialised (was it already?)")?;
        if granted < mpi::Threading::Serialized {
            return Err(format!(
                "the MPI library grants only {granted:?} threading; vae-train needs Serialized \
                 (its MPI calls come from one worker thread at a time)"
            ));
        }
        Ok(Some(Mpi { universe }))
    }

    /// `MPI_COMM_WORLD` as the trainer's collective.
    pub fn collective(&self) -> MpiCollective {
        MpiCollective {
            world: self.universe.world(),
            recv: Vec::new(),
            seconds: 0.0,
            calls: 0,
        }
    }

    /// Ends every rank of the job at once (after an error on this one, so that the others do
    /// not wait for it forever).
    pub fn abort(&self, code: i32) -> ! {
        self.universe.world().abort(code)
    }
}

/// `MPI_COMM_WORLD` as the trainer's collective, with the time spent in allreduce.
pub struct MpiCollective {
    world: SimpleCommunicator,
    recv: Vec<f32>,
    /// Seconds spent in gradient allreduces.
    pub seconds: f64,
    /// Gradient allreduces done.
    pub calls: u64,
}

// SAFETY: MPI is initialised with (and checked to grant) `Threading::Serialized`, which
// allows calls from any one thread at a time; a collective is owned by one trainer or
// command, used by one thread at a time.
unsafe impl Send for MpiCollective {}

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
