//! Folders of images through the binary, as a user meets them: a folder of colour PNGs
//! trained on end to end (every subcommand, eval, resume), grey JPEG-free folders split by a
//! seeded fraction, and every kind of bad folder refused with a message naming the file.

use std::path::{Path, PathBuf};

mod common;

use common::{fails_with, ok, run, tmp};

/// Writes an 8-bit PNG of `w x h` pixels of `channels` (1 or 3) values each.
fn write_png(path: &Path, w: usize, h: usize, channels: usize, px: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w as u32, h as u32);
    enc.set_color(if channels == 3 {
        png::ColorType::Rgb
    } else {
        png::ColorType::Grayscale
    });
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(px).unwrap();
}

/// A colour image of class `c`: one channel bright in a band whose place varies with `i`.
fn colour_image(c: usize, i: usize, side: usize) -> Vec<u8> {
    let mut px = vec![20u8; side * side * 3];
    for y in 0..side {
        for x in 0..side {
            if (x + i) % side < side / 2 {
                px[(y * side + x) * 3 + c] = 230;
            }
        }
    }
    px
}

/// `root/train/<class>/*.png` and `root/test/<class>/*.png`, three colour classes.
fn colour_folder(name: &str) -> PathBuf {
    let root = tmp(name);
    for (split, n) in [("train", 24), ("test", 6)] {
        for (c, class) in ["blue", "green", "red"].iter().enumerate() {
            // Red is channel 0: the sorted class names are blue, green, red.
            let channel = 2 - c;
            for i in 0..n {
                let p = root.join(split).join(class).join(format!("{i:03}.png"));
                write_png(&p, 8, 8, 3, &colour_image(channel, i, 8));
            }
        }
    }
    root
}

#[test]
fn a_folder_of_colour_images_trains_and_every_command_works() {
    let data = colour_folder("colour");
    let run_dir = tmp("colour-run").join("run");
    let (d, r) = (data.to_str().unwrap(), run_dir.to_str().unwrap());
    let common = [
        "--hidden",
        "32",
        "--latent",
        "2",
        "--threads",
        "2",
        "--batch-size",
        "16",
    ];
    let mut train = vec!["train", "--data", d, "--run-dir", r, "--epochs", "2"];
    train.extend(common);
    let out = ok(&train);
    assert!(out.contains("8x8x3") && out.contains("image folder"), "{out}");
    let samples = image::open(run_dir.join("samples.png")).unwrap();
    assert_eq!(samples.color(), image::ColorType::Rgb8);
    for (cmd, extra) in [
        ("sample", vec!["--n", "3"]),
        ("reconstruct", vec!["--n", "4"]),
        ("interpolate", vec!["--pairs", "0-1", "--steps", "4"]),
        ("manifold", vec!["--n", "4"]),
        ("latents", vec![]),
        ("plot", vec![]),
        ("eval", vec!["--k", "10"]),
        ("score", vec!["--k", "2", "--anomaly-digit", "1"]),
    ] {
        let mut args = vec![cmd, "--run-dir", r];
        if cmd != "plot" {
            args.extend(["--threads", "2"]);
        }
        args.extend(extra);
        let out = ok(&args);
        assert!(out.contains("wrote") || out.contains("test images"), "{cmd}: {out}");
    }
    let recon = image::open(run_dir.join("reconstructions.png")).unwrap();
    assert_eq!(recon.color(), image::ColorType::Rgb8);
    let scores = std::fs::read_to_string(run_dir.join("scores.csv")).unwrap();
    assert_eq!(scores.lines().count(), 1 + 18, "{scores}");
    let out = ok(&["train", "--resume", r, "--epochs", "3"]);
    assert!(out.contains("epoch  3/3"), "{out}");
}

#[test]
fn a_flat_grey_folder_is_split_by_the_test_fraction_and_has_no_labels() {
    let root = tmp("flat");
    for i in 0..40 {
        let px: Vec<u8> = (0..36).map(|p| ((p * 7 + i * 13) % 256) as u8).collect();
        write_png(&root.join(format!("img{i:02}.png")), 6, 6, 1, &px);
    }
    let run_dir = tmp("flat-run").join("run");
    let (d, r) = (root.to_str().unwrap(), run_dir.to_str().unwrap());
    let out = ok(&[
        "train",
        "--data",
        d,
        "--run-dir",
        r,
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--latent",
        "2",
        "--test-fraction",
        "0.25",
        "--threads",
        "1",
    ]);
    assert!(
        out.contains("on 30 images of 6x6") && out.contains("testing on 10"),
        "{out}"
    );
    // What needs labels says so.
    fails_with(&["score", "--run-dir", r, "--anomaly-digit", "1"], &["no labels"]);
    ok(&["latents", "--run-dir", r]);
}

/// A PNG whose header declares `w x h` pixels, with no image data behind it.
fn png_header_only(path: &Path, w: u32, h: u32) {
    fn crc(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(13u32.to_be_bytes());
    out.extend(&ihdr);
    out.extend(crc(&ihdr).to_be_bytes());
    std::fs::write(path, out).unwrap();
}

/// A grey JPEG of `side x side` pixels with `extra` bytes of APP1 segments (as EXIF data and
/// ICC profiles make) before its frame header.
fn jpeg_with_metadata(side: u32, extra: usize) -> Vec<u8> {
    let img = image::GrayImage::from_fn(side, side, |x, y| image::Luma([((x * 37 + y * 11) % 256) as u8]));
    let mut jpg = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg)
        .unwrap();
    let mut out = jpg[..2].to_vec();
    let mut left = extra;
    while left > 0 {
        let n = left.min(60_000);
        out.extend([0xff, 0xe1]);
        out.extend(((n + 2) as u16).to_be_bytes());
        out.extend(std::iter::repeat_n(0x45u8, n));
        left -= n;
    }
    out.extend(&jpg[2..]);
    out
}

#[test]
fn jpegs_with_large_metadata_before_their_frame_are_read() {
    let d = tmp("jpeg-meta");
    for i in 0..8 {
        std::fs::write(d.join(format!("a{i}.jpg")), jpeg_with_metadata(6, 150_000)).unwrap();
    }
    let r = tmp("jpeg-meta-run").join("run");
    let out = ok(&[
        "train",
        "--data",
        d.to_str().unwrap(),
        "--run-dir",
        r.to_str().unwrap(),
        "--epochs",
        "1",
        "--hidden",
        "4",
        "--latent",
        "2",
        "--test-fraction",
        "0.25",
    ]);
    assert!(out.contains("images of 6x6"), "{out}");
}

#[test]
fn bad_folders_are_refused_naming_what_is_wrong() {
    let train = |d: &Path, extra: &[&str]| {
        let mut a = vec![
            "train".to_string(),
            "--data".into(),
            d.to_str().unwrap().into(),
            "--run-dir".into(),
            d.with_extension("run").to_str().unwrap().into(),
            "--epochs".into(),
            "1".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let check = |d: &Path, extra: &[&str], want: &[&str]| {
        let a = train(d, extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        fails_with(&a, want);
    };
    let grey = |p: &Path, side: usize| write_png(p, side, side, 1, &vec![128; side * side]);

    // A corrupt PNG among good ones: the file is named.
    let d = tmp("corrupt");
    for i in 0..4 {
        grey(&d.join(format!("a{i}.png")), 4);
    }
    std::fs::write(d.join("a9.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    check(&d, &[], &["a9.png"]);

    // A JPEG that is not one.
    let d = tmp("jpeg");
    for i in 0..4 {
        grey(&d.join(format!("a{i}.png")), 4);
    }
    std::fs::write(d.join("b.jpg"), b"\xff\xd8\xff\xe0 truncated").unwrap();
    check(&d, &[], &["b.jpg"]);

    // A header declaring 60,000 x 60,000 pixels: refused from the header.
    let d = tmp("huge");
    for i in 0..4 {
        grey(&d.join(format!("a{i}.png")), 4);
    }
    png_header_only(&d.join("huge.png"), 60_000, 60_000);
    check(&d, &[], &["huge.png", "60000 x 60000", "--max-data-bytes"]);
    // The same from a JPEG's frame header, behind 150 kB of metadata.
    let d = tmp("huge-jpeg");
    for i in 0..4 {
        grey(&d.join(format!("a{i}.png")), 4);
    }
    let mut huge = jpeg_with_metadata(2, 150_000);
    let sof = huge
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("a baseline frame header");
    huge[sof + 5..sof + 9].copy_from_slice(&[0xea, 0x60, 0xea, 0x60]);
    std::fs::write(d.join("huge.jpg"), &huge).unwrap();
    check(&d, &[], &["huge.jpg", "60000 x 60000", "--max-data-bytes"]);

    // Mixed sizes without --image-size: two of them named; with it, they train.
    let d = tmp("mixed");
    for i in 0..6 {
        grey(&d.join(format!("a{i}.png")), 4);
    }
    grey(&d.join("b.png"), 5);
    check(&d, &[], &["different sizes", "b.png", "--image-size"]);
    let a = train(&d, &["--image-size", "4x4", "--hidden", "4", "--latent", "2"]);
    ok(&a.iter().map(String::as_str).collect::<Vec<_>>());

    // An empty folder, and a class folder with no images.
    let d = tmp("empty");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    check(&d, &[], &["a folder of images", "no train images file"]);
    let d = tmp("empty-class");
    for i in 0..3 {
        grey(&d.join("cats").join(format!("{i}.png")), 4);
    }
    std::fs::create_dir_all(d.join("dogs")).unwrap();
    std::fs::write(d.join("dogs").join("notes.txt"), "no images here").unwrap();
    check(&d, &[], &["dogs", "holds no PNG or JPEG images"]);

    // Bad flags.
    let d = tmp("flags");
    for i in 0..4 {
        grey(&d.join(format!("a{i}.png")), 4);
    }
    check(&d, &["--channels", "2"], &["--channels must be 1 or 3"]);
    check(&d, &["--test-fraction", "1"], &["--test-fraction"]);
    // A malformed size is a usage error (clap's status 2), naming the flag.
    let a = train(&d, &["--image-size", "4by4"]);
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--image-size") && err.contains("HEIGHTxWIDTH"), "{err}");
}
