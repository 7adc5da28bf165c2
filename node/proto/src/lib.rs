//! Wire types shared by the `raynode` node and its Python clients.
//!
//! - [`ids`]: fixed-size identifiers with hex display (and [`hex`], the
//!   one hex encoder).
//! - [`client`]: a client's blocking connection to its node (Python and
//!   the CLI).
//! - [`cluster_key`]: the cluster key file, where it is and what it holds.
//! - [`task`]: the task specification a client submits.
//! - [`msg`]: the frames a client and its node exchange.
//! - [`frame`]: the length-prefixed postcard codec with its size bound.
//! - [`meta`]: tags telling how a stored value's bytes are to be read.
//! - [`peer`]: what nodes say to one another.
//! - [`secure`]: the encrypted, authenticated client channel over TCP.
//! - [`session`]: the files through which drivers and `raynode stop` find
//!   the nodes `raynode start` left running on this machine.

pub mod client;
pub mod cluster_key;
pub mod frame;
pub mod ids;
pub mod meta;
pub mod msg;
pub mod peer;
pub mod secure;
pub mod session;
pub mod task;

pub use frame::{FrameError, MAX_FRAME_BYTES};
pub use ids::{
    hex, owner_tag, ActorId, FunctionId, JobId, NodeId, ObjectId, PlacementGroupId, TaskId,
    WorkerId,
};
pub use msg::{
    AckError, Execute, FromNode, InfoKind, LogQuery, LogTarget, MetricKind, Output, PutView,
    ReturnValue, Role, StoreError, StreamItem, ToNode, Value, OUTPUT_MARK, PROGRESS_MARK,
    PROTOCOL_VERSION, SOCKET_FILE,
};
pub use task::{
    group_resource, is_group_resource, ActorOptions, Arg, Bundles, Generator, GroupStrategy,
    PlacementGroupSpec, Resources, SchedulingStrategy, SpecError, TaskKind, TaskSpec,
    BUNDLE_MARKER_TOTAL, MAX_BUNDLES,
};

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
