//! Error types, one enum per operation family.
//!
//! Errors a caller can act on (a request timed out, a message is too big, a
//! peer has another cluster key) are kept apart from [`Closed`]-style errors
//! meaning the swarm's event loop has stopped.

use std::{io, path::PathBuf};

use libp2p::Multiaddr;

/// The phrase every cluster-key failure carries, so a log reader (and a test)
/// can recognise it whatever layer reports it.
pub const CLUSTER_KEY_MISMATCH: &str = "cluster key mismatch or not a raynode peer";

/// Loading or creating a key file (node identity or cluster key).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("cannot read or write key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed key file {path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("no home directory (HOME is unset): pass the cluster key file explicitly")]
    NoHome,
}

/// A [`crate::Config`] that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("invalid p2p config: {0}")]
    Invalid(String),
}

/// Starting the swarm ([`crate::spawn`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the libp2p transport or behaviour: {0}")]
    Build(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("could not join the cluster through any of {}: {}", list_addrs(.0), list_errors(.0))]
    Join(Vec<(Multiaddr, DialError)>),
}

fn list_addrs(errors: &[(Multiaddr, DialError)]) -> String {
    let addrs: Vec<String> = errors.iter().map(|(a, _)| a.to_string()).collect();
    addrs.join(", ")
}

fn list_errors(errors: &[(Multiaddr, DialError)]) -> String {
    let errs: Vec<String> = errors.iter().map(|(a, e)| format!("{a}: {e}")).collect();
    errs.join("; ")
}

/// Dialing a peer address ([`crate::Handle::dial`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The remote end did not pass the private-network handshake: it holds
    /// another cluster key, or it is not a raynode node at all.
    #[error(
        "{addr}: {CLUSTER_KEY_MISMATCH} (check that both nodes use the same --cluster-key file)"
    )]
    ClusterKeyMismatch { addr: Multiaddr },
    #[error("address {addr} cannot be dialed: {reason}")]
    BadAddress { addr: Multiaddr, reason: String },
    #[error("dial {addr} failed: {reason}")]
    Failed { addr: Multiaddr, reason: String },
    #[error("dial {addr} timed out")]
    Timeout { addr: Multiaddr },
    #[error("the p2p event loop has stopped")]
    Closed,
}

impl DialError {
    /// Whether this failure is a cluster key mismatch.
    pub fn is_cluster_key_mismatch(&self) -> bool {
        matches!(self, DialError::ClusterKeyMismatch { .. })
    }
}

/// A request to a peer ([`crate::Handle::request`]) or a response to one
/// ([`crate::Handle::respond`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("message of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("could not connect to the peer")]
    DialFailure,
    #[error("no response before the request timeout")]
    Timeout,
    #[error("the connection closed before the exchange completed")]
    ConnectionClosed,
    #[error("the peer does not speak this protocol")]
    UnsupportedProtocol,
    #[error("stream error: {0}")]
    Io(#[source] io::Error),
    /// The requester is gone (timed out or disconnected) before the response
    /// could be sent.
    #[error("the requester is no longer waiting for this response")]
    ResponseChannelClosed,
    #[error("the p2p event loop has stopped")]
    Closed,
}

/// Publishing on a gossip topic ([`crate::Handle::publish`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("gossip message of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// No connected peer subscribes to the topic (yet). Gossip is best
    /// effort: callers usually ignore this one.
    #[error("no peer subscribes to the topic")]
    NoPeers,
    #[error("publish failed: {0}")]
    Failed(String),
    #[error("the p2p event loop has stopped")]
    Closed,
}

/// Subscribing to a gossip topic ([`crate::Handle::subscribe`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    #[error("subscribe failed: {0}")]
    Failed(String),
    #[error("the p2p event loop has stopped")]
    Closed,
}

/// The swarm's event loop has stopped (after [`crate::Handle::shutdown`]).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the p2p event loop has stopped")]
pub struct Closed;

/// Whether an error, or anything it wraps, is a failed cluster-key
/// handshake. `io::Error` and `Either` hide their inner error from
/// `source()`, so this looks at each layer's `get_ref` and text too.
pub(crate) fn is_cluster_key_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    let mut depth = 0;
    while let Some(e) = current {
        if e.is::<crate::transport::ClusterKeyMismatch>()
            || e.to_string().contains(CLUSTER_KEY_MISMATCH)
        {
            return true;
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            if is_cluster_key_failure(inner) {
                return true;
            }
        }
        depth += 1;
        if depth > 16 {
            break;
        }
        current = e.source();
    }
    false
}
