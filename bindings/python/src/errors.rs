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

/// The command line's message with its training flags spelt as keywords: `--exclude-label 3`
/// is `exclude_label=3`, `--run-dir` is `run_dir`; commands quoted in backticks stay as
/// they are.
pub fn pythonic(message: &str) -> String {
    let keywords: Vec<(String, bool)> = crate::options::train_options()
        .into_iter()
        .map(|(k, _, switch)| (k, switch))
        .collect();
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(part);
            continue;
        }
        let mut rest = part;
        while let Some(at) = rest.find("--") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let len = after
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
                .unwrap_or(after.len());
            let name = after[..len].replace('-', "_");
            match keywords.iter().find(|(k, _)| *k == name) {
                Some((k, switch)) => {
                    out.push_str(k);
                    rest = &after[len..];
                    // A value after a flag that takes one becomes `keyword=value`.
                    let value = rest
                        .strip_prefix(' ')
                        .and_then(|v| v.split([' ', ',', ')', ';']).next());
                    let is_value = |v: &str| {
                        v.starts_with(|c: char| c.is_ascii_digit() || "/.~-".contains(c))
                            || v.contains('/')
                            || (!v.is_empty() && v.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                    };
                    if !switch && value.is_some_and(is_value) {
                        out.push('=');
                        rest = &rest[1..];
                    }
                }
                None => {
                    out.push_str("--");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
    }
    out
}

/// The Python exception for an engine error, with the command line's message (the error and
/// its causes, as `vae-train` prints them, its flags spelt as keywords). A Python exception
/// raised in a callback comes back as itself.
pub fn to_py(e: anyhow::Error) -> PyErr {
    let e = match e.downcast::<PyErr>() {
        Ok(p) => return p,
        Err(e) => e,
    };
    let message = pythonic(&format!("{e:#}"));
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
