//! What nodes say to one another, over the swarm's request/response
//! protocols and gossip (postcard). The swarm bounds every message: a
//! request or reply on the RPC protocol at most `p2p`'s request limit, a
//! gossip message at most its gossip limit, a pull request at most `p2p`'s
//! object request limit (its frames use [`crate::frame`]'s prefix). The sender of
//! anything here is the peer the connection authenticated: no message names
//! its own sender.
//!
//! - [`PeerRequest`] on the RPC protocol: Raft, control-store writes
//!   forwarded to the leader, and batches of [`PeerMsg`] (tasks, results,
//!   object values) that the receiving core applies in order.
//! - [`PullRequest`] on an object stream: one chunk of a sealed object.
//! - [`Load`] on the gossip topic [`LOAD_TOPIC`] when it changes (at most
//!   about once a second) and now and then while it does not; its `node`
//!   must be its signed author's. A node also sends its load straight to a
//!   peer it has just heard of ([`PeerMsg::Load`]).

use crate::{ActorId, JobId, NodeId, ObjectId, Resources, TaskId, TaskSpec};
use serde::{Deserialize, Serialize};

/// Gossip topic of node load reports.
pub const LOAD_TOPIC: &str = "load";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum PeerRequest {
    /// An encoded `raft_gcs::RaftRpc`; answered by an encoded `RaftReply`.
    Raft(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Encoded control-store commands for the leader; answered by the
    /// encoded outcome (the control store's own types).
    GcsWrite(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Encoded [`PeerMsg`]s for the receiving core, applied in order;
    /// answered empty. Each is encoded alone so a batch is bounded in bytes.
    /// Their sender is the peer the connection authenticated.
    Msgs {
        #[cfg_attr(test, proptest(strategy = "crate::tests::byte_bufs()"))]
        msgs: Vec<serde_bytes::ByteBuf>,
    },
    /// The receiver's own rows of a cluster-wide state query; answered by
    /// the rows, encoded as the query's kind says.
    State(StateQuery),
    /// One of the receiver's logs; answered by the JSON a client gets, or
    /// an error (an encoded `Result<String, String>`).
    Logs(crate::LogQuery),
}

/// What a node asks every other node for when a client asks about the
/// whole cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum StateQuery {
    /// Its task table (postcard rows).
    Tasks,
    /// The actors living on it (JSON rows).
    Actors,
    /// Its object table (JSON rows).
    Objects,
    /// Its own stats (a JSON array of one row).
    Node,
}

/// Where a value is, as one node tells another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum WireValue {
    /// The object's layout bytes; `error` if the value is an error.
    Inline {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        error: bool,
    },
    /// Sealed in `holder`'s store, `size` bytes long: pull it from there.
    Stored { holder: NodeId, size: u64 },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum PeerMsg {
    /// Run this task for its owner (the sender); its arguments' values come along.
    Run(Box<RunTask>),
    /// A task run for the receiver ended: one value per return.
    Done {
        task: TaskId,
        results: Vec<(WireValue, Vec<ObjectId>)>,
    },
    /// Item `index` of a generator task run for the receiver, made before
    /// the task's `Done`.
    Item {
        task: TaskId,
        index: u32,
        value: WireValue,
        nested: Vec<ObjectId>,
    },
    /// Send me the value of this object you own once it is ready.
    /// `failed`: the holder you named before, which could not serve it.
    Subscribe {
        id: ObjectId,
        failed: Option<NodeId>,
    },
    /// The value of an object the receiver subscribed to.
    Value {
        id: ObjectId,
        value: WireValue,
        nested: Vec<ObjectId>,
    },
    /// The receiver may drop its copies of these objects: their owner has its own.
    Free { ids: Vec<ObjectId> },
    /// The sender cannot run this task of the receiver's soon (it is busier
    /// than the receiver's view of it): place it again.
    SpillBack { task: TaskId },
    /// Cancel a task the receiver runs for the sender (`ray.cancel`; with
    /// `force`, its worker is ended).
    Cancel { task: TaskId, force: bool },
    /// An actor of the receiver's that lives on the sender restarted there:
    /// it has used `restarts` of its budget.
    ActorRestarted { actor: ActorId, restarts: u32 },
    /// Lines a worker on the sender wrote while running work of the
    /// receiver's job `job` (as the receiver named it in [`RunTask`]).
    Output { job: JobId, output: crate::Output },
    /// Kill an actor that lives on the receiver.
    KillActor {
        actor: ActorId,
        no_restart: bool,
        why: KillReason,
    },
    /// The sender's load, sent straight to a peer that just joined (the
    /// gossip topic carries it only when it changes); its `node` must be
    /// the sender's.
    Load(Box<Load>),
}

/// Why an actor is killed, as the error of its calls says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum KillReason {
    /// `ray.kill`.
    RayKill,
    /// The driver of its job exited (it is not detached).
    DriverExited,
    /// The worker that created it died (it is not detached).
    OwnerDied,
}

impl KillReason {
    pub fn text(self) -> &'static str {
        match self {
            KillReason::RayKill => "killed by ray.kill",
            KillReason::DriverExited => "its driver exited",
            KillReason::OwnerDied => "its owner (the worker that created it) died",
        }
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RunTask {
    pub spec: TaskSpec,
    pub job: JobId,
    /// The pickled function, the first time the sender sends it to the receiver.
    #[serde(with = "serde_bytes")]
    pub function: Option<Vec<u8>>,
    /// The value of every argument reference, ready.
    pub args: Vec<(ObjectId, WireValue)>,
    /// Placement hops so far (the node bounds them).
    pub hops: u8,
    /// Runs so far; for an actor's constructor, the restarts its actor has
    /// used (one budget wherever the actor lives).
    pub attempt: u32,
}

/// One chunk of a sealed object, answered by the chunk's bytes after a
/// [`CHUNK_OK`] byte, or by [`CHUNK_ERROR`] and a message.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PullRequest {
    pub id: ObjectId,
    pub offset: u64,
    pub len: u32,
}

pub const CHUNK_OK: u8 = 0;
pub const CHUNK_ERROR: u8 = 1;

/// A node's load report: what it offers and what it has free.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Load {
    pub node: NodeId,
    pub peer: String,
    /// Its p2p addresses, each ending in `/p2p/<peer id>`.
    pub p2p_addrs: Vec<String>,
    /// Its TCP address for drivers, if it serves one.
    pub client_addr: Option<String>,
    /// Where its dashboard listens, if it serves one.
    pub dashboard_addr: Option<String>,
    pub total: Resources,
    pub available: Resources,
    /// Tasks waiting for resources on it.
    pub queued: u32,
}

/// Encodes a peer message or request (postcard).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("encoding plain data into a Vec cannot fail")
}

/// Decodes a peer message or request; any bytes give a value or an error.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}
