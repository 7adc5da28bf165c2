//! Identifiers, table rows, commands and responses of the control store.
//!
//! Everything here is plain data with serde: commands travel inside Raft log
//! entries, rows travel inside snapshots. Ids of functions, actors, jobs and
//! objects are opaque byte strings chosen by the node; node ids are `u64`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// A member of the cluster (also the Raft node id).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for NodeId {
    fn from(v: u64) -> Self {
        NodeId(v)
    }
}

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub Vec<u8>);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(&self.0))
            }
        }

        impl From<&[u8]> for $name {
            fn from(v: &[u8]) -> Self {
                $name(v.to_vec())
            }
        }
    };
}

byte_id!(
    /// Id of a registered function (the node uses the hash of its pickled bytes).
    FunctionId
);
byte_id!(
    /// Id of an actor.
    ActorId
);
byte_id!(
    /// Id of a job (one driver session).
    JobId
);
byte_id!(
    /// Id of a large object recorded in the object directory.
    ObjectId
);
byte_id!(
    /// Id of a placement group (the node's id bytes, opaque here).
    PlacementGroupId
);

/// Whether a node takes part in Raft, and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRole {
    /// Registered in the nodes table but not (yet) a Raft member.
    #[default]
    None,
    /// Receives the log, does not vote.
    Learner,
    /// Votes and may lead.
    Voter,
}

/// A row of the nodes table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Addresses the node can be reached at (multiaddrs or host:port).
    pub addrs: Vec<String>,
    /// Resource totals, e.g. `CPU -> 2.0`.
    pub resources: BTreeMap<String, f64>,
    /// Liveness as last reported to the store.
    pub alive: bool,
    /// Raft role, maintained from membership changes.
    pub role: RaftRole,
    /// Log index at which the node first appeared; smaller is longer-lived.
    pub since: u64,
}

/// Lifecycle of an actor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActorState {
    /// Created, not yet placed or started.
    #[default]
    Pending,
    /// Running on `node`.
    Alive,
    /// Its worker died; being restarted.
    Restarting,
    /// Gone for good.
    Dead,
}

/// A row of the actors table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ActorInfo {
    /// Optional unique name (`ray.get_actor`); the node may prefix a namespace.
    pub name: Option<String>,
    /// Opaque owner id (the creating worker or driver).
    pub owner: Vec<u8>,
    /// Node the actor runs on, once placed.
    pub node: Option<NodeId>,
    /// Current state.
    pub state: ActorState,
    /// Restarts so far.
    pub restarts: u32,
    /// Detached actors outlive their job.
    pub detached: bool,
    /// Opaque bytes a client needs to rebuild a handle to the actor.
    pub handle: Vec<u8>,
}

/// Lifecycle of a job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// The driver is connected.
    #[default]
    Running,
    /// The driver finished normally.
    Finished,
    /// The driver died or failed.
    Failed,
}

/// A row of the jobs table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// Node the driver is connected to.
    pub driver_node: NodeId,
    /// State of the job.
    pub state: JobState,
    /// Start time, milliseconds since the Unix epoch (writer's clock).
    pub start_ms: u64,
    /// End time, once ended.
    pub end_ms: Option<u64>,
    /// Opaque metadata (entrypoint, runtime env) chosen by the node.
    pub metadata: Vec<u8>,
}

/// A row of the object directory (large objects only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// Nodes holding a sealed copy.
    pub locations: BTreeSet<NodeId>,
    /// Size in bytes.
    pub size: u64,
    /// Opaque owner id.
    pub owner: Vec<u8>,
}

/// One entry of the bounded event log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number, increasing from 1, never reused.
    pub seq: u64,
    /// Time of the event, milliseconds since the Unix epoch (writer's clock).
    pub time_ms: u64,
    /// Node the event is about or came from.
    pub source: Option<NodeId>,
    /// Short machine-readable kind, e.g. `node_joined`.
    pub kind: String,
    /// Human-readable text.
    pub message: String,
}

/// One change to the control state. Commands are applied in log order on
/// every replica; they must be deterministic (times come from the writer).
/// Where a placement group stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementGroupState {
    /// Recorded; its bundles wait for nodes with room.
    #[default]
    Pending,
    /// Every bundle has its node, and holds its resources there.
    Created,
    /// Removed: its nodes free what its bundles held.
    Removed,
}

/// A placement group: bundles of resources reserved together, each on the
/// node chosen for it. The store checks that the bundles placed on a node
/// never add up to more than the node registered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlacementGroupInfo {
    pub name: Option<String>,
    pub namespace: String,
    /// What each bundle reserves.
    pub bundles: Vec<BTreeMap<String, f64>>,
    /// The placement strategy's name, opaque here.
    pub strategy: String,
    /// Outlives its job.
    pub detached: bool,
    /// Who made it (the creating node and job, opaque here).
    pub creator: Vec<u8>,
    pub state: PlacementGroupState,
    /// The node of each bundle, once created.
    pub nodes: Vec<NodeId>,
    /// Log index of its creation, then of its removal.
    pub since: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Command {
    /// Insert or update a node's addresses and resources; marks it alive.
    RegisterNode {
        id: NodeId,
        addrs: Vec<String>,
        resources: BTreeMap<String, f64>,
    },
    /// Record a node's liveness.
    SetNodeAlive {
        id: NodeId,
        alive: bool,
    },
    /// Remove a node; its object locations go with it.
    RemoveNode {
        id: NodeId,
    },
    /// Register a function. Functions are immutable: the same id with other
    /// bytes is refused with [`Response::Conflict`].
    RegisterFunction {
        id: FunctionId,
        body: Vec<u8>,
    },
    /// Create an actor. Refused if the id exists or the name is taken.
    CreateActor {
        id: ActorId,
        info: ActorInfo,
    },
    /// Update an actor's placement, state and restart count.
    UpdateActor {
        id: ActorId,
        node: Option<NodeId>,
        state: ActorState,
        restarts: u32,
    },
    /// Remove an actor and free its name.
    RemoveActor {
        id: ActorId,
    },
    /// Insert or replace a job.
    PutJob {
        id: JobId,
        info: JobInfo,
    },
    /// Record a copy of a large object on a node.
    AddObjectLocation {
        id: ObjectId,
        node: NodeId,
        size: u64,
        owner: Vec<u8>,
    },
    /// Forget one copy; the entry goes when no copy is left.
    RemoveObjectLocation {
        id: ObjectId,
        node: NodeId,
    },
    /// Forget an object entirely.
    RemoveObject {
        id: ObjectId,
    },
    /// Append to the bounded event log (`seq` is assigned by the store).
    AppendEvent {
        time_ms: u64,
        source: Option<NodeId>,
        kind: String,
        message: String,
    },
    /// Records a pending placement group; its name must be free among the
    /// groups not removed (of its namespace).
    CreatePlacementGroup {
        id: PlacementGroupId,
        info: PlacementGroupInfo,
    },
    /// Places a pending group: bundle `i` on `nodes[i]`. Refused with
    /// [`Response::Conflict`] (and nothing changed) when a node is unknown
    /// or dead, or its registered resources cannot hold its bundles on top
    /// of those of the created groups already there.
    PlacePlacementGroup {
        id: PlacementGroupId,
        nodes: Vec<NodeId>,
    },
    RemovePlacementGroup {
        id: PlacementGroupId,
    },
}

/// The outcome of one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    /// Applied.
    Ok,
    /// Nothing to change: the row was already exactly so (idempotent writes).
    Unchanged,
    /// The row named does not exist.
    NotFound,
    /// Refused because it contradicts existing state (immutable function with
    /// other bytes, duplicate actor id, taken name).
    Conflict(String),
    /// Refused without being applied: the entry was written by an unknown
    /// command version or could not be decoded.
    Rejected(String),
}

/// Names a table, for change notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Table {
    /// [`NodeInfo`] rows, keyed by `NodeId` (8 bytes, big-endian).
    Nodes,
    /// Function bodies, keyed by [`FunctionId`].
    Functions,
    /// [`ActorInfo`] rows, keyed by [`ActorId`].
    Actors,
    /// [`JobInfo`] rows, keyed by [`JobId`].
    Jobs,
    /// [`ObjectInfo`] rows, keyed by [`ObjectId`].
    Objects,
    /// The event log, keyed by `seq` (8 bytes, big-endian).
    Events,
    /// [`PlacementGroupInfo`] rows, keyed by [`PlacementGroupId`].
    PlacementGroups,
}

/// What happened to a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Inserted or updated.
    Upsert,
    /// Removed.
    Remove,
    /// The whole state was replaced (snapshot installed): re-read every table.
    Reset,
}

/// A change notification. For [`ChangeKind::Reset`] the table is
/// [`Table::Nodes`] and the key is empty: every table should be re-read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Table changed.
    pub table: Table,
    /// Key of the row changed.
    pub key: Vec<u8>,
    /// What happened.
    pub kind: ChangeKind,
}

impl Change {
    pub(crate) fn upsert(table: Table, key: Vec<u8>) -> Self {
        Change {
            table,
            key,
            kind: ChangeKind::Upsert,
        }
    }

    pub(crate) fn remove(table: Table, key: Vec<u8>) -> Self {
        Change {
            table,
            key,
            kind: ChangeKind::Remove,
        }
    }

    pub(crate) fn reset() -> Self {
        Change {
            table: Table::Nodes,
            key: Vec::new(),
            kind: ChangeKind::Reset,
        }
    }
}

/// Version of the command encoding written into log entries. An entry of any
/// other version is rejected on apply.
pub const COMMAND_VERSION: u16 = 1;

/// The application payload of one Raft log entry: a batch of commands.
/// Commands stay encoded so that an entry of an unknown version can still be
/// stored, replicated and rejected deterministically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// [`COMMAND_VERSION`] of the writer.
    pub version: u16,
    /// Event log capacity of the writer, applied when events are appended.
    pub event_capacity: u32,
    /// postcard-encoded `Vec<Command>`.
    pub commands: Vec<u8>,
}

impl Batch {
    /// Encode commands at the current version.
    pub fn encode(commands: &[Command], event_capacity: u32) -> Self {
        let commands =
            postcard::to_allocvec(commands).expect("encoding plain data into a Vec cannot fail");
        Batch {
            version: COMMAND_VERSION,
            event_capacity,
            commands,
        }
    }
}

/// The responses to one batch, in command order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse(pub Vec<Response>);

openraft::declare_raft_types!(
    /// openraft type configuration of the control store.
    pub TypeConfig:
        D = Batch,
        R = BatchResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft log id of this store.
pub type LogId = openraft::LogId<NodeId>;
/// A Raft log entry of this store.
pub type Entry = openraft::Entry<TypeConfig>;
/// Raft membership as stored.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
