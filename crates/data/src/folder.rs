//! Folders of PNG and JPEG images, as torchvision's `ImageFolder` and Keras'
//! `image_dataset_from_directory` lay them out: `root/train/<class>/*` with
//! `root/test/<class>/*`, or `root/<class>/*`, or a flat folder of unlabelled images. Labels
//! are the indices of the sorted class-folder names. Every header is read first (sizes and
//! colour checked against the limits before anything is decoded), then the images are decoded
//! in parallel straight into one byte buffer per split.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{DynamicImage, ImageReader, imageops::FilterType};
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::{DatasetError, ImageShape, Limits, Split, Values};

/// How to read a folder of images.
#[derive(Clone, Debug, PartialEq)]
pub struct FolderOptions {
    /// 1 (grey) or 3 (RGB); `None`: 3 if any image is in colour, else 1.
    pub channels: Option<usize>,
    /// Resize every image to (height, width); `None`: the images' own size, which must be
    /// the same for all.
    pub size: Option<(usize, usize)>,
    /// Without a `test` folder, the share of the images set aside for testing (seeded).
    pub test_fraction: f64,
    /// The seed of that split.
    pub seed: u64,
    /// Whether that share is taken from each class in proportion (where there are labels)
    /// rather than from all the images at once.
    pub stratified: bool,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions {
            channels: None,
            size: None,
            test_fraction: 0.1,
            seed: 1,
            stratified: true,
        }
    }
}

/// One image file and its label.
struct Entry {
    path: PathBuf,
    label: Option<u8>,
}

/// Whether `p` names a PNG or JPEG file (by extension, case-insensitive).
pub fn is_image(p: &Path) -> bool {
    let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    p.is_file() && matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
}

/// The entries of `dir`, sorted by name, hidden ones left out.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let io = |source| DatasetError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Whether `dir` looks like an image folder: images in it, or in its subfolders.
pub fn looks_like_folder(dir: &Path) -> bool {
    let Ok(entries) = sorted_entries(dir) else {
        return false;
    };
    entries.iter().any(|p| is_image(p))
        || entries
            .iter()
            .filter(|p| p.is_dir())
            .any(|d| sorted_entries(d).is_ok_and(|e| e.iter().any(|p| is_image(p) || p.is_dir())))
}

/// The class folders of `dir` (sorted) with their images; a class folder without images is
/// an error naming it.
fn classes(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, DatasetError> {
    let mut out = Vec::new();
    for d in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let images: Vec<PathBuf> = sorted_entries(&d)?.into_iter().filter(|p| is_image(p)).collect();
        if images.is_empty() {
            return Err(DatasetError::Folder {
                path: d,
                reason: "this class folder holds no PNG or JPEG images".into(),
            });
        }
        let name = d.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
        out.push((name, images));
    }
    Ok(out)
}

/// Labels every image of `found` by the index of its class in `names`.
fn labelled(found: Vec<(String, Vec<PathBuf>)>, names: &[String]) -> Vec<Entry> {
    found
        .into_iter()
        .flat_map(|(name, images)| {
            let label = names.iter().position(|n| *n == name).map(|i| i as u8);
            images.into_iter().map(move |path| Entry { path, label })
        })
        .collect()
}

/// The sorted union of class names, at most 256 of them.
fn class_names<'a>(
    dir: &Path,
    lists: impl Iterator<Item = &'a Vec<(String, Vec<PathBuf>)>>,
) -> Result<Vec<String>, DatasetError> {
    let mut names: Vec<String> = lists.flat_map(|l| l.iter().map(|(n, _)| n.clone())).collect();
    names.sort();
    names.dedup();
    if names.len() > 256 {
        return Err(DatasetError::Folder {
            path: dir.to_path_buf(),
            reason: format!("{} class folders: at most 256 are supported", names.len()),
        });
    }
    Ok(names)
}

/// What a folder holds, before decoding: the train and test files and the class names.
struct Layout {
    train: Vec<Entry>,
    test: Vec<Entry>,
    classes: Option<Vec<String>>,
}

fn layout(root: &Path, opts: &FolderOptions) -> Result<Layout, DatasetError> {
    let (train_dir, test_dir) = (root.join("train"), root.join("test"));
    if train_dir.is_dir() && test_dir.is_dir() {
        let (tr, te) = (classes(&train_dir)?, classes(&test_dir)?);
        if tr.is_empty() || te.is_empty() {
            // train/ and test/ of unlabelled images.
            let flat = |d: &Path| -> Result<Vec<Entry>, DatasetError> {
                Ok(sorted_entries(d)?
                    .into_iter()
                    .filter(|p| is_image(p))
                    .map(|path| Entry { path, label: None })
                    .collect())
            };
            return Ok(Layout {
                train: flat(&train_dir)?,
                test: flat(&test_dir)?,
                classes: None,
            });
        }
        let names = class_names(root, [&tr, &te].into_iter())?;
        return Ok(Layout {
            train: labelled(tr, &names),
            test: labelled(te, &names),
            classes: Some(names),
        });
    }
    let found = classes(root)?;
    let (all, names) = if found.is_empty() {
        let flat: Vec<Entry> = sorted_entries(root)?
            .into_iter()
            .filter(|p| is_image(p))
            .map(|path| Entry { path, label: None })
            .collect();
        (flat, None)
    } else {
        let names = class_names(root, std::iter::once(&found))?;
        (labelled(found, &names), Some(names))
    };
    let labels: Option<Vec<u8>> = all.iter().map(|e| e.label).collect();
    let is_test = test_rows(root, all.len(), labels.as_deref(), opts)?;
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (e, t) in all.into_iter().zip(is_test) {
        if t { test.push(e) } else { train.push(e) }
    }
    Ok(Layout {
        train,
        test,
        classes: names,
    })
}

/// Which of `n` items form the seeded test share `opts.test_fraction`. Random: that share
/// of one seeded shuffle of all the items (at least one when the share is above 0 and there
/// are two items or more; never all of them). Stratified (with `labels`): the same rule
/// applied to each class, in the order of the same shuffle, so that a rare class is in the
/// test split in proportion; without labels the two are the same.
pub(crate) fn test_rows(
    path: &Path,
    n: usize,
    labels: Option<&[u8]>,
    opts: &FolderOptions,
) -> Result<Vec<bool>, DatasetError> {
    let fraction = opts.test_fraction;
    if !(0.0..1.0).contains(&fraction) {
        return Err(DatasetError::Folder {
            path: path.to_path_buf(),
            reason: format!("the test fraction must be in [0, 1), got {fraction}"),
        });
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(opts.seed));
    let share = |n: usize| {
        ((n as f64 * fraction).round() as usize).clamp(usize::from(fraction > 0.0 && n > 1), n.saturating_sub(1))
    };
    let mut is_test = vec![false; n];
    match labels.filter(|_| opts.stratified) {
        Some(labels) => {
            let mut count = [0usize; 256];
            for &l in labels {
                count[l as usize] += 1;
            }
            let mut left = count.map(share);
            for &i in &order {
                let l = labels[i] as usize;
                if left[l] > 0 {
                    left[l] -= 1;
                    is_test[i] = true;
                }
            }
        }
        None => {
            for &i in &order[..share(n)] {
                is_test[i] = true;
            }
        }
    }
    Ok(is_test)
}

/// The next `n` bytes of `f`, or what part of the file ends early.
fn exact(f: &mut impl std::io::Read, n: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; n];
    f.read_exact(&mut b)
        .map_err(|_| format!("the file ends inside its {what}"))?;
    Ok(b)
}

/// (width, height, colour) from a PNG's IHDR chunk or a JPEG's start-of-frame marker, read
/// without decoding anything: a JPEG's segments before its frame (EXIF, ICC profiles, of any
/// size) are skipped by their lengths, so memory stays a few bytes whatever the file holds.
fn peek(f: &mut (impl std::io::Read + std::io::Seek)) -> Result<(u32, u32, bool), String> {
    let start = exact(f, 8, "signature")?;
    if start == b"\x89PNG\r\n\x1a\n" {
        let ihdr = exact(f, 18, "PNG header")?;
        if &ihdr[4..8] != b"IHDR" {
            return Err("a PNG without its IHDR header".into());
        }
        let be = |i: usize| u32::from_be_bytes([ihdr[i], ihdr[i + 1], ihdr[i + 2], ihdr[i + 3]]);
        // Colour types 0 and 4 are grey (with alpha); 2, 3 and 6 colour.
        return Ok((be(8), be(12), !matches!(ihdr[17], 0 | 4)));
    }
    if !start.starts_with(&[0xff, 0xd8]) {
        return Err("neither a PNG nor a JPEG file (by its first bytes)".into());
    }
    // The first marker after SOI starts at byte 2: rewind over the 6 bytes read past it.
    f.seek(std::io::SeekFrom::Start(2)).map_err(|e| e.to_string())?;
    loop {
        let m = exact(f, 2, "JPEG markers")?;
        if m[0] != 0xff {
            return Err("a JPEG whose markers are damaged".into());
        }
        let marker = m[1];
        if marker == 0xff {
            // Fill byte: the marker code follows.
            f.seek(std::io::SeekFrom::Current(-1)).map_err(|e| e.to_string())?;
            continue;
        }
        let len = exact(f, 2, "JPEG markers")?;
        let len = i64::from(u16::from_be_bytes([len[0], len[1]]));
        if (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
            let sof = exact(f, 6, "JPEG frame header")?;
            let h = u32::from(u16::from_be_bytes([sof[1], sof[2]]));
            let w = u32::from(u16::from_be_bytes([sof[3], sof[4]]));
            return Ok((w, h, sof[5] != 1));
        }
        if len < 2 || matches!(marker, 0xd9 | 0xda) {
            return Err("a JPEG that ends before its frame header".into());
        }
        f.seek(std::io::SeekFrom::Current(len - 2)).map_err(|e| e.to_string())?;
    }
}

/// A file's header: (height, width, whether it is in colour), checked against the limits.
fn header(path: &Path, limits: &Limits) -> Result<(usize, usize, bool), DatasetError> {
    let bad = |reason: String| DatasetError::Image {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let (w, h, colour) = peek(&mut std::io::BufReader::new(file)).map_err(bad)?;
    if w == 0 || h == 0 {
        return Err(bad(format!("the header declares {w} x {h} pixels")));
    }
    let bytes = u64::from(w) * u64::from(h) * 4;
    if bytes > limits.max_data_bytes {
        return Err(bad(format!(
            "the header declares {w} x {h} pixels ({bytes} bytes decoded), more than the limit of {} bytes; refused before decoding (raise --max-data-bytes if the file is genuine)",
            limits.max_data_bytes
        )));
    }
    Ok((h as usize, w as usize, colour))
}

/// Decodes `path` as `shape` (converted to grey or RGB, resized if needed) into `out`,
/// channels outermost.
fn decode_into(path: &Path, shape: ImageShape, limits: &Limits, out: &mut [u8]) -> Result<(), DatasetError> {
    let bad = |reason: String| DatasetError::Image {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = ImageReader::open(path)
        .map_err(|e| bad(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    let mut l = image::Limits::default();
    l.max_alloc = Some(limits.max_data_bytes);
    reader.limits(l);
    let img = reader.decode().map_err(|e| bad(e.to_string()))?;
    let (h, w) = (shape.height, shape.width);
    let img = if (img.height() as usize, img.width() as usize) == (h, w) {
        img
    } else {
        img.resize_exact(w as u32, h as u32, FilterType::Triangle)
    };
    let plane = h * w;
    match shape.channels {
        1 => out.copy_from_slice(DynamicImage::into_luma8(img).as_raw()),
        _ => {
            let rgb = img.into_rgb8();
            for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = px[c];
                }
            }
        }
    }
    Ok(())
}

/// Reads the folder at `root` (see the module's documentation); `progress` hears (images
/// decoded, images in all) as decoding goes.
pub fn load_folder(
    root: &Path,
    opts: &FolderOptions,
    limits: &Limits,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(Split, Split, Option<Vec<String>>), DatasetError> {
    if let Some(c) = opts.channels
        && c != 1
        && c != 3
    {
        return Err(DatasetError::Folder {
            path: root.to_path_buf(),
            reason: format!("--channels must be 1 or 3, got {c}"),
        });
    }
    let lay = layout(root, opts)?;
    if lay.train.is_empty() {
        return Err(DatasetError::Folder {
            path: root.to_path_buf(),
            reason: "no PNG or JPEG images found (looked for root/train/<class>/*, root/<class>/* and root/*)".into(),
        });
    }
    let all: Vec<&Entry> = lay.train.iter().chain(&lay.test).collect();
    let headers: Vec<(usize, usize, bool)> = all
        .par_iter()
        .map(|e| header(&e.path, limits))
        .collect::<Result<_, _>>()?;
    let (height, width) = match opts.size {
        Some(s) => s,
        None => {
            let first = (headers[0].0, headers[0].1);
            if let Some(i) = headers.iter().position(|h| (h.0, h.1) != first) {
                return Err(DatasetError::Folder {
                    path: root.to_path_buf(),
                    reason: format!(
                        "images of different sizes: {} is {}x{}, {} is {}x{}; give --image-size HxW to resize them all",
                        all[0].path.display(),
                        first.0,
                        first.1,
                        all[i].path.display(),
                        headers[i].0,
                        headers[i].1
                    ),
                });
            }
            first
        }
    };
    let channels = opts.channels.unwrap_or(if headers.iter().any(|h| h.2) { 3 } else { 1 });
    let shape = ImageShape {
        height,
        width,
        channels,
    };
    let total = all.len() as u64 * shape.len() as u64;
    if total > limits.max_data_bytes {
        return Err(DatasetError::Folder {
            path: root.to_path_buf(),
            reason: format!(
                "{} images of {shape} make {total} bytes, more than the limit of {} bytes (raise --max-data-bytes)",
                all.len(),
                limits.max_data_bytes
            ),
        });
    }
    let done = AtomicUsize::new(0);
    let n_all = all.len();
    let split = |entries: &[Entry]| -> Result<Split, DatasetError> {
        let mut bytes = vec![0u8; entries.len() * shape.len()];
        bytes
            .par_chunks_mut(shape.len().max(1))
            .zip(entries.par_iter())
            .try_for_each(|(row, e)| {
                decode_into(&e.path, shape, limits, row)?;
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, n_all);
                Ok::<(), DatasetError>(())
            })?;
        let labels = lay
            .classes
            .as_ref()
            .map(|_| entries.iter().map(|e| e.label.unwrap_or(0)).collect());
        Ok(Split {
            images: Values::U8(Array2::from_shape_vec((entries.len(), shape.len()), bytes).expect("sized above")),
            labels,
            shape,
        })
    };
    let train = split(&lay.train)?;
    let test = split(&lay.test)?;
    Ok((train, test, lay.classes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holdout(stratified: bool) -> FolderOptions {
        FolderOptions {
            test_fraction: 0.1,
            seed: 7,
            stratified,
            ..FolderOptions::default()
        }
    }

    #[test]
    fn a_stratified_split_holds_each_class_in_proportion() {
        // 300 rows, 15 of class 1 (5%), 1 of class 2.
        let labels: Vec<u8> = (0..300).map(|i| u8::from(i % 20 == 0) + u8::from(i == 7) * 2).collect();
        let p = Path::new("t.csv");
        let is_test = test_rows(p, 300, Some(&labels), &holdout(true)).unwrap();
        let count = |c: u8| (0..300).filter(|&i| is_test[i] && labels[i] == c).count();
        // 28.3 of 283 rounds to 28, 1.5 of 15 to 2; a class of one row stays in training.
        assert_eq!((count(0), count(1), count(2)), (28, 2, 0));
        // Seeded: the same rows every time; without labels, the random split.
        assert_eq!(is_test, test_rows(p, 300, Some(&labels), &holdout(true)).unwrap());
        assert_eq!(
            test_rows(p, 300, None, &holdout(true)).unwrap(),
            test_rows(p, 300, Some(&labels), &holdout(false)).unwrap()
        );
        assert_eq!(
            test_rows(p, 300, None, &holdout(false))
                .unwrap()
                .iter()
                .filter(|&&t| t)
                .count(),
            30
        );
    }
}
