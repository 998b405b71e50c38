//! Writes the shipped MNIST as a folder of PNG images, `OUT/train/<digit>/*.png` and
//! `OUT/test/<digit>/*.png`, the layout `vae-train --data OUT` reads as an image folder:
//! `cargo run --release --example mnist_to_png -- /tmp/mnist-png`.

use std::path::PathBuf;

use rayon::prelude::*;
use vae::data::Dataset;

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "mnist-png".into()));
    let mnist = Dataset::open("data/mnist").expect("run from the repository root, which ships data/mnist");
    for (name, split) in [("train", &mnist.train), ("test", &mnist.test)] {
        let labels = split.labels.as_ref().expect("MNIST is labelled");
        let images = split.images.f32();
        let (h, w) = (split.shape.height, split.shape.width);
        (0..split.len()).into_par_iter().for_each(|i| {
            let dir = out.join(name).join(labels[i].to_string());
            std::fs::create_dir_all(&dir).expect("creating the output folder");
            let px: Vec<u8> = images.row(i).iter().map(|&v| (v * 255.0).round() as u8).collect();
            let img = image::GrayImage::from_raw(w as u32, h as u32, px).expect("sized");
            img.save(dir.join(format!("{i:05}.png"))).expect("writing a PNG");
        });
    }
    println!(
        "wrote {} and {} images to {}",
        mnist.train.len(),
        mnist.test.len(),
        out.display()
    );
}
