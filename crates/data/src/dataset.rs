//! The dataset every command trains and evaluates on: train and test splits of images with
//! their shape and, where the source has them, labels. [`Dataset::open`] finds the source a
//! path holds: a directory of MNIST-style IDX files, a folder of images, a NumPy `.npy` or
//! `.npz`, or a CSV table ([`Source`]).

use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::arrays::{NpzKeys, load_npy, load_npz};
use crate::folder::{FolderOptions, load_folder, looks_like_folder};
use crate::idx::{self, Idx, IdxData, Limits};
use crate::table::Standardizer;
use crate::tables::{TableInfo, load_table};
use crate::{DatasetError, Values};

/// The directory the MNIST dataset ships in, relative to the repository root.
pub const DEFAULT_DIR: &str = "data/mnist";

/// The shape of one image: `channels` planes of height x width values, stored channels
/// outermost (`[c][h][w]`, as PyTorch lays out a `C x H x W` image).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ImageShape {
    /// Rows of pixels.
    pub height: usize,
    /// Pixels per row.
    pub width: usize,
    /// Values per pixel (1: grey, 3: RGB).
    pub channels: usize,
}

impl ImageShape {
    /// A grey `height x width` image.
    pub fn grey(height: usize, width: usize) -> Self {
        ImageShape {
            height,
            width,
            channels: 1,
        }
    }

    /// Values per image (`height * width * channels`).
    pub fn len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Whether the image holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The grey square of `values` pixels, if `values` is a square (the shape of models saved
    /// before shapes were recorded).
    pub fn square_grey(values: usize) -> Option<Self> {
        let side = (values as f64).sqrt().round() as usize;
        (side * side == values && side > 0).then(|| Self::grey(side, side))
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.height, self.width)?;
        if self.channels != 1 {
            write!(f, "x{}", self.channels)?;
        }
        Ok(())
    }
}

/// One split of a dataset: `n` images of one shape, and their labels if the source has them.
#[derive(Clone, Debug)]
pub struct Split {
    /// n x values, one image per row (laid out as [`ImageShape`] says), read as f32 in
    /// [0, 1].
    pub images: Values,
    /// The label of each image, if the source labels them.
    pub labels: Option<Vec<u8>>,
    /// The shape of every image.
    pub shape: ImageShape,
}

/// Where a dataset was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A directory of MNIST-style IDX files (train and test images and labels).
    Idx(PathBuf),
    /// A folder of PNG and JPEG images (see [`crate::folder`]).
    Folder(PathBuf),
    /// A NumPy `.npy` array of images (see [`crate::arrays`]).
    Npy(PathBuf),
    /// A NumPy `.npz` archive of train and test arrays (see [`crate::arrays`]).
    Npz(PathBuf),
    /// A CSV table (see [`crate::tables`]).
    Csv(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Idx(dir) => write!(f, "IDX files in {}", dir.display()),
            Source::Folder(dir) => write!(f, "the image folder {}", dir.display()),
            Source::Npy(p) => write!(f, "the NumPy array {}", p.display()),
            Source::Npz(p) => write!(f, "the NumPy archive {}", p.display()),
            Source::Csv(p) => write!(f, "the CSV table {}", p.display()),
        }
    }
}

/// How to open a dataset: the limits on what is read, and the options of the sources.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenOptions {
    /// Bounds on declared sizes, checked before anything is allocated.
    pub limits: Limits,
    /// Options of image folders (the test share, its seed and its stratification also apply
    /// to arrays and tables without a test part).
    pub folder: FolderOptions,
    /// The arrays of an `.npz` archive.
    pub npz_keys: NpzKeys,
    /// CSV tables: the label column, if any.
    pub label_column: Option<String>,
    /// CSV tables: the standardisation to apply (a model's), instead of fitting one on the
    /// training rows.
    pub standardizer: Option<Standardizer>,
}

/// The train and test splits of a dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The training images (60,000 in MNIST).
    pub train: Split,
    /// The test images (10,000 in MNIST).
    pub test: Split,
    /// Where they came from.
    pub source: Source,
    /// The names of the classes the labels index, where the source names them (class
    /// folders, text labels of a table).
    pub classes: Option<Vec<String>>,
    /// For a table: its columns and standardisation (its rows are features, not images).
    pub table: Option<TableInfo>,
}

impl Dataset {
    /// Opens the dataset at `path` with the default options (see [`Dataset::open_with`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DatasetError> {
        Self::open_with(path, &OpenOptions::default(), &|_, _| {})
    }

    /// Opens the dataset at `path`, finding its source from what is there: a directory of
    /// IDX files ([`Dataset::load_idx`]), or a folder of images ([`crate::folder`]).
    /// `progress` hears (items read, items in all) where a source reads many files.
    pub fn open_with(
        path: impl AsRef<Path>,
        opts: &OpenOptions,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self, DatasetError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(DatasetError::Unrecognised {
                path: path.into(),
                reason: "no such file or directory".into(),
            });
        }
        if path.is_dir() {
            // Without images, the IDX reader says which files it looked for.
            if find(path, "train-images", "idx3", "train images").is_ok() || !looks_like_folder(path) {
                return Self::load_idx(path, &opts.limits);
            }
            let (train, test, classes) = load_folder(path, &opts.folder, &opts.limits, progress)?;
            if test.is_empty() {
                return Err(DatasetError::Folder {
                    path: path.into(),
                    reason: "no test images: add a test folder, or set aside a share of the images with a test fraction above 0".into(),
                });
            }
            return Ok(Dataset {
                train,
                test,
                source: Source::Folder(path.into()),
                classes,
                table: None,
            });
        }
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let (mut classes, mut table) = (None, None);
        let (train, test, source) = match ext.as_deref() {
            Some("csv") => {
                let t = load_table(
                    path,
                    &opts.limits,
                    opts.label_column.as_deref(),
                    opts.standardizer.as_ref(),
                    &opts.folder,
                )?;
                let (tr, te) = (t.train, t.test);
                (classes, table) = (t.classes, Some(t.info));
                (tr, te, Source::Csv(path.into()))
            }
            Some("npy") => {
                let (tr, te) = load_npy(path, &opts.limits, &opts.folder)?;
                (tr, te, Source::Npy(path.into()))
            }
            Some("npz") => {
                let (tr, te) = load_npz(path, &opts.limits, &opts.npz_keys, &opts.folder)?;
                (tr, te, Source::Npz(path.into()))
            }
            _ => {
                return Err(DatasetError::Unrecognised {
                    path: path.into(),
                    reason: "not a dataset this version reads: give a directory of IDX files, a folder of PNG/JPEG images, a .npy or .npz file, or a .csv table".into(),
                });
            }
        };
        if test.is_empty() {
            return Err(DatasetError::Invalid {
                path: path.into(),
                reason: "no test rows: set aside a share with a test fraction above 0".into(),
            });
        }
        Ok(Dataset {
            train,
            test,
            source,
            classes,
            table,
        })
    }

    /// Loads both splits from `dir`, which must hold `train-images`, `train-labels`,
    /// `t10k-images` and `t10k-labels` files named `<stem>-idx3-ubyte` or `<stem>.idx3-ubyte`
    /// (`idx1` for labels), each optionally gzip-compressed and ending in `.gz`, within
    /// `limits`, and checks that the train and test images have the same size.
    pub fn load_idx(dir: impl AsRef<Path>, limits: &Limits) -> Result<Self, DatasetError> {
        let dir = dir.as_ref();
        let train_images = find(dir, "train-images", "idx3", "train images")?;
        let test_images = find(dir, "t10k-images", "idx3", "test images")?;
        let train = Split::load_with(
            &train_images,
            &find(dir, "train-labels", "idx1", "train labels")?,
            limits,
        )?;
        let test = Split::load_with(&test_images, &find(dir, "t10k-labels", "idx1", "test labels")?, limits)?;
        if train.shape != test.shape {
            return Err(DatasetError::ImageSizeMismatch {
                train: train_images,
                train_size: (train.shape.height, train.shape.width),
                test: test_images,
                test_size: (test.shape.height, test.shape.width),
            });
        }
        Ok(Dataset {
            train,
            test,
            source: Source::Idx(dir.to_path_buf()),
            classes: None,
            table: None,
        })
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
        let found = describe(&img);
        let (n, rows, cols, pixels) = match (&img.dims[..], img.data) {
            (&[n, rows, cols], IdxData::U8(px)) => (n, rows, cols, px),
            _ => {
                return Err(DatasetError::WrongKind {
                    path: images.into(),
                    expected: "3-d unsigned-byte images (n x rows x cols)",
                    found,
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
        let images = Array2::from_shape_vec((n, rows * cols), pixels).expect("checked by the IDX reader");
        Ok(Split {
            images: Values::U8(images),
            labels: Some(label_vec),
            shape: ImageShape::grey(rows, cols),
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.nrows()
    }

    /// Whether the split holds no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The distinct labels present, in increasing order (the classes of the split; empty
    /// without labels).
    pub fn classes(&self) -> Vec<u8> {
        let mut seen = [false; 256];
        for &l in self.labels.iter().flatten() {
            seen[l as usize] = true;
        }
        (0..=255u8).filter(|&l| seen[l as usize]).collect()
    }

    /// Values per image (pixels times channels).
    pub fn pixels(&self) -> usize {
        self.shape.len()
    }

    /// The images whose label satisfies `keep`, in their original order (all of them
    /// without labels).
    pub fn filter(&self, keep: impl Fn(u8) -> bool) -> Split {
        let Some(labels) = &self.labels else {
            return self.clone();
        };
        let idx: Vec<usize> = (0..self.len()).filter(|&i| keep(labels[i])).collect();
        Split {
            images: self.images.select(&idx),
            labels: Some(idx.iter().map(|&i| labels[i]).collect()),
            shape: self.shape,
        }
    }

    /// The first `n` images (all of them if `n` is larger).
    pub fn head(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            images: self.images.head(n),
            labels: self.labels.as_ref().map(|l| l[..n].to_vec()),
            shape: self.shape,
        }
    }
}
