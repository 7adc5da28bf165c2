//! What nodes say to one another: the messages are `raynode_proto::peer`;
//! here are the node's own parts of them (the control store's write reply,
//! the hop limit).

pub use raynode_proto::peer::*;

/// The answer to [`PeerRequest::GcsWrite`]: the control store's responses.
pub type WriteReply = Result<Vec<raft_gcs::Response>, String>;

/// A task is sent back to its owner at most this many times.
pub use crate::engine::placement::MAX_HOPS;
