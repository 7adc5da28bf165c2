//! How the node's ids become keys of the control store (raft-gcs), and
//! back: each conversion is written here once.
//!
//! The control store keeps ids as opaque bytes, except a member's Raft id,
//! which is a number: the first 8 bytes of the node id, big-endian.

use raynode_proto::{ActorId, FunctionId, JobId, NodeId, ObjectId, PlacementGroupId};

/// A node's id as a member of the Raft group.
pub fn raft_id(node: NodeId) -> raft_gcs::NodeId {
    let mut head = [0u8; 8];
    head.copy_from_slice(&node.0[..8]);
    raft_gcs::NodeId(u64::from_be_bytes(head))
}

/// The functions table's key.
pub fn function_key(id: FunctionId) -> raft_gcs::FunctionId {
    raft_gcs::FunctionId(id.0.to_vec())
}

/// The actors table's key.
pub fn actor_key(id: ActorId) -> raft_gcs::ActorId {
    raft_gcs::ActorId(id.0.to_vec())
}

/// The object directory's key.
pub fn object_key(id: ObjectId) -> raft_gcs::ObjectId {
    raft_gcs::ObjectId(id.0.to_vec())
}

/// The placement groups table's key.
pub fn group_key(id: PlacementGroupId) -> raft_gcs::PlacementGroupId {
    raft_gcs::PlacementGroupId(id.0.to_vec())
}

/// A placement group's id from its key, if the key is one.
pub fn group_of(key: &raft_gcs::PlacementGroupId) -> Option<PlacementGroupId> {
    PlacementGroupId::from_slice(&key.0)
}

/// The jobs table's key of a node's job, as it is shown (the ids' own hex):
/// job numbers are per node, so the node's id comes first.
pub fn job_key(node: NodeId, job: JobId) -> raft_gcs::JobId {
    raft_gcs::JobId(format!("{node}{job}").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_id_is_the_node_ids_head() {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        id[8..].fill(0xff);
        assert_eq!(raft_id(NodeId(id)), raft_gcs::NodeId(0x0102_0304_0506_0708));
    }

    #[test]
    fn a_group_key_turns_back_into_its_group() {
        let group = PlacementGroupId([7; PlacementGroupId::LEN]);
        assert_eq!(group_of(&group_key(group)), Some(group));
        assert_eq!(group_of(&raft_gcs::PlacementGroupId(vec![1, 2])), None);
    }
}
