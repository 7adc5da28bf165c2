//! Keys of the node's entries in the control store (raft-gcs). The member
//! itself is opened and joined to the cluster by [`crate::cluster`].

/// The function table's key for a function id.
pub fn function_key(id: raynode_proto::FunctionId) -> raft_gcs::FunctionId {
    raft_gcs::FunctionId(id.0.to_vec())
}
