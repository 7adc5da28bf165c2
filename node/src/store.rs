//! The node's view of its shared-memory object store: ids converted to
//! store keys, errors to messages, and the store's directory removed at stop.

use crate::config::NodeConfig;
use anyhow::Context;
use objstore::ObjectKey;
use raynode_proto::ObjectId;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct Store {
    inner: objstore::Store,
    root: PathBuf,
    /// Copies sealed here (`Some(size)`) or deleted (`None`) since the
    /// control store's object directory last heard of them.
    directory: Mutex<HashMap<ObjectId, Option<u64>>>,
    /// Copies the object directory lists here.
    announced: Mutex<HashSet<ObjectId>>,
}

fn key(id: ObjectId) -> ObjectKey {
    ObjectKey(id.0)
}

impl Store {
    /// Opens the node's store in `--store-dir`, or by default in a
    /// directory of `/dev/shm` named after the data dir, so a node restarted
    /// with its data dir reuses (and empties) the directory it had. Store
    /// directories of nodes that died without cleaning up (their lock is
    /// free) are removed first.
    pub fn open(config: &NodeConfig) -> anyhow::Result<Store> {
        let root = config.store_root();
        if config.store_dir.is_none() {
            if let Some(parent) = root.parent() {
                for dir in objstore::Store::reclaim_abandoned(parent, STORE_DIR_PREFIX) {
                    tracing::info!(
                        "removed the store directory of a node that is gone: {}",
                        dir.display()
                    );
                }
            }
        }
        let store_config = objstore::Config::default()
            .with_root(&root)
            .with_capacity(config.object_store_memory)
            // Freed files kept for reuse: a new object in one is written at
            // memory speed instead of faulting in fresh pages.
            .with_recycle_bytes(config.object_store_memory / 4)
            .with_spill_dir(config.data_dir.join("spill"));
        let inner = open_retrying(store_config)
            .with_context(|| format!("opening the object store in {}", root.display()))?;
        Ok(Store {
            inner,
            root,
            directory: Mutex::default(),
            announced: Mutex::default(),
        })
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
            Ok(Some(handle)) => {
                self.record(id, handle.len() as u64);
                Ok(handle.len() as u64)
            }
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
        objstore::map::copy(created.writer().as_mut_slice(), bytes);
        created.into_writer().seal().map_err(|e| e.to_string())?;
        self.record(id, bytes.len() as u64);
        Ok(bytes.len() as u64)
    }

    /// Notes a sealed copy here for the object directory.
    pub fn record(&self, id: ObjectId, size: u64) {
        lock(&self.directory).insert(id, Some(size));
    }

    /// What the object directory should learn: copies added here (with
    /// their size) and removed, since the last call.
    pub fn directory_changes(&self) -> Vec<(ObjectId, Option<u64>)> {
        let changes: Vec<_> = lock(&self.directory).drain().collect();
        let mut announced = lock(&self.announced);
        changes
            .into_iter()
            .filter(|(id, size)| match size {
                Some(_) => announced.insert(*id),
                None => announced.remove(id),
            })
            .collect()
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
        lock(&self.directory).insert(id, None);
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

    /// Whether a sealed copy (in memory or spilled) is here.
    pub fn contains(&self, id: ObjectId) -> bool {
        self.inner.contains(&key(id))
    }

    /// Makes a copy primary (spilled under pressure, never evicted) or
    /// secondary (evicted first).
    pub fn set_primary(&self, id: ObjectId, primary: bool) {
        self.inner.set_primary(&key(id), primary);
    }

    /// Removes every object file: the node is stopping.
    pub fn remove_all(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            tracing::debug!("removing {}: {e}", self.root.display());
        }
    }
}

impl Drop for Store {
    /// A node that fails to start (or stops) leaves no store directory behind.
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// Names of the default store directories (in `/dev/shm`).
pub const STORE_DIR_PREFIX: &str = "raynode-";

/// Opens the store, trying again a few times if it is locked: another
/// node's start may be reclaiming the directory at that very moment.
fn open_retrying(config: objstore::Config) -> Result<objstore::Store, objstore::OpenError> {
    let mut attempt = 0;
    loop {
        match objstore::Store::open(config.clone()) {
            Err(objstore::OpenError::Locked { .. }) if attempt < 5 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
