//! `vae._vae`: the VAE engine as a Python extension module (pyo3, one abi3 wheel for
//! CPython 3.10 and later). The pure-Python package `vae` (python/vae) is its face: it turns
//! keywords into the command line's flags and arrays into contiguous ones, and documents the
//! API; everything else is here, over the engine's own crates.

mod arrays;
mod errors;
mod fpenv;
mod model;
mod options;
#[cfg(unix)]
mod signals;
#[cfg(not(unix))]
#[path = "signals_other.rs"]
mod signals;
mod training;

use pyo3::prelude::*;

/// The engine's large blocks on cache lines, as `vae-train` allocates them.
#[global_allocator]
static ALLOC: vae_linalg::CacheAligned = vae_linalg::CacheAligned;

/// The training keywords: (keyword, help with its default, whether it is a switch).
#[pyfunction]
fn train_options() -> Vec<(String, String, bool)> {
    options::train_options()
}

/// The older keyword spellings still taken: (alias, keyword).
#[pyfunction]
fn train_aliases() -> Vec<(String, String)> {
    options::train_aliases()
}

#[pymodule]
fn _vae(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(train_options, m)?)?;
    m.add_function(wrap_pyfunction!(train_aliases, m)?)?;
    m.add_function(wrap_pyfunction!(training::train, m)?)?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_class::<model::Model>()?;
    m.add_class::<training::Trainer>()?;
    m.add("Interrupted", m.py().get_type::<training::Interrupted>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
