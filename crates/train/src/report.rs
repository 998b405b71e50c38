//! What the user sees while training: a progress bar with images/s on a terminal, plain
//! lines otherwise, nothing at all when quiet (tests).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// How much to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Progress bar on a terminal, epoch lines always.
    Normal,
    /// Nothing.
    Quiet,
}

/// Progress reporting for a training run.
pub struct Progress {
    verbosity: Verbosity,
    bar: Option<ProgressBar>,
    started: Instant,
    done: usize,
}

impl Progress {
    /// A reporter; the bar appears only when stderr is a terminal.
    pub fn new(verbosity: Verbosity) -> Self {
        Progress {
            verbosity,
            bar: None,
            started: Instant::now(),
            done: 0,
        }
    }

    /// Begins an epoch of `images` images.
    pub fn start_epoch(&mut self, epoch: usize, epochs: usize, images: usize) {
        if self.verbosity == Verbosity::Quiet || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = ProgressBar::new(images as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} images  {msg}  eta {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        self.bar = Some(bar);
        self.started = Instant::now();
        self.done = 0;
    }

    /// Moves the bar past `n` images done before a resume (not counted in images/s).
    pub fn skip(&mut self, n: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
    }

    /// `n` more images done; `loss` is the running per-image negative ELBO.
    pub fn advance(&mut self, n: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
            self.done += n;
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{rate:.0} img/s  -ELBO {loss:.2}"));
        }
    }

    /// Ends the epoch's bar.
    pub fn finish_epoch(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// A line for the user (stdout).
    pub fn line(&self, s: &str) {
        if self.verbosity == Verbosity::Normal {
            match &self.bar {
                Some(bar) => bar.println(s),
                None => println!("{s}"),
            }
        }
    }
}

/// A bar counting items (files decoded, ...) on a terminal; nothing otherwise.
pub struct Counter {
    bar: Option<ProgressBar>,
}

impl Counter {
    /// A counter of `what` (on a terminal only); it shows once the first count arrives.
    pub fn new(what: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::hidden();
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len}  eta {eta}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(what);
            bar
        });
        Counter { bar }
    }

    /// `done` of `total` items.
    pub fn set(&self, done: usize, total: usize) {
        if let Some(bar) = &self.bar {
            if bar.is_hidden() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
