//! The upgrade itself: [`Noise`], configured once per transport with the
//! node's identity, runs the XX handshake on a new connection, exchanges
//! and checks both sides' signed libp2p identities, and hands back the peer
//! id with the connection as an [`Encrypted`] stream.

use std::{io, iter, sync::Arc};

use futures::{future::BoxFuture, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use libp2p::{
    core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo},
    identity::{Keypair, PublicKey},
    PeerId,
};
use snow::HandshakeState;
use zeroize::ZeroizeOnDrop;

use super::{
    keys::{builder, StaticKey},
    noise_error, Encrypted, MAX_MESSAGE, PROTOCOL, STATIC_KEY_DOMAIN,
};

/// The upgrade, configured once per transport.
#[derive(Clone)]
pub(crate) struct Noise(pub(super) Arc<Identity>);

pub(super) struct Identity {
    /// Our noise static key (its public half is derived from it).
    pub(super) static_private: StaticKey,
    /// What our second handshake message carries: identity key and signature.
    pub(super) payload: Vec<u8>,
    pub(super) prologue: Vec<u8>,
}

// The one secret, the static key, wipes itself on drop.
impl ZeroizeOnDrop for Identity {}

impl Noise {
    pub(crate) fn new(keypair: &Keypair, prologue: Vec<u8>) -> Result<Self, io::Error> {
        let (static_private, static_public) = StaticKey::generate()?;
        let signature = keypair
            .sign(&[STATIC_KEY_DOMAIN, &static_public].concat())
            .map_err(|e| io::Error::other(format!("signing the noise key: {e}")))?;
        let payload = encode_payload(&keypair.public().encode_protobuf(), &signature);
        Ok(Self(Arc::new(Identity {
            static_private,
            payload,
            prologue,
        })))
    }

    fn handshake_state(&self, initiator: bool) -> Result<HandshakeState, io::Error> {
        let builder = builder()?
            .prologue(&self.0.prologue)
            .map_err(noise_error)?
            .local_private_key(self.0.static_private.as_bytes())
            .map_err(noise_error)?;
        let state = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        };
        state.map_err(noise_error)
    }

    /// XX: → e; ← e, ee, s, es, identity; → s, se, identity.
    pub(super) async fn handshake<S>(
        self,
        mut socket: S,
        initiator: bool,
    ) -> Result<(PeerId, Encrypted<S>), io::Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut state = self.handshake_state(initiator)?;
        let mut message = vec![0u8; MAX_MESSAGE];
        let mut payload = vec![0u8; MAX_MESSAGE];
        let peer = if initiator {
            send(&mut socket, &mut state, &[], &mut message).await?;
            let n = receive(&mut socket, &mut state, &mut message, &mut payload).await?;
            let peer = verify(&state, &payload[..n])?;
            send(&mut socket, &mut state, &self.0.payload, &mut message).await?;
            peer
        } else {
            receive(&mut socket, &mut state, &mut message, &mut payload).await?;
            send(&mut socket, &mut state, &self.0.payload, &mut message).await?;
            let n = receive(&mut socket, &mut state, &mut message, &mut payload).await?;
            verify(&state, &payload[..n])?
        };
        let session = state.into_transport_mode().map_err(noise_error)?;
        Ok((peer, Encrypted::new(socket, session)))
    }
}

pub(super) fn encode_payload(public_key: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + public_key.len() + signature.len());
    for part in [public_key, signature] {
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// Splits a payload into identity key and signature; `None` if malformed.
pub(super) fn decode_payload(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    fn part(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = u16::from_be_bytes(*len) as usize;
        (rest.len() >= len).then(|| rest.split_at(len))
    }
    let (key, rest) = part(payload)?;
    let (signature, rest) = part(rest)?;
    rest.is_empty().then_some((key, signature))
}

/// Checks the peer's identity against the static key the handshake
/// authenticated, and names the peer.
pub(super) fn verify(state: &HandshakeState, payload: &[u8]) -> Result<PeerId, io::Error> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let (key, signature) =
        decode_payload(payload).ok_or_else(|| invalid("noise: malformed identity"))?;
    let key =
        PublicKey::try_decode_protobuf(key).map_err(|_| invalid("noise: bad identity key"))?;
    let remote_static = state
        .get_remote_static()
        .ok_or_else(|| invalid("noise: no static key from the peer"))?;
    if !key.verify(&[STATIC_KEY_DOMAIN, remote_static].concat(), signature) {
        return Err(invalid("noise: the identity signature does not match"));
    }
    Ok(key.to_peer_id())
}

async fn send<S: AsyncWrite + Unpin>(
    socket: &mut S,
    state: &mut HandshakeState,
    payload: &[u8],
    message: &mut [u8],
) -> Result<(), io::Error> {
    let n = state.write_message(payload, message).map_err(noise_error)?;
    socket.write_all(&(n as u16).to_be_bytes()).await?;
    socket.write_all(&message[..n]).await?;
    socket.flush().await
}

async fn receive<S: AsyncRead + Unpin>(
    socket: &mut S,
    state: &mut HandshakeState,
    message: &mut [u8],
    payload: &mut [u8],
) -> Result<usize, io::Error> {
    let mut len = [0u8; 2];
    socket.read_exact(&mut len).await?;
    let len = u16::from_be_bytes(len) as usize;
    socket.read_exact(&mut message[..len]).await?;
    state
        .read_message(&message[..len], payload)
        .map_err(noise_error)
}

impl UpgradeInfo for Noise {
    type Info = &'static str;
    type InfoIter = iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        iter::once(PROTOCOL)
    }
}

impl<S> InboundConnectionUpgrade<S> for Noise
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Encrypted<S>);
    type Error = io::Error;
    type Future = BoxFuture<'static, Result<Self::Output, io::Error>>;

    fn upgrade_inbound(self, socket: S, _: Self::Info) -> Self::Future {
        self.handshake(socket, false).boxed()
    }
}

impl<S> OutboundConnectionUpgrade<S> for Noise
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Encrypted<S>);
    type Error = io::Error;
    type Future = BoxFuture<'static, Result<Self::Output, io::Error>>;

    fn upgrade_outbound(self, socket: S, _: Self::Info) -> Self::Future {
        self.handshake(socket, true).boxed()
    }
}
