//! The event loop: the one task that owns the [`Swarm`]. It serves
//! [`Command`]s from handles, turns swarm events into [`Event`]s, keeps the
//! oneshot replies of requests and dials in flight, and dials peers that
//! Kademlia discovers so the members of a cluster end up fully connected.
//!
//! Events go out through a bounded channel. The loop never waits on it: an
//! event the consumer has no room for waits in a queue capped by
//! `max_pending_events`, past which new events are dropped with a warning
//! (an inbound request so dropped fails on the peer's side).

use std::collections::{HashMap, VecDeque};

use futures::StreamExt;
use libp2p::{
    gossipsub, identify, kad,
    request_response::{self, OutboundRequestId},
    swarm::{dial_opts::DialOpts, ConnectionId, SwarmEvent},
    Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    addr::split_peer_id,
    behaviour::{Behaviour, BehaviourEvent},
    config::{Protocol, KAD_PROTOCOL, TOPIC_PREFIX},
    error::{is_cluster_key_failure, DialError, PublishError, RequestError, SubscribeError},
    handle::{Command, Event, Responder},
};

type RequestReply = oneshot::Sender<Result<Vec<u8>, RequestError>>;
type DialReply = oneshot::Sender<Result<PeerId, DialError>>;

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    pending_events: VecDeque<Event>,
    max_pending_events: usize,
    pending_requests: HashMap<(Protocol, OutboundRequestId), RequestReply>,
    pending_dials: HashMap<ConnectionId, (Multiaddr, DialReply)>,
    peer_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    listen_addrs: Vec<Multiaddr>,
    bootstrapped: bool,
    discovery_interval: std::time::Duration,
}

impl EventLoop {
    pub fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        max_pending_events: usize,
        listen_addrs: Vec<Multiaddr>,
        discovery_interval: std::time::Duration,
    ) -> Self {
        EventLoop {
            swarm,
            commands,
            events,
            pending_events: VecDeque::new(),
            max_pending_events,
            pending_requests: HashMap::new(),
            pending_dials: HashMap::new(),
            peer_addrs: HashMap::new(),
            listen_addrs,
            bootstrapped: false,
            discovery_interval,
        }
    }

    /// Runs until [`Command::Shutdown`] or until every handle is dropped.
    pub async fn run(mut self) {
        let local = *self.swarm.local_peer_id();
        tracing::info!(peer = %local, "p2p event loop started");
        let mut shutdown_reply = None;
        let start = tokio::time::Instant::now() + self.discovery_interval;
        let mut discovery = tokio::time::interval_at(start, self.discovery_interval);
        discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The reserve future must not borrow `self`, which the other
            // arms need mutably.
            let events = self.events.clone();
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = discovery.tick() => self.rediscover(),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        shutdown_reply = Some(reply);
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => break,
                },
                permit = events.reserve(), if !self.pending_events.is_empty() => {
                    match permit {
                        Ok(permit) => {
                            if let Some(event) = self.pending_events.pop_front() {
                                permit.send(event);
                            }
                        }
                        Err(_) => self.pending_events.clear(),
                    }
                }
            }
        }
        // Drop the swarm (closing listeners and connections) before saying
        // we are done; requests still in flight see `Closed`.
        drop(self);
        tracing::info!(peer = %local, "p2p event loop stopped");
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// Asks the peers in the routing table for the rest of the cluster;
    /// a node that knows no peer yet (alone, or before its first join) has
    /// no one to ask and skips it.
    fn rediscover(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let known: usize = kad.kbuckets().map(|bucket| bucket.num_entries()).sum();
        if known == 0 {
            return;
        }
        if let Err(e) = kad.bootstrap() {
            tracing::debug!("kademlia bootstrap not started: {e}");
        }
    }

    fn emit(&mut self, event: Event) {
        if self.events.is_closed() {
            return;
        }
        if self.pending_events.is_empty() {
            match self.events.try_send(event) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.pending_events.push_back(event);
                    return;
                }
            }
        }
        if self.pending_events.len() >= self.max_pending_events {
            tracing::warn!(
                queued = self.pending_events.len(),
                event = event_kind(&event),
                "p2p event consumer is too slow; dropping an event"
            );
            return;
        }
        self.pending_events.push_back(event);
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Request {
                peer,
                protocol,
                data,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .request_response(protocol)
                    .send_request(&peer, data);
                tracing::debug!(peer = %peer, %protocol, request = %id, "sending request");
                self.pending_requests.insert((protocol, id), reply);
            }
            Command::Respond {
                responder,
                data,
                reply,
            } => {
                let Responder {
                    protocol, channel, ..
                } = responder;
                let result = self
                    .swarm
                    .behaviour_mut()
                    .request_response(protocol)
                    .send_response(channel, data)
                    .map_err(|_| RequestError::ResponseChannelClosed);
                let _ = reply.send(result);
            }
            Command::Publish { topic, data, reply } => {
                let topic = wire_topic(&topic);
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic, data)
                    .map(|_| ())
                    .map_err(|e| match e {
                        gossipsub::PublishError::NoPeersSubscribedToTopic => PublishError::NoPeers,
                        other => PublishError::Failed(other.to_string()),
                    });
                let _ = reply.send(result);
            }
            Command::Subscribe { topic, reply } => {
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&wire_topic(&topic))
                    .map_err(|e| SubscribeError::Failed(e.to_string()));
                let _ = reply.send(result);
            }
            Command::Unsubscribe { topic, reply } => {
                let was = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .unsubscribe(&wire_topic(&topic));
                let _ = reply.send(was);
            }
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::PeerAddrs { peer, reply } => {
                let _ = reply.send(self.peer_addrs.get(&peer).cloned().unwrap_or_default());
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.listen_addrs.clone());
            }
            Command::Shutdown { reply } => {
                // Handled in `run`; never reaches here.
                let _ = reply.send(());
            }
        }
    }

    fn dial(&mut self, addr: Multiaddr, reply: DialReply) {
        let (base, peer) = split_peer_id(&addr);
        let opts = match peer {
            Some(peer) if self.swarm.is_connected(&peer) => {
                let _ = reply.send(Ok(peer));
                return;
            }
            Some(peer) => DialOpts::peer_id(peer).addresses(vec![base]).build(),
            None => DialOpts::unknown_peer_id().address(base).build(),
        };
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                tracing::debug!(%addr, "dialing");
                self.pending_dials.insert(id, (addr, reply));
            }
            Err(e) => {
                let _ = reply.send(Err(dial_error(&addr, &e)));
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(addr = %address, "listening");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address.clone());
                }
                self.emit(Event::ListenAddr { addr: address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some((_, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                if num_established.get() == 1 {
                    let addr = endpoint.get_remote_address().clone();
                    tracing::info!(peer = %peer_id, %addr, "peer connected");
                    self.emit(Event::PeerConnected {
                        peer: peer_id,
                        addr,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                match cause {
                    Some(cause) => tracing::info!(peer = %peer_id, %cause, "peer disconnected"),
                    None => tracing::info!(peer = %peer_id, "peer disconnected"),
                }
                self.emit(Event::PeerDisconnected { peer: peer_id });
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let pending = self.pending_dials.remove(&connection_id);
                let addr = pending
                    .as_ref()
                    .map(|(addr, _)| addr.clone())
                    .or_else(|| failed_addr(&error))
                    .unwrap_or_else(Multiaddr::empty);
                let mapped = dial_error(&addr, &error);
                if mapped.is_cluster_key_mismatch() {
                    tracing::warn!(
                        %addr,
                        "peer failed the cluster key handshake: {} \
                         (check that both nodes use the same --cluster-key file)",
                        crate::error::CLUSTER_KEY_MISMATCH
                    );
                } else if let Some(peer) = peer_id {
                    tracing::debug!(peer = %peer, %addr, error = %error, "dial failed");
                } else {
                    tracing::debug!(%addr, error = %error, "dial failed");
                }
                if let Some((_, reply)) = pending {
                    let _ = reply.send(Err(mapped));
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                if is_cluster_key_failure(&error) {
                    tracing::warn!(
                        addr = %send_back_addr,
                        "incoming connection failed the cluster key handshake: {} \
                         (check that both nodes use the same --cluster-key file)",
                        crate::error::CLUSTER_KEY_MISMATCH
                    );
                } else {
                    tracing::debug!(addr = %send_back_addr, %error, "incoming connection failed");
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                tracing::warn!(?addresses, ?reason, "listener closed");
                self.listen_addrs.retain(|a| !addresses.contains(a));
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(event) => self.on_identify(event),
            BehaviourEvent::Kad(event) => self.on_kad(event),
            BehaviourEvent::Gossipsub(event) => self.on_gossip(event),
            BehaviourEvent::Rpc(event) => self.on_request_response(Protocol::Rpc, event),
            BehaviourEvent::Stream(()) => {}
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        let listen_addrs: Vec<Multiaddr> =
            info.listen_addrs.into_iter().filter(is_dialable).collect();
        tracing::debug!(peer = %peer_id, addrs = ?listen_addrs, agent = %info.agent_version, "identified peer");
        if info.protocols.contains(&KAD_PROTOCOL) {
            for addr in &listen_addrs {
                self.swarm.add_peer_address(peer_id, addr.clone());
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer_id, addr.clone());
            }
            if !self.bootstrapped {
                // Our first routing entry: ask it for the rest of the cluster.
                self.bootstrapped = self.swarm.behaviour_mut().kad.bootstrap().is_ok();
            }
        }
        self.peer_addrs.insert(peer_id, listen_addrs.clone());
        self.emit(Event::PeerIdentified {
            peer: peer_id,
            listen_addrs,
            agent_version: info.agent_version,
        });
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::RoutingUpdated {
                peer, addresses, ..
            } => {
                if peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer) {
                    return;
                }
                tracing::debug!(peer = %peer, "discovered peer; connecting");
                let opts = DialOpts::peer_id(peer)
                    .addresses(addresses.into_vec())
                    .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    tracing::debug!(peer = %peer, error = %e, "not dialing discovered peer");
                }
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::Bootstrap(result),
                ..
            } => {
                tracing::trace!(?result, "kademlia bootstrap progressed");
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        if let gossipsub::Event::Message {
            propagation_source,
            message,
            ..
        } = event
        {
            let Some(topic) = message.topic.as_str().strip_prefix(TOPIC_PREFIX) else {
                return;
            };
            self.emit(Event::Gossip {
                from: message.source.unwrap_or(propagation_source),
                topic: topic.to_string(),
                data: message.data,
            });
        }
    }

    fn on_request_response(
        &mut self,
        protocol: Protocol,
        event: request_response::Event<Vec<u8>, Vec<u8>>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    tracing::debug!(peer = %peer, %protocol, bytes = request.len(), "inbound request");
                    self.emit(Event::InboundRequest {
                        peer,
                        protocol,
                        request,
                        responder: Responder {
                            peer,
                            protocol,
                            channel,
                        },
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending_requests.remove(&(protocol, request_id)) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(peer = %peer, %protocol, request = %request_id, %error, "request failed");
                if let Some(reply) = self.pending_requests.remove(&(protocol, request_id)) {
                    let _ = reply.send(Err(outbound_error(error)));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => match error {
                request_response::InboundFailure::Io(e) => {
                    tracing::warn!(peer = %peer, %protocol, error = %e, "refused inbound request");
                }
                other => {
                    tracing::debug!(peer = %peer, %protocol, error = %other, "inbound request failed");
                }
            },
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

fn wire_topic(topic: &str) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("{TOPIC_PREFIX}{topic}"))
}

fn outbound_error(error: request_response::OutboundFailure) -> RequestError {
    match error {
        request_response::OutboundFailure::DialFailure => RequestError::DialFailure,
        request_response::OutboundFailure::Timeout => RequestError::Timeout,
        request_response::OutboundFailure::ConnectionClosed => RequestError::ConnectionClosed,
        request_response::OutboundFailure::UnsupportedProtocols => {
            RequestError::UnsupportedProtocol
        }
        request_response::OutboundFailure::Io(e) => RequestError::Io(e),
    }
}

/// Maps a libp2p dial error, recognising a failed cluster-key handshake.
fn dial_error(addr: &Multiaddr, error: &libp2p::swarm::DialError) -> DialError {
    if let libp2p::swarm::DialError::Transport(errors) = error {
        if errors.iter().any(|(_, e)| is_cluster_key_failure(e)) {
            return DialError::ClusterKeyMismatch { addr: addr.clone() };
        }
    }
    if is_cluster_key_failure(error) {
        return DialError::ClusterKeyMismatch { addr: addr.clone() };
    }
    DialError::Failed {
        addr: addr.clone(),
        reason: error.to_string(),
    }
}

fn failed_addr(error: &libp2p::swarm::DialError) -> Option<Multiaddr> {
    match error {
        libp2p::swarm::DialError::Transport(errors) => errors.first().map(|(a, _)| a.clone()),
        _ => None,
    }
}

/// Addresses worth telling others about: not `0.0.0.0`/`::`.
fn is_dialable(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol as P;
    !addr.iter().any(|p| match p {
        P::Ip4(ip) => ip.is_unspecified(),
        P::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

fn event_kind(event: &Event) -> &'static str {
    match event {
        Event::ListenAddr { .. } => "listen_addr",
        Event::PeerConnected { .. } => "peer_connected",
        Event::PeerDisconnected { .. } => "peer_disconnected",
        Event::PeerIdentified { .. } => "peer_identified",
        Event::InboundRequest { .. } => "inbound_request",
        Event::Gossip { .. } => "gossip",
    }
}
