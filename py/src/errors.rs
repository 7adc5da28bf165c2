//! The one place Rust errors become Python exceptions.
//!
//! Transport failures raise the built-in `ConnectionError`, bad arguments
//! `ValueError`, and a refusal by the node `NodeError`; the Python layer
//! (`raynode.exceptions`) turns these into Ray's exception types.

use pyo3::exceptions::{PyConnectionError, PyValueError};
use pyo3::PyErr;

pyo3::create_exception!(
    _core,
    NodeError,
    pyo3::exceptions::PyRuntimeError,
    "The node refused a request."
);

pub fn connection(what: impl std::fmt::Display) -> PyErr {
    PyConnectionError::new_err(what.to_string())
}

pub fn value(what: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(what.to_string())
}

pub fn node(what: impl std::fmt::Display) -> PyErr {
    NodeError::new_err(what.to_string())
}
