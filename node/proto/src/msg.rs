//! Frames between a node and its clients (drivers and workers).
//!
//! A client sends [`ToNode`] frames and receives [`FromNode`] frames over one
//! stream (Unix socket or TCP). Requests that need an answer carry a `req`
//! number chosen by the client; everything else is pipelined with no reply.

use crate::ids::{
    ActorId, FunctionId, JobId, NodeId, ObjectId, PlacementGroupId, TaskId, WorkerId,
};
use crate::task::{PlacementGroupSpec, TaskSpec};
use serde::{Deserialize, Serialize};

/// The node's Unix socket for local clients, in its data dir.
pub const SOCKET_FILE: &str = "node.sock";

/// Bumped on any incompatible change to these frames.
pub const PROTOCOL_VERSION: u32 = 8;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Role {
    Driver { pid: u32 },
    Worker { worker: WorkerId },
}

/// Where a value lives, as sent to a client that asked for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Value {
    /// The object's layout bytes, inline.
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A sealed object in this node's shared-memory store: its file, which
    /// holds it as long as the object's id is in the file's header (files
    /// are reused once freed).
    Store {
        path: String,
        size: u64,
        id: ObjectId,
    },
}

/// A task result reported by the worker that ran it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ReturnValue {
    Inline {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        nested: Vec<ObjectId>,
    },
    /// Written by the worker into the store object it created for this id.
    Stored { nested: Vec<ObjectId> },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ToNode {
    /// A connection's first frame. Over TCP it is the first message of
    /// the client channel (`secure`), which proved the cluster key already;
    /// the Unix socket is owner-only.
    Hello {
        version: u32,
        role: Role,
    },
    RegisterFunction {
        id: FunctionId,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    Submit(TaskSpec),
    /// A small object made by `put`, inline.
    Put {
        id: ObjectId,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        nested: Vec<ObjectId>,
    },
    /// Reserve a store object of `size` bytes; answered by `Created`.
    Create {
        req: u64,
        id: ObjectId,
        size: u64,
    },
    /// The store object made by `Create` is written: make it visible.
    Seal {
        id: ObjectId,
        nested: Vec<ObjectId>,
    },
    Get {
        req: u64,
        ids: Vec<ObjectId>,
        timeout_ms: Option<u64>,
    },
    Wait {
        req: u64,
        ids: Vec<ObjectId>,
        num_returns: u32,
        timeout_ms: Option<u64>,
    },
    /// References gained and lost by this client since its last report.
    Refs {
        add: Vec<ObjectId>,
        remove: Vec<ObjectId>,
    },
    Cancel {
        id: ObjectId,
        force: bool,
    },
    KillActor {
        actor: ActorId,
        no_restart: bool,
    },
    GetActor {
        req: u64,
        name: String,
        namespace: String,
    },
    /// Cluster state as JSON: nodes, total and available resources.
    Info {
        req: u64,
        what: InfoKind,
    },
    /// A log of `node` (this one if `None`): answered by `Info` with
    /// `{"path", "text", "end"}`, or by `Error`.
    Logs {
        req: u64,
        node: Option<NodeId>,
        query: LogQuery,
    },
    /// Worker only: a task finished (or raised; the error is a value).
    TaskDone {
        task: TaskId,
        results: Vec<ReturnValue>,
        app_error: bool,
        /// When the task raised: the exception's type and message, for the
        /// task table (the value itself is in `results`).
        error: Option<String>,
    },
    /// Worker only: a generator task made its item `index` (from 1), ahead
    /// of the `TaskDone` that ends it.
    Yield {
        task: TaskId,
        index: u32,
        value: ReturnValue,
    },
    /// Takes item `index` of the generator task `task` this client
    /// submitted, waiting up to `timeout_ms` for it, and with it up to
    /// `max - 1` more items that are ready after it; answered by `Item`.
    NextItem {
        req: u64,
        task: TaskId,
        index: u32,
        max: u32,
        timeout_ms: Option<u64>,
    },
    /// Defines a user metric (`raynode.util.metrics`) on this node, if it
    /// is not defined yet; pipelined, refused with a warning if bad.
    DefineMetric {
        name: String,
        kind: MetricKind,
        description: String,
        boundaries: Vec<f64>,
    },
    /// Records a value of a user metric under sorted (key, value) tags.
    RecordMetric {
        name: String,
        tags: Vec<(String, String)>,
        value: f64,
    },
    /// Worker only: an actor's constructor finished; `error` is the traceback if it raised.
    ActorReady {
        actor: ActorId,
        error: Option<String>,
    },
    /// Driver only, right after the welcome: this client cannot map the
    /// node's shared memory (it runs on another machine), so values come
    /// inline in `Got` and large puts arrive inline too.
    NoSharedMemory,
    /// Like `Submit`, answered by `Acked`: for calls whose refusal the
    /// caller must learn at once (an actor name already taken).
    SubmitAcked {
        req: u64,
        spec: TaskSpec,
    },
    /// Records a placement group in the control store and reserves its
    /// bundles as soon as nodes have room; answered by `Acked` once it is
    /// recorded (a name already taken is refused).
    CreatePlacementGroup {
        req: u64,
        group: PlacementGroupSpec,
    },
    /// Removes a placement group: its bundles' resources are freed and the
    /// actors and tasks in them end. Answered by `Acked`.
    RemovePlacementGroup {
        req: u64,
        id: PlacementGroupId,
    },
}

/// The kinds of user metrics, as Ray's `ray.util.metrics` has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum MetricKind {
    /// Adds every value recorded.
    Counter,
    /// Keeps the last value recorded.
    Gauge,
    /// Counts values into buckets.
    Histogram,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum InfoKind {
    Nodes,
    ClusterResources,
    AvailableResources,
    Timeline,
    /// Live named actors of every namespace: `[{"name", "namespace"}]`.
    NamedActors,
    /// Every placement group the control store holds, by id.
    PlacementGroups,
    /// The jobs table: one row per driver connection of the cluster.
    Jobs,
    /// The cluster's event log, oldest first.
    Events,
    /// The task tables of every node, merged: `{"rows", "missing"}`, as
    /// are the three below.
    Tasks,
    /// The actors living on every node.
    Actors,
    /// The object tables of every node.
    Objects,
    /// Every node's own stats (dead nodes too, marked so).
    NodeStats,
}

/// Which log a client asks a node for, and which part of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LogQuery {
    pub target: LogTarget,
    /// A worker's stderr rather than its stdout.
    pub stderr: bool,
    /// Lines from the end, when `offset` is `None`.
    pub tail: u32,
    /// Everything from this byte on (to follow a log).
    pub offset: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum LogTarget {
    /// The node's own log.
    Node,
    /// A worker, by its number on its node.
    Worker(u64),
    /// A worker, by its process id.
    Pid(u32),
    /// The worker an actor lives in.
    Actor(ActorId),
}

impl InfoKind {
    /// Every kind with its name, as clients (the Python package, the CLI)
    /// ask for it.
    pub const ALL: [(&'static str, InfoKind); 12] = [
        ("nodes", InfoKind::Nodes),
        ("cluster_resources", InfoKind::ClusterResources),
        ("available_resources", InfoKind::AvailableResources),
        ("timeline", InfoKind::Timeline),
        ("named_actors", InfoKind::NamedActors),
        ("placement_groups", InfoKind::PlacementGroups),
        ("jobs", InfoKind::Jobs),
        ("events", InfoKind::Events),
        ("tasks", InfoKind::Tasks),
        ("actors", InfoKind::Actors),
        ("objects", InfoKind::Objects),
        ("node_stats", InfoKind::NodeStats),
    ];

    pub fn from_name(name: &str) -> Option<InfoKind> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Execute {
    pub spec: TaskSpec,
    pub job: JobId,
    /// The function's pickled body, sent the first time this worker needs it.
    #[serde(with = "serde_bytes")]
    pub function_body: Option<Vec<u8>>,
    /// Every argument's value, in the order of `spec.args`.
    pub args: Vec<Value>,
    /// 0 on the first run, then 1, 2, ... on retries and actor restarts.
    pub attempt: u32,
    /// The GPUs (indexes on this node) the task or actor holds.
    pub gpu_ids: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum FromNode {
    Welcome {
        node: NodeId,
        job: JobId,
        store_root: String,
        inline_limit: u64,
    },
    Created {
        req: u64,
        result: Result<String, StoreError>,
    },
    /// Values in the order asked, or `None` for all of them on timeout.
    Got {
        req: u64,
        values: Option<Vec<Value>>,
    },
    /// The first values of a get, in order, ahead of the `Got` that ends
    /// it: a reply too large for one frame comes in several.
    GotPart {
        req: u64,
        values: Vec<Value>,
    },
    /// Indexes (into the request's ids) of every ready object, in order
    /// (possibly more than the `num_returns` asked for).
    Waited {
        req: u64,
        ready: Vec<u32>,
    },
    ActorFound {
        req: u64,
        found: Option<(ActorId, Vec<u8>)>,
    },
    Info {
        req: u64,
        json: String,
    },
    Acked {
        req: u64,
        error: Option<AckError>,
    },
    /// Worker only: run this task (or actor constructor / method).
    Execute(Box<Execute>),
    /// Worker only: stop the running task `task` (a `ray.cancel`).
    Cancel {
        task: TaskId,
    },
    /// The answer to `NextItem`.
    Item {
        req: u64,
        item: StreamItem,
    },
    /// A request could not be served.
    Error {
        req: u64,
        message: String,
    },
    /// Driver only: lines that a worker running this driver's work wrote,
    /// on this node or another.
    Output(Output),
}

/// What a generator's next item is, as `NextItem` asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum StreamItem {
    /// The items' objects, in order, from the one asked for (or, after a
    /// task that failed as a whole, its end, which holds the error): the
    /// asking client now holds them.
    Ready(Vec<ObjectId>),
    /// The task ended with no item at this index.
    End,
    /// Not made within the timeout.
    Pending,
}

/// A worker writes this, then the task's id in hex and a newline, to its
/// stdout and stderr before each piece of work: the node gives the lines
/// that follow to that work's driver, however late they arrive.
pub const OUTPUT_MARK: &str = "\u{1e}raynode-task ";

/// A line of a task's stdout that starts with this is a progress bar's
/// state (`raynode.experimental.tqdm_ray`), drawn by the driver as a bar.
pub const PROGRESS_MARK: &str = "\u{1e}raynode-bar ";

/// Lines a worker wrote to its stdout or stderr, for the driver whose work
/// it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Output {
    /// Who wrote them, as a driver shows it: `f pid=12, ip=10.0.0.5` (the
    /// function's or actor class's name, the worker's pid, its node's ip).
    pub source: String,
    pub stderr: bool,
    pub lines: Vec<String>,
}

impl FromNode {
    /// The request a reply answers; `None` for what is not a reply (work
    /// sent to a worker, the welcome).
    pub fn req(&self) -> Option<u64> {
        match self {
            FromNode::Created { req, .. }
            | FromNode::Got { req, .. }
            | FromNode::GotPart { req, .. }
            | FromNode::Waited { req, .. }
            | FromNode::ActorFound { req, .. }
            | FromNode::Info { req, .. }
            | FromNode::Acked { req, .. }
            | FromNode::Item { req, .. }
            | FromNode::Error { req, .. } => Some(*req),
            FromNode::Welcome { .. }
            | FromNode::Execute(_)
            | FromNode::Cancel { .. }
            | FromNode::Output(_) => None,
        }
    }
}

/// Why the store refused to create an object; each maps to one Python
/// exception.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum StoreError {
    /// No room, even after spilling what can be spilled, or larger than
    /// the whole store (Python: `ObjectStoreFullError`, as Ray).
    Full(String),
    /// Anything else (Python: the node's error).
    Failed(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Full(m) | StoreError::Failed(m) => f.write_str(m),
        }
    }
}

/// Why a `SubmitAcked` was refused; each maps to one Python exception.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum AckError {
    /// A live actor already has the name (Python: `ValueError`, as Ray).
    NameTaken(String),
    /// The control store has no quorum, so the name could not be recorded
    /// (Python: a `RaySystemError` subclass).
    NoQuorum(String),
    /// Anything else the node refused.
    Refused(String),
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckError::NameTaken(m) | AckError::NoQuorum(m) | AckError::Refused(m) => f.write_str(m),
        }
    }
}

/// A [`ToNode::Put`] frame's body read in place: the value borrowed from
/// the frame, so a large put can be written where it goes with no copy.
#[derive(Debug, Deserialize)]
pub struct PutView<'a> {
    pub id: ObjectId,
    #[serde(borrow)]
    pub bytes: &'a [u8],
    pub nested: Vec<ObjectId>,
}

/// Index of [`ToNode::Put`] among the variants, its first byte on the wire.
const PUT_VARIANT: u8 = 3;

impl<'a> PutView<'a> {
    /// The put in a frame body, if the body is one.
    pub fn of(body: &'a [u8]) -> Option<PutView<'a>> {
        match body.split_first() {
            Some((&PUT_VARIANT, rest)) => postcard::from_bytes(rest).ok(),
            _ => None,
        }
    }
}
