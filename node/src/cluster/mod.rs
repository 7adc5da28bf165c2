//! The node's place in the cluster: the swarm, the control store's Raft
//! member on top of it, and the traffic between nodes.
//!
//! - [`start`] loads the node's identity (data dir) and the cluster key,
//!   starts the swarm (joining through `--join`), opens the control store
//!   with a Raft transport over the swarm, bootstraps a new cluster or
//!   registers with an existing one, and starts the dispatcher.
//! - The dispatcher turns the swarm's events into work: Raft RPCs go to the
//!   control store, forwarded writes to the leader, chunk pulls to the
//!   object store, and everything about tasks and objects to the core as
//!   [`Event`]s, in the order each peer sent it.
//! - [`Cluster::outbox`] gives the core an ordered, batching channel to a peer.
//! - `keys.rs` turns the node's ids into the control store's keys.
//! - `pull.rs` copies a sealed object from a peer's store into ours.

pub mod keys;
mod pull;
pub mod wire;

use keys::raft_id;
pub use pull::{pull, PullError};

use crate::config::NodeConfig;
use crate::core::Event;
use anyhow::Context;
use p2p::{Multiaddr, PeerId, Protocol};
use raft_gcs::{Command, Gcs, NetError, RaftReply, RaftRpc, Response, RpcFuture, Transport};
use raynode_proto::NodeId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument;
use wire::{PeerMsg, PeerRequest, WriteReply};

/// Longest pause between two attempts of a control-store write.
const WRITE_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Why a control-store write did not commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteFailed {
    /// No leader with a quorum of voters answered within the write timeout:
    /// too many voters are down, or this node is cut off from them.
    #[error(
        "the control store has no quorum: the write did not commit within {:.1} s ({last})",
        .waited.as_secs_f64()
    )]
    NoQuorum { waited: Duration, last: String },
}

/// Tries of a batch of peer messages after the first (pauses of 0.1 s,
/// doubling: about 3 s in all) before its peer counts as unreachable.
const SEND_ATTEMPTS: u32 = 5;

/// A batch of peer messages is sent once it holds this many bytes.
const BATCH_BYTES: usize = 4 << 20;
const BATCH_MSGS: usize = 512;

/// The node's handles on the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pub p2p: p2p::Handle,
    pub gcs: Gcs,
    pub node_id: NodeId,
    pub peer_id: PeerId,
    /// Listen addresses ending in `/p2p/<peer id>`.
    pub p2p_addrs: Vec<String>,
    /// The pre-shared key of the TCP client channel, from the cluster key.
    pub client_psk: [u8; 32],
    /// How long [`Cluster::write`] tries before it gives up.
    pub write_timeout: Duration,
}

/// A node's 16-byte id: the tail of its peer id (its public key), so it
/// stays the same across restarts from one data dir.
pub fn node_id_of(peer: &PeerId) -> NodeId {
    let bytes = peer.to_bytes();
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[bytes.len() - 16..]);
    NodeId(id)
}

/// The peer id at the end of a `/p2p/` multiaddr.
pub fn peer_of(addr: &str) -> Option<PeerId> {
    let addr: Multiaddr = addr.parse().ok()?;
    p2p::split_peer_id(&addr).1
}

fn listen_addr(input: &str) -> anyhow::Result<Multiaddr> {
    p2p::parse_join_addr(input).with_context(|| format!("--listen {input:?}"))
}

/// Joins or starts the cluster. `core` receives what peers send.
pub async fn start(
    config: &NodeConfig,
    core: mpsc::Sender<Event>,
    store: objstore::Store,
) -> anyhow::Result<Cluster> {
    let identity = p2p::load_or_create_identity(&config.data_dir)?;
    let key = p2p::load_or_create_cluster_key(config.cluster_key.as_deref())?;
    let mut join = Vec::new();
    for input in &config.join {
        join.push(p2p::parse_join_addr(input).with_context(|| format!("--join {input:?}"))?);
    }
    let fingerprint = key.fingerprint();
    let client_psk = raynode_proto::secure::psk(key.bytes());
    let p2p_config = p2p::Config::new(identity, key)
        .with_listen(vec![listen_addr(&config.listen)?])
        .with_bootstrap(join);
    let started = p2p::spawn(p2p_config).await?;
    let peer_id = started.peer_id;
    let node_id = node_id_of(&peer_id);
    let p2p_addrs: Vec<String> = started.join_addrs().iter().map(|a| a.to_string()).collect();
    let raft_addr = p2p_addrs
        .iter()
        .find(|a| !a.starts_with("/ip4/0.0.0.0"))
        .or(p2p_addrs.first())
        .cloned()
        .context("the swarm listens on no address")?;

    let mut gcs_config = raft_gcs::Config::new(raft_id(node_id), config.data_dir.join("gcs"))
        .with_addr(raft_addr.clone())
        .with_cluster(fingerprint);
    gcs_config.voters = config.gcs_voters;
    let transport = Arc::new(SwarmTransport {
        p2p: started.handle.clone(),
    });
    let gcs = Gcs::open(gcs_config, transport).await?;
    let cluster = Cluster {
        p2p: started.handle.clone(),
        gcs,
        node_id,
        peer_id,
        p2p_addrs,
        client_psk,
        write_timeout: config.gcs_write_timeout,
    };
    if let Err(e) = cluster.p2p.subscribe(wire::LOAD_TOPIC).await {
        anyhow::bail!("subscribing to load gossip: {e}");
    }
    tokio::spawn(pull::accept(started.object_streams, store));
    tokio::spawn(dispatch(cluster.clone(), started.events, core));
    if config.join.is_empty() {
        cluster.gcs.bootstrap().await?;
    }
    let register = Command::RegisterNode {
        id: raft_id(node_id),
        addrs: vec![raft_addr],
        resources: config.total_resources().0.into_iter().collect(),
    };
    cluster.write_in_background(vec![register], "registering this node");
    Ok(cluster)
}

impl Cluster {
    /// Commits control-store commands, forwarding them to the leader when
    /// this member is not it; retries while a leader is being elected, for
    /// at most the write timeout (`--gcs-write-timeout`), so a write that
    /// cannot reach a quorum fails in bounded time.
    pub async fn write(&self, commands: Vec<Command>) -> Result<Vec<Response>, WriteFailed> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.write_timeout;
        let mut last = String::from("no attempt");
        for attempt in 0u32.. {
            if attempt > 0 {
                let backoff = Duration::from_millis(50 * u64::from(attempt.min(4)));
                if tokio::time::Instant::now() + backoff >= deadline {
                    break;
                }
                tokio::time::sleep(backoff).await;
            }
            match tokio::time::timeout_at(deadline, self.write_once(&commands, true)).await {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) => last = e,
                Err(_) => break,
            }
        }
        Err(WriteFailed::NoQuorum {
            waited: started.elapsed(),
            last,
        })
    }

    /// Commits commands in the background, trying again (with a growing
    /// pause) until they commit or the node stops: for writes the node
    /// needs to happen but nobody waits for, such as its own registration.
    pub fn write_in_background(&self, commands: Vec<Command>, what: &'static str) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                match cluster.write(commands.clone()).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!("{what} in the control store failed, trying again: {e}")
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(WRITE_BACKOFF_MAX);
            }
        });
    }

    /// One attempt: commit here if leading, else forward to the leader (or,
    /// with `any_peer` and no leader known, to any peer, which forwards it
    /// to the leader it knows).
    async fn write_once(
        &self,
        commands: &[Command],
        any_peer: bool,
    ) -> Result<Vec<Response>, String> {
        let leader = match self.gcs.write_batch(commands.to_vec()).await {
            Ok(r) => return Ok(r),
            Err(raft_gcs::WriteError::NotLeader { leader }) => leader,
            Err(e) => return Err(e.to_string()),
        };
        let mut target = leader
            .and_then(|(_, addr)| peer_of(&addr))
            .filter(|p| *p != self.peer_id);
        if target.is_none() && any_peer {
            // A random one each attempt: the first in a fixed order may be
            // a peer that knows no leader either, attempt after attempt.
            let peers = self.p2p.connected_peers().await;
            if !peers.is_empty() {
                target = Some(peers[rand::random::<usize>() % peers.len()]);
            }
        }
        let peer = target.ok_or("no GCS leader is known yet")?;
        let request = wire::encode(&PeerRequest::GcsWrite(wire::encode(&commands)));
        let reply = self
            .p2p
            .request(peer, Protocol::Rpc, request)
            .await
            .map_err(|e| format!("forwarding a GCS write to {peer}: {e}"))?;
        wire::decode::<WriteReply>(&reply)?
    }

    /// An ordered channel to `peer`: messages go out in batches, in order.
    /// A batch the peer does not take is sent again a few times; if it
    /// still fails, the core hears that the peer is unreachable (so the
    /// work sent there is placed again) and the outbox closes.
    pub fn outbox(
        &self,
        peer: PeerId,
        core: mpsc::Sender<Event>,
    ) -> mpsc::UnboundedSender<PeerMsg> {
        let (tx, mut rx) = mpsc::unbounded_channel::<PeerMsg>();
        let p2p = self.p2p.clone();
        let span = tracing::debug_span!("peer", peer = %node_id_of(&peer));
        tokio::spawn(async move {
            let mut next = None;
            loop {
                let first = match next.take() {
                    Some(m) => m,
                    None => match rx.recv().await {
                        Some(m) => wire::encode(&m),
                        None => return,
                    },
                };
                let mut bytes = first.len();
                let mut msgs = vec![serde_bytes::ByteBuf::from(first)];
                while msgs.len() < BATCH_MSGS && bytes < BATCH_BYTES {
                    let Ok(m) = rx.try_recv() else { break };
                    let m = wire::encode(&m);
                    if bytes + m.len() > BATCH_BYTES {
                        next = Some(m);
                        break;
                    }
                    bytes += m.len();
                    msgs.push(serde_bytes::ByteBuf::from(m));
                }
                let batch = PeerRequest::Msgs { msgs };
                let mut attempt = 0u32;
                loop {
                    // Encoded afresh for each attempt: no copy kept for
                    // retries on the path where the first send succeeds.
                    let request = wire::encode(&batch);
                    match p2p.request(peer, Protocol::Rpc, request).await {
                        Ok(_) => break,
                        // The core dropped this outbox (it took the peer
                        // for lost already): nothing more to report.
                        Err(_) if rx.is_closed() => return,
                        Err(e) if attempt < SEND_ATTEMPTS => {
                            tracing::debug!(%peer, attempt, "sending to a peer failed, trying again: {e}");
                            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                            attempt += 1;
                        }
                        Err(e) => {
                            tracing::warn!(%peer, "messages to a peer could not be delivered: {e}");
                            let _ = core.send(Event::PeerUnreachable(peer)).await;
                            return;
                        }
                    }
                }
            }
        }.instrument(span));
        tx
    }
}

/// Raft RPCs over the swarm: the target's Raft address ends in its peer id.
struct SwarmTransport {
    p2p: p2p::Handle,
}

impl Transport for SwarmTransport {
    fn call<'a>(&'a self, target: raft_gcs::NodeId, addr: &'a str, rpc: RaftRpc) -> RpcFuture<'a> {
        let span = tracing::debug_span!("raft_rpc", to = target.0, rpc = rpc.kind());
        Box::pin(
            async move {
                let peer = peer_of(addr).ok_or_else(|| {
                    NetError::Unreachable(target, format!("no peer id in its address {addr}"))
                })?;
                let request = wire::encode(&PeerRequest::Raft(rpc.to_bytes()?));
                let reply = self
                    .p2p
                    .request(peer, Protocol::Rpc, request)
                    .await
                    .map_err(|e| NetError::Unreachable(target, e.to_string()))?;
                RaftReply::from_bytes(&reply)
            }
            .instrument(span),
        )
    }
}

/// Hands a peer's request to the core (the event `ask` makes around the
/// reply channel) and answers the peer once the core has, without holding
/// up the dispatcher. False once the core is gone.
async fn core_answers(
    cluster: &Cluster,
    core: &mpsc::Sender<Event>,
    ask: impl FnOnce(tokio::sync::oneshot::Sender<Vec<u8>>) -> Event,
    responder: p2p::Responder,
) -> bool {
    let (reply, answer) = tokio::sync::oneshot::channel();
    if core.send(ask(reply)).await.is_err() {
        return false;
    }
    let p2p = cluster.p2p.clone();
    tokio::spawn(async move {
        if let Ok(bytes) = answer.await {
            let _ = p2p.respond(responder, bytes).await;
        }
    });
    true
}

/// Serves the swarm's events until it stops.
async fn dispatch(
    cluster: Cluster,
    mut events: mpsc::Receiver<p2p::Event>,
    core: mpsc::Sender<Event>,
) {
    while let Some(event) = events.recv().await {
        match event {
            p2p::Event::InboundRequest {
                peer,
                protocol: Protocol::Rpc,
                request,
                responder,
            } => match wire::decode::<PeerRequest>(&request) {
                Ok(PeerRequest::Raft(bytes)) => {
                    let c = cluster.clone();
                    let span = tracing::debug_span!(
                        "raft_rpc",
                        from = %node_id_of(&peer),
                        rpc = tracing::field::Empty
                    );
                    tokio::spawn(
                        async move {
                            let reply = match RaftRpc::from_bytes(&bytes) {
                                Ok(rpc) => {
                                    tracing::Span::current().record("rpc", rpc.kind());
                                    c.gcs.handle_rpc(rpc).await
                                }
                                Err(e) => RaftReply::Unavailable(e.to_string()),
                            };
                            let bytes = reply.to_bytes().unwrap_or_default();
                            let _ = c.p2p.respond(responder, bytes).await;
                        }
                        .instrument(span),
                    );
                }
                Ok(PeerRequest::GcsWrite(commands)) => {
                    let c = cluster.clone();
                    tokio::spawn(async move {
                        let reply: WriteReply =
                            match wire::decode::<Vec<raft_gcs::Command>>(&commands) {
                                Ok(commands) => c.write_once(&commands, false).await,
                                Err(e) => Err(format!("an undecodable control-store write: {e}")),
                            };
                        let _ = c.p2p.respond(responder, wire::encode(&reply)).await;
                    });
                }
                Ok(PeerRequest::Msgs { msgs }) => {
                    // The sender is the peer the connection authenticated.
                    let from = node_id_of(&peer);
                    let mut decoded = Vec::with_capacity(msgs.len());
                    for m in &msgs {
                        match wire::decode::<PeerMsg>(m) {
                            Ok(m) => decoded.push(m),
                            Err(e) => {
                                tracing::warn!(%peer, "dropping an undecodable peer message: {e}")
                            }
                        }
                    }
                    let event = Event::Peer {
                        from,
                        peer,
                        msgs: decoded,
                    };
                    if core.send(event).await.is_err() {
                        return;
                    }
                    let _ = cluster.p2p.respond(responder, Vec::new()).await;
                }
                Ok(PeerRequest::State(what)) => {
                    let ask = |reply| Event::StateQuery { what, reply };
                    if !core_answers(&cluster, &core, ask, responder).await {
                        return;
                    }
                }
                Ok(PeerRequest::Logs(query)) => {
                    let ask = |reply| Event::LogQuery { query, reply };
                    if !core_answers(&cluster, &core, ask, responder).await {
                        return;
                    }
                }
                Err(e) => tracing::warn!(%peer, "dropping an undecodable peer request: {e}"),
            },
            p2p::Event::Gossip { from, topic, data } if topic == wire::LOAD_TOPIC => {
                match wire::decode::<wire::Load>(&data) {
                    // Signed gossip: `from` is the author the swarm verified.
                    Ok(load) if load.node != node_id_of(&from) || load.peer != from.to_string() => {
                        tracing::warn!(%from, node = %load.node, "dropping a load report about another node");
                    }
                    Ok(load) => {
                        if core.send(Event::Load(Box::new(load))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::debug!("dropping an undecodable load report: {e}"),
                }
            }
            p2p::Event::PeerDisconnected { peer } => {
                let sent = core.send(Event::PeerDisconnected(peer)).await;
                if sent.is_err() {
                    return;
                }
            }
            _ => {}
        }
    }
}
