//! Stop requests during training off Unix: none are installed (the console's Ctrl-C reaches
//! Python once training returns); the same interface as `signals.rs`.

use vae_train::signals::Signal;

/// The handlers of one training session (none here).
pub struct Session(());

/// Forgets any earlier stop request.
pub fn install() -> Session {
    vae_train::signals::clear();
    Session(())
}

/// Whether `signal`'s disposition before training was the default one.
pub fn was_default(_signal: Signal) -> bool {
    false
}

/// Nothing to raise here.
pub fn raise_default(_signal: Signal) {}
