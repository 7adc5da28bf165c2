//! The Raft log and vote in sled, with group flushing.
//!
//! `append` writes entries into the `log` tree and hands the completion
//! callback to one flusher task; the flusher drains every callback queued
//! behind the first, makes them durable with a single sled flush (fsync)
//! and completes them in order. Many appends thus share one fsync, and the
//! Raft core is not blocked while the disk works.

// StorageError is openraft's type; its size is not ours to change.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, StorageError, Vote};
use tokio::sync::mpsc;

use crate::db::{key_index, log_key, read_err, write_err, Db};
use crate::error::OpenError;
use crate::types::{Entry, LogId, NodeId, TypeConfig};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";

/// Callbacks waiting for a flush; bounded so a slow disk pushes back on the
/// Raft core.
const FLUSH_QUEUE: usize = 4096;

/// The sled-backed Raft log storage (also its own log reader).
#[derive(Clone)]
pub struct LogStore {
    db: Db,
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
}

impl LogStore {
    /// Open the log of `db`, checking that the stored records decode, and
    /// start its flusher task on the current tokio runtime.
    pub(crate) fn open(db: Db) -> Result<Self, OpenError> {
        let corrupt = |what: &str, e: String| OpenError::Corrupt {
            path: db.path.clone(),
            reason: format!("{what}: {e}"),
        };
        for key in [KEY_VOTE, KEY_COMMITTED, KEY_PURGED] {
            if let Some(v) = db
                .meta
                .get(key)
                .map_err(|e| corrupt("meta", e.to_string()))?
            {
                let ok = if key == KEY_VOTE {
                    postcard::from_bytes::<Vote<NodeId>>(&v).is_ok()
                } else {
                    postcard::from_bytes::<Option<LogId>>(&v).is_ok()
                };
                if !ok {
                    let name = String::from_utf8_lossy(key).into_owned();
                    return Err(corrupt(&name, "does not decode".into()));
                }
            }
        }
        if let Some(last) = db.log.last().map_err(|e| corrupt("log", e.to_string()))? {
            if postcard::from_bytes::<Entry>(&last.1).is_err() || key_index(&last.0).is_none() {
                return Err(corrupt("log", "last entry does not decode".into()));
            }
        }
        let (tx, rx) = mpsc::channel(FLUSH_QUEUE);
        tokio::spawn(flusher(db.db.clone(), rx));
        Ok(LogStore { db, flusher: tx })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match self.db.meta.get(key).map_err(|e| read_err(&e))? {
            None => Ok(None),
            Some(v) => postcard::from_bytes(&v).map(Some).map_err(|e| read_err(&e)),
        }
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = postcard::to_allocvec(value).map_err(|e| write_err(&e))?;
        self.db.meta.insert(key, bytes).map_err(|e| write_err(&e))?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StorageError<NodeId>> {
        crate::db::flush(&self.db.db)
            .await
            .map_err(|e| write_err(&e))?;
        Ok(())
    }
}

/// Complete queued append callbacks, one fsync per group.
async fn flusher(db: sled::Db, mut rx: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    let mut group = Vec::new();
    while let Some(first) = rx.recv().await {
        group.push(first);
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let res = crate::db::flush(&db)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()));
        if let Err(e) = &res {
            tracing::error!(error = %e, "GCS log flush failed");
        }
        for cb in group.drain(..) {
            let r = match &res {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            cb.log_io_completed(r);
        }
    }
}

fn range_keys<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(i) => Some(i.saturating_add(1)),
        Bound::Excluded(i) => Some(*i),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let (start, end) = range_keys(&range);
        let iter = match end {
            Some(end) if end <= start => return Ok(Vec::new()),
            Some(end) => self.db.log.range(log_key(start)..log_key(end)),
            None => self.db.log.range(log_key(start)..),
        };
        let mut out = Vec::new();
        for kv in iter {
            let (_, v) = kv.map_err(|e| read_err(&e))?;
            out.push(postcard::from_bytes::<Entry>(&v).map_err(|e| read_err(&e))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged: Option<LogId> = self.get_meta(KEY_PURGED)?.flatten();
        let last = match self.db.log.last().map_err(|e| read_err(&e))? {
            None => last_purged,
            Some((_, v)) => Some(
                postcard::from_bytes::<Entry>(&v)
                    .map_err(|e| read_err(&e))?
                    .log_id,
            ),
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(KEY_VOTE, vote)?;
        self.flush().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        // Made durable by the next flush; losing it only means replaying
        // a little more of the log on restart.
        self.put_meta(KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = postcard::to_allocvec(&entry).map_err(|e| write_err(&e))?;
            batch.insert(&log_key(entry.log_id.index), bytes);
        }
        self.db.log.apply_batch(batch).map_err(|e| write_err(&e))?;
        if let Err(mpsc::error::SendError(cb)) = self.flusher.send(callback).await {
            // The flusher is gone (runtime shutting down): flush inline.
            let res = self.flush().await;
            cb.log_io_completed(res.map_err(|e| std::io::Error::other(e.to_string())));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        for kv in self.db.log.range(log_key(log_id.index)..) {
            let (k, _) = kv.map_err(|e| read_err(&e))?;
            batch.remove(k);
        }
        self.db.log.apply_batch(batch).map_err(|e| write_err(&e))?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.put_meta(KEY_PURGED, &Some(log_id))?;
        let mut batch = sled::Batch::default();
        for kv in self.db.log.range(..=log_key(log_id.index)) {
            let (k, _) = kv.map_err(|e| read_err(&e))?;
            batch.remove(k);
        }
        self.db.log.apply_batch(batch).map_err(|e| write_err(&e))?;
        // Purged entries are covered by a snapshot; durability of their
        // removal can wait for the next flush.
        Ok(())
    }
}
