//! Safetensors checkpoints: tensors in PyTorch's layout (`[out, in]` weights, 1-D biases),
//! f32, the configuration in the header metadata, written to a temporary file, flushed, and
//! renamed over the old one, so a crash never leaves a half-written checkpoint.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use vae_autograd::Float;
use vae_data::atomic::write_atomic;

use crate::{Vae, VaeConfig};

/// The metadata key holding the model's [`VaeConfig`] as JSON.
pub const CONFIG_KEY: &str = "vae.config";

/// The metadata key holding the checksums, as a JSON object: the CRC-32 (IEEE, as in gzip
/// and zlib; 8 hex digits) of each tensor's little-endian bytes by tensor name, and of the
/// other metadata under [`METADATA_ENTRY`].
pub const CHECKSUM_KEY: &str = "vae.crc32";

/// The entry of [`CHECKSUM_KEY`] covering the other metadata: the CRC-32 of every
/// `key=value` pair but the checksums' own, sorted by key, each followed by a newline.
pub const METADATA_ENTRY: &str = "__metadata__";

/// Why a checkpoint could not be written or read; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading, writing or renaming failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Not a safetensors file, or a damaged one (truncated, absurd header size, ...).
    #[error("{path}: not a valid safetensors file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
    /// The header has no model configuration, or an invalid one.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor the model needs is absent.
    #[error("{path}: missing tensor '{name}'")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// Stored data does not match its checksum: the file was damaged after it was written.
    #[error("{path}: {what} does not match its checksum (stored {stored}, computed {computed}): the file is damaged")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// What failed: `tensor 'NAME'` or `the header metadata`.
        what: String,
        /// The stored checksum.
        stored: String,
        /// The checksum of the data as read.
        computed: String,
    },
    /// A tensor has the wrong shape or type.
    #[error("{path}: tensor '{name}' is {got}, expected {want}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// What was found.
        got: String,
        /// What the model needs.
        want: String,
    },
}

/// A named f32 tensor and its shape as stored.
pub type Tensor = (String, Vec<usize>, Vec<f32>);

/// The CRC-32 of `bytes` as 8 hex digits.
fn crc32(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

/// The CRC-32 of the metadata other than the checksums (see [`METADATA_ENTRY`]).
fn metadata_crc(metadata: &HashMap<String, String>) -> String {
    let mut keys: Vec<&String> = metadata.keys().filter(|k| *k != CHECKSUM_KEY).collect();
    keys.sort();
    let mut h = crc32fast::Hasher::new();
    for k in keys {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(metadata[k].as_bytes());
        h.update(b"\n");
    }
    format!("{:08x}", h.finalize())
}

/// Serialises tensors and string metadata as safetensors, with the checksum of every
/// tensor and of the metadata under [`CHECKSUM_KEY`], and writes them atomically.
pub fn save_tensors(path: &Path, tensors: &[Tensor], metadata: HashMap<String, String>) -> Result<(), CheckpointError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, data)| data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut metadata = metadata;
    metadata.remove(CHECKSUM_KEY);
    let mut sums: std::collections::BTreeMap<&str, String> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, _, _), b)| (name.as_str(), crc32(b)))
        .collect();
    sums.insert(METADATA_ENTRY, metadata_crc(&metadata));
    metadata.insert(
        CHECKSUM_KEY.into(),
        serde_json::to_string(&sums).expect("checksums serialise"),
    );
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.as_str(), v))
                .map_err(|e| CheckpointError::Format {
                    path: path.into(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = safetensors::serialize(views, Some(metadata)).map_err(|e| CheckpointError::Format {
        path: path.into(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &out).map_err(|source| CheckpointError::Io {
        path: path.into(),
        source,
    })
}

/// A checkpoint read into memory: its metadata and f32 tensors by name.
pub struct Loaded {
    /// The file.
    pub path: PathBuf,
    /// Header metadata.
    pub metadata: HashMap<String, String>,
    /// Tensors: name to (shape, values).
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// Whether the file carried checksums (all of which matched). Files written before
    /// checksums were added load with `false`; callers should warn that they are unverified.
    pub verified: bool,
}

impl Loaded {
    /// The tensor `name`, which must hold f32 values of `rows x cols` (or a 1-D `cols`
    /// when `rows` is 1), as an array.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Array2<f32>, CheckpointError> {
        let (shape, data) = self.tensors.get(name).ok_or_else(|| CheckpointError::Missing {
            path: self.path.clone(),
            name: name.into(),
        })?;
        let ok = shape == &[rows, cols] || (rows == 1 && shape == &[cols]);
        if !ok {
            return Err(CheckpointError::Mismatch {
                path: self.path.clone(),
                name: name.into(),
                got: format!("shaped {shape:?}"),
                want: if rows == 1 {
                    format!("shaped [{cols}]")
                } else {
                    format!("shaped [{rows}, {cols}]")
                },
            });
        }
        Ok(Array2::from_shape_vec((rows, cols), data.clone()).expect("checked"))
    }

    /// The tensor `name`, which must be shaped `shape`, as the `rows x cols` matrix of its
    /// values in order (a convolution's 4-D weight with its last three axes flattened).
    pub fn shaped(
        &self,
        name: &str,
        shape: &[usize],
        rows: usize,
        cols: usize,
    ) -> Result<Array2<f32>, CheckpointError> {
        debug_assert_eq!(shape.iter().product::<usize>(), rows * cols);
        if shape.len() != 4 {
            return self.matrix(name, rows, cols);
        }
        let (got, data) = self.tensors.get(name).ok_or_else(|| CheckpointError::Missing {
            path: self.path.clone(),
            name: name.into(),
        })?;
        if got != shape {
            return Err(CheckpointError::Mismatch {
                path: self.path.clone(),
                name: name.into(),
                got: format!("shaped {got:?}"),
                want: format!("shaped {shape:?}"),
            });
        }
        Ok(Array2::from_shape_vec((rows, cols), data.clone()).expect("checked"))
    }
}

/// Reads a safetensors file whose tensors are all f32, verifying its checksums when it has
/// them (a tensor or the metadata that fails is named in the error).
pub fn load_tensors(path: &Path) -> Result<Loaded, CheckpointError> {
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.into(),
        source,
    })?;
    let format = |reason: String| CheckpointError::Format {
        path: path.into(),
        reason,
    };
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| format(e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let sums: Option<HashMap<String, String>> = match metadata.get(CHECKSUM_KEY) {
        Some(json) => {
            Some(serde_json::from_str(json).map_err(|e| format(format!("invalid '{CHECKSUM_KEY}' metadata: {e}")))?)
        }
        None => None,
    };
    let mismatch = |what: String, stored: &str, computed: String| CheckpointError::Checksum {
        path: path.into(),
        what,
        stored: stored.into(),
        computed,
    };
    if let Some(sums) = &sums {
        let stored = sums.get(METADATA_ENTRY).map_or("none", String::as_str);
        let computed = metadata_crc(&metadata);
        if stored != computed {
            return Err(mismatch("the header metadata".into(), stored, computed));
        }
        if let Some(name) = sums.keys().find(|k| *k != METADATA_ENTRY && st.tensor(k).is_err()) {
            return Err(CheckpointError::Missing {
                path: path.into(),
                name: name.clone(),
            });
        }
    }
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if let Some(sums) = &sums {
            let stored = sums.get(&name).map_or("none", String::as_str);
            let computed = crc32(view.data());
            if stored != computed {
                return Err(mismatch(format!("tensor '{name}'"), stored, computed));
            }
        }
        if view.dtype() != Dtype::F32 {
            return Err(CheckpointError::Mismatch {
                path: path.into(),
                got: format!("of type {:?}", view.dtype()),
                name,
                want: "F32".into(),
            });
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        tensors.insert(name, (view.shape().to_vec(), data));
    }
    Ok(Loaded {
        path: path.into(),
        metadata,
        tensors,
        verified: sums.is_some(),
    })
}

/// The model's parameters as stored tensors, shaped as PyTorch shapes them
/// ([`Vae::stored_shape`]): weights `[out, in]` (convolutions 4-D), biases and the learned
/// log-variance 1-D.
pub fn model_tensors<T: Float>(vae: &Vae<T>) -> Vec<Tensor> {
    vae.named_params()
        .iter()
        .map(|(name, v)| {
            let a = vae.tape().value(*v);
            let shape = vae.stored_shape(name, a.dim());
            let data = a.iter().map(|x| x.to_f32().unwrap_or(f32::NAN)).collect();
            (name.clone(), shape, data)
        })
        .collect()
}

/// Saves the model with its configuration (and `extra` metadata) in the header.
pub fn save<T: Float>(vae: &Vae<T>, path: &Path, extra: HashMap<String, String>) -> Result<(), CheckpointError> {
    let mut metadata = extra;
    metadata.insert(
        CONFIG_KEY.into(),
        serde_json::to_string(vae.config()).expect("the configuration serialises"),
    );
    metadata.insert("format".into(), "pt".into());
    save_tensors(path, &model_tensors(vae), metadata)
}

/// Rebuilds a model from a checkpoint written by [`save`]; also returns the header metadata.
pub fn load<T: Float>(path: &Path) -> Result<(Vae<T>, HashMap<String, String>), CheckpointError> {
    let loaded = load_tensors(path)?;
    let config_err = |reason: String| CheckpointError::Config {
        path: path.into(),
        reason,
    };
    let json = loaded.metadata.get(CONFIG_KEY).ok_or_else(|| {
        config_err(format!(
            "no '{CONFIG_KEY}' entry in the header metadata: not a vae checkpoint"
        ))
    })?;
    let config: VaeConfig =
        serde_json::from_str(json).map_err(|e| config_err(format!("invalid '{CONFIG_KEY}' metadata: {e}")))?;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut vae = Vae::<T>::new(config, &mut rng).map_err(|e| config_err(format!("invalid configuration: {e}")))?;
    let named: Vec<_> = vae.named_params().to_vec();
    for (name, v) in named {
        let (rows, cols) = vae.tape().dim(v);
        let m = loaded.shaped(&name, &vae.stored_shape(&name, (rows, cols)), rows, cols)?;
        if m.iter().any(|x| !x.is_finite()) {
            return Err(CheckpointError::Mismatch {
                path: path.into(),
                name,
                got: "holding NaN or infinite values".into(),
                want: "finite values".into(),
            });
        }
        vae.tape_mut()
            .param_mut(v)
            .zip_mut_with(&m, |d, &s| *d = T::c(s as f64));
    }
    Ok((vae, loaded.metadata))
}
