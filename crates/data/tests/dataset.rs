//! The shipped MNIST files, the loader's error cases, and the batch iterator.

use std::path::{Path, PathBuf};

use vae_data::idx::{self, Idx, IdxData};
use vae_data::{BatchConfig, Batches, Dataset, DatasetError};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vae-data-ds-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_real_files() {
    let t = std::time::Instant::now();
    let m = Dataset::open(data_dir()).unwrap();
    eprintln!("loaded MNIST in {:.3} s", t.elapsed().as_secs_f64());
    assert_eq!((m.train.len(), m.test.len()), (60_000, 10_000));
    assert_eq!(
        (m.train.shape.height, m.train.shape.width, m.train.pixels()),
        (28, 28, 784)
    );
    assert_eq!(m.train.images.dim(), (60_000, 784));
    assert_eq!(&m.train.labels.as_ref().unwrap()[..5], &[5, 0, 4, 1, 9]);
    assert_eq!(&m.test.labels.as_ref().unwrap()[..5], &[7, 2, 1, 0, 4]);
    for s in [&m.train, &m.test] {
        let min = s.images.f32().iter().cloned().fold(f32::INFINITY, f32::min);
        let max = s.images.f32().iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!((min, max), (0.0, 1.0));
    }
}

/// Writes a small dataset (`n` images of `r x c`) under the given names.
fn write_set(dir: &Path, names: [&str; 4], n: usize, r: usize, c: usize, gzip: bool) {
    let img = |n: usize| Idx {
        dims: vec![n, r, c],
        data: IdxData::U8((0..n * r * c).map(|i| (i % 256) as u8).collect()),
    };
    let lab = |n: usize| Idx {
        dims: vec![n],
        data: IdxData::U8((0..n).map(|i| (i % 10) as u8).collect()),
    };
    idx::write(dir.join(names[0]), &img(n), gzip).unwrap();
    idx::write(dir.join(names[1]), &lab(n), gzip).unwrap();
    idx::write(dir.join(names[2]), &img(n / 2), gzip).unwrap();
    idx::write(dir.join(names[3]), &lab(n / 2), gzip).unwrap();
}

#[test]
fn both_spellings_with_and_without_gz_and_any_image_size() {
    let d = tmpdir("dots");
    write_set(
        &d,
        [
            "train-images.idx3-ubyte",
            "train-labels.idx1-ubyte",
            "t10k-images.idx3-ubyte",
            "t10k-labels.idx1-ubyte",
        ],
        10,
        5,
        3,
        false,
    );
    let m = Dataset::open(&d).unwrap();
    assert_eq!((m.train.len(), m.test.len(), m.train.pixels()), (10, 5, 15));
    let d = tmpdir("dashes-gz");
    write_set(
        &d,
        [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ],
        8,
        4,
        4,
        true,
    );
    assert_eq!(Dataset::open(&d).unwrap().train.images.dim(), (8, 16));
}

#[test]
fn a_directory_without_the_files() {
    let d = tmpdir("empty");
    let e = Dataset::open(&d).unwrap_err();
    assert!(
        matches!(
            e,
            DatasetError::Missing {
                what: "train images",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("train-images-idx3-ubyte"), "{e}");
}

#[test]
fn images_and_labels_of_different_counts() {
    let d = tmpdir("count");
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    write_set(&d, names, 6, 2, 2, false);
    let lab = Idx {
        dims: vec![5],
        data: IdxData::U8(vec![0; 5]),
    };
    idx::write(d.join(names[1]), &lab, false).unwrap();
    let e = Dataset::open(&d).unwrap_err();
    assert!(
        matches!(
            e,
            DatasetError::CountMismatch {
                n_images: 6,
                n_labels: 5,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_label_file_where_images_are_expected() {
    let d = tmpdir("kind");
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    write_set(&d, names, 6, 2, 2, false);
    std::fs::copy(d.join(names[1]), d.join(names[0])).unwrap();
    let e = Dataset::open(&d).unwrap_err();
    assert!(matches!(e, DatasetError::WrongKind { .. }), "{e}");
    assert!(e.to_string().contains("train-images-idx3-ubyte"), "{e}");
}

fn small_split() -> vae_data::Split {
    let d = tmpdir("batches");
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    write_set(&d, names, 23, 2, 2, false);
    Dataset::open(&d).unwrap().train
}

fn epoch_order(b: &mut Batches, epoch: u64) -> (Vec<usize>, Vec<usize>) {
    b.start_epoch(epoch);
    let (mut order, mut sizes) = (vec![], vec![]);
    while let Some(batch) = b.next_batch() {
        sizes.push(batch.images.nrows());
        assert_eq!(batch.labels.unwrap().len(), batch.images.nrows());
        order.extend_from_slice(batch.indices);
    }
    (order, sizes)
}

#[test]
fn batches_are_seeded_complete_and_keep_the_last_partial_batch() {
    let s = small_split();
    let cfg = BatchConfig {
        batch_size: 5,
        shuffle: true,
        seed: 7,
        subset: None,
        binarize: false,
    };
    let mut b = Batches::new(&s, cfg);
    let (o1, sizes) = epoch_order(&mut b, 0);
    assert_eq!(sizes, vec![5, 5, 5, 5, 3]);
    let mut sorted = o1.clone();
    sorted.sort();
    assert_eq!(sorted, (0..23).collect::<Vec<_>>());
    assert_ne!(o1, (0..23).collect::<Vec<_>>(), "shuffled");
    // Same seed, same order; another epoch, another order.
    let mut b2 = Batches::new(&s, cfg);
    assert_eq!(epoch_order(&mut b2, 0).0, o1);
    assert_ne!(epoch_order(&mut b2, 1).0, o1);
    // Subset: only the first 7 images.
    let mut b3 = Batches::new(&s, BatchConfig { subset: Some(7), ..cfg });
    let (o3, sizes3) = epoch_order(&mut b3, 0);
    assert_eq!(sizes3, vec![5, 2]);
    assert!(o3.iter().all(|&i| i < 7));
}

#[test]
fn dynamic_binarization_draws_anew_each_epoch() {
    let m = Dataset::open(data_dir()).unwrap();
    let s = m.test.head(256);
    let cfg = BatchConfig {
        batch_size: 256,
        shuffle: false,
        seed: 1,
        subset: None,
        binarize: true,
    };
    let mut b = Batches::new(&s, cfg);
    let e0 = b.next_batch().unwrap().images.to_owned();
    assert!(e0.iter().all(|&p| p == 0.0 || p == 1.0));
    // The mean of the draws follows the grey levels.
    let (mean_bin, mean_grey) = (e0.mean().unwrap(), s.images.f32().mean().unwrap());
    assert!((mean_bin - mean_grey).abs() < 0.01, "{mean_bin} vs {mean_grey}");
    b.start_epoch(1);
    let e1 = b.next_batch().unwrap().images.to_owned();
    assert_ne!(e0, e1);
    b.start_epoch(0);
    assert_eq!(b.next_batch().unwrap().images.to_owned(), e0);
}

#[test]
fn skipping_batches_gives_the_rest_of_the_same_epoch() {
    let m = Dataset::open(data_dir()).unwrap();
    let s = m.test.head(50);
    let cfg = BatchConfig {
        batch_size: 8,
        shuffle: true,
        seed: 3,
        subset: None,
        binarize: true,
    };
    let mut full = Batches::new(&s, cfg);
    full.start_epoch(2);
    let mut all = vec![];
    while let Some(b) = full.next_batch() {
        all.push((b.indices.to_vec(), b.images.to_owned()));
    }
    let mut resumed = Batches::new(&s, cfg);
    resumed.start_epoch(2);
    resumed.skip_batches(3);
    let mut rest = vec![];
    while let Some(b) = resumed.next_batch() {
        rest.push((b.indices.to_vec(), b.images.to_owned()));
    }
    assert_eq!(rest, all[3..]);
}
