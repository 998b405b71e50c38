//! SIGINT, SIGTERM and SIGHUP during training: each asks the session to stop after the
//! current batch and save a checkpoint (as `vae-train` does), and is passed on to the handler
//! that was there before (Python's own for SIGINT), so that the interpreter sees it too once
//! training returns. The previous handlers are put back when training ends; a signal that was
//! ignored stays ignored.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use vae_train::signals::Signal;

const COUNT: usize = Signal::ALL.len();

/// The handlers found when the first session started (restored when the last one ends).
static SAVED: Mutex<Saved> = Mutex::new(Saved {
    sessions: 0,
    actions: None,
});

struct Saved {
    sessions: usize,
    actions: Option<[Option<libc::sigaction>; COUNT]>,
}

// SAFETY: `libc::sigaction` is plain data (a handler address, flags and a signal mask).
unsafe impl Send for Saved {}

/// The previous handler of each signal (its address, 0 for none to call) and whether it takes
/// three arguments, for the handler to pass the signal on.
static PREVIOUS: [AtomicUsize; COUNT] = [const { AtomicUsize::new(0) }; COUNT];
static PREVIOUS_SIGINFO: [AtomicBool; COUNT] = [const { AtomicBool::new(false) }; COUNT];
/// Whether the previous disposition was the default one (the process ends on the signal).
static PREVIOUS_DEFAULT: [AtomicBool; COUNT] = [const { AtomicBool::new(false) }; COUNT];

fn index(signal: libc::c_int) -> Option<usize> {
    Signal::ALL.iter().position(|s| s.number() == signal)
}

extern "C" fn handler(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let Some(i) = index(signal) else { return };
    // An atomic store: safe in a signal handler.
    vae_train::signals::request(Signal::ALL[i]);
    let previous = PREVIOUS[i].load(Ordering::SeqCst);
    if previous == 0 {
        return;
    }
    // SAFETY: `previous` is the address of the handler that was installed for this signal,
    // with the signature its flags declare; it is called as the kernel would have called it.
    unsafe {
        if PREVIOUS_SIGINFO[i].load(Ordering::SeqCst) {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = std::mem::transmute(previous);
            f(signal, info, context);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(previous);
            f(signal);
        }
    }
}

/// The handlers of one training session; dropping it puts the previous ones back (after the
/// last of several sessions at once).
pub struct Session(());

/// Installs the stop handlers for a training session and forgets any earlier stop request.
pub fn install() -> Session {
    let mut saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
    if saved.sessions == 0 {
        vae_train::signals::clear();
        let mut actions = [None; COUNT];
        for (i, s) in Signal::ALL.iter().enumerate() {
            // SAFETY: sigaction with valid pointers to zeroed, then filled, structures.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(s.number(), std::ptr::null(), &mut old) != 0 || old.sa_sigaction == libc::SIG_IGN {
                    continue;
                }
                let default = old.sa_sigaction == libc::SIG_DFL;
                PREVIOUS[i].store(if default { 0 } else { old.sa_sigaction }, Ordering::SeqCst);
                PREVIOUS_SIGINFO[i].store(old.sa_flags & libc::SA_SIGINFO != 0, Ordering::SeqCst);
                PREVIOUS_DEFAULT[i].store(default, Ordering::SeqCst);
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = handler as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
                libc::sigemptyset(&mut new.sa_mask);
                if libc::sigaction(s.number(), &new, std::ptr::null_mut()) == 0 {
                    actions[i] = Some(old);
                }
            }
        }
        saved.actions = Some(actions);
    }
    saved.sessions += 1;
    Session(())
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
        saved.sessions -= 1;
        if saved.sessions > 0 {
            return;
        }
        if let Some(actions) = saved.actions.take() {
            for (s, old) in Signal::ALL.iter().zip(actions) {
                if let Some(old) = old {
                    // SAFETY: puts back the action read by `install`.
                    unsafe { libc::sigaction(s.number(), &old, std::ptr::null_mut()) };
                }
            }
        }
    }
}

/// Whether `signal`'s disposition before training was the default one (it ends the process).
pub fn was_default(signal: Signal) -> bool {
    index(signal.number()).is_some_and(|i| PREVIOUS_DEFAULT[i].load(Ordering::SeqCst))
}

/// Ends the process by `signal` as its default disposition would have (after the
/// checkpoint was saved), once the handlers are back.
pub fn raise_default(signal: Signal) {
    // SAFETY: raising a signal whose disposition is the default one.
    unsafe {
        libc::raise(signal.number());
    }
}
