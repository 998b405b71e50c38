//! The training loop of a VAE as a type: [`Trainer`] owns the model, the Adam optimizer, the
//! seeded batch stream and its position, and offers the loop in pieces a program can drive:
//! [`Trainer::step`] (one batch), [`Trainer::run_epoch`] (the rest of an epoch, with a
//! callback for progress and interrupts), [`Trainer::end_epoch`] (test evaluation and
//! metrics), [`Trainer::checkpoint`] and [`Trainer::restore`] (one training-state file, exact
//! resume).
//!
//! Every random draw is a pure function of (seed, epoch, batch): the shuffle of an epoch, the
//! binarization and the reparameterisation noise of a batch each come from their own seeded
//! stream. A checkpoint therefore stores a position, not RNG state, and a resumed run
//! continues bitwise as the uninterrupted one would have.
//!
//! ```
//! use vae_data::{ImageShape, Split};
//! use vae_model::VaeConfig;
//! use vae_trainer::{Control, EpochEnd, TrainConfig, Trainer};
//!
//! // 256 random 4x4 "images" stand in for MNIST here.
//! let images = ndarray::Array2::from_shape_fn((256, 16), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 10.0);
//! let split = Split { images: images.into(), labels: None, shape: ImageShape::grey(4, 4) };
//! let model = VaeConfig { input: 16, hidden: vec![8], latent: 2, ..VaeConfig::reference() };
//! let mut trainer = Trainer::new(model, TrainConfig { batch_size: 32, ..TrainConfig::default() }, &split).unwrap();
//! for _ in 0..3 {
//!     let end = trainer.run_epoch(|_running, _images| Control::Continue).expect("no divergence");
//!     assert!(matches!(end, EpochEnd::Complete));
//!     let m = trainer.end_epoch(&split);
//!     println!("epoch {}: test -ELBO {:.2}", m.epoch, m.test_loss);
//! }
//! assert_eq!(trainer.position().epochs_done, 3);
//! ```

#![warn(missing_docs)]

mod metrics;
mod schedule;
mod trainer;

pub use metrics::{EpochMetrics, FIELDS, Field};
pub use schedule::{LrSchedule, parse_duration};
pub use trainer::{
    Collective, Control, Diverged, EVAL_BATCH, EpochEnd, MODEL_FILE, Position, STATE_FILE, StateError, TrainConfig,
    Trainer, binarized, evaluate, kl_weight, salt,
};
