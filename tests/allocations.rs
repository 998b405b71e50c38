//! A warm training step allocates nothing of its own: every buffer (tape values and
//! gradients, the skinny kernel's packing scratch, the batch, the noise, Adam's state) is
//! reused from the step before.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use rand::rngs::StdRng;
use vae::data::ImageShape;
use vae::data::{BatchConfig, Batches, Dataset, Split, Values};
use vae::model::{Likelihood, Objective, Vae, VaeConfig};
use vae::nn::{Activation, Adam, AdamConfig, Optimizer};

/// Counts every allocation made by any thread.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The reference model, then the Keras example's conv model and conv64 (64x64 colour, five
/// convolutions of 32-512 channels and their transposes): their convolutions (channels-last
/// kernels, layout conversions, packed weights, tables and partial sums in kept per-thread
/// buffers) allocate nothing of their own either. One test: the counter is the process's.
#[test]
fn a_warm_training_step_reuses_every_buffer() {
    let mnist = Dataset::open(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist")).unwrap();
    let split = mnist.train.head(128 * 12);
    warm_steps_allocate_nothing(VaeConfig::reference(), &split, 128, 8);
    let config = VaeConfig {
        input: 784,
        hidden: vec![16],
        latent: 2,
        shape: Some(ImageShape::grey(28, 28)),
        arch: "conv:32k3s2,64k3s2".parse().unwrap(),
        ..VaeConfig::reference()
    };
    warm_steps_allocate_nothing(config, &split, 128, 12);
    // conv64 on random colour images, at a batch of 16 (the kernels' paths are those of 128:
    // pieces, phases and tiles by the shapes).
    let shape = ImageShape {
        height: 64,
        width: 64,
        channels: 3,
    };
    let n = 16 * 12;
    let bytes = (0..n * shape.len()).map(|i| (i * 37 % 251) as u8).collect();
    let colour = Split {
        images: Values::U8(ndarray::Array2::from_shape_vec((n, shape.len()), bytes).unwrap()),
        labels: None,
        shape,
    };
    let config = VaeConfig {
        input: shape.len(),
        hidden: vec![400],
        latent: 128,
        activation: Activation::LeakyRelu(0.01),
        likelihood: Likelihood::Gaussian { variance: Some(1.0) },
        shape: Some(shape),
        arch: "conv:32k3s2,64k3s2,128k3s2,256k3s2,512k3s2".parse().unwrap(),
        ..VaeConfig::reference()
    };
    warm_steps_allocate_nothing(config, &colour, 16, 12);
}

fn warm_steps_allocate_nothing(config: VaeConfig, split: &Split, batch_size: usize, products: usize) {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut rng = StdRng::seed_from_u64(1);
            let mut vae = Vae::<f32>::new(config.clone(), &mut rng).unwrap();
            let params = vae.params().to_vec();
            let mut adam = Adam::new(AdamConfig::default(), vae.tape(), &params);
            let cfg = BatchConfig {
                batch_size,
                shuffle: true,
                seed: 1,
                subset: None,
                binarize: true,
            };
            let mut batches = Batches::new(split, cfg);
            let mut step = |batches: &mut Batches, rng: &mut StdRng| {
                let b = batches.next_batch().unwrap();
                let s = vae.train_step(b.images, rng, Objective::default());
                adam.step(vae.tape_mut(), &params);
                s
            };
            for _ in 0..2 {
                step(&mut batches, &mut rng);
            }
            let mut per_step = Vec::new();
            for _ in 0..8 {
                let before = ALLOCATIONS.load(Ordering::SeqCst);
                assert!(step(&mut batches, &mut rng).is_finite());
                per_step.push(ALLOCATIONS.load(Ordering::SeqCst) - before);
            }
            // The only allocations left are matrixmultiply's packing buffers, which it takes
            // afresh on every call and offers no way to pass in: one per block handed to it,
            // i.e. per thread for each of the 8 products a step gives it (3 forward, 5
            // backward). Nothing of the engine's own is allocated.
            let gemm_blocks = products * threads;
            assert!(
                per_step.iter().all(|&n| n <= gemm_blocks),
                "{threads} thread(s): allocations per warm step {per_step:?}, more than {gemm_blocks}"
            );
        });
    }
}
