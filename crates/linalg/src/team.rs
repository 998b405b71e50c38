//! Fork-join without waking threads: the engine's one parallel primitive.
//!
//! Every parallel kernel (GEMM blocks, elementwise chunks, Adam) runs through [`for_parts`]:
//! `parts` independent pieces, numbered, each run exactly once. Outside a team that is a
//! rayon fork-join, which hands the pieces to workers that may have gone to sleep since the
//! last op (on a KVM guest an idle vCPU must be woken, microseconds per op; a VAE step has
//! dozens of ops). Inside [`with_team`] (the trainer wraps each training step in one) the
//! pool's other workers stay in a spin loop for the whole step and pick pieces up within
//! nanoseconds: one wake-up per step instead of one per op.
//!
//! Which thread runs which piece never changes a result: the pieces of a kernel are fixed by
//! the thread count alone and write disjoint outputs.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// The work of one [`for_parts`] call, seen by the team through a pointer.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

/// The state the team's threads share for one [`with_team`] call.
struct Team {
    /// `generation << 32 | parts << 16 | next`: the pieces of the current job, and the next
    /// one to claim. A claim is a compare-and-swap on the whole word, so a piece is only
    /// ever claimed for the generation it belongs to.
    state: AtomicU64,
    /// The current job (valid while the current generation has unclaimed pieces).
    job: AtomicPtr<Job<'static>>,
    /// Pieces of the current generation finished.
    done: AtomicUsize,
    /// Set when the step is over: helpers return.
    exit: AtomicBool,
    /// A piece run by a helper panicked.
    panicked: AtomicBool,
    /// The thread that owns the team (runs the step).
    owner: std::thread::ThreadId,
}

const MAX_PARTS: usize = 0xffff;
/// Idle spins of a helper before it starts yielding its core between checks.
const SPINS_BEFORE_YIELD: u32 = 20_000;

impl Team {
    /// Claims the next piece of the current generation, with its job.
    fn claim(&self) -> Option<(usize, *const Job<'static>)> {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let (parts, next) = ((s >> 16) & 0xffff, s & 0xffff);
            if next >= parts {
                return None;
            }
            // Read before the claim: a new job is only published once every piece of the
            // current one is claimed, which would make the claim below fail.
            let job = self.job.load(Ordering::Acquire);
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some((next as usize, job)),
                Err(now) => s = now,
            }
        }
    }

    /// Runs claimed pieces until none is left; returns whether it ran any, and (for the
    /// owner) the payload of the first that panicked.
    fn work(&self, owner: bool) -> (bool, Option<Box<dyn std::any::Any + Send>>) {
        let mut payload = None;
        let mut ran = false;
        while let Some((i, job)) = self.claim() {
            ran = true;
            // SAFETY: the job outlives its generation: `for_parts` returns only after every
            // claimed piece is done.
            let f = unsafe { (*job).f };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(i))) {
                self.panicked.store(true, Ordering::Release);
                if owner && payload.is_none() {
                    payload = Some(p);
                }
            }
            self.done.fetch_add(1, Ordering::Release);
        }
        (ran, payload)
    }

    /// A helper's loop: spin, run pieces, return at the end of the step.
    fn help(&self) {
        if std::thread::current().id() == self.owner {
            // The owner itself picked this helper job up (while waiting inside a rayon
            // operation of its own): running the loop here would never end.
            return;
        }
        crate::fpenv::flush_denormals();
        let mut idle = 0u32;
        loop {
            if self.work(false).0 {
                idle = 0;
            }
            if self.exit.load(Ordering::Acquire) {
                return;
            }
            // Spin through the short gaps between the ops of a step; after a long gap
            // (about 100 us, e.g. more threads than cores) yield the core between checks.
            idle = idle.saturating_add(1);
            if idle < SPINS_BEFORE_YIELD {
                relax();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// One wait of a spin loop. Not x86's `pause`: on a KVM guest a run of pauses can make the
/// hypervisor take the vCPU away (pause-loop exiting), the very wake-up latency the team
/// exists to avoid. Measured on a Zen 4 KVM guest, two-level IWAE model, 2 threads, 3 runs
/// of 3 epochs of 20,000 images: 9,000-9,700 img/s with plain loads, 8,500-9,600 with
/// `pause`, 7,800-8,800 without teams.
#[inline(always)]
fn relax() {
    std::hint::black_box(());
}

thread_local! {
    /// The team this thread owns, while it runs a [`with_team`] closure.
    static CURRENT: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

/// Whether the calling thread runs inside [`with_team`] (forking is then cheap enough to
/// split smaller kernels).
#[inline]
pub fn in_team() -> bool {
    !CURRENT.with(Cell::get).is_null()
}

/// Runs `f(0)`, ..., `f(parts - 1)`, each exactly once, in parallel: on the current team if
/// the calling thread owns one, else by rayon fork-join on the current pool. Returns when all
/// are done; a panic in any piece is resumed on the caller once all are done.
pub fn for_parts(parts: usize, f: impl Fn(usize) + Sync) {
    match parts {
        0 => return,
        1 => return f(0),
        _ => {}
    }
    let team = CURRENT.with(Cell::get);
    if team.is_null() || parts > MAX_PARTS {
        return join_range(0, parts, &f);
    }
    // SAFETY: the team lives on the stack of the `with_team` call that set CURRENT on this
    // thread, which is still running (it clears CURRENT before it returns).
    let team = unsafe { &*team };
    let job = Job { f: &f };
    // SAFETY: only the lifetime is erased; the pointer is used only while this call waits.
    let ptr = unsafe { std::mem::transmute::<*const Job<'_>, *mut Job<'static>>(&job as *const Job<'_>) };
    team.job.store(ptr, Ordering::Release);
    team.done.store(0, Ordering::Relaxed);
    let generation = (team.state.load(Ordering::Relaxed) >> 32) + 1;
    team.state
        .store((generation << 32) | ((parts as u64) << 16), Ordering::Release);
    let (_, payload) = team.work(true);
    while team.done.load(Ordering::Acquire) < parts {
        relax();
    }
    if let Some(p) = payload {
        resume_unwind(p);
    }
    if team.panicked.swap(false, Ordering::AcqRel) {
        panic!("a parallel piece of an engine kernel panicked on another thread");
    }
}

/// Rayon fork-join over `lo..hi` (no allocation: `join` keeps its jobs on the stack).
fn join_range(lo: usize, hi: usize, f: &(impl Fn(usize) + Sync)) {
    if hi - lo == 1 {
        return f(lo);
    }
    let mid = lo + (hi - lo) / 2;
    rayon::join(|| join_range(lo, mid, f), || join_range(mid, hi, f));
}

/// Runs `f` on the calling thread with the other workers of the current rayon pool held in
/// a spin loop, so that every [`for_parts`] inside it starts without waking a thread. Meant
/// for one training step: the helpers burn their cores until `f` returns. Outside a rayon
/// pool, on a pool of one thread, or nested, it just runs `f`.
pub fn with_team<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let threads = rayon::current_num_threads();
    if threads <= 1 || !teams_enabled() || rayon::current_thread_index().is_none() || !CURRENT.with(Cell::get).is_null()
    {
        return f();
    }
    let team = Team {
        state: AtomicU64::new(0),
        job: AtomicPtr::new(std::ptr::null_mut()),
        done: AtomicUsize::new(0),
        exit: AtomicBool::new(false),
        panicked: AtomicBool::new(false),
        owner: std::thread::current().id(),
    };
    let (result, ()) = rayon::join(
        || {
            CURRENT.with(|c| c.set(&team));
            let r = catch_unwind(AssertUnwindSafe(f));
            CURRENT.with(|c| c.set(std::ptr::null()));
            team.exit.store(true, Ordering::Release);
            r
        },
        || helpers(&team, threads - 1),
    );
    match result {
        Ok(r) => r,
        Err(p) => resume_unwind(p),
    }
}

/// Whether [`with_team`] forms teams: yes unless `VAE_TEAM=off` (to measure what the
/// teams save: every op then forks and joins on its own).
pub fn teams_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| !matches!(std::env::var("VAE_TEAM").as_deref().map(str::trim), Ok("off" | "0")))
}

/// `n` helper loops, each on a worker that steals it (nested joins: no allocation).
fn helpers(team: &Team, n: usize) {
    match n {
        0 => {}
        1 => team.help(),
        _ => {
            rayon::join(|| team.help(), || helpers(team, n - 1));
        }
    }
}

/// The `i`-th of `parts` ranges that cut `0..len`, each boundary rounded up to a multiple
/// of `align` (so a range may be empty when `len` is small).
pub fn cut(len: usize, parts: usize, align: usize, i: usize) -> std::ops::Range<usize> {
    let at = |j: usize| {
        if j >= parts {
            len
        } else {
            ((len * j / parts).div_ceil(align.max(1)) * align.max(1)).min(len)
        }
    };
    at(i)..at(i + 1)
}

/// Runs `f(range, block)` on the `parts` blocks of `c` cut along `axis` by [`cut`], in
/// parallel through [`for_parts`] (empty blocks are skipped).
pub fn for_blocks<T: Send + Sync>(
    c: ndarray::ArrayViewMut2<'_, T>,
    axis: ndarray::Axis,
    parts: usize,
    align: usize,
    f: impl Fn(std::ops::Range<usize>, ndarray::ArrayViewMut2<'_, T>) + Sync,
) {
    let (m, n) = c.dim();
    let [rs, cs] = [c.strides()[0], c.strides()[1]];
    let len = if axis.index() == 0 { m } else { n };
    if parts <= 1 || rs < 0 || cs < 0 {
        return f(0..len, c);
    }
    let base = SendPtr(c.as_ptr() as *mut T);
    let step = if axis.index() == 0 { rs } else { cs };
    for_parts(parts, |i| {
        let r = cut(len, parts, align, i);
        if r.is_empty() {
            return;
        }
        let dim = if axis.index() == 0 { (r.len(), n) } else { (m, r.len()) };
        use ndarray::ShapeBuilder;
        // SAFETY: the blocks are disjoint pieces of the live, mutably borrowed view `c`
        // (non-negative strides, checked above), each handed to exactly one piece.
        let block = unsafe {
            ndarray::ArrayViewMut2::from_shape_ptr(
                dim.strides((rs as usize, cs as usize)),
                base.get().offset(r.start as isize * step),
            )
        };
        f(r, block);
    });
}

/// Runs `f(offset, chunk)` on consecutive `chunk`-element pieces of `out` (the last may be
/// shorter), in parallel through [`for_parts`].
pub fn for_chunks_mut<T: Send>(out: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let len = out.len();
    let chunk = chunk.max(1);
    let parts = len.div_ceil(chunk);
    if parts <= 1 {
        return f(0, out);
    }
    let base = SendPtr(out.as_mut_ptr());
    for_parts(parts, |i| {
        let start = i * chunk;
        let end = (start + chunk).min(len);
        // SAFETY: disjoint ranges of the live, mutably borrowed `out`, one per piece.
        let piece = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), end - start) };
        f(start, piece);
    });
}

/// A raw pointer that may cross threads: for kernels that hand disjoint pieces of one
/// buffer to [`for_parts`] (dereferencing it stays `unsafe`: the user keeps the pieces
/// disjoint).
pub struct SendPtr<T>(pub *mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so that closures capture the whole `SendPtr`).
    #[inline(always)]
    pub fn get(self) -> *mut T {
        self.0
    }
}
// SAFETY: users only ever dereference disjoint ranges from different threads.
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SendPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_piece_runs_once_with_and_without_a_team() {
        let pool = crate::fpenv::thread_pool(Some(3)).unwrap();
        for team in [false, true] {
            pool.install(|| {
                let run = || {
                    for parts in [0, 1, 2, 3, 7, 64] {
                        for _ in 0..200 {
                            let hits: Vec<AtomicU32> = (0..parts).map(|_| AtomicU32::new(0)).collect();
                            for_parts(parts, |i| {
                                hits[i].fetch_add(1, Ordering::Relaxed);
                            });
                            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{parts} parts");
                        }
                    }
                };
                if team { with_team(run) } else { run() }
            });
        }
    }

    #[test]
    fn a_team_really_runs_pieces_on_other_threads() {
        let pool = crate::fpenv::thread_pool(Some(2)).unwrap();
        let others = pool.install(|| {
            with_team(|| {
                let me = std::thread::current().id();
                let mut others = 0;
                for _ in 0..2000 {
                    let away = AtomicU32::new(0);
                    for_parts(2, |_| {
                        // Long enough that the helper claims the other piece.
                        let t = std::time::Instant::now();
                        while t.elapsed() < std::time::Duration::from_micros(20) {}
                        if std::thread::current().id() != me {
                            away.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    others += away.load(Ordering::Relaxed);
                }
                others
            })
        });
        // (How many depends on what else the machine runs: tests run side by side.)
        assert!(others > 0, "the helper ran none of 2000 pieces");
    }

    #[test]
    fn a_panicking_piece_reaches_the_caller_after_the_others_finish() {
        let pool = crate::fpenv::thread_pool(Some(2)).unwrap();
        let r = pool.install(|| {
            catch_unwind(AssertUnwindSafe(|| {
                with_team(|| {
                    for_parts(4, |i| {
                        if i == 3 {
                            panic!("piece 3");
                        }
                    })
                })
            }))
        });
        assert!(r.is_err());
        // The pool is still usable, and so is a new team.
        let n = pool.install(|| with_team(|| 7));
        assert_eq!(n, 7);
    }

    #[test]
    fn nested_teams_and_single_threads_just_run() {
        assert_eq!(with_team(|| with_team(|| 1)), 1);
        let pool = crate::fpenv::thread_pool(Some(1)).unwrap();
        assert_eq!(pool.install(|| with_team(|| 2)), 2);
    }
}
