//! Values the node makes itself, in the object layout: runtime errors.

use raynode_proto::meta::{self, SystemErrorKind};

/// An error value that `ray.get` raises as the Python exception `kind`.
pub fn system_error(kind: SystemErrorKind, message: &str) -> Vec<u8> {
    objstore::layout::encode(
        meta::SYSTEM_ERROR,
        &meta::system_error_data(kind, message),
        &[],
    )
}

/// Whether inline layout bytes hold an error (raised by `get`, and
/// propagated to tasks that take the value as an argument).
pub fn is_error(bytes: &[u8]) -> bool {
    match objstore::layout::parse(bytes) {
        Ok(layout) => bytes.get(layout.meta).is_some_and(|m| m != meta::PICKLE),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_errors_are_errors_and_pickles_are_not() {
        assert!(is_error(&system_error(
            SystemErrorKind::WorkerCrashedError,
            "boom"
        )));
        assert!(!is_error(&objstore::layout::encode(
            meta::PICKLE,
            b"x",
            &[]
        )));
        assert!(!is_error(b"garbage"));
    }
}
