//! Error enums, one per operation family.

use std::io;
use std::path::PathBuf;

use crate::key::ObjectKey;

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("store capacity must be greater than zero")]
    ZeroCapacity,
    #[error("store and spill directories must be set")]
    EmptyPath,
    #[error("spill directory must differ from the store root {0}")]
    SpillIsRoot(PathBuf),
    #[error("recycle budget {recycle} bytes exceeds the capacity {capacity} bytes")]
    RecycleOverCapacity { recycle: u64, capacity: u64 },
}

/// Opening a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("invalid store configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("store directory {path} is in use by another live store")]
    Locked { path: PathBuf },
    #[error("store directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Reserving a new object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    #[error("object of {requested} bytes is larger than the store capacity of {capacity} bytes")]
    TooLarge { requested: u64, capacity: u64 },
    #[error("an object cannot be empty")]
    Empty,
    #[error("object {0} already exists")]
    AlreadyExists(ObjectKey),
    #[error(
        "store full: {requested} bytes requested, {used} of {capacity} bytes used, \
         {pinned} bytes pinned or being written"
    )]
    StoreFull {
        requested: u64,
        capacity: u64,
        used: u64,
        pinned: u64,
    },
    #[error("spilling to make room failed: {0}")]
    Spill(#[source] io::Error),
    #[error("object file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Sealing an object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("object {0} does not exist")]
    NotFound(ObjectKey),
    #[error("object {0} is already sealed")]
    AlreadySealed(ObjectKey),
    #[error("object {0} still has a writer in this process")]
    WriterActive(ObjectKey),
    #[error("object {key} does not hold a valid layout: {source}")]
    BadLayout {
        key: ObjectKey,
        #[source]
        source: LayoutError,
    },
}

/// Aborting an unsealed object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AbortError {
    #[error("object {0} does not exist")]
    NotFound(ObjectKey),
    #[error("object {0} is sealed; delete it instead")]
    Sealed(ObjectKey),
}

/// Getting a sealed object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    #[error("no room to restore spilled object {key}: {source}")]
    NoRoom {
        key: ObjectKey,
        #[source]
        source: Box<CreateError>,
    },
    #[error("restoring spilled object {key}: {source}")]
    Restore {
        key: ObjectKey,
        #[source]
        source: io::Error,
    },
    #[error("object {key} is corrupt: {source}")]
    Corrupt {
        key: ObjectKey,
        #[source]
        source: LayoutError,
    },
}

/// Mapping a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    #[error("mapping {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not readable now: unsealed, deleted or being reused")]
    NotSealed { path: PathBuf },
    #[error("{path} is larger than this process can map")]
    TooLarge { path: PathBuf },
}

/// An object whose bytes do not follow the layout.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    #[error("object truncated: {needed} bytes needed, {len} present")]
    Truncated { needed: u64, len: u64 },
    #[error("not an object: bad magic")]
    BadMagic,
    #[error("object layout version {found}, this build reads {supported}")]
    Version { found: u32, supported: u32 },
    #[error("reserved header bytes are not zero")]
    Reserved,
    #[error("{count} buffers, at most {max} allowed")]
    TooManyBuffers { count: u64, max: usize },
    #[error("section lengths overflow the address space")]
    Overflow,
    #[error("header records {recorded} bytes but its sections need {computed}")]
    TotalMismatch { recorded: u64, computed: u64 },
    #[error("section contents do not match the planned lengths")]
    SectionMismatch,
}
