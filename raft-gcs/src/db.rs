//! The sled database under a member's data directory and its identity.
//!
//! Trees: `log` (index → entry), `meta` (vote, committed, purged, and the
//! directory's identity: format, cluster, node id) and `snapshot` (the
//! latest state machine snapshot). A directory of another cluster, another
//! node or an unknown format is refused with an error naming it.

use std::path::{Path, PathBuf};

use openraft::{AnyError, StorageError, StorageIOError};

use crate::error::OpenError;
use crate::types::NodeId;

/// On-disk format version of the data directory.
pub const FORMAT_VERSION: u32 = 1;

const KEY_FORMAT: &[u8] = b"format";
const KEY_CLUSTER: &[u8] = b"cluster";
const KEY_NODE: &[u8] = b"node_id";

/// Handles to the trees of one open database.
#[derive(Clone)]
pub(crate) struct Db {
    pub db: sled::Db,
    pub log: sled::Tree,
    pub meta: sled::Tree,
    pub snapshot: sled::Tree,
    pub path: PathBuf,
}

impl Db {
    /// Open (or create) the database at `path` for `node` of `cluster`.
    pub fn open(path: &Path, cluster: &str, node: NodeId) -> Result<Db, OpenError> {
        let storage = |reason: String| OpenError::Storage {
            path: path.to_path_buf(),
            reason,
        };
        let corrupt = |reason: String| OpenError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        std::fs::create_dir_all(path).map_err(|e| storage(e.to_string()))?;
        // sled reports most damage as errors, but a mangled file can still
        // make it panic; that must surface as an error naming the directory.
        // The lock of a member shut down in this process is released once
        // its last handle drops; wait a little for that.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let opened = loop {
            let r = std::panic::catch_unwind(|| sled::Config::new().path(path).open());
            match &r {
                Ok(Err(sled::Error::Io(e)))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                _ => break r,
            }
        };
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Corruption { .. })) => {
                return Err(corrupt("sled reports corruption".into()))
            }
            Ok(Err(e)) => return Err(storage(e.to_string())),
            Err(_) => return Err(corrupt("sled failed while reading it".into())),
        };
        let tree = |name: &str| db.open_tree(name).map_err(|e| storage(e.to_string()));
        let (log, meta, snapshot) = (tree("log")?, tree("meta")?, tree("snapshot")?);
        let this = Db {
            db: db.clone(),
            log,
            meta,
            snapshot,
            path: path.to_path_buf(),
        };
        this.check_identity(cluster, node)?;
        Ok(this)
    }

    fn check_identity(&self, cluster: &str, node: NodeId) -> Result<(), OpenError> {
        let path = self.path.clone();
        let storage = |e: sled::Error| OpenError::Storage {
            path: path.clone(),
            reason: e.to_string(),
        };
        let corrupt = |reason: &str| OpenError::Corrupt {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let Some(format) = self.meta.get(KEY_FORMAT).map_err(storage)? else {
            if !self.log.is_empty() || !self.snapshot.is_empty() {
                return Err(corrupt("data without an identity record"));
            }
            self.meta
                .insert(KEY_CLUSTER, cluster.as_bytes())
                .map_err(storage)?;
            self.meta
                .insert(KEY_NODE, &node.0.to_be_bytes())
                .map_err(storage)?;
            self.meta
                .insert(KEY_FORMAT, &FORMAT_VERSION.to_be_bytes())
                .map_err(storage)?;
            self.db.flush().map_err(storage)?;
            return Ok(());
        };
        let format = <[u8; 4]>::try_from(format.as_ref())
            .map(u32::from_be_bytes)
            .map_err(|_| corrupt("bad format record"))?;
        if format != FORMAT_VERSION {
            return Err(corrupt(&format!(
                "format version {format}, this build reads {FORMAT_VERSION}"
            )));
        }
        let found = self
            .meta
            .get(KEY_CLUSTER)
            .map_err(storage)?
            .ok_or_else(|| corrupt("missing cluster record"))?;
        let found = String::from_utf8_lossy(&found).into_owned();
        if found != cluster {
            return Err(OpenError::WrongCluster {
                path: self.path.clone(),
                found,
                expected: cluster.to_string(),
            });
        }
        let found = self
            .meta
            .get(KEY_NODE)
            .map_err(storage)?
            .ok_or_else(|| corrupt("missing node record"))?;
        let found = <[u8; 8]>::try_from(found.as_ref())
            .map(|b| NodeId(u64::from_be_bytes(b)))
            .map_err(|_| corrupt("bad node record"))?;
        if found != node {
            return Err(OpenError::WrongNode {
                path: self.path.clone(),
                found,
                expected: node,
            });
        }
        Ok(())
    }
}

/// Make everything written so far durable (fsync) on a blocking thread.
/// (sled's own `flush_async` can stall; a blocking flush does not.)
pub(crate) async fn flush(db: &sled::Db) -> Result<(), sled::Error> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.flush()).await {
        Ok(r) => r.map(|_| ()),
        Err(e) => Err(sled::Error::Io(std::io::Error::other(e.to_string()))),
    }
}

/// Key of log entry `index`: big-endian so sled orders keys by index.
pub(crate) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Decode a big-endian index key.
pub(crate) fn key_index(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

pub(crate) fn read_err<E: std::error::Error + 'static>(e: &E) -> StorageError<NodeId> {
    StorageIOError::read(AnyError::new(e)).into()
}

pub(crate) fn write_err<E: std::error::Error + 'static>(e: &E) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::new(e)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Db::open(dir.path(), "a", NodeId(1)).expect("fresh"));
        drop(Db::open(dir.path(), "a", NodeId(1)).expect("same identity"));
        let wrong = Db::open(dir.path(), "b", NodeId(1)).err();
        assert!(
            matches!(wrong, Some(OpenError::WrongCluster { .. })),
            "{wrong:?}"
        );
        let msg = wrong.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains(&dir.path().display().to_string()));
        let wrong = Db::open(dir.path(), "a", NodeId(2)).err();
        assert!(
            matches!(wrong, Some(OpenError::WrongNode { .. })),
            "{wrong:?}"
        );
    }

    #[test]
    fn garbage_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("conf"), b"not a sled config at all").expect("write");
        std::fs::write(dir.path().join("db"), vec![0xa5u8; 4096]).expect("write");
        let got = Db::open(dir.path(), "a", NodeId(1)).err();
        let msg = got.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains(&dir.path().display().to_string()),
            "expected an error naming the directory, got {msg:?}"
        );
    }
}
