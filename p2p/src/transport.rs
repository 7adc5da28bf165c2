//! The transport: TCP, then a cluster-key check, then noise and yamux.
//!
//! Only holders of the cluster key may connect. Two things see to it:
//!
//! - Right after TCP connects, both sides prove they hold the key: each
//!   sends [`CLUSTER_MAGIC`] and a fresh nonce, then a proof derived from
//!   the key, its role (dialer or listener) and both nonces, and checks the
//!   peer's. A peer with another key, or no raynode peer at all, fails here
//!   with [`ClusterKeyMismatch`], which the event loop reports in plain
//!   words. The proof reveals nothing of the key and cannot be replayed on
//!   another connection or reflected back.
//! - The noise handshake's prologue is derived from the key too, so the
//!   encrypted session itself is bound to it: a party without the key that
//!   relays the check between two members still cannot finish noise with
//!   either of them.
//!
//! Noise (our own upgrade, `secure`: X25519, AES-256-GCM) then encrypts and
//! authenticates every byte, once. (libp2p's private-network layer would
//! add a second, software-only stream cipher under noise, which halved the
//! throughput of object pulls.)

use std::{io, time::Duration};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{
    core::{muxing::StreamMuxerBox, transport::Boxed, upgrade::Version, ConnectedPoint},
    identity::Keypair,
    tcp, PeerId, Transport,
};

use crate::{error::CLUSTER_KEY_MISMATCH, keys::ClusterKey, muxer::Yamux, secure::Noise};

/// Opens the check; versioned like the protocols.
pub const CLUSTER_MAGIC: &[u8; 16] = b"/raynode/psk/2\n\0";

const NONCE_BYTES: usize = 32;
const PROOF_LABEL: &[u8] = b"raynode/cluster-proof/1";
const PROLOGUE_LABEL: &[u8] = b"raynode/noise-prologue/1";

/// The remote end did not prove it holds our cluster key.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{CLUSTER_KEY_MISMATCH}")]
pub struct ClusterKeyMismatch;

/// Builds the full transport stack. `handshake_timeout` bounds the whole
/// connection upgrade (cluster key check, noise, yamux).
pub(crate) fn build(
    keypair: &Keypair,
    cluster_key: ClusterKey,
    handshake_timeout: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, io::Error> {
    let prologue = cluster_key.derive(PROLOGUE_LABEL, &[]).to_vec();
    let noise = Noise::new(keypair, prologue)?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    Ok(tcp
        .and_then(move |socket, endpoint| cluster_handshake(socket, cluster_key, endpoint))
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(Yamux::default())
        .timeout(handshake_timeout)
        .boxed())
}

/// The key check. Both sides write before they read, so neither waits on
/// the other; it costs one round trip more than TCP's.
async fn cluster_handshake<S>(
    mut socket: S,
    key: ClusterKey,
    endpoint: ConnectedPoint,
) -> Result<S, io::Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mismatch = || io::Error::new(io::ErrorKind::PermissionDenied, ClusterKeyMismatch);
    // A peer that hangs up during the check did not accept our key either.
    let eof_is_mismatch = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => mismatch(),
        _ => e,
    };

    let ours: [u8; NONCE_BYTES] = rand::random();
    let mut hello = [0u8; 16 + NONCE_BYTES];
    hello[..16].copy_from_slice(CLUSTER_MAGIC);
    hello[16..].copy_from_slice(&ours);
    socket.write_all(&hello).await?;
    socket.flush().await?;
    let mut theirs_hello = [0u8; 16 + NONCE_BYTES];
    socket
        .read_exact(&mut theirs_hello)
        .await
        .map_err(eof_is_mismatch)?;
    let (magic, theirs) = theirs_hello.split_at(16);
    if magic != CLUSTER_MAGIC || theirs == ours {
        return Err(mismatch());
    }

    let (our_role, their_role) = match endpoint {
        ConnectedPoint::Dialer { .. } => (b"dialer", b"listen"),
        ConnectedPoint::Listener { .. } => (b"listen", b"dialer"),
    };
    let proof = key.derive(PROOF_LABEL, &[our_role, &ours, theirs]);
    socket.write_all(&proof).await?;
    socket.flush().await?;
    let mut their_proof = [0u8; 32];
    socket
        .read_exact(&mut their_proof)
        .await
        .map_err(eof_is_mismatch)?;
    let expected = key.derive(PROOF_LABEL, &[their_role, theirs, &ours]);
    // Compared in constant time: the difference is folded, not searched.
    let diff = expected
        .iter()
        .zip(their_proof)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(mismatch());
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::core::{transport::PortUse, Endpoint};
    use libp2p::tcp::tokio::TcpStream;

    fn dialer() -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: "/ip4/127.0.0.1/tcp/1".parse().expect("addr"),
            role_override: Endpoint::Dialer,
            port_use: PortUse::New,
        }
    }

    fn listener() -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: "/ip4/127.0.0.1/tcp/1".parse().expect("addr"),
            send_back_addr: "/ip4/127.0.0.1/tcp/2".parse().expect("addr"),
        }
    }

    /// Both ends of a loopback TCP connection.
    async fn connected() -> (TcpStream, TcpStream) {
        let listen = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listen.local_addr().expect("addr");
        let (dialed, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listen.accept());
        (
            TcpStream(dialed.expect("connect")),
            TcpStream(accepted.expect("accept").0),
        )
    }

    fn is_mismatch(result: &Result<TcpStream, io::Error>) -> bool {
        matches!(result, Err(e) if e.kind() == io::ErrorKind::PermissionDenied
            && e.to_string().contains(CLUSTER_KEY_MISMATCH))
    }

    async fn check(
        a: ClusterKey,
        b: ClusterKey,
    ) -> (Result<TcpStream, io::Error>, Result<TcpStream, io::Error>) {
        let (x, y) = connected().await;
        let bounded = |f| tokio::time::timeout(Duration::from_secs(10), f);
        let (x, y) = tokio::join!(
            bounded(cluster_handshake(x, a, dialer())),
            bounded(cluster_handshake(y, b, listener()))
        );
        (
            x.expect("dialer side in time"),
            y.expect("listener side in time"),
        )
    }

    #[tokio::test]
    async fn the_same_key_passes_on_both_sides() {
        let key = ClusterKey::new([3; 32]);
        let (x, y) = check(key.clone(), key).await;
        assert!(x.is_ok(), "{x:?}");
        assert!(y.is_ok(), "{y:?}");
    }

    #[tokio::test]
    async fn another_key_fails_on_both_sides() {
        let (x, y) = check(ClusterKey::new([3; 32]), ClusterKey::new([4; 32])).await;
        assert!(is_mismatch(&x), "{x:?}");
        assert!(is_mismatch(&y), "{y:?}");
    }

    /// Runs the check against a peer that does `peer` with the far end.
    async fn against<F>(
        peer: impl FnOnce(tokio::net::TcpStream) -> F,
    ) -> Result<TcpStream, io::Error>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (ours, theirs) = connected().await;
        let peer = tokio::spawn(peer(theirs.0));
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            cluster_handshake(ours, ClusterKey::new([5; 32]), dialer()),
        )
        .await
        .expect("in time");
        peer.abort();
        result
    }

    /// A peer without the key that sends everything back cannot pass off
    /// our own proof as its own.
    #[tokio::test]
    async fn a_reflected_proof_is_refused() {
        let result = against(|theirs| async move {
            let (mut read, mut write) = theirs.into_split();
            let _ = tokio::io::copy(&mut read, &mut write).await;
        })
        .await;
        assert!(is_mismatch(&result), "{result:?}");
    }

    /// Something that is not a raynode node (here, one that says hello in
    /// another protocol) is refused with the same clear error.
    #[tokio::test]
    async fn a_foreign_peer_is_refused() {
        let result = against(|mut theirs| async move {
            use tokio::io::AsyncWriteExt as _;
            let _ = theirs.write_all(&[b'x'; 64]).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        assert!(is_mismatch(&result), "{result:?}");
    }

    #[test]
    fn the_noise_prologue_depends_on_the_key() {
        let a = ClusterKey::new([1; 32]).derive(PROLOGUE_LABEL, &[]);
        let b = ClusterKey::new([2; 32]).derive(PROLOGUE_LABEL, &[]);
        assert_ne!(a, b);
        assert_ne!(a.as_slice(), &[1u8; 32]);
    }
}
