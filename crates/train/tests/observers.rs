//! A training session watched by an observer of the library's user (a logger is one type):
//! it sees every batch and every epoch in order, and its `Stop` after an epoch ends the run
//! there as a finished one, with the checkpoint and pictures of that epoch.

use clap::Parser;
use vae_model::LossSums;
use vae_train::cli::{Cli, Command};
use vae_train::observers::{EpochDone, Observer};
use vae_train::plan::{Plan, Setting};
use vae_train::report::{Progress, Verbosity};
use vae_train::run::RunDir;
use vae_train::session;
use vae_trainer::{Control, Trainer};

mod common;

/// What the observer saw, in order.
#[derive(Default)]
struct Log {
    events: Vec<String>,
}

impl Observer for &mut Log {
    fn start_epoch(&mut self, trainer: &Trainer) {
        self.events
            .push(format!("start {}", trainer.position().epochs_done + 1));
    }

    fn batch(&mut self, step: usize, running: &LossSums, images: usize) -> Control {
        assert!(running.neg_elbo().is_finite());
        self.events.push(format!("batch {step} {images}"));
        Control::Continue
    }

    fn end_epoch(&mut self, e: &mut EpochDone<'_, '_>) -> anyhow::Result<Control> {
        self.events.push(format!("epoch {} {}", e.metrics.epoch, e.images));
        Ok(if e.metrics.epoch == 2 {
            Control::Stop
        } else {
            Control::Continue
        })
    }

    fn end_run(&mut self, trainer: &mut Trainer) -> anyhow::Result<()> {
        self.events.push(format!("end {}", trainer.metrics().len()));
        Ok(())
    }
}

#[test]
fn an_observer_sees_every_batch_and_epoch_and_can_end_the_run() {
    let dir = common::tmp("observer");
    let run_dir = dir.join("run");
    let words = [
        "vae-train",
        "train",
        "--subset",
        "200",
        "--batch-size",
        "50",
        "--epochs",
        "4",
    ];
    let mut words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    words.extend(["--hidden", "8", "--latent", "2", "--threads", "1", "--run-dir"].map(String::from));
    words.push(run_dir.to_str().unwrap().to_string());
    let Some(Command::Train(args)) = Cli::try_parse_from(&words).unwrap().command else {
        unreachable!("the train subcommand")
    };
    let mut plan = Plan::prepare(&args, &Setting::default()).unwrap();
    let data = plan.open_data().unwrap();
    plan.settle(&data).unwrap();
    let mut log = Log::default();
    let mut progress = Progress::new(Verbosity::Quiet);
    let more: Vec<Box<dyn Observer + '_>> = vec![Box::new(&mut log)];
    let outcome = session::run_observed(
        &plan.recipe,
        &plan.launch,
        &data,
        &plan.run_dir,
        plan.state,
        &mut progress,
        None,
        more,
    )
    .unwrap();
    // 200 images in batches of 50: 4 batches an epoch, numbered over the run.
    let mut want = Vec::new();
    for epoch in 1..=2 {
        want.push(format!("start {epoch}"));
        want.extend((1..=4).map(|b| format!("batch {} 50", (epoch - 1) * 4 + b)));
        want.push(format!("epoch {epoch} 200"));
    }
    want.push("end 2".to_string());
    assert_eq!(log.events, want);
    assert_eq!(outcome.metrics.len(), 2);
    let dir = RunDir(&run_dir);
    for file in [dir.model(), dir.state(), dir.config(), dir.metrics(), dir.pictures().0] {
        assert!(file.is_file(), "{} written", file.display());
    }
    assert_eq!(dir.read_metrics().unwrap().len(), 2);
}
