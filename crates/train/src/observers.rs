//! What watches a training session ([`crate::session`]): each concern an [`Observer`] that
//! the loop calls, in list order, as an epoch starts, after every batch, when the batches
//! end, after each evaluated epoch, when a run stops mid-epoch, and for each line it has to
//! say. The progress bar and lines, TensorBoard, checkpoints and snapshots, the ranks'
//! agreement on the weights, the stop requests (signals, the time budget) and the Python
//! package's `on_epoch` are each one type here; a new logger is one more.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vae_data::atomic::write_atomic;
use vae_data::{Dataset, Split};
use vae_model::LossSums;
use vae_trainer::{Control, Trainer};

use crate::image::write_png;
use crate::recipe::RunConfig;
use crate::report::Progress;
use crate::run::{self, EpochMetrics, RunDir};
use crate::session::{Interrupted, agreed_signal, epoch_line, pictures};
use crate::signals;
use crate::tensorboard::RunLog;

/// One concern of a training session. Every method has a default that does nothing.
pub trait Observer {
    /// An epoch starts, or resumes at `trainer.position()`.
    fn start_epoch(&mut self, _trainer: &Trainer) {}

    /// After batch `step` (counted over the whole run) of an epoch whose sums so far are
    /// `running`, the batch holding `images` images: a [`Control::Stop`] from any observer
    /// ends the epoch after this batch (every observer is still called).
    fn batch(&mut self, _step: usize, _running: &LossSums, _images: usize) -> Control {
        Control::Continue
    }

    /// The epoch's batches are over (all done, or stopped).
    fn end_batches(&mut self) {}

    /// After a complete, evaluated epoch: an error ends the session with it; a
    /// [`Control::Stop`] ends it there as a finished run.
    fn end_epoch(&mut self, _epoch: &mut EpochDone<'_, '_>) -> Result<Control> {
        Ok(Control::Continue)
    }

    /// The epoch stopped after a batch (a signal or the time budget): what to keep.
    fn stopped(&mut self, _trainer: &Trainer) -> Result<()> {
        Ok(())
    }

    /// A line the session says to the user.
    fn line(&mut self, _text: &str) {}

    /// The run is finished (all its epochs, or stopped by an observer after one).
    fn end_run(&mut self, _trainer: &mut Trainer) -> Result<()> {
        Ok(())
    }
}

/// A complete epoch as the observers see it.
pub struct EpochDone<'a, 'd> {
    /// The trainer, its position after the epoch.
    pub trainer: &'a mut Trainer<'d>,
    /// The epoch's metrics (training sums and the test evaluation).
    pub metrics: &'a EpochMetrics,
    /// Training images the epoch saw (on this rank).
    pub images: usize,
    /// The learning rate of the epoch's last batch.
    pub lr: f64,
}

/// The global batch number of the trainer's position.
pub(crate) fn global_step(trainer: &Trainer) -> usize {
    let p = trainer.position();
    p.epochs_done * trainer.batches_per_epoch() + p.batches_done
}

/// The progress bar and the session's lines (stdout).
pub struct Lines<'a> {
    /// Where the bar and lines go.
    pub progress: &'a mut Progress,
    /// The run's recipe (the epochs and the bound trained, for the epoch lines).
    pub recipe: &'a RunConfig,
}

impl Observer for Lines<'_> {
    fn start_epoch(&mut self, trainer: &Trainer) {
        let p = trainer.position();
        let epochs = self.recipe.training.epochs;
        self.progress
            .start_epoch(p.epochs_done + 1, epochs, trainer.images_per_epoch());
        self.progress.skip(p.partial.images);
    }

    fn batch(&mut self, _: usize, running: &LossSums, images: usize) -> Control {
        self.progress.advance(images, running.neg_elbo());
        Control::Continue
    }

    fn end_batches(&mut self) {
        self.progress.finish_epoch();
    }

    fn end_epoch(&mut self, e: &mut EpochDone<'_, '_>) -> Result<Control> {
        let epochs = self.recipe.training.epochs;
        self.progress
            .line(&epoch_line(e.metrics, epochs, e.images, self.recipe));
        Ok(Control::Continue)
    }

    fn line(&mut self, text: &str) {
        self.progress.line(text);
    }

    fn end_run(&mut self, trainer: &mut Trainer) -> Result<()> {
        let train_seconds: f64 = trainer.metrics().iter().map(|m| m.train_seconds).sum();
        if let Some(c) = trainer.collective_mut() {
            let (seconds, calls) = c.allreduce_stats();
            self.progress.line(&format!(
                "allreduce: {:.3} ms per step ({calls} steps, {:.1}% of the training time)",
                1e3 * seconds / calls.max(1) as f64,
                100.0 * seconds / train_seconds.max(1e-9)
            ));
        }
        Ok(())
    }
}

/// A finished run's pictures: `samples.png` (8x8 prior samples) and `reconstructions.png`
/// (8 test images over their reconstructions); none for a table.
pub struct FinalPictures<'a> {
    /// Where they go.
    pub run_dir: &'a Path,
    /// The data and its test split.
    pub sources: (&'a Dataset, &'a Split),
    /// The pictures' scale (`--scale`; automatic if `None`).
    pub scale: Option<usize>,
    /// The seed of the prior draws.
    pub seed: u64,
}

impl Observer for FinalPictures<'_> {
    fn end_run(&mut self, trainer: &mut Trainer) -> Result<()> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let (data, test) = self.sources;
        if let Some((samples, recon)) = pictures(trainer.model_mut(), data, test, self.scale, &mut rng)? {
            let (samples_png, recon_png) = RunDir(self.run_dir).pictures();
            write_png(&samples_png, &samples)?;
            write_png(&recon_png, &recon)?;
        }
        Ok(())
    }
}

/// TensorBoard: a new event file per session; a failure to write it is reported once and
/// ends the logging, never the training.
pub struct Board<'a> {
    log: Option<RunLog>,
    data: &'a Dataset,
    test: &'a Split,
    scale: Option<usize>,
    /// The seed of the prior draws of the pictures (the same every epoch).
    pictures_seed: u64,
}

impl<'a> Board<'a> {
    /// Starts the event file in `run_dir` (`resumed`: the session continues a run at
    /// `trainer`'s position); on failure a warning and no logging.
    pub fn start(
        run_dir: &Path,
        recipe: &RunConfig,
        trainer: &Trainer,
        resumed: bool,
        (data, test): (&'a Dataset, &'a Split),
        pictures_seed: u64,
    ) -> Self {
        let resumed_at = resumed.then(|| global_step(trainer));
        let log = RunLog::start(run_dir, recipe.output.log_every, resumed_at)
            .inspect_err(|e| eprintln!("warning: no TensorBoard events for this session: {e:#}"))
            .ok();
        Board {
            log,
            data,
            test,
            scale: recipe.output.scale,
            pictures_seed,
        }
    }

    /// Ends the logging after a failure to write.
    fn stop(&mut self, e: &anyhow::Error) {
        eprintln!("warning: TensorBoard logging stopped: {e:#}");
        self.log = None;
    }
}

impl Observer for Board<'_> {
    fn start_epoch(&mut self, trainer: &Trainer) {
        if let Some(b) = &mut self.log {
            b.start_epoch(&trainer.position().partial);
        }
    }

    fn batch(&mut self, step: usize, running: &LossSums, _: usize) -> Control {
        if let Some(b) = &mut self.log
            && let Err(e) = b.batch(step, running)
        {
            self.stop(&e);
        }
        Control::Continue
    }

    fn end_epoch(&mut self, e: &mut EpochDone<'_, '_>) -> Result<Control> {
        let Some(b) = &mut self.log else {
            return Ok(Control::Continue);
        };
        let mut rng = StdRng::seed_from_u64(self.pictures_seed);
        let step = global_step(e.trainer);
        let logged = pictures(e.trainer.model_mut(), self.data, self.test, self.scale, &mut rng).and_then(|pics| {
            let pics = pics.as_ref().map(|(s, r)| [s, r]);
            b.epoch(step, e.metrics, e.lr, e.images, pics)
        });
        if let Err(err) = logged {
            self.stop(&err);
        }
        Ok(Control::Continue)
    }
}

/// Under MPI: the ranks' weights agree after every epoch (a checksum), or the run stops.
pub struct SameWeights;

impl Observer for SameWeights {
    fn end_epoch(&mut self, e: &mut EpochDone<'_, '_>) -> Result<Control> {
        let checksum = e.trainer.weights_checksum();
        if let Some(c) = e.trainer.collective_mut()
            && !c.all_equal(checksum)
        {
            bail!(
                "rank {}: the weights differ between ranks after epoch {} (checksum {checksum:016x}); \
                 the ranks must run the same binary on the same data",
                c.rank(),
                e.metrics.epoch
            );
        }
        Ok(Control::Continue)
    }
}

/// The checkpoint (training state, model, metrics) after every epoch and at a stop, and the
/// snapshots `--snapshot-every` asks for.
pub struct Checkpoints<'a> {
    run_dir: &'a Path,
    /// Entries of the checkpoint's metadata (the recipe, a table's columns).
    extra: HashMap<String, String>,
    /// Seconds of training between snapshots, and when the next one is due.
    snapshots: Option<(f64, f64)>,
    epochs: usize,
}

impl<'a> Checkpoints<'a> {
    /// Checkpoints of `trainer`'s run in `run_dir`, with `extra` in their metadata.
    pub fn new(run_dir: &'a Path, recipe: &RunConfig, trainer: &Trainer, extra: HashMap<String, String>) -> Self {
        let next = |every: f64| next_snapshot(trainer.trained_seconds(), every);
        Checkpoints {
            run_dir,
            extra,
            snapshots: recipe.training.snapshot_every.map(|every| (every, next(every))),
            epochs: recipe.training.epochs,
        }
    }

    /// Writes the checkpoint (training state, then model) and the metrics file.
    fn save(&self, trainer: &Trainer) -> Result<()> {
        trainer.checkpoint(self.run_dir, &self.extra)?;
        RunDir(self.run_dir).write_metrics(trainer.metrics())
    }
}

impl Observer for Checkpoints<'_> {
    fn end_epoch(&mut self, e: &mut EpochDone<'_, '_>) -> Result<Control> {
        self.save(e.trainer)?;
        let t = e.trainer.trained_seconds();
        if let Some((every, next)) = &mut self.snapshots
            && (t >= *next || e.metrics.epoch == self.epochs || e.trainer.schedule_is_over())
        {
            write_snapshot(self.run_dir, e.trainer)?;
            *next = next_snapshot(t, *every);
        }
        Ok(Control::Continue)
    }

    fn stopped(&mut self, trainer: &Trainer) -> Result<()> {
        self.save(trainer)?;
        if self.snapshots.is_some() {
            write_snapshot(self.run_dir, trainer)?;
        }
        Ok(())
    }
}

/// When the snapshot after `t` seconds of training is due, one every `every` seconds.
fn next_snapshot(t: f64, every: f64) -> f64 {
    ((t / every).floor() + 1.0) * every
}

/// Copies the model just saved, and the run's flags, into `snapshots/eEEEEE[-bBBBBB]`: a
/// run directory of its own for `vae-train eval`.
fn write_snapshot(run_dir: &Path, trainer: &Trainer) -> Result<()> {
    let p = trainer.position();
    let dir = RunDir(run_dir).snapshot(p.epochs_done, p.batches_done);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in [run::MODEL, run::CONFIG] {
        let from = run_dir.join(file);
        let bytes = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
        write_atomic(&dir.join(file), &bytes).with_context(|| format!("writing {}", dir.join(file).display()))?;
    }
    let info = run::Snapshot {
        epochs: p.epochs_done,
        batches: p.batches_done,
        train_seconds: trainer.trained_seconds(),
    };
    let json = serde_json::to_string_pretty(&info).expect("serialises");
    write_atomic(&dir.join("snapshot.json"), json.as_bytes())
        .with_context(|| format!("writing {}", dir.join("snapshot.json").display()))
}

/// The requests to stop: a signal ([`crate::signals`]) or the time budget after any batch;
/// after an epoch (its checkpoint saved), a signal any rank received ends the run as
/// interrupted unless it was the last epoch.
pub struct StopRequests<'a> {
    /// When the session started.
    pub started: Instant,
    /// Its time budget in seconds.
    pub budget: Option<f64>,
    /// The run's epochs (a signal after the last one lets it finish).
    pub epochs: usize,
    /// Where the checkpoint is (named in the interruption's message).
    pub run_dir: &'a Path,
}

impl Observer for StopRequests<'_> {
    fn batch(&mut self, _: usize, _: &LossSums, _: usize) -> Control {
        let out_of_time = self.budget.is_some_and(|b| self.started.elapsed().as_secs_f64() >= b);
        if signals::requested().is_some() || out_of_time {
            Control::Stop
        } else {
            Control::Continue
        }
    }

    fn end_epoch(&mut self, e: &mut EpochDone<'_, '_>) -> Result<Control> {
        // Every rank stops here, or none: a signal that reached some ranks only (or one
        // just now) is agreed on, so that none waits for another.
        if let Some(signal) = agreed_signal(e.trainer)
            && e.metrics.epoch < self.epochs
        {
            return Err(Interrupted {
                run_dir: self.run_dir.to_path_buf(),
                signal,
            }
            .into());
        }
        Ok(Control::Continue)
    }
}

/// A function of each epoch's metrics and its training images (the Python package's
/// `on_epoch`), called once the epoch's checkpoint is written.
pub struct OnEpoch<F>(pub F);

impl<F: FnMut(&EpochMetrics, usize) -> Result<Control>> Observer for OnEpoch<F> {
    fn end_epoch(&mut self, e: &mut EpochDone<'_, '_>) -> Result<Control> {
        (self.0)(e.metrics, e.images)
    }
}
