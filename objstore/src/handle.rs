//! Handles given out by the store: [`Created`] and its [`Writer`] for a new
//! object, [`ReadHandle`] for a sealed one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{LayoutError, SealError};
use crate::key::ObjectKey;
use crate::layout::{self, Layout};
use crate::map::{ObjectMap, WriteGuard};
use crate::policy::Id;
use crate::store::Shared;

/// A newly created, unsealed object.
///
/// Either write it in this process through [`Created::writer`] and
/// [`Writer::seal`], or drop this, have another process map
/// [`Created::path`] with [`crate::map::WriteMap`], and call
/// [`crate::Store::seal`] when it is done.
pub struct Created {
    pub(crate) key: ObjectKey,
    pub(crate) path: PathBuf,
    pub(crate) writer: Writer,
}

impl Created {
    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        self.key
    }

    /// The object's file, for a writer in another process.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The object's size in bytes (its whole file).
    pub fn len(&self) -> usize {
        self.writer.guard_len()
    }

    /// Whether the object is empty (never: the store refuses empty objects).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The in-process writer.
    pub fn writer(&mut self) -> &mut Writer {
        &mut self.writer
    }

    /// The in-process writer, by value.
    pub fn into_writer(self) -> Writer {
        self.writer
    }
}

/// The only in-process writer of an unsealed object. While it lives the
/// object cannot be sealed; [`Writer::seal`] consumes it.
pub struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: ObjectKey,
    pub(crate) guard: WriteGuard,
}

impl Writer {
    fn guard_len(&self) -> usize {
        self.guard.len()
    }

    /// The object's bytes, writable (a shared mapping of its file).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.guard.as_mut_slice()
    }

    /// Writes a whole object: header, metadata, data and buffers of
    /// `layout`, whose total must equal the object's size.
    pub fn write_layout(
        &mut self,
        layout: &Layout,
        meta: &[u8],
        data: &[u8],
        buffers: &[&[u8]],
    ) -> Result<(), LayoutError> {
        layout::fill(self.guard.as_mut_slice(), layout, meta, data, buffers)
    }

    /// Seals the object: from now on it is immutable and visible to readers.
    pub fn seal(self) -> Result<(), SealError> {
        let Writer {
            shared, key, guard, ..
        } = self;
        drop(guard);
        shared.seal(&key)
    }
}

/// A sealed object, pinned in memory while this handle lives.
///
/// Other processes on the machine can map [`ReadHandle::path`] with
/// [`crate::map::ReadMap`], giving the key: the file holds this object for
/// as long as the object lives, and is reused for another once it is freed.
pub struct ReadHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) id: Id,
    pub(crate) key: ObjectKey,
    pub(crate) path: PathBuf,
    pub(crate) map: Arc<ObjectMap>,
    pub(crate) layout: Arc<Layout>,
}

impl ReadHandle {
    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        self.key
    }

    /// The object's file (named by the store, not by the key).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The object's size in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole object, mapped read-only (no copy).
    pub fn as_slice(&self) -> &[u8] {
        self.map
            .sealed_bytes()
            .expect("a read handle is only made for a sealed map")
    }

    /// Where the metadata, data and buffers lie (validated at seal).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The metadata section.
    pub fn meta(&self) -> &[u8] {
        &self.as_slice()[self.layout.meta.clone()]
    }

    /// The data section.
    pub fn data(&self) -> &[u8] {
        &self.as_slice()[self.layout.data.clone()]
    }

    /// Out-of-band buffer `i`, if there is one.
    pub fn buffer(&self, i: usize) -> Option<&[u8]> {
        let r = self.layout.buffers.get(i)?.clone();
        Some(&self.as_slice()[r])
    }

    /// Releases the pin (same as dropping the handle).
    pub fn release(self) {}
}

impl Drop for ReadHandle {
    fn drop(&mut self) {
        self.shared.unpin(self.id);
    }
}
