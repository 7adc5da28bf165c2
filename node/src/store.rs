//! The node's view of its shared-memory object store: ids converted to
//! store keys, errors to messages, and the store's directory removed at stop.

use crate::config::NodeConfig;
use anyhow::Context;
use objstore::ObjectKey;
use raynode_proto::ObjectId;
use std::path::{Path, PathBuf};

pub struct Store {
    inner: objstore::Store,
    root: PathBuf,
}

fn key(id: ObjectId) -> ObjectKey {
    ObjectKey(id.0)
}

impl Store {
    pub fn open(config: &NodeConfig) -> anyhow::Result<Store> {
        let root = config
            .store_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/dev/shm/raynode-{}", std::process::id())));
        let store_config = objstore::Config::default()
            .with_root(&root)
            .with_capacity(config.object_store_memory)
            .with_spill_dir(config.data_dir.join("spill"));
        let inner = objstore::Store::open(store_config)
            .with_context(|| format!("opening the object store in {}", root.display()))?;
        Ok(Store { inner, root })
    }

    /// The store itself, for work off the core (serving and pulling chunks).
    pub fn shared(&self) -> objstore::Store {
        self.inner.clone()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reserves a primary copy of `size` bytes; returns the file to write.
    pub fn create(&self, id: ObjectId, size: u64) -> Result<PathBuf, objstore::CreateError> {
        let created = self.inner.create(key(id), size, true)?;
        Ok(created.path().to_path_buf())
    }

    /// Makes a written object visible; returns its size.
    pub fn seal(&self, id: ObjectId) -> Result<u64, String> {
        let key = key(id);
        self.inner.seal(&key).map_err(|e| e.to_string())?;
        match self.inner.get(&key) {
            Ok(Some(handle)) => Ok(handle.len() as u64),
            Ok(None) => Err(format!("object {id} vanished after sealing")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Stores a whole object from bytes; returns its size.
    pub fn put_bytes(&self, id: ObjectId, bytes: &[u8]) -> Result<u64, String> {
        let mut created = self
            .inner
            .create(key(id), bytes.len() as u64, true)
            .map_err(|e| e.to_string())?;
        created.writer().as_mut_slice().copy_from_slice(bytes);
        created.into_writer().seal().map_err(|e| e.to_string())?;
        Ok(bytes.len() as u64)
    }

    /// A sealed object's bytes, copied out (for clients without the shared memory).
    pub fn read_bytes(&self, id: ObjectId) -> Option<Vec<u8>> {
        match self.inner.get(&key(id)) {
            Ok(Some(handle)) => Some(handle.as_slice().to_vec()),
            _ => None,
        }
    }

    /// Reclaims an object whose writer went away before sealing it.
    pub fn abort(&self, id: ObjectId) {
        if let Err(e) = self.inner.abort(&key(id)) {
            tracing::debug!(object = %id, "abort: {e}");
        }
    }

    pub fn delete(&self, id: ObjectId) {
        self.inner.delete(&key(id));
    }

    /// The path of a sealed object, restored from spill first if need be.
    pub fn resident_path(&self, id: ObjectId) -> Option<PathBuf> {
        match self.inner.get(&key(id)) {
            Ok(Some(handle)) => Some(handle.path().to_path_buf()),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(object = %id, "cannot read a stored object: {e}");
                None
            }
        }
    }

    /// Removes every object file: the node is stopping.
    pub fn remove_all(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            tracing::debug!("removing {}: {e}", self.root.display());
        }
    }
}
