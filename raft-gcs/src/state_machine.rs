//! The openraft state machine: applies committed entries to the in-memory
//! [`State`], builds and installs snapshots, and keeps the latest snapshot
//! in sled.
//!
//! The tables live in memory behind a `RwLock` shared with the [`crate::Gcs`]
//! handle, so local reads take no I/O. Durability comes from the log plus
//! the stored snapshot: on restart the snapshot is loaded and openraft
//! re-applies the committed log after it.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::db::{read_err, write_err, Db};
use crate::error::OpenError;
use crate::state::State;
use crate::types::{BatchResponse, Change, Entry, LogId, NodeId, StoredMembership, TypeConfig};

const KEY_CURRENT: &[u8] = b"current";

/// The applied state with the Raft bookkeeping that goes with it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SmData {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub state: State,
}

/// Shared, lock-protected applied state.
pub(crate) type Shared = Arc<RwLock<SmData>>;

pub(crate) fn read(shared: &Shared) -> RwLockReadGuard<'_, SmData> {
    // A panic while holding the lock cannot leave the tables half-written
    // in a way readers could not see anyway; keep serving.
    shared.read().unwrap_or_else(|e| e.into_inner())
}

fn write(shared: &Shared) -> RwLockWriteGuard<'_, SmData> {
    shared.write().unwrap_or_else(|e| e.into_inner())
}

/// A snapshot as stored in sled.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The openraft state machine of the store.
pub struct StateMachine {
    shared: Shared,
    db: Db,
    changes: broadcast::Sender<Change>,
    snapshot_seq: Arc<AtomicU64>,
}

impl StateMachine {
    /// Open the state machine of `db`, loading its stored snapshot.
    pub(crate) fn open(db: Db, changes: broadcast::Sender<Change>) -> Result<Self, OpenError> {
        let corrupt = |reason: String| OpenError::Corrupt {
            path: db.path.clone(),
            reason,
        };
        let mut data = SmData::default();
        if let Some(stored) = db
            .snapshot
            .get(KEY_CURRENT)
            .map_err(|e| corrupt(format!("snapshot: {e}")))?
        {
            let stored: StoredSnapshot = postcard::from_bytes(&stored)
                .map_err(|e| corrupt(format!("snapshot record: {e}")))?;
            data = postcard::from_bytes(&stored.data)
                .map_err(|e| corrupt(format!("snapshot data: {e}")))?;
        }
        Ok(StateMachine {
            shared: Arc::new(RwLock::new(data)),
            db,
            changes,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The applied state, shared with the handle for local reads.
    pub(crate) fn shared(&self) -> Shared {
        self.shared.clone()
    }

    fn publish(&self, changes: Vec<Change>) {
        for c in changes {
            // No subscriber is fine.
            let _ = self.changes.send(c);
        }
    }
}

/// Builds a snapshot of the applied state.
pub struct SnapshotBuilder {
    shared: Shared,
    db: Db,
    seq: Arc<AtomicU64>,
}

async fn store_snapshot(db: &Db, stored: &StoredSnapshot) -> Result<(), StorageError<NodeId>> {
    let bytes = postcard::to_allocvec(stored).map_err(|e| write_err(&e))?;
    db.snapshot
        .insert(KEY_CURRENT, bytes)
        .map_err(|e| write_err(&e))?;
    crate::db::flush(&db.db).await.map_err(|e| write_err(&e))?;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (data, last_applied, membership) = {
            let g = read(&self.shared);
            let data = postcard::to_allocvec(&*g).map_err(|e| read_err(&e))?;
            (data, g.last_applied, g.membership.clone())
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let stored = StoredSnapshot { meta, data };
        store_snapshot(&self.db, &stored).await?;
        tracing::debug!(snapshot = %stored.meta.snapshot_id, bytes = stored.data.len(), "built GCS snapshot");
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<NodeId>> {
        let g = read(&self.shared);
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut changes = Vec::new();
        let mut out = Vec::new();
        {
            let mut g = write(&self.shared);
            for entry in entries {
                let index = entry.log_id.index;
                g.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => out.push(BatchResponse::default()),
                    EntryPayload::Normal(batch) => {
                        let r = g.state.apply_batch(&batch, index, &mut changes);
                        out.push(BatchResponse(r));
                    }
                    EntryPayload::Membership(m) => {
                        g.state.apply_membership(&m, index, &mut changes);
                        g.membership = StoredMembership::new(Some(entry.log_id), m);
                        out.push(BatchResponse::default());
                    }
                }
            }
        }
        self.publish(changes);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            db: self.db.clone(),
            seq: self.snapshot_seq.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let mut decoded: SmData = postcard::from_bytes(&data).map_err(|e| read_err(&e))?;
        decoded.last_applied = meta.last_log_id;
        decoded.membership = meta.last_membership.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        store_snapshot(&self.db, &stored).await?;
        *write(&self.shared) = decoded;
        tracing::info!(snapshot = %meta.snapshot_id, "installed GCS snapshot");
        self.publish(vec![Change::reset()]);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(bytes) = self
            .db
            .snapshot
            .get(KEY_CURRENT)
            .map_err(|e| read_err(&e))?
        else {
            return Ok(None);
        };
        let stored: StoredSnapshot = postcard::from_bytes(&bytes).map_err(|e| read_err(&e))?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
