//! A VAE built, trained, saved, reloaded and sampled through the library: `vae-trainer`'s
//! `Trainer` drives the loop, `vae-model`'s checkpoint module saves and reloads it, and the
//! reloaded model reconstructs exactly as the trained one and draws digits from the prior
//! (printed as text).
//!
//! `cargo run --release --example vae_library -- [--epochs 5] [--subset N]`

use rand::SeedableRng;
use vae::data::Dataset;
use vae::model::{Vae, VaeConfig, checkpoint};
use vae::trainer::{Control, EpochEnd, TrainConfig, Trainer};

fn flag(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    Some(
        args.get(at + 1)?
            .parse()
            .unwrap_or_else(|_| panic!("{name} takes a number")),
    )
}

fn main() {
    let (epochs, subset) = (flag("--epochs").unwrap_or(5), flag("--subset"));
    let mnist = Dataset::open("data/mnist").expect("run from the repository root, which ships data/mnist");
    let model = VaeConfig {
        latent: 8,
        ..VaeConfig::reference()
    };
    let config = TrainConfig {
        subset,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(model, config, &mnist.train).expect("a valid configuration");
    for _ in 0..epochs {
        match trainer.run_epoch(|_, _| Control::Continue) {
            Ok(EpochEnd::Complete) => {}
            Ok(EpochEnd::Stopped) => unreachable!("the callback never stops"),
            Err(diverged) => panic!("{diverged}"),
        }
        let m = trainer.end_epoch(&mnist.test);
        println!(
            "epoch {}: train -ELBO {:.2}, test -ELBO {:.2} nats",
            m.epoch, m.train_loss, m.test_loss
        );
    }
    // Save (model.safetensors and the resumable training state), reload, compare.
    let dir = std::env::temp_dir().join(format!("vae-library-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    trainer.checkpoint(&dir, &Default::default()).unwrap();
    let (mut reloaded, _) = checkpoint::load::<f32>(&dir.join("model.safetensors")).unwrap();
    let x = mnist.test.images.rows_f32(0..16);
    let x = x.view();
    let before = trainer.model_mut().reconstruct(x);
    assert_eq!(
        reloaded.reconstruct(x),
        before,
        "the reloaded model reconstructs differently"
    );
    println!("saved to {} and reloaded: reconstructions identical", dir.display());
    print_samples(&mut reloaded);
    std::fs::remove_dir_all(&dir).ok();
}

/// Three digits drawn from the prior, as text (darker pixels, denser characters).
fn print_samples(vae: &mut Vae<f32>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let s = vae.sample(3, &mut rng);
    for row in (0..28).step_by(2) {
        let line: Vec<String> = (0..3)
            .map(|k| {
                (0..28)
                    .map(|col| {
                        let v = s[[k, row * 28 + col]];
                        [' ', '.', ':', '*', '#'][((v * 4.99) as usize).min(4)]
                    })
                    .collect()
            })
            .collect();
        println!("{}", line.join("   "));
    }
}
