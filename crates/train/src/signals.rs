//! Stop requests by signal. SIGINT (Ctrl-C), SIGTERM (`kill`, `timeout`, `docker stop`, a
//! SLURM time limit) and SIGHUP (a closed terminal) all ask training to finish the current
//! batch, save a checkpoint and exit with the signal's conventional status (130, 143, 129);
//! a second signal exits at once.
//!
//! Only training installs the handlers ([`install`]): the other commands keep the default
//! dispositions, so a signal ends them at once, as users expect of a command that has nothing
//! to save.

use std::sync::atomic::{AtomicI32, Ordering};

/// A signal that asks training to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM: `kill`, `timeout`, `docker stop`, batch schedulers.
    Terminate,
    /// SIGHUP: the terminal went away.
    Hangup,
}

impl Signal {
    /// Every signal handled, in the order stop requests are agreed on across MPI ranks.
    pub const ALL: [Signal; 3] = [Signal::Interrupt, Signal::Terminate, Signal::Hangup];

    /// The POSIX signal number (the same on every Unix: 2, 15, 1).
    pub fn number(self) -> i32 {
        match self {
            Signal::Interrupt => 2,
            Signal::Terminate => 15,
            Signal::Hangup => 1,
        }
    }

    /// The signal with this POSIX number, if it is one of these.
    pub fn from_number(n: i32) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.number() == n)
    }

    /// `SIGINT`, `SIGTERM` or `SIGHUP`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        }
    }

    /// The exit status of a process stopped by this signal: 128 + its number.
    pub fn exit_status(self) -> u8 {
        128 + self.number() as u8
    }
}

/// The number of the first signal received (0: none).
static REQUESTED: AtomicI32 = AtomicI32::new(0);

/// Records a stop request (as a signal handler does); returns whether one had already been
/// made. The first request's signal is the one [`requested`] reports.
pub fn request(signal: Signal) -> bool {
    REQUESTED
        .compare_exchange(0, signal.number(), Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
}

/// Forgets a stop request, for a process that trains again after an interrupted session
/// (the Python bindings; the command line trains once per process).
pub fn clear() {
    REQUESTED.store(0, Ordering::SeqCst);
}

/// The signal that asked to stop, if any has.
pub fn requested() -> Option<Signal> {
    Signal::from_number(REQUESTED.load(Ordering::SeqCst))
}

/// What a handler does with a signal: the first asks to stop after the batch, a second exits
/// the process at once with its status.
fn handle(signal: Signal) {
    if request(signal) {
        eprintln!("\n{} again: exiting now", signal.name());
        std::process::exit(signal.exit_status().into());
    }
    let again = match signal {
        Signal::Interrupt => "Ctrl-C again",
        _ => "a second signal",
    };
    eprintln!(
        "\n{}: finishing the current batch, then saving a checkpoint ({again} quits at once)",
        signal.name()
    );
}

/// Installs the handlers of SIGINT, SIGTERM and SIGHUP (on Windows: Ctrl-C and the console's
/// close events) for a training run.
///
/// # Errors
/// When the handlers cannot be registered.
#[cfg(unix)]
pub fn install() -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new(Signal::ALL.map(Signal::number))?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for n in signals.forever() {
            if let Some(s) = Signal::from_number(n) {
                handle(s);
            }
        }
    })?;
    Ok(())
}

/// Installs the handlers of SIGINT, SIGTERM and SIGHUP (on Windows: Ctrl-C and the console's
/// close events) for a training run.
///
/// # Errors
/// When the handlers cannot be registered.
#[cfg(not(unix))]
pub fn install() -> std::io::Result<()> {
    ctrlc::set_handler(|| handle(Signal::Interrupt)).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_128_plus_the_number() {
        let s: Vec<u8> = Signal::ALL.iter().map(|s| s.exit_status()).collect();
        assert_eq!(s, [130, 143, 129]);
        for s in Signal::ALL {
            assert_eq!(Signal::from_number(s.number()), Some(s));
        }
        assert_eq!(Signal::from_number(9), None);
    }
}
