//! The transport: TCP, then the private-network (pnet) layer keyed by the
//! cluster key, then a cluster-key check, then noise and yamux.
//!
//! pnet alone fails late and obscurely on a key mismatch (the noise
//! negotiation sees garbage). So right after the pnet handshake both sides
//! send [`CLUSTER_MAGIC`] through the encrypted stream and check the peer's:
//! with another key it decrypts to noise, and the connection fails with
//! [`ClusterKeyMismatch`], which the event loop reports in plain words.

use std::{io, time::Duration};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{
    core::{muxing::StreamMuxerBox, transport::Boxed, upgrade::Version},
    identity::Keypair,
    noise,
    pnet::{PnetConfig, PnetOutput, PreSharedKey},
    tcp, yamux, PeerId, Transport,
};

use crate::error::CLUSTER_KEY_MISMATCH;

/// Sent by both sides through the pnet stream; versioned like the protocols.
pub const CLUSTER_MAGIC: &[u8; 16] = b"/raynode/psk/1\n\0";

/// The remote end did not prove it holds our cluster key.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{CLUSTER_KEY_MISMATCH}")]
pub struct ClusterKeyMismatch;

/// Builds the full transport stack. `handshake_timeout` bounds the whole
/// connection upgrade (pnet, cluster check, noise, yamux).
pub(crate) fn build(
    keypair: &Keypair,
    cluster_key: PreSharedKey,
    handshake_timeout: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let noise = noise::Config::new(keypair)?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    Ok(tcp
        .and_then(move |socket, _endpoint| cluster_handshake(socket, cluster_key))
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .timeout(handshake_timeout)
        .boxed())
}

/// pnet handshake plus the magic exchange. Both sides write before they
/// read, so neither waits on the other.
async fn cluster_handshake<S>(socket: S, key: PreSharedKey) -> Result<PnetOutput<S>, io::Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut stream = PnetConfig::new(key)
        .handshake(socket)
        .await
        .map_err(io::Error::other)?;
    stream.write_all(CLUSTER_MAGIC).await?;
    stream.flush().await?;
    let mut theirs = [0u8; 16];
    match stream.read_exact(&mut theirs).await {
        Ok(()) if &theirs == CLUSTER_MAGIC => Ok(stream),
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            ClusterKeyMismatch,
        )),
        // A peer that hangs up right after the pnet nonces did not accept
        // our key either.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            ClusterKeyMismatch,
        )),
        Err(e) => Err(e),
    }
}
