//! [`Config`]: everything the swarm needs, passed to [`crate::spawn`].
//!
//! Size limits are documented constants; the codec enforces them on every
//! stream. Only `node` reads the command line; it fills this in.

use std::time::Duration;

use libp2p::{identity::Keypair, Multiaddr, StreamProtocol};

use crate::{error::ConfigError, keys::ClusterKey};

/// Request/response protocol for node-to-node calls (Raft RPCs, task
/// forwarding, control messages).
pub const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/raynode/rpc/1");
/// Stream protocol for pulling object chunks: the puller asks for one
/// chunk after another on a stream, the holder writes each chunk's bytes
/// into it straight from its store ([`crate::Handle::open_object_stream`], [`crate::Started`]).
pub const OBJECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/raynode/object/2");
/// Kademlia protocol name (a private DHT, apart from any public one).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/raynode/kad/1");
/// Identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/raynode/id/1";
/// Gossipsub protocol id prefix (gossipsub appends its own version).
pub const GOSSIP_PROTOCOL_PREFIX: &str = "/raynode/gossip";
/// Gossip topic names are prefixed with this on the wire, so a change of
/// message format can move to `/raynode/topic/2/`.
pub const TOPIC_PREFIX: &str = "/raynode/topic/1/";

/// Default bound on an RPC request.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Default bound on an RPC response.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Largest object chunk a pull asks for at once. Pull larger objects
/// as a sequence of `(offset, len <= OBJECT_CHUNK_BYTES)` requests.
pub const OBJECT_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Bound on an object-pull request (an id and a range, so small).
pub const MAX_OBJECT_REQUEST_BYTES: usize = 64 * 1024;
/// Default bound on one gossip message.
pub const DEFAULT_MAX_GOSSIP_BYTES: usize = 64 * 1024;
/// No configured message bound may exceed this.
pub const HARD_MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Which request/response protocol a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// [`RPC_PROTOCOL`], bounded by `max_request_bytes`/`max_response_bytes`.
    Rpc,
}

impl Protocol {
    pub fn name(self) -> StreamProtocol {
        match self {
            Protocol::Rpc => RPC_PROTOCOL,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name().as_ref())
    }
}

/// Swarm configuration. Build with [`Config::new`] and the `with_*` methods.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Addresses to listen on; default `/ip4/0.0.0.0/tcp/0`.
    pub listen: Vec<Multiaddr>,
    /// `--join` addresses; [`crate::spawn`] fails unless one of them answers.
    /// Empty for the first node of a cluster.
    pub bootstrap: Vec<Multiaddr>,
    /// This node's identity ([`crate::load_or_create_identity`]).
    pub identity: Keypair,
    /// The cluster key ([`crate::load_or_create_cluster_key`]).
    pub cluster_key: ClusterKey,
    /// Bound on an RPC request ([`Protocol::Rpc`]).
    pub max_request_bytes: usize,
    /// Bound on an RPC response ([`Protocol::Rpc`]).
    pub max_response_bytes: usize,
    /// Bound on one gossip message.
    pub max_gossip_bytes: usize,
    /// Time allowed for a request's response (both protocols).
    pub request_timeout: Duration,
    /// Concurrent inbound plus outbound streams per connection and protocol.
    pub max_concurrent_streams: usize,
    /// How long a connection with no open stream is kept. Cluster members
    /// should stay connected, so the default is a day.
    pub idle_timeout: Duration,
    /// Bound on a connection upgrade (cluster key check, noise, yamux).
    pub handshake_timeout: Duration,
    /// Bound on each `--join` dial in [`crate::spawn`].
    pub join_timeout: Duration,
    /// Gossipsub heartbeat.
    pub gossip_interval: Duration,
    /// How often Kademlia re-runs its bootstrap query to find new peers.
    /// A joining node runs one at once and dials everyone it finds, so the
    /// rounds only mend what was missed; each costs tens of requests per
    /// node in a large cluster, hence the long default (two minutes).
    pub discovery_interval: Duration,
    /// Capacity of the command and event channels.
    pub channel_capacity: usize,
    /// Events kept while the consumer is slow, before new ones are dropped
    /// (with a warning).
    pub max_pending_events: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field("peer_id", &self.identity.public().to_peer_id())
            .field("cluster_key", &self.cluster_key)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_gossip_bytes", &self.max_gossip_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A config with default limits and timeouts for this identity and key.
    pub fn new(identity: Keypair, cluster_key: ClusterKey) -> Self {
        Config {
            listen: vec![default_listen()],
            bootstrap: Vec::new(),
            identity,
            cluster_key,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_gossip_bytes: DEFAULT_MAX_GOSSIP_BYTES,
            request_timeout: Duration::from_secs(30),
            max_concurrent_streams: 256,
            idle_timeout: Duration::from_secs(24 * 3600),
            handshake_timeout: Duration::from_secs(10),
            join_timeout: Duration::from_secs(10),
            gossip_interval: Duration::from_secs(1),
            discovery_interval: Duration::from_secs(120),
            channel_capacity: 1024,
            max_pending_events: 16 * 1024,
        }
    }

    pub fn with_listen(mut self, listen: Vec<Multiaddr>) -> Self {
        self.listen = listen;
        self
    }

    pub fn with_bootstrap(mut self, bootstrap: Vec<Multiaddr>) -> Self {
        self.bootstrap = bootstrap;
        self
    }

    pub fn with_max_request_bytes(mut self, n: usize) -> Self {
        self.max_request_bytes = n;
        self
    }

    pub fn with_max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n;
        self
    }

    pub fn with_max_gossip_bytes(mut self, n: usize) -> Self {
        self.max_gossip_bytes = n;
        self
    }

    pub fn with_request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    pub fn with_idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    pub fn with_handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    pub fn with_join_timeout(mut self, d: Duration) -> Self {
        self.join_timeout = d;
        self
    }

    pub fn with_gossip_interval(mut self, d: Duration) -> Self {
        self.gossip_interval = d;
        self
    }

    pub fn with_discovery_interval(mut self, d: Duration) -> Self {
        self.discovery_interval = d;
        self
    }

    pub fn peer_id(&self) -> libp2p::PeerId {
        self.identity.public().to_peer_id()
    }

    /// The byte limits of a protocol as `(request, response)`.
    pub fn limits(&self, protocol: Protocol) -> (usize, usize) {
        match protocol {
            Protocol::Rpc => (self.max_request_bytes, self.max_response_bytes),
        }
    }

    /// Checks bounds and timeouts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: String| Err(ConfigError::Invalid(what));
        if self.listen.is_empty() {
            return bad("no listen address".into());
        }
        for (name, value) in [
            ("max_request_bytes", self.max_request_bytes),
            ("max_response_bytes", self.max_response_bytes),
            ("max_gossip_bytes", self.max_gossip_bytes),
        ] {
            if value == 0 || value > HARD_MAX_MESSAGE_BYTES {
                return bad(format!(
                    "{name} = {value} is outside 1..={HARD_MAX_MESSAGE_BYTES}"
                ));
            }
        }
        for (name, value) in [
            ("request_timeout", self.request_timeout),
            ("idle_timeout", self.idle_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("join_timeout", self.join_timeout),
            ("gossip_interval", self.gossip_interval),
            ("discovery_interval", self.discovery_interval),
        ] {
            if value.is_zero() {
                return bad(format!("{name} must be positive"));
            }
        }
        if self.max_concurrent_streams == 0
            || self.channel_capacity == 0
            || self.max_pending_events == 0
        {
            return bad("stream and channel capacities must be positive".into());
        }
        Ok(())
    }
}

/// `/ip4/0.0.0.0/tcp/0`: every interface, a port the OS picks.
pub fn default_listen() -> Multiaddr {
    Multiaddr::empty()
        .with(libp2p::multiaddr::Protocol::Ip4(
            std::net::Ipv4Addr::UNSPECIFIED,
        ))
        .with(libp2p::multiaddr::Protocol::Tcp(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new(Keypair::generate_ed25519(), ClusterKey::new([7; 32]))
    }

    #[test]
    fn default_config_is_valid() {
        config().validate().expect("default config must validate");
        assert_eq!(config().listen[0].to_string(), "/ip4/0.0.0.0/tcp/0");
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(config().with_max_request_bytes(0).validate().is_err());
        assert!(config()
            .with_max_response_bytes(HARD_MAX_MESSAGE_BYTES + 1)
            .validate()
            .is_err());
        assert!(config()
            .with_request_timeout(Duration::ZERO)
            .validate()
            .is_err());
        assert!(config().with_listen(Vec::new()).validate().is_err());
    }
}
