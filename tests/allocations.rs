//! A warm training step allocates nothing of its own: every buffer (tape values and
//! gradients, the skinny kernel's packing scratch, the batch, the noise, Adam's state) is
//! reused from the step before.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use rand::rngs::StdRng;
use vae::data::ImageShape;
use vae::data::{BatchConfig, Batches, Dataset};
use vae::model::{Objective, Vae, VaeConfig};
use vae::nn::{Adam, AdamConfig, Optimizer};

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

/// The reference model, then the Keras example's conv model: its convolutions
/// (channels-last kernels, layout conversions, packed weights and tables in kept per-thread
/// buffers) allocate nothing of their own either. One test: the counter is the process's.
#[test]
fn a_warm_training_step_reuses_every_buffer() {
    warm_steps_allocate_nothing(VaeConfig::reference(), 8);
    let config = VaeConfig {
        input: 784,
        hidden: vec![16],
        latent: 2,
        shape: Some(ImageShape::grey(28, 28)),
        arch: "conv:32k3s2,64k3s2".parse().unwrap(),
        ..VaeConfig::reference()
    };
    warm_steps_allocate_nothing(config, 12);
}

fn warm_steps_allocate_nothing(config: VaeConfig, products: usize) {
    let mnist = Dataset::open(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist")).unwrap();
    let split = mnist.train.head(128 * 12);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut rng = StdRng::seed_from_u64(1);
            let mut vae = Vae::<f32>::new(config.clone(), &mut rng).unwrap();
            let params = vae.params().to_vec();
            let mut adam = Adam::new(AdamConfig::default(), vae.tape(), &params);
            let cfg = BatchConfig {
                batch_size: 128,
                shuffle: true,
                seed: 1,
                subset: None,
                binarize: true,
            };
            let mut batches = Batches::new(&split, cfg);
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
