//! An in-process [`Transport`] for tests and benchmarks.
//!
//! A [`Router`] knows the [`Gcs`] members of one process and hands each an
//! [`Endpoint`] bound to its id. Calls are encoded to bytes and decoded on
//! the other side, as over a real wire. Tests cut members off
//! ([`Router::partition`]), [`Router::heal`] them and remove members
//! ([`Router::remove`]) to simulate a crash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::NetError;
use crate::gcs::Gcs;
use crate::network::{RaftReply, RaftRpc, RpcFuture, Transport};
use crate::types::NodeId;

#[derive(Default)]
struct Table {
    members: HashMap<NodeId, Gcs>,
    /// Partition label per node; nodes with different labels cannot talk.
    side: HashMap<NodeId, u32>,
    next_side: u32,
    /// AppendEntries calls delivered to each member (heartbeats included).
    appends: HashMap<NodeId, u64>,
}

/// Routes RPCs between the members of one process.
#[derive(Clone, Default)]
pub struct Router {
    table: Arc<Mutex<Table>>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The transport for member `id`.
    pub fn endpoint(&self, id: NodeId) -> Arc<dyn Transport> {
        Arc::new(Endpoint {
            router: self.clone(),
            from: id,
        })
    }

    /// Make `gcs` reachable under its id (replacing an earlier instance).
    pub fn add(&self, gcs: Gcs) {
        self.lock().members.insert(gcs.id(), gcs);
    }

    /// Make `id` unreachable (as if crashed) and return its handle, if any.
    pub fn remove(&self, id: NodeId) -> Option<Gcs> {
        self.lock().members.remove(&id)
    }

    /// Cut `ids` off from everyone else (they can still talk among themselves).
    pub fn partition(&self, ids: &[NodeId]) {
        let mut t = self.lock();
        t.next_side += 1;
        let side = t.next_side;
        for id in ids {
            t.side.insert(*id, side);
        }
    }

    /// AppendEntries calls (replication and heartbeats) delivered to `id`
    /// so far.
    pub fn appends_to(&self, id: NodeId) -> u64 {
        self.lock().appends.get(&id).copied().unwrap_or(0)
    }

    /// Remove every partition.
    pub fn heal(&self) {
        self.lock().side.clear();
    }

    fn route(&self, from: NodeId, to: NodeId) -> Result<Gcs, NetError> {
        let t = self.lock();
        let side = |id| t.side.get(&id).copied().unwrap_or(0);
        if side(from) != side(to) {
            return Err(NetError::Unreachable(to, "partitioned".into()));
        }
        t.members
            .get(&to)
            .cloned()
            .ok_or_else(|| NetError::Unreachable(to, "no such member".into()))
    }
}

/// One member's view of the [`Router`].
pub struct Endpoint {
    router: Router,
    from: NodeId,
}

impl Transport for Endpoint {
    fn call<'a>(&'a self, target: NodeId, _addr: &'a str, rpc: RaftRpc) -> RpcFuture<'a> {
        Box::pin(async move {
            let target_gcs = self.router.route(self.from, target)?;
            if matches!(rpc, RaftRpc::AppendEntries(_)) {
                *self.router.lock().appends.entry(target).or_default() += 1;
            }
            let rpc = RaftRpc::from_bytes(&rpc.to_bytes()?)?;
            let reply = target_gcs.handle_rpc(rpc).await;
            // The link may have been cut while the call was in flight.
            self.router.route(self.from, target)?;
            RaftReply::from_bytes(&reply.to_bytes()?)
        })
    }
}
