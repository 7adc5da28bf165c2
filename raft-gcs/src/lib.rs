//! raft-gcs: the Global Control Store of raynode, replicated with Raft.
//!
//! The cluster's control state (nodes, functions, actors, jobs, placement
//! groups, the large object directory and a bounded event log) lives in a
//! Raft group (openraft) whose log, vote and snapshots are kept in sled
//! under each member's data directory. There is no fixed head: any member may lead.
//!
//! Parts and data flow:
//! - [`Gcs`] (`gcs.rs`) is the cloneable handle. A write
//!   ([`Gcs::write`], [`Gcs::write_batch`]) goes to the write batcher
//!   (`batcher.rs`), which packs concurrent writes into one log entry
//!   ([`Batch`]) and proposes it; a member that is not the leader answers
//!   [`WriteError::NotLeader`] with the leader's address so the caller can
//!   forward. Reads are served from the in-memory tables: [`Gcs::read_local`]
//!   at once, [`Gcs::read_linearizable`] after the leader confirms it leads.
//!   [`Gcs::subscribe`] streams a [`Change`] per touched row.
//! - `log_store.rs` stores the log and vote in sled; appends share fsyncs
//!   through one flusher task. `state_machine.rs` applies committed entries
//!   to the tables ([`State`], `state.rs`, pure and deterministic), builds
//!   snapshots, installs snapshots from the leader, and keeps the latest in
//!   sled, so the log is compacted and restarts replay only its tail.
//!   `groups.rs` applies the placement-group commands: names unique, and
//!   the bundles placed on a node never above what the node registered.
//!   `db.rs` opens the directory and refuses one of another cluster or node.
//! - `network.rs` defines the serializable [`RaftRpc`]/[`RaftReply`] and the
//!   [`Transport`] trait they travel through; the receiving member answers
//!   with [`Gcs::handle_rpc`]. [`inproc`] is a transport for tests.
//! - `membership.rs` is the membership policy, a pure function; `driver.rs`
//!   runs it on the leader: registered nodes join as learners, learners are
//!   promoted to reach [`Config::voters`] (odd), unreachable voters are
//!   replaced by the longest-lived learners.

mod batcher;
mod config;
mod db;
mod driver;
mod error;
mod gcs;
mod groups;
pub mod inproc;
mod log_store;
pub mod membership;
mod network;
mod state;
mod state_machine;
mod types;

pub use config::Config;
pub use error::{
    ConfigError, LeaderHint, MembershipError, NetError, OpenError, ReadError, WriteError,
};
pub use gcs::{Gcs, Status};
pub use log_store::LogStore;
pub use network::{RaftReply, RaftRpc, RpcFuture, Transport, MAX_RPC_BYTES};
pub use openraft::ServerState;
pub use state::{node_key, State};
pub use state_machine::StateMachine;
pub use types::{
    ActorId, ActorInfo, ActorState, Batch, BatchResponse, Change, ChangeKind, Command, Event,
    FunctionId, JobId, JobInfo, JobState, NodeId, NodeInfo, ObjectId, ObjectInfo, PlacementGroupId,
    PlacementGroupInfo, PlacementGroupState, RaftRole, Response, Table, TypeConfig,
    COMMAND_VERSION,
};

/// Open a bare log store and state machine on `dir` (for openraft's storage
/// conformance suite and tools; [`Gcs::open`] does this itself). Must be
/// called inside a tokio runtime.
pub fn open_storage(
    dir: &std::path::Path,
    cluster: &str,
    node: NodeId,
) -> Result<(LogStore, StateMachine), OpenError> {
    let db = db::Db::open(dir, cluster, node)?;
    let (changes, _) = tokio::sync::broadcast::channel(16);
    Ok((
        LogStore::open(db.clone())?,
        StateMachine::open(db, changes)?,
    ))
}
