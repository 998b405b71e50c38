//! Mini-batches: a seeded permutation per epoch, gathered into a buffer that is reused from
//! batch to batch and epoch to epoch (the dataset itself is never copied).

use ndarray::ArrayView2;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::Split;

/// How to cut a split into batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Images per batch (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Visit the images in a fresh seeded order each epoch (else in file order).
    pub shuffle: bool,
    /// Seed of the shuffling and binarization streams.
    pub seed: u64,
    /// Use only the first this many images.
    pub subset: Option<usize>,
    /// Draw each pixel as Bernoulli(intensity), anew each epoch (dynamic binarization).
    pub binarize: bool,
}

/// The stream seed for (`seed`, `epoch`, `salt`): SplitMix64 of their mix, so that nearby
/// seeds and epochs give unrelated streams, and any epoch can be started directly (which is
/// what makes resuming at an epoch boundary exact).
pub fn stream_seed(seed: u64, epoch: u64, salt: u64) -> u64 {
    let mut z = seed
        .wrapping_add(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One batch, borrowed from the iterator's buffers.
pub struct Batch<'a> {
    /// batch x pixels.
    pub images: ArrayView2<'a, f32>,
    /// The labels of those images, if the split has labels.
    pub labels: Option<&'a [u8]>,
    /// Their indices in the split.
    pub indices: &'a [usize],
}

/// The batches of one epoch over a split; call [`Batches::start_epoch`] to begin another.
pub struct Batches<'a> {
    split: &'a Split,
    config: BatchConfig,
    order: Vec<usize>,
    pos: usize,
    pixels: Vec<f32>,
    labels: Vec<u8>,
    epoch: u64,
}

impl<'a> Batches<'a> {
    /// Batches over `split`, positioned at the start of epoch 0.
    ///
    /// # Panics
    /// If `batch_size` is zero (callers validate user input first).
    pub fn new(split: &'a Split, config: BatchConfig) -> Self {
        assert!(config.batch_size > 0, "batch size must be positive");
        let mut b = Batches {
            split,
            config,
            order: Vec::new(),
            pos: 0,
            pixels: Vec::with_capacity(config.batch_size * split.pixels()),
            labels: Vec::with_capacity(config.batch_size),
            epoch: 0,
        };
        b.start_epoch(0);
        b
    }

    /// Images visited per epoch.
    pub fn images_per_epoch(&self) -> usize {
        self.config.subset.unwrap_or(usize::MAX).min(self.split.len())
    }

    /// Batches per epoch (the last one may be partial).
    pub fn batches_per_epoch(&self) -> usize {
        self.images_per_epoch().div_ceil(self.config.batch_size)
    }

    /// Restarts at the beginning of `epoch`, with that epoch's order and binarization noise.
    pub fn start_epoch(&mut self, epoch: u64) {
        self.order.clear();
        self.order.extend(0..self.images_per_epoch());
        if self.config.shuffle {
            self.order
                .shuffle(&mut StdRng::seed_from_u64(stream_seed(self.config.seed, epoch, 1)));
        }
        self.epoch = epoch;
        self.pos = 0;
    }

    /// Skips the first `batches` batches of the current epoch (to resume inside an epoch):
    /// the batches that follow are exactly those an uninterrupted epoch would give.
    pub fn skip_batches(&mut self, batches: usize) {
        self.pos = batches.saturating_mul(self.config.batch_size).min(self.order.len());
    }

    /// Index of the next batch within the epoch.
    pub fn batch_index(&self) -> usize {
        self.pos.div_ceil(self.config.batch_size)
    }

    /// The next batch of this epoch, or `None` when the epoch is done.
    pub fn next_batch(&mut self) -> Option<Batch<'_>> {
        let start = self.pos;
        if start >= self.order.len() {
            return None;
        }
        let end = (start + self.config.batch_size).min(self.order.len());
        // Each batch has its own binarization stream, so that any batch can be drawn
        // without drawing those before it.
        let batch = (start / self.config.batch_size) as u64;
        let mut rng = StdRng::seed_from_u64(stream_seed(stream_seed(self.config.seed, self.epoch, 2), batch, 0));
        self.pos = end;
        let indices = &self.order[start..end];
        let px = self.split.pixels();
        self.pixels.clear();
        self.labels.clear();
        for &i in indices {
            if self.config.binarize {
                self.split
                    .images
                    .push_row_binarized(i, &mut self.pixels, || rng.random::<f32>());
            } else {
                self.split.images.push_row(i, &mut self.pixels);
            }
            if let Some(labels) = &self.split.labels {
                self.labels.push(labels[i]);
            }
        }
        Some(Batch {
            images: ArrayView2::from_shape((indices.len(), px), &self.pixels).expect("sized above"),
            labels: self.split.labels.is_some().then_some(self.labels.as_slice()),
            indices,
        })
    }
}
