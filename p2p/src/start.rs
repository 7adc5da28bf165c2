//! [`spawn`]: builds the swarm, starts listening, starts the event loop and
//! joins the cluster through the `--join` addresses.

use std::{collections::HashSet, time::Duration};

use futures::{FutureExt, StreamExt};
use libp2p::{core::transport::ListenerId, swarm::SwarmEvent, Multiaddr, PeerId, Swarm};
use tokio::sync::mpsc;

use crate::{
    addr::with_peer_id,
    behaviour::{Behaviour, BehaviourEvent},
    config::{Config, OBJECT_PROTOCOL},
    error::{DialError, StartError},
    event_loop::EventLoop,
    handle::{Event, Handle, Limits},
    transport,
};

/// Bound on waiting for the first address of each listener.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A started swarm.
#[derive(Debug)]
#[non_exhaustive]
pub struct Started {
    /// Send commands to the swarm through this (cloneable).
    pub handle: Handle,
    /// Events from the swarm; keep draining it.
    pub events: mpsc::Receiver<Event>,
    /// This node's peer id.
    pub peer_id: PeerId,
    /// Addresses it listens on now (more may come as [`Event::ListenAddr`]).
    pub listen_addrs: Vec<Multiaddr>,
    /// Streams peers open on [`OBJECT_PROTOCOL`]; keep taking them (a
    /// stream nobody takes is dropped, with a warning from libp2p).
    pub object_streams: ObjectStreams,
}

/// Inbound [`OBJECT_PROTOCOL`] streams with the peer that opened each: a
/// [`futures::Stream`] of `(PeerId, libp2p::Stream)`.
pub struct ObjectStreams(libp2p_stream::IncomingStreams);

impl futures::Stream for ObjectStreams {
    type Item = (PeerId, libp2p::Stream);

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_next_unpin(cx)
    }
}

impl std::fmt::Debug for ObjectStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectStreams")
    }
}

impl Started {
    /// The listen addresses with `/p2p/<peer id>` appended: what to print
    /// at start and to pass to another node's `--join`.
    pub fn join_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs
            .iter()
            .map(|a| with_peer_id(a, self.peer_id))
            .collect()
    }
}

/// Starts the swarm on the current tokio runtime. Returns once it listens
/// and, when `config.bootstrap` is not empty, once at least one of those
/// addresses answered (the others are logged). Fails with
/// [`StartError::Join`] if none did, e.g. because of a cluster key mismatch.
pub async fn spawn(config: Config) -> Result<Started, StartError> {
    config.validate()?;
    let peer_id = config.peer_id();
    let transport = transport::build(
        &config.identity,
        config.cluster_key.clone(),
        config.handshake_timeout,
    )
    .map_err(|e| StartError::Build(format!("noise: {e}")))?;
    let behaviour = Behaviour::new(&config.identity, &config)?;
    let mut streams = behaviour.stream.new_control();
    let object_streams = streams
        .accept(OBJECT_PROTOCOL)
        .map_err(|e| StartError::Build(format!("object streams: {e}")))?;
    let mut swarm = Swarm::new(
        transport,
        behaviour,
        peer_id,
        libp2p::swarm::Config::with_tokio_executor()
            .with_idle_connection_timeout(config.idle_timeout),
    );
    tracing::info!(
        peer = %peer_id,
        cluster_key = %config.cluster_key.fingerprint(),
        "starting p2p swarm"
    );

    let listen_addrs = listen(&mut swarm, &config.listen).await?;

    let (command_tx, command_rx) = mpsc::channel(config.channel_capacity);
    let (event_tx, event_rx) = mpsc::channel(config.channel_capacity);
    let limits = Limits {
        rpc: config.limits(crate::Protocol::Rpc),
        gossip: config.max_gossip_bytes,
        dial_timeout: config.join_timeout,
        request_timeout: config.request_timeout,
    };
    let handle = Handle::new(command_tx, streams, peer_id, limits);
    let event_loop = EventLoop::new(
        swarm,
        command_rx,
        event_tx,
        config.max_pending_events,
        listen_addrs.clone(),
        config.discovery_interval,
    );
    tokio::spawn(event_loop.run());

    if let Err(e) = join(&handle, &config.bootstrap).await {
        handle.shutdown().await;
        return Err(e);
    }
    Ok(Started {
        handle,
        events: event_rx,
        peer_id,
        listen_addrs,
        object_streams: ObjectStreams(object_streams),
    })
}

/// Starts every listener and waits for the first address of each (plus any
/// others already reported).
async fn listen(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
) -> Result<Vec<Multiaddr>, StartError> {
    let mut waiting: HashSet<ListenerId> = HashSet::new();
    let mut by_id = Vec::new();
    for addr in addrs {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| StartError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        waiting.insert(id);
        by_id.push((id, addr.clone()));
    }
    let requested = |id: ListenerId| {
        by_id
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(Multiaddr::empty)
    };
    let mut found = Vec::new();
    let wait = async {
        while !waiting.is_empty() {
            let event = swarm.select_next_some().await;
            on_listen_event(event, &mut waiting, &mut found, &requested)?;
        }
        // Interfaces reported in the same batch (0.0.0.0 expands to all).
        while let Some(Some(event)) = swarm.next().now_or_never() {
            on_listen_event(event, &mut waiting, &mut found, &requested)?;
        }
        Ok::<(), StartError>(())
    };
    match tokio::time::timeout(LISTEN_TIMEOUT, wait).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(StartError::Listen {
                addr: addrs.first().cloned().unwrap_or_else(Multiaddr::empty),
                reason: "no listen address reported in time".into(),
            })
        }
    }
    for addr in &found {
        tracing::info!(addr = %addr, "listening");
    }
    Ok(found)
}

fn on_listen_event(
    event: SwarmEvent<BehaviourEvent>,
    waiting: &mut HashSet<ListenerId>,
    found: &mut Vec<Multiaddr>,
    requested: &impl Fn(ListenerId) -> Multiaddr,
) -> Result<(), StartError> {
    match event {
        SwarmEvent::NewListenAddr {
            listener_id,
            address,
        } => {
            waiting.remove(&listener_id);
            if !found.contains(&address) {
                found.push(address);
            }
            Ok(())
        }
        SwarmEvent::ListenerError { listener_id, error } => Err(StartError::Listen {
            addr: requested(listener_id),
            reason: error.to_string(),
        }),
        SwarmEvent::ListenerClosed {
            listener_id,
            reason,
            ..
        } => Err(StartError::Listen {
            addr: requested(listener_id),
            reason: match reason {
                Ok(()) => "listener closed".into(),
                Err(e) => e.to_string(),
            },
        }),
        _ => Ok(()),
    }
}

/// Dials every bootstrap address at once; succeeds if any answers.
async fn join(handle: &Handle, bootstrap: &[Multiaddr]) -> Result<(), StartError> {
    if bootstrap.is_empty() {
        return Ok(());
    }
    let dials = bootstrap.iter().map(|addr| {
        let handle = handle.clone();
        let addr = addr.clone();
        async move { (addr.clone(), handle.dial(addr).await) }
    });
    let results = futures::future::join_all(dials).await;
    let mut failures: Vec<(Multiaddr, DialError)> = Vec::new();
    let mut joined = false;
    for (addr, result) in results {
        match result {
            Ok(peer) => {
                tracing::info!(%addr, peer = %peer, "joined the cluster through this peer");
                joined = true;
            }
            Err(e) => failures.push((addr, e)),
        }
    }
    if joined {
        for (addr, e) in &failures {
            tracing::warn!(%addr, error = %e, "could not join through this address");
        }
        Ok(())
    } else {
        Err(StartError::Join(failures))
    }
}
