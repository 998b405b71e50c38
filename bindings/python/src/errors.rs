//! Engine errors as Python exceptions: file problems as `OSError` (its subclass by the I/O
//! error's kind), bad values as `ValueError`, a diverged run as `FloatingPointError`, and a
//! panic (a bug) as `RuntimeError`, never across the FFI boundary.

use std::io::ErrorKind;
use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyFloatingPointError, PyIsADirectoryError, PyNotADirectoryError, PyOSError,
    PyPermissionError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;

/// The `OSError` subclass of an I/O error's kind, with `message`.
pub fn os_error(kind: ErrorKind, message: String) -> PyErr {
    match kind {
        ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
        ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
        ErrorKind::AlreadyExists => PyFileExistsError::new_err(message),
        ErrorKind::IsADirectory => PyIsADirectoryError::new_err(message),
        ErrorKind::NotADirectory => PyNotADirectoryError::new_err(message),
        _ => PyOSError::new_err(message),
    }
}

/// The Python exception for an engine error, with the command line's message (the error and
/// its causes, as `vae-train` prints them). A Python exception raised in a callback comes
/// back as itself.
pub fn to_py(e: anyhow::Error) -> PyErr {
    let e = match e.downcast::<PyErr>() {
        Ok(p) => return p,
        Err(e) => e,
    };
    let message = format!("{e:#}");
    if let Some(io) = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>()) {
        return os_error(io.kind(), message);
    }
    let file = e.chain().any(|c| {
        c.is::<vae_data::DatasetError>()
            || c.is::<vae_data::NpyError>()
            || c.is::<vae_model::checkpoint::CheckpointError>()
            || c.is::<vae_trainer::StateError>()
    });
    if file {
        return PyOSError::new_err(message);
    }
    if message.starts_with("training diverged") {
        return PyFloatingPointError::new_err(message);
    }
    PyValueError::new_err(message)
}

/// Runs `f`, turning a panic into a `RuntimeError` (a bug of the engine) instead of letting
/// it unwind into the interpreter.
pub fn guarded<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        Err(PyRuntimeError::new_err(format!(
            "internal error in the vae engine (a bug; please report it): {what}"
        )))
    })
}
