//! The node's side of the swarm: a cloneable [`Handle`] that sends
//! [`Command`]s to the event loop over a bounded channel and awaits each
//! reply on a oneshot, and the [`Event`]s the event loop hands out.

use std::time::Duration;

use libp2p::{request_response::ResponseChannel, Multiaddr, PeerId, Stream};
use tokio::sync::{mpsc, oneshot};

use crate::{
    config::Protocol,
    error::{DialError, PublishError, RequestError, SubscribeError},
};

/// What the swarm tells the node. Payloads are opaque bytes.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A new listen address (after those [`crate::spawn`] returned).
    ListenAddr { addr: Multiaddr },
    /// The first connection to `peer` is up; `addr` is its remote address.
    PeerConnected { peer: PeerId, addr: Multiaddr },
    /// The last connection to `peer` closed.
    PeerDisconnected { peer: PeerId },
    /// `peer` told us its listen addresses and software (identify).
    PeerIdentified {
        peer: PeerId,
        listen_addrs: Vec<Multiaddr>,
        agent_version: String,
    },
    /// A request; answer it with [`Handle::respond`]. Dropping the
    /// [`Responder`] fails the request on the peer's side.
    InboundRequest {
        peer: PeerId,
        protocol: Protocol,
        request: Vec<u8>,
        responder: Responder,
    },
    /// A gossip message on a subscribed topic. `from` is its author.
    Gossip {
        from: PeerId,
        topic: String,
        data: Vec<u8>,
    },
}

/// The way back to the peer that sent an [`Event::InboundRequest`].
#[derive(Debug)]
pub struct Responder {
    pub(crate) peer: PeerId,
    pub(crate) protocol: Protocol,
    pub(crate) channel: ResponseChannel<Vec<u8>>,
}

impl Responder {
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether the requester still waits (it has not timed out or gone).
    pub fn is_open(&self) -> bool {
        self.channel.is_open()
    }
}

type Reply<T> = oneshot::Sender<T>;

/// Commands to the event loop, each with its reply channel.
#[derive(Debug)]
pub(crate) enum Command {
    Request {
        peer: PeerId,
        protocol: Protocol,
        data: Vec<u8>,
        reply: Reply<Result<Vec<u8>, RequestError>>,
    },
    Respond {
        responder: Responder,
        data: Vec<u8>,
        reply: Reply<Result<(), RequestError>>,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: Reply<Result<(), PublishError>>,
    },
    Subscribe {
        topic: String,
        reply: Reply<Result<bool, SubscribeError>>,
    },
    Unsubscribe {
        topic: String,
        reply: Reply<bool>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<Result<PeerId, DialError>>,
    },
    ConnectedPeers {
        reply: Reply<Vec<PeerId>>,
    },
    PeerAddrs {
        peer: PeerId,
        reply: Reply<Vec<Multiaddr>>,
    },
    ListenAddrs {
        reply: Reply<Vec<Multiaddr>>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// Limits the handle checks before a message reaches the event loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub rpc: (usize, usize),
    pub gossip: usize,
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
}

impl Limits {
    fn of(&self, protocol: Protocol) -> (usize, usize) {
        match protocol {
            Protocol::Rpc => self.rpc,
        }
    }
}

/// A cloneable handle to a running swarm. All methods are cancel-safe: a
/// dropped future abandons its reply, nothing else.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    streams: libp2p_stream::Control,
    local_peer_id: PeerId,
    limits: Limits,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("local_peer_id", &self.local_peer_id)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Handle {
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        streams: libp2p_stream::Control,
        local_peer_id: PeerId,
        limits: Limits,
    ) -> Self {
        Handle {
            commands,
            streams,
            local_peer_id,
            limits,
        }
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Sends a command and awaits its reply; `None` if the loop is gone.
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(make(reply)).await.ok()?;
        rx.await.ok()
    }

    /// Sends `data` to `peer` on `protocol` and awaits the response. Dials
    /// the peer if needed (addresses from identify/Kademlia). Bounded by the
    /// request timeout of the [`crate::Config`].
    pub async fn request(
        &self,
        peer: PeerId,
        protocol: Protocol,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        let (limit, _) = self.limits.of(protocol);
        if data.len() > limit {
            return Err(RequestError::TooLarge {
                size: data.len(),
                limit,
            });
        }
        self.call(|reply| Command::Request {
            peer,
            protocol,
            data,
            reply,
        })
        .await
        .unwrap_or(Err(RequestError::Closed))
    }

    /// Opens a stream to `peer` on [`crate::OBJECT_PROTOCOL`], dialing it if
    /// needed. Bounded by the request timeout of the [`crate::Config`]; what
    /// goes over the stream, and its bounds, are the caller's.
    pub async fn open_object_stream(&self, peer: PeerId) -> Result<Stream, RequestError> {
        let mut streams = self.streams.clone();
        let open = streams.open_stream(peer, crate::config::OBJECT_PROTOCOL);
        match tokio::time::timeout(self.limits.request_timeout, open).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
                Err(RequestError::UnsupportedProtocol)
            }
            Ok(Err(libp2p_stream::OpenStreamError::Io(e))) => Err(RequestError::Io(e)),
            Ok(Err(e)) => Err(RequestError::Io(std::io::Error::other(e.to_string()))),
            Err(_) => Err(RequestError::Timeout),
        }
    }

    /// Answers an [`Event::InboundRequest`].
    pub async fn respond(&self, responder: Responder, data: Vec<u8>) -> Result<(), RequestError> {
        let (_, limit) = self.limits.of(responder.protocol);
        if data.len() > limit {
            return Err(RequestError::TooLarge {
                size: data.len(),
                limit,
            });
        }
        self.call(|reply| Command::Respond {
            responder,
            data,
            reply,
        })
        .await
        .unwrap_or(Err(RequestError::Closed))
    }

    /// Publishes on a gossip topic. Best effort: [`PublishError::NoPeers`]
    /// means no connected peer subscribes yet.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), PublishError> {
        if data.len() > self.limits.gossip {
            return Err(PublishError::TooLarge {
                size: data.len(),
                limit: self.limits.gossip,
            });
        }
        let topic = topic.to_string();
        self.call(|reply| Command::Publish { topic, data, reply })
            .await
            .unwrap_or(Err(PublishError::Closed))
    }

    /// Subscribes to a gossip topic; `Ok(false)` if already subscribed.
    pub async fn subscribe(&self, topic: &str) -> Result<bool, SubscribeError> {
        let topic = topic.to_string();
        self.call(|reply| Command::Subscribe { topic, reply })
            .await
            .unwrap_or(Err(SubscribeError::Closed))
    }

    /// Unsubscribes; `false` if not subscribed (or the loop is gone).
    pub async fn unsubscribe(&self, topic: &str) -> bool {
        let topic = topic.to_string();
        self.call(|reply| Command::Unsubscribe { topic, reply })
            .await
            .unwrap_or(false)
    }

    /// Connects to `addr` (optionally ending in `/p2p/<peer id>`, which is
    /// then checked) and returns the peer's id once the connection is up.
    /// Bounded by the join timeout of the [`crate::Config`].
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, DialError> {
        let timeout = self.limits.dial_timeout;
        let dial = self.call(|reply| Command::Dial {
            addr: addr.clone(),
            reply,
        });
        match tokio::time::timeout(timeout, dial).await {
            Ok(Some(result)) => result,
            Ok(None) => Err(DialError::Closed),
            Err(_) => Err(DialError::Timeout { addr }),
        }
    }

    /// Peers with at least one open connection.
    pub async fn connected_peers(&self) -> Vec<PeerId> {
        self.call(|reply| Command::ConnectedPeers { reply })
            .await
            .unwrap_or_default()
    }

    /// The addresses `peer` listens on, as far as this node knows (identify
    /// and Kademlia); empty if unknown.
    pub async fn peer_addrs(&self, peer: PeerId) -> Vec<Multiaddr> {
        self.call(|reply| Command::PeerAddrs { peer, reply })
            .await
            .unwrap_or_default()
    }

    /// This node's current listen addresses.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.call(|reply| Command::ListenAddrs { reply })
            .await
            .unwrap_or_default()
    }

    /// Stops the event loop and closes every connection and listener.
    /// Returns once the swarm is dropped; a no-op if it already stopped.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }

    /// Whether the event loop has stopped.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }
}
