//! The metadata tag of a stored value: how its data section is to be read.
//!
//! Values are written in the object layout of the `objstore` crate; its
//! metadata section holds one of these tags. The Python package reads them
//! from here (exported by its native module), never from a copy.

/// Pickle protocol 5, out-of-band buffers in the layout's buffer sections.
pub const PICKLE: &[u8] = b"P";
/// A pickled exception raised by user code (becomes `RayTaskError`).
pub const TASK_ERROR: &[u8] = b"E";
/// An error made by the runtime itself: data is `"<Kind>\n<message>"` in UTF-8.
pub const SYSTEM_ERROR: &[u8] = b"S";

/// Kinds of runtime-made errors; the names match the Python exception classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemErrorKind {
    WorkerCrashedError,
    TaskCancelledError,
    ObjectLostError,
    ActorDiedError,
    ActorUnavailableError,
    OutOfMemoryError,
    RaySystemError,
    /// A task that no node may run (a hard node affinity to a dead node).
    TaskUnschedulableError,
    /// An actor that no node may host.
    ActorUnschedulableError,
}

impl SystemErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::WorkerCrashedError => "WorkerCrashedError",
            Self::TaskCancelledError => "TaskCancelledError",
            Self::ObjectLostError => "ObjectLostError",
            Self::ActorDiedError => "ActorDiedError",
            Self::ActorUnavailableError => "ActorUnavailableError",
            Self::OutOfMemoryError => "OutOfMemoryError",
            Self::RaySystemError => "RaySystemError",
            Self::TaskUnschedulableError => "TaskUnschedulableError",
            Self::ActorUnschedulableError => "ActorUnschedulableError",
        }
    }
}

/// The data section of a system error value.
pub fn system_error_data(kind: SystemErrorKind, message: &str) -> Vec<u8> {
    format!("{}\n{}", kind.name(), message).into_bytes()
}
