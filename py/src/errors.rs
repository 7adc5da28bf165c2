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

/// An instance of the exception class `name` of `raynode.exceptions`,
/// made with `message` (the node's error if that fails).
fn raynode_exception(py: pyo3::Python<'_>, name: &str, message: String) -> PyErr {
    use pyo3::types::PyAnyMethods;
    let class = py
        .import("raynode.exceptions")
        .and_then(|module| module.getattr(name));
    match class.and_then(|class| class.call1((message.clone(),))) {
        Ok(instance) => PyErr::from_value(instance),
        Err(_) => node(message),
    }
}

/// Ray's `RaySystemError` with `message`.
pub fn system(py: pyo3::Python<'_>, message: String) -> PyErr {
    raynode_exception(py, "RaySystemError", message)
}

/// The Python exception for an object the store would not create: no room
/// is Ray's `ObjectStoreFullError`.
pub fn store(py: pyo3::Python<'_>, error: raynode_proto::StoreError) -> PyErr {
    match error {
        raynode_proto::StoreError::Full(m) => raynode_exception(py, "ObjectStoreFullError", m),
        raynode_proto::StoreError::Failed(m) => node(m),
    }
}

/// The Python exception for a refused `SubmitAcked`: a taken actor name is a
/// `ValueError` (as in Ray), a control store without quorum a
/// `raynode.exceptions.ControlStoreUnavailableError`.
pub fn ack(py: pyo3::Python<'_>, error: raynode_proto::AckError) -> PyErr {
    match error {
        raynode_proto::AckError::NameTaken(m) => value(m),
        raynode_proto::AckError::NoQuorum(m) => {
            raynode_exception(py, "ControlStoreUnavailableError", m)
        }
        raynode_proto::AckError::Refused(m) => node(m),
    }
}
