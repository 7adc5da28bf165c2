//! The node's member of the control store (raft-gcs). Until nodes join one
//! another, each node is a one-member group: the first node of a cluster
//! bootstraps it, and its function table lives in sled under the data dir.

use raft_gcs::{Gcs, NetError, NodeId, RpcFuture, Transport};
use std::sync::Arc;

/// A transport with nobody on the other end: a one-member group never calls it.
struct NoPeers;

impl Transport for NoPeers {
    fn call<'a>(
        &'a self,
        target: NodeId,
        _addr: &'a str,
        _rpc: raft_gcs::RaftRpc,
    ) -> RpcFuture<'a> {
        Box::pin(async move {
            Err(NetError::Unreachable(
                target,
                "this node has no peers".into(),
            ))
        })
    }
}

/// Opens (or reopens, keeping its log) the node's control store and makes it a one-member group.
pub async fn open(config: &crate::config::NodeConfig) -> anyhow::Result<Gcs> {
    let dir = config.data_dir.join("gcs");
    let gcs_config = raft_gcs::Config::new(NodeId(1), &dir).with_addr("local");
    let gcs = Gcs::open(gcs_config, Arc::new(NoPeers)).await?;
    gcs.bootstrap().await?;
    Ok(gcs)
}

/// The function table's key for a function id.
pub fn function_key(id: raynode_proto::FunctionId) -> raft_gcs::FunctionId {
    raft_gcs::FunctionId(id.0.to_vec())
}
