//! The MNIST dataset: finding the four files in a directory, checking them, and turning
//! bytes into f32 pixels in [0, 1].

use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::DatasetError;
use crate::idx::{self, Idx, IdxData, Limits};

/// One split of the dataset: `n` images of `rows x cols` pixels and their labels.
#[derive(Clone, Debug)]
pub struct Split {
    /// n x (rows * cols), pixel values in [0, 1], row-major images.
    pub images: Array2<f32>,
    /// The digit of each image.
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

/// The train and test splits.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// 60,000 training images in the real dataset.
    pub train: Split,
    /// 10,000 test images in the real dataset.
    pub test: Split,
}

impl Mnist {
    /// The directory the dataset ships in, relative to the repository root.
    pub const DEFAULT_DIR: &'static str = "data/mnist";

    /// Loads both splits from `dir`, which must hold `train-images`, `train-labels`,
    /// `t10k-images` and `t10k-labels` files named `<stem>-idx3-ubyte` or `<stem>.idx3-ubyte`
    /// (`idx1` for labels), each optionally gzip-compressed and ending in `.gz`, within the
    /// default [`Limits`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, DatasetError> {
        Self::load_with(dir, &Limits::default())
    }

    /// Loads both splits from `dir` (as [`Mnist::load`]) within `limits`, and checks that the
    /// train and test images have the same size.
    pub fn load_with(dir: impl AsRef<Path>, limits: &Limits) -> Result<Self, DatasetError> {
        let dir = dir.as_ref();
        let train_images = find(dir, "train-images", "idx3", "train images")?;
        let test_images = find(dir, "t10k-images", "idx3", "test images")?;
        let train = Split::load_with(
            &train_images,
            &find(dir, "train-labels", "idx1", "train labels")?,
            limits,
        )?;
        let test = Split::load_with(&test_images, &find(dir, "t10k-labels", "idx1", "test labels")?, limits)?;
        if (train.rows, train.cols) != (test.rows, test.cols) {
            return Err(DatasetError::ImageSizeMismatch {
                train: train_images,
                train_size: (train.rows, train.cols),
                test: test_images,
                test_size: (test.rows, test.cols),
            });
        }
        Ok(Mnist { train, test })
    }
}

/// The first existing file among the accepted spellings of `stem`.
fn find(dir: &Path, stem: &str, kind: &str, what: &'static str) -> Result<PathBuf, DatasetError> {
    let names: Vec<String> = [format!("{stem}-{kind}-ubyte"), format!("{stem}.{kind}-ubyte")]
        .into_iter()
        .flat_map(|n| [format!("{n}.gz"), n])
        .collect();
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| DatasetError::Missing {
            dir: dir.into(),
            what,
            tried: names.join(", "),
        })
}

fn describe(idx: &Idx) -> String {
    format!("{:?} elements with dimensions {:?}", idx.data.element_type(), idx.dims)
}

impl Split {
    /// Loads one split from an image file (3-d, unsigned bytes) and a label file (1-d,
    /// unsigned bytes) that must agree in count, within the default [`Limits`].
    pub fn load(images: &Path, labels: &Path) -> Result<Self, DatasetError> {
        Self::load_with(images, labels, &Limits::default())
    }

    /// Loads one split (as [`Split::load`]) within `limits`.
    pub fn load_with(images: &Path, labels: &Path, limits: &Limits) -> Result<Self, DatasetError> {
        let img = idx::read_with(images, limits)?;
        let (n, rows, cols, pixels) = match (&img.dims[..], &img.data) {
            (&[n, rows, cols], IdxData::U8(px)) => (n, rows, cols, px),
            _ => {
                return Err(DatasetError::WrongKind {
                    path: images.into(),
                    expected: "3-d unsigned-byte images (n x rows x cols)",
                    found: describe(&img),
                });
            }
        };
        let lab = idx::read_with(labels, limits)?;
        let label_vec = match (&lab.dims[..], lab.data) {
            (&[_], IdxData::U8(v)) => v,
            (_, data) => {
                return Err(DatasetError::WrongKind {
                    path: labels.into(),
                    expected: "1-d unsigned-byte labels",
                    found: describe(&Idx { dims: lab.dims, data }),
                });
            }
        };
        if label_vec.len() != n {
            return Err(DatasetError::CountMismatch {
                images: images.into(),
                n_images: n,
                labels: labels.into(),
                n_labels: label_vec.len(),
            });
        }
        let scale = 1.0 / 255.0;
        let data: Vec<f32> = pixels.iter().map(|&p| p as f32 * scale).collect();
        let images = Array2::from_shape_vec((n, rows * cols), data).expect("checked by the IDX reader");
        Ok(Split {
            images,
            labels: label_vec,
            rows,
            cols,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The distinct labels present, in increasing order (the classes of the split).
    pub fn classes(&self) -> Vec<u8> {
        let mut seen = [false; 256];
        for &l in &self.labels {
            seen[l as usize] = true;
        }
        (0..=255u8).filter(|&l| seen[l as usize]).collect()
    }

    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// The images whose label satisfies `keep`, in their original order.
    pub fn filter(&self, keep: impl Fn(u8) -> bool) -> Split {
        let idx: Vec<usize> = (0..self.len()).filter(|&i| keep(self.labels[i])).collect();
        Split {
            images: self.images.select(ndarray::Axis(0), &idx),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// The first `n` images (all of them if `n` is larger).
    pub fn head(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            images: self.images.slice(ndarray::s![..n, ..]).to_owned(),
            labels: self.labels[..n].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }
}
