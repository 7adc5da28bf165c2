//! Raft RPC messages and the transport trait they travel through.
//!
//! A member sends [`RaftRpc`] through a [`Transport`] (libp2p in the node,
//! [`crate::inproc`] in tests); the receiving side passes it to
//! [`crate::Gcs::handle_rpc`] and sends back the [`RaftReply`]. Both are serde
//! enums with a bounded postcard encoding ([`RaftRpc::to_bytes`]) for
//! transports that carry opaque bytes. The adapter here turns openraft's
//! network calls into transport calls and records, per peer, when it last
//! answered: that is the liveness the membership policy sees.
//!
//! Heartbeats to learners are thinned. openraft sends every member a
//! heartbeat each `heartbeat_interval`, learners included; with every node
//! a learner, that is the leader's whole idle cost in a large cluster. A
//! learner needs a heartbeat only when it carries news (a new vote or
//! commit index) or to show it is still there, so a heartbeat to a learner
//! that repeats the last one it answered, within
//! `learner_heartbeat_interval`, is answered here as it answered before,
//! and not sent. Voters get every heartbeat: their election timers and the
//! leader's quorum checks depend on them.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, LogId, Vote};
use serde::{Deserialize, Serialize};

use crate::error::NetError;
use crate::types::{NodeId, TypeConfig};

/// Largest encoded RPC or reply accepted by [`RaftRpc::from_bytes`] and
/// [`RaftReply::from_bytes`]. Append batches and snapshot chunks stay well
/// below it.
pub const MAX_RPC_BYTES: usize = 64 * 1024 * 1024;

/// A Raft request from one member to another.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum RaftRpc {
    /// Replicate entries / heartbeat.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Ask for a vote.
    Vote(VoteRequest<NodeId>),
    /// One chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

impl RaftRpc {
    /// The RPC's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RaftRpc::AppendEntries(_) => "append_entries",
            RaftRpc::Vote(_) => "vote",
            RaftRpc::InstallSnapshot(_) => "install_snapshot",
        }
    }
}

/// The answer to a [`RaftRpc`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    /// Answer to [`RaftRpc::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to [`RaftRpc::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to [`RaftRpc::InstallSnapshot`].
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The receiver could not handle the request (shut down).
    Unavailable(String),
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, NetError> {
    let bytes = postcard::to_allocvec(v).map_err(|e| NetError::Codec(e.to_string()))?;
    if bytes.len() > MAX_RPC_BYTES {
        return Err(NetError::Codec(format!(
            "message of {} bytes exceeds {MAX_RPC_BYTES}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, NetError> {
    if bytes.len() > MAX_RPC_BYTES {
        return Err(NetError::Codec(format!(
            "message of {} bytes exceeds {MAX_RPC_BYTES}",
            bytes.len()
        )));
    }
    postcard::from_bytes(bytes).map_err(|e| NetError::Codec(e.to_string()))
}

impl RaftRpc {
    /// Encode for a byte transport.
    pub fn to_bytes(&self) -> Result<Vec<u8>, NetError> {
        encode(self)
    }

    /// Decode bytes from a byte transport (bounded by [`MAX_RPC_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NetError> {
        decode(bytes)
    }
}

impl RaftReply {
    /// Encode for a byte transport.
    pub fn to_bytes(&self) -> Result<Vec<u8>, NetError> {
        encode(self)
    }

    /// Decode bytes from a byte transport (bounded by [`MAX_RPC_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NetError> {
        decode(bytes)
    }
}

/// The future a [`Transport`] call returns.
pub type RpcFuture<'a> = Pin<Box<dyn Future<Output = Result<RaftReply, NetError>> + Send + 'a>>;

/// Carries Raft RPCs to other members. `addr` is the target's address as
/// recorded in the Raft membership (from [`crate::Gcs::add_learner`]).
pub trait Transport: Send + Sync + 'static {
    /// Deliver `rpc` to `target` and return its reply.
    fn call<'a>(&'a self, target: NodeId, addr: &'a str, rpc: RaftRpc) -> RpcFuture<'a>;
}

/// When each peer last answered an RPC from this member.
#[derive(Clone, Default)]
pub(crate) struct Contacts(Arc<Mutex<HashMap<NodeId, Instant>>>);

impl Contacts {
    fn touch(&self, id: NodeId) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.insert(id, Instant::now());
    }

    /// Time of the last answer from `id`, if any.
    pub fn last(&self, id: NodeId) -> Option<Instant> {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.get(&id).copied()
    }
}

/// The members that are learners in the latest membership this member
/// knows of (kept up to date by `Gcs::open` from the Raft metrics). Empty
/// until known, so that no heartbeat is ever thinned by mistake.
#[derive(Clone, Default)]
pub(crate) struct Learners(Arc<RwLock<BTreeSet<NodeId>>>);

impl Learners {
    pub fn set(&self, learners: BTreeSet<NodeId>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = learners;
    }

    fn contains(&self, id: NodeId) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }
}

/// openraft's network factory over a [`Transport`].
pub(crate) struct NetworkFactory {
    pub transport: Arc<dyn Transport>,
    pub contacts: Contacts,
    pub learners: Learners,
    pub learner_heartbeat: Duration,
    pub backoff: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            transport: self.transport.clone(),
            contacts: self.contacts.clone(),
            learners: self.learners.clone(),
            learner_heartbeat: self.learner_heartbeat,
            answered: None,
            backoff: self.backoff,
        }
    }
}

/// What a heartbeat says: the leader's vote, the last log entry the
/// target is known to hold and the commit index.
type Heartbeat = (Vote<NodeId>, Option<LogId<NodeId>>, Option<LogId<NodeId>>);

/// openraft's connection to one peer.
pub(crate) struct PeerClient {
    target: NodeId,
    addr: String,
    transport: Arc<dyn Transport>,
    contacts: Contacts,
    learners: Learners,
    learner_heartbeat: Duration,
    /// The last heartbeat the target answered with success, and when.
    answered: Option<(Heartbeat, Instant)>,
    backoff: Duration,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerClient {
    async fn send<E: std::error::Error>(
        &self,
        rpc: RaftRpc,
        option: &RPCOption,
    ) -> Result<RaftReply, RpcErr<E>> {
        let call = self.transport.call(self.target, &self.addr, rpc);
        let reply = match tokio::time::timeout(option.hard_ttl(), call).await {
            Err(_) => {
                let e = NetError::Unreachable(self.target, "timed out".into());
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Ok(Err(e @ NetError::Unreachable(..))) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Ok(Err(e)) => return Err(RPCError::Network(NetworkError::new(&e))),
            Ok(Ok(RaftReply::Unavailable(why))) => {
                let e = NetError::Unreachable(self.target, why);
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Ok(Ok(r)) => r,
        };
        self.contacts.touch(self.target);
        Ok(reply)
    }

    /// Whether `rpc` is a heartbeat to a learner that says nothing the
    /// learner has not answered within `learner_heartbeat`.
    fn needless(&self, rpc: &AppendEntriesRequest<TypeConfig>) -> bool {
        let Some((last, at)) = &self.answered else {
            return false;
        };
        rpc.entries.is_empty()
            && *last == (rpc.vote, rpc.prev_log_id, rpc.leader_commit)
            && at.elapsed() < self.learner_heartbeat
            && self.learners.contains(self.target)
    }

    fn unexpected<E: std::error::Error>(&self) -> RpcErr<E> {
        let e = NetError::Codec(format!(
            "peer {} sent a reply of the wrong kind",
            self.target
        ));
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        if self.needless(&rpc) {
            return Ok(AppendEntriesResponse::Success);
        }
        let heartbeat =
            rpc.entries
                .is_empty()
                .then_some((rpc.vote, rpc.prev_log_id, rpc.leader_commit));
        self.answered = None;
        match self.send(RaftRpc::AppendEntries(rpc), &option).await? {
            RaftReply::AppendEntries(Ok(r)) => {
                if let (AppendEntriesResponse::Success, Some(said)) = (&r, heartbeat) {
                    self.answered = Some((said, Instant::now()));
                }
                Ok(r)
            }
            RaftReply::AppendEntries(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self.send(RaftRpc::InstallSnapshot(rpc), &option).await? {
            RaftReply::InstallSnapshot(Ok(r)) => Ok(r),
            RaftReply::InstallSnapshot(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.send(RaftRpc::Vote(rpc), &option).await? {
            RaftReply::Vote(Ok(r)) => Ok(r),
            RaftReply::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(self.unexpected()),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
    use proptest::prelude::*;

    use super::*;
    use crate::types::{Batch, Command, Entry, FunctionId};

    fn append(term: u64, leader: u64, bodies: Vec<Vec<u8>>) -> RaftRpc {
        let lid = CommittedLeaderId::new(term, NodeId(leader));
        let entries = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Entry {
                log_id: LogId::new(lid, i as u64 + 1),
                payload: EntryPayload::Normal(Batch::encode(
                    &[Command::RegisterFunction {
                        id: FunctionId(vec![i as u8]),
                        body,
                    }],
                    10,
                )),
            })
            .collect();
        RaftRpc::AppendEntries(AppendEntriesRequest {
            vote: Vote::new_committed(term, NodeId(leader)),
            prev_log_id: None,
            entries,
            leader_commit: None,
        })
    }

    proptest! {
        #[test]
        fn rpcs_round_trip(term in 0u64..1000, leader in 0u64..100,
                           bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let rpc = append(term, leader, bodies);
            let back = RaftRpc::from_bytes(&rpc.to_bytes().expect("encode")).expect("decode");
            prop_assert_eq!(format!("{rpc:?}"), format!("{back:?}"));

            let vote = RaftRpc::Vote(VoteRequest::new(Vote::new(term, NodeId(leader)), None));
            let back = RaftRpc::from_bytes(&vote.to_bytes().expect("encode")).expect("decode");
            prop_assert_eq!(format!("{vote:?}"), format!("{back:?}"));

            let reply = RaftReply::Vote(Ok(VoteResponse::new(Vote::new(term, NodeId(leader)), None, true)));
            let back = RaftReply::from_bytes(&reply.to_bytes().expect("encode")).expect("decode");
            prop_assert_eq!(format!("{reply:?}"), format!("{back:?}"));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = RaftRpc::from_bytes(&bytes);
            let _ = RaftReply::from_bytes(&bytes);
        }
    }

    #[test]
    fn oversized_messages_are_refused() {
        let big = vec![0u8; MAX_RPC_BYTES + 1];
        assert!(matches!(RaftRpc::from_bytes(&big), Err(NetError::Codec(_))));
    }
}
