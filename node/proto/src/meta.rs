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
    /// The object's owner died, so its value is gone.
    OwnerDiedError,
    /// A lost object whose task's retries are used up.
    ObjectReconstructionFailedMaxAttemptsExceededError,
    /// A lost object whose task's lineage was dropped to bound memory.
    ObjectReconstructionFailedLineageEvictedError,
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
            Self::OwnerDiedError => "OwnerDiedError",
            Self::ObjectReconstructionFailedMaxAttemptsExceededError => {
                "ObjectReconstructionFailedMaxAttemptsExceededError"
            }
            Self::ObjectReconstructionFailedLineageEvictedError => {
                "ObjectReconstructionFailedLineageEvictedError"
            }
        }
    }
}

impl SystemErrorKind {
    /// Ray's `ErrorType` of a task that ended with this error, as the
    /// state API shows it.
    pub fn ray_error_type(self) -> &'static str {
        match self {
            Self::WorkerCrashedError => "WORKER_DIED",
            Self::TaskCancelledError => "TASK_CANCELLED",
            Self::ObjectLostError => "OBJECT_LOST",
            Self::ActorDiedError => "ACTOR_DIED",
            Self::ActorUnavailableError => "ACTOR_UNAVAILABLE",
            Self::OutOfMemoryError => "OUT_OF_MEMORY",
            Self::RaySystemError => "RAY_SYSTEM_ERROR",
            Self::TaskUnschedulableError => "TASK_UNSCHEDULABLE_ERROR",
            Self::ActorUnschedulableError => "ACTOR_UNSCHEDULABLE_ERROR",
            Self::OwnerDiedError => "OWNER_DIED",
            Self::ObjectReconstructionFailedMaxAttemptsExceededError => {
                "OBJECT_UNRECONSTRUCTABLE_MAX_ATTEMPTS_EXCEEDED"
            }
            Self::ObjectReconstructionFailedLineageEvictedError => {
                "OBJECT_UNRECONSTRUCTABLE_LINEAGE_EVICTED"
            }
        }
    }

    fn from_name(name: &str) -> Option<SystemErrorKind> {
        const ALL: [SystemErrorKind; 12] = [
            SystemErrorKind::WorkerCrashedError,
            SystemErrorKind::TaskCancelledError,
            SystemErrorKind::ObjectLostError,
            SystemErrorKind::ActorDiedError,
            SystemErrorKind::ActorUnavailableError,
            SystemErrorKind::OutOfMemoryError,
            SystemErrorKind::RaySystemError,
            SystemErrorKind::TaskUnschedulableError,
            SystemErrorKind::ActorUnschedulableError,
            SystemErrorKind::OwnerDiedError,
            SystemErrorKind::ObjectReconstructionFailedMaxAttemptsExceededError,
            SystemErrorKind::ObjectReconstructionFailedLineageEvictedError,
        ];
        ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The kind and message of a system error value's data section (the
/// inverse of [`system_error_data`]).
pub fn parse_system_error(data: &[u8]) -> Option<(SystemErrorKind, String)> {
    let text = std::str::from_utf8(data).ok()?;
    let (name, message) = text.split_once('\n').unwrap_or((text, ""));
    Some((SystemErrorKind::from_name(name)?, message.to_string()))
}

/// The data section of a system error value.
pub fn system_error_data(kind: SystemErrorKind, message: &str) -> Vec<u8> {
    format!("{}\n{}", kind.name(), message).into_bytes()
}
