//! Error families of the store, one per kind of operation.
//!
//! Errors a caller can act on (forward to the leader, retry later) are
//! variants of their own; [`WriteError::Stopped`] and friends mean this
//! member is shut down or failed and will not recover without reopening.

use std::path::PathBuf;

use crate::types::NodeId;

/// A leader hint: the leader's id and Raft address, when known.
pub type LeaderHint = Option<(NodeId, String)>;

/// A [`crate::Config`] that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is out of range.
    #[error("invalid raft-gcs config: {0}")]
    Invalid(String),
}

/// Opening a member from its data directory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or read.
    #[error("cannot open GCS data directory {path}: {reason}")]
    Storage { path: PathBuf, reason: String },
    /// The directory holds data that does not decode.
    #[error("GCS data directory {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The directory belongs to another cluster.
    #[error("GCS data directory {path} belongs to cluster {found:?}, not {expected:?}")]
    WrongCluster {
        path: PathBuf,
        found: String,
        expected: String,
    },
    /// The directory belongs to another member.
    #[error("GCS data directory {path} belongs to node {found}, not {expected}")]
    WrongNode {
        path: PathBuf,
        found: NodeId,
        expected: NodeId,
    },
    /// Raft refused to start on the stored state.
    #[error("GCS in {path} failed to start: {reason}")]
    Start { path: PathBuf, reason: String },
}

/// A write did not commit.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// This member is not the leader; forward to `leader` if known.
    #[error("not the GCS leader; leader is {leader:?}")]
    NotLeader { leader: LeaderHint },
    /// No commit within the configured time (no quorum reachable?).
    #[error("GCS write timed out")]
    Timeout,
    /// This member leads, but a quorum of voters has not answered it lately
    /// (it is cut off from them): the write is refused at once.
    #[error("the GCS leader cannot reach a quorum of voters")]
    NoQuorum,
    /// This member is shut down or failed.
    #[error("GCS member stopped: {0}")]
    Stopped(String),
}

/// A read could not be served.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Linearizable reads are served by the leader; forward to `leader`.
    #[error("not the GCS leader; leader is {leader:?}")]
    NotLeader { leader: LeaderHint },
    /// The leader could not confirm its leadership in time.
    #[error("GCS read timed out")]
    Timeout,
    /// This member is shut down or failed.
    #[error("GCS member stopped: {0}")]
    Stopped(String),
}

/// A membership operation (bootstrap, add learner, change voters) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// Only the leader changes membership; forward to `leader`.
    #[error("not the GCS leader; leader is {leader:?}")]
    NotLeader { leader: LeaderHint },
    /// Raft refused the change now (another change in progress, lagging
    /// learner, already initialized with other members); retry later.
    #[error("membership change refused: {0}")]
    Refused(String),
    /// No commit within the configured time.
    #[error("membership change timed out")]
    Timeout,
    /// This member is shut down or failed.
    #[error("GCS member stopped: {0}")]
    Stopped(String),
}

/// A Raft RPC could not be delivered or answered.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The target cannot be reached now.
    #[error("GCS peer {0} unreachable: {1}")]
    Unreachable(NodeId, String),
    /// Bytes on the wire did not decode or exceed the size bound.
    #[error("bad GCS RPC message: {0}")]
    Codec(String),
}
