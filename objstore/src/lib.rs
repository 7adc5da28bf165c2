//! objstore: the per-node shared-memory object store.
//!
//! Every node keeps immutable objects in memory-mapped files in a directory
//! on tmpfs (`/dev/shm/...`), which workers on the same machine map and read
//! without copying. The crate is synchronous: no async runtime, no network.
//!
//! Parts and data flow:
//! - [`key`]: [`ObjectKey`], the 20-byte name of an object; its hex is the
//!   object's file name.
//! - [`config`]: [`Config`]: root directory, capacity, spill directory.
//! - [`layout`]: the object format (header, metadata, data, out-of-band
//!   buffers, each 64-byte aligned), the same in a store file and in an
//!   inline `Vec<u8>`; pure functions to plan, write and validate it.
//! - [`map`]: memory mappings and file locks, and all of the crate's
//!   `unsafe`: the store's own mappings, [`map::copy`] (how objects are
//!   written), and [`map::ReadMap`] / [`map::WriteMap`] for other processes,
//!   which map objects by path.
//! - `policy`: the eviction state machine (no I/O): sizes, pins, primary
//!   copies, least-recently-used order; answers "make room" with steps.
//! - `pool`: freed files kept mapped for reuse, so a new object of the same
//!   size is written at memcpy speed.
//! - `spill`: the spill directory, where unpinned primary copies go under
//!   pressure and come back from on `get`.
//! - [`store`]: [`Store`], which ties these together behind one mutex, and
//!   the handles it gives: [`Created`] / [`Writer`] for a new object,
//!   [`ReadHandle`] for a sealed one.
//!
//! A put: `Store::create(key, size, primary)` reserves the bytes and the
//! file (evicting, then spilling, if needed) → the writer (this process via
//! [`Writer`], or another via [`map::WriteMap`] on [`Created::path`]) fills
//! it, usually with [`layout::plan`] + [`layout::fill`] → `seal` validates the
//! layout and makes it visible. A get: `Store::get(key)` pins the object and
//! returns its read-only mapping, restoring it from disk first if spilled;
//! other processes map [`ReadHandle::path`] with [`map::ReadMap`].
//!
//! Files: each object has a file of its own, named by the store
//! (`obj-<n>`), and a freed file is reused in place for the next object of
//! its size, so a put in the steady state makes two `flock` calls and no
//! other system call. The seal records the object's key in the header; a
//! reader in another process checks it, so a stale path is an error, never
//! another object's bytes.
//!
//! Readers in other processes: the store cannot see their mappings. A file
//! is reused for a new object only if the store can lock it exclusively,
//! which readers following the [`map`] protocol (a shared `flock` while
//! mapped) prevent; until then it is kept aside, or unlinked when evicted or
//! spilled, and Linux keeps its pages until that process unmaps it, so the
//! reader never crashes and never sees other bytes. Objects are immutable
//! once sealed: the store never writes a sealed file, and writers in other
//! processes must finish before asking for the seal.

pub mod config;
pub mod error;
mod handle;
pub mod key;
pub mod layout;
pub mod map;
mod policy;
mod pool;
mod spill;
pub mod store;

pub use config::Config;
pub use error::{
    AbortError, ConfigError, CreateError, GetError, LayoutError, MapError, OpenError, SealError,
};
pub use handle::{Created, ReadHandle, Writer};
pub use key::ObjectKey;
pub use layout::Layout;
pub use store::{Stats, Store};
