//! p2p: the libp2p swarm of a raynode cluster.
//!
//! Parts, in the order data flows through them:
//!
//! - [`keys`]: the node identity (kept in its data dir, so a restart keeps
//!   its peer id) and the cluster key (`~/.raynode/cluster.key` by default,
//!   created 0600 on first use).
//! - `transport`: TCP, then a challenge-response proving that the peer
//!   holds the cluster key, then noise (its prologue also derived from the
//!   key) and yamux. A node with another key cannot connect; both sides say
//!   so ([`DialError::ClusterKeyMismatch`] and a warning).
//! - `secure`: the noise upgrade, `Noise_XX_25519_AESGCM_SHA256` (libp2p's
//!   fixes ChaCha20-Poly1305, three times slower here than AES-GCM with
//!   the CPU's AES instructions), each side's libp2p identity signed into
//!   the handshake.
//! - `muxer`: yamux, set to send data frames of up to 256 KiB (libp2p's
//!   own adapter fixes them at 16 KiB, which slows large transfers).
//! - `behaviour`: identify, Kademlia (peer discovery, wrapped by
//!   `discovery` so that a node alone stays quiet), gossipsub (topics),
//!   the request/response protocol [`RPC_PROTOCOL`], framed by `codec` with
//!   the size bounds of [`Config`] and the constants in [`config`], and
//!   plain streams on [`OBJECT_PROTOCOL`].
//! - `event_loop`: the one task that owns the swarm. [`Handle`] (cloneable)
//!   sends it commands over a bounded channel; it hands out [`Event`]s on a
//!   bounded channel.
//! - [`spawn`]: builds all that, listens, and joins through
//!   `Config::bootstrap` (`--join`, see [`parse_join_addr`]).
//!
//! Payloads are opaque bytes: p2p knows nothing of tasks or Raft. Large
//! objects move over [`OBJECT_PROTOCOL`] streams
//! ([`Handle::open_object_stream`], [`Started::object_streams`]), in
//! chunks of at most [`OBJECT_CHUNK_BYTES`], several on one stream.

pub mod addr;
mod behaviour;
mod codec;
pub mod config;
mod discovery;
pub mod error;
mod event_loop;
mod handle;
pub mod keys;
mod muxer;
mod secure;
mod start;
mod transport;

pub use addr::{parse_join_addr, split_peer_id, with_peer_id, AddrError};
pub use config::{
    Config, Protocol, DEFAULT_MAX_GOSSIP_BYTES, DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES, MAX_OBJECT_REQUEST_BYTES, OBJECT_CHUNK_BYTES, OBJECT_PROTOCOL,
    RPC_PROTOCOL,
};
pub use error::{
    ConfigError, DialError, KeyError, PublishError, RequestError, StartError, SubscribeError,
    CLUSTER_KEY_MISMATCH,
};
pub use handle::{Event, Handle, Responder};
pub use keys::{
    default_cluster_key_path, load_cluster_key, load_or_create_cluster_key,
    load_or_create_identity, ClusterKey,
};
pub use start::{spawn, ObjectStreams, Started};
pub use transport::ClusterKeyMismatch;

/// libp2p types that appear in this crate's API.
pub use libp2p::{identity::Keypair, Multiaddr, PeerId, Stream};
