//! The client channel over TCP: a Noise handshake keyed by the cluster key,
//! then every byte sealed with AES-256-GCM.
//!
//! `Noise_NNpsk0_25519_AESGCM_SHA256`, its pre-shared key derived from the
//! cluster key ([`psk`]):
//!
//! ```text
//! client → node   psk, e      only a holder of the key can make it, but it can be replayed
//! client ← node   e, ee       the node's fresh ephemeral key: each session's keys are new
//! client → node   Hello       the first transport message, sealed with this session's keys
//! ```
//!
//! The node takes a connection for authenticated once the Hello opens: only
//! a client that made the first message *and* took part in this exchange
//! has the keys, so a recorded exchange replayed gets no further than the
//! second message. Every message on the wire is a `u16` big-endian length,
//! then the message. Before the Hello opens, a message may be at most
//! [`MAX_HANDSHAKE_MESSAGE`] or [`MAX_SEALED_HELLO`] bytes; nothing larger
//! is read.
//!
//! The keys, the handshake and the sealing are pure (no I/O). [`Stream`]
//! runs them over a blocking socket, for clients; the node runs them over
//! its async sockets.

use sha2::Digest;
use snow::{HandshakeState, StatelessTransportState};
use std::io::{self, Read, Write};
use std::sync::Arc;

const PARAMS: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";

/// Bound into the handshake, so that no other protocol's exchange passes.
const PROLOGUE: &[u8] = b"raynode client channel/1";

/// The pre-shared key is sha256 of this followed by the cluster key.
pub const PSK_DOMAIN: &[u8] = b"raynode-client-psk/1\0";

/// The largest noise message, the protocol's limit.
pub const MAX_MESSAGE: usize = 65_535;
/// Bytes of the authentication tag on every sealed message.
pub const TAG: usize = 16;
/// The most plaintext one message carries.
pub const MAX_PLAIN: usize = MAX_MESSAGE - TAG;
/// Bytes of a message's length prefix.
pub const LENGTH_BYTES: usize = 2;

/// The largest first handshake message a node reads (it is 48 bytes).
pub const MAX_HANDSHAKE_MESSAGE: usize = 256;
/// The largest hello frame, header included, a node reads from a client it
/// has not yet authenticated, on either socket.
pub const MAX_HELLO_BYTES: usize = 4096;
/// The largest first transport message: a sealed hello.
pub const MAX_SEALED_HELLO: usize = MAX_HELLO_BYTES + TAG;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecureError {
    /// The peer does not hold the cluster key, replayed a recorded
    /// exchange, or changed bytes on the way.
    #[error("the client channel's handshake or a sealed message failed: {0}")]
    Noise(#[from] snow::Error),
    #[error("a message of {len} bytes exceeds the limit of {max} here")]
    TooLarge { len: usize, max: usize },
}

impl From<SecureError> for io::Error {
    fn from(e: SecureError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The pre-shared key of a cluster's client channel.
pub fn psk(cluster_key: &[u8; 32]) -> [u8; 32] {
    let mut hash = sha2::Sha256::new();
    hash.update(PSK_DOMAIN);
    hash.update(cluster_key);
    hash.finalize().into()
}

/// The token that opens a node's dashboard on a non-loopback address:
/// derived from the cluster key (through the client channel's key), so
/// whoever holds the key can make it, and it reveals neither.
pub fn dashboard_token(psk: &[u8; 32]) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(b"raynode dashboard token v1");
    hash.update(psk);
    let digest: [u8; 32] = hash.finalize().into();
    crate::ids::hex(&digest)
}

fn builder(psk: &[u8; 32]) -> Result<snow::Builder<'_>, SecureError> {
    let params = PARAMS.parse()?;
    Ok(snow::Builder::new(params).prologue(PROLOGUE)?.psk(0, psk)?)
}

/// Appends `message` with its length prefix.
fn push_message(out: &mut Vec<u8>, message: &[u8]) {
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
}

/// The client's half of the handshake, between its two messages.
pub struct Initiator(HandshakeState);

impl Initiator {
    /// Starts a handshake; the bytes returned (length prefix included) go
    /// to the node.
    pub fn start(psk: &[u8; 32]) -> Result<(Initiator, Vec<u8>), SecureError> {
        let mut state = builder(psk)?.build_initiator()?;
        let mut message = [0u8; MAX_HANDSHAKE_MESSAGE];
        let n = state.write_message(&[], &mut message)?;
        let mut out = Vec::with_capacity(LENGTH_BYTES + n);
        push_message(&mut out, &message[..n]);
        Ok((Initiator(state), out))
    }

    /// Takes the node's reply (without its length prefix).
    pub fn finish(mut self, reply: &[u8]) -> Result<Session, SecureError> {
        let mut payload = [0u8; MAX_HANDSHAKE_MESSAGE];
        self.0.read_message(reply, &mut payload)?;
        Session::of(self.0)
    }
}

/// The node's half of the handshake: takes the client's first message
/// (without its length prefix) and gives the reply (with it) and the session.
pub fn respond(psk: &[u8; 32], first: &[u8]) -> Result<(Vec<u8>, Session), SecureError> {
    if first.len() > MAX_HANDSHAKE_MESSAGE {
        return Err(SecureError::TooLarge {
            len: first.len(),
            max: MAX_HANDSHAKE_MESSAGE,
        });
    }
    let mut state = builder(psk)?.build_responder()?;
    let mut scratch = [0u8; MAX_HANDSHAKE_MESSAGE];
    state.read_message(first, &mut scratch)?;
    let n = state.write_message(&[], &mut scratch)?;
    let mut out = Vec::with_capacity(LENGTH_BYTES + n);
    push_message(&mut out, &scratch[..n]);
    Ok((out, Session::of(state)?))
}

/// An established channel's keys, to be split into its two directions.
pub struct Session {
    pub sealer: Sealer,
    pub opener: Opener,
}

impl Session {
    fn of(state: HandshakeState) -> Result<Session, SecureError> {
        let state = Arc::new(state.into_stateless_transport_mode()?);
        Ok(Session {
            sealer: Sealer {
                state: state.clone(),
                nonce: 0,
            },
            opener: Opener { state, nonce: 0 },
        })
    }
}

/// Seals what one side sends, in order.
pub struct Sealer {
    state: Arc<StatelessTransportState>,
    nonce: u64,
}

impl Sealer {
    /// Appends `plain` to `out` as sealed messages with their length
    /// prefixes, [`MAX_PLAIN`] bytes at most in each.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SecureError> {
        let at = out.len();
        out.resize(at + sealed_len(plain.len()), 0);
        self.seal_to(plain, &mut out[at..])?;
        Ok(())
    }

    /// Seals `plain` into the front of `out`, which must hold at least
    /// [`sealed_len`] bytes; returns how many it wrote. For a buffer kept
    /// from one write to the next (nothing is zeroed first).
    pub fn seal_to(&mut self, plain: &[u8], out: &mut [u8]) -> Result<usize, SecureError> {
        let mut at = 0;
        for chunk in plain.chunks(MAX_PLAIN) {
            let sealed = chunk.len() + TAG;
            out[at..at + LENGTH_BYTES].copy_from_slice(&(sealed as u16).to_be_bytes());
            let message = &mut out[at + LENGTH_BYTES..at + LENGTH_BYTES + sealed];
            let n = self.state.write_message(self.nonce, chunk, message)?;
            debug_assert_eq!(n, sealed);
            self.nonce += 1;
            at += LENGTH_BYTES + sealed;
        }
        Ok(at)
    }
}

/// Opens what the other side sent, in order.
pub struct Opener {
    state: Arc<StatelessTransportState>,
    nonce: u64,
}

impl Opener {
    /// Opens one message (without its length prefix) into `out`, which must
    /// have room for the whole message; returns the plaintext's length.
    pub fn open(&mut self, message: &[u8], out: &mut [u8]) -> Result<usize, SecureError> {
        let n = self.state.read_message(self.nonce, message, out)?;
        self.nonce += 1;
        Ok(n)
    }
}

/// Bytes on the wire for `plain_len` bytes sealed: prefixes and tags added.
pub fn sealed_len(plain_len: usize) -> usize {
    plain_len + plain_len.div_ceil(MAX_PLAIN) * (LENGTH_BYTES + TAG)
}

/// A message's length from its prefix, refusing messages above `max` or too
/// short to hold a tag.
pub fn message_len(prefix: [u8; LENGTH_BYTES], max: usize) -> Result<usize, SecureError> {
    let len = u16::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(SecureError::TooLarge { len, max });
    }
    if len < TAG {
        return Err(SecureError::Noise(snow::Error::Decrypt));
    }
    Ok(len)
}

/// A blocking socket carrying the client channel: what is written is
/// sealed, what is read is opened.
pub struct Stream<S> {
    inner: S,
    sealer: Sealer,
    opener: Opener,
    sealed: Vec<u8>,
    message: Box<[u8]>,
    plain: Box<[u8]>,
    delivered: usize,
    plain_len: usize,
}

/// Plaintext sealed per write to the socket at most.
const WRITE_CHUNK: usize = 16 * MAX_PLAIN;

impl<S: Read + Write> Stream<S> {
    /// Runs the client's side of the handshake over `inner`.
    pub fn connect(mut inner: S, cluster_key: &[u8; 32]) -> io::Result<Stream<S>> {
        let (initiator, first) = Initiator::start(&psk(cluster_key))?;
        inner.write_all(&first)?;
        let mut prefix = [0u8; LENGTH_BYTES];
        inner.read_exact(&mut prefix).map_err(|e| match e.kind() {
            // The node closes at once on a first message it cannot open.
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the node refused the handshake: this cluster key is not the cluster's",
            ),
            _ => e,
        })?;
        let len = message_len(prefix, MAX_HANDSHAKE_MESSAGE)?;
        let mut reply = vec![0u8; len];
        inner.read_exact(&mut reply)?;
        let session = initiator.finish(&reply)?;
        Ok(Stream::of(inner, session))
    }

    fn of(inner: S, session: Session) -> Stream<S> {
        Stream {
            inner,
            sealer: session.sealer,
            opener: session.opener,
            sealed: Vec::new(),
            message: vec![0u8; MAX_MESSAGE].into_boxed_slice(),
            plain: vec![0u8; MAX_MESSAGE].into_boxed_slice(),
            delivered: 0,
            plain_len: 0,
        }
    }

    /// The same channel over another handle to the same socket, for a
    /// reader thread: one of the two may only read, the other only write.
    pub fn with_inner<T>(&self, inner: T) -> Stream<T> {
        Stream {
            inner,
            sealer: Sealer {
                state: self.sealer.state.clone(),
                nonce: self.sealer.nonce,
            },
            opener: Opener {
                state: self.opener.state.clone(),
                nonce: self.opener.nonce,
            },
            sealed: Vec::new(),
            message: vec![0u8; MAX_MESSAGE].into_boxed_slice(),
            plain: vec![0u8; MAX_MESSAGE].into_boxed_slice(),
            delivered: 0,
            plain_len: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Read> Read for Stream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.delivered < self.plain_len {
                let n = buf.len().min(self.plain_len - self.delivered);
                buf[..n].copy_from_slice(&self.plain[self.delivered..self.delivered + n]);
                self.delivered += n;
                return Ok(n);
            }
            let mut prefix = [0u8; LENGTH_BYTES];
            if self.inner.read(&mut prefix[..1])? == 0 {
                return Ok(0);
            }
            self.inner.read_exact(&mut prefix[1..])?;
            let len = message_len(prefix, MAX_MESSAGE)?;
            let message = &mut self.message[..len];
            self.inner.read_exact(message)?;
            // Opened straight into the caller's buffer when it has room.
            if buf.len() >= len {
                let n = self.opener.open(message, buf)?;
                if n > 0 {
                    return Ok(n);
                }
            } else {
                self.plain_len = self.opener.open(message, &mut self.plain)?;
                self.delivered = 0;
            }
        }
    }
}

impl<S: Write> Write for Stream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(WRITE_CHUNK);
        let need = sealed_len(n);
        if self.sealed.len() < need {
            self.sealed.resize(need, 0);
        }
        let len = self.sealer.seal_to(&buf[..n], &mut self.sealed)?;
        self.inner.write_all(&self.sealed[..len])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_pair(
        client_key: &[u8; 32],
        node_key: &[u8; 32],
    ) -> Result<(Session, Session), SecureError> {
        let (initiator, first) = Initiator::start(&psk(client_key))?;
        let (reply, node) = respond(&psk(node_key), &first[LENGTH_BYTES..])?;
        let client = initiator.finish(&reply[LENGTH_BYTES..])?;
        Ok((client, node))
    }

    /// Opens every length-prefixed message in `wire`.
    fn open_all(opener: &mut Opener, mut wire: &[u8]) -> Result<Vec<u8>, SecureError> {
        let mut plain = Vec::new();
        while !wire.is_empty() {
            let len = message_len([wire[0], wire[1]], MAX_MESSAGE)?;
            let mut out = vec![0u8; len];
            let n = opener.open(&wire[LENGTH_BYTES..LENGTH_BYTES + len], &mut out)?;
            plain.extend_from_slice(&out[..n]);
            wire = &wire[LENGTH_BYTES + len..];
        }
        Ok(plain)
    }

    #[test]
    fn bytes_cross_both_ways_and_are_not_in_the_clear() {
        let key = [7u8; 32];
        let (mut client, mut node) = session_pair(&key, &key).expect("handshake");
        let marker = b"a marker that must not be seen".repeat(5000);
        let mut wire = Vec::new();
        client.sealer.seal(&marker, &mut wire).expect("seal");
        assert!(!wire.windows(30).any(|w| w == &marker[..30]));
        assert_eq!(open_all(&mut node.opener, &wire).expect("open"), marker);
        let mut back = Vec::new();
        node.sealer.seal(b"reply", &mut back).expect("seal");
        assert_eq!(open_all(&mut client.opener, &back).expect("open"), b"reply");
    }

    #[test]
    fn another_key_fails_at_the_first_message() {
        assert!(session_pair(&[1; 32], &[2; 32]).is_err());
    }

    #[test]
    fn a_replayed_exchange_opens_nothing() {
        let key = [9u8; 32];
        let (initiator, first) = Initiator::start(&psk(&key)).expect("start");
        let (reply, mut node) = respond(&psk(&key), &first[LENGTH_BYTES..]).expect("respond");
        let mut client = initiator.finish(&reply[LENGTH_BYTES..]).expect("finish");
        let mut hello = Vec::new();
        client.sealer.seal(b"hello", &mut hello).expect("seal");
        assert_eq!(open_all(&mut node.opener, &hello).expect("open"), b"hello");

        // An eavesdropper replays both client messages to a new session.
        let (_, mut replayed) = respond(&psk(&key), &first[LENGTH_BYTES..]).expect("respond");
        assert!(open_all(&mut replayed.opener, &hello).is_err());
    }

    #[test]
    fn a_changed_byte_or_a_reordered_message_is_refused() {
        let key = [3u8; 32];
        let (mut client, mut node) = session_pair(&key, &key).expect("handshake");
        let (mut one, mut two) = (Vec::new(), Vec::new());
        client.sealer.seal(b"one", &mut one).expect("seal");
        client.sealer.seal(b"two", &mut two).expect("seal");
        assert!(open_all(&mut node.opener, &two).is_err(), "out of order");

        let (mut client, mut node) = session_pair(&key, &key).expect("handshake");
        let mut wire = Vec::new();
        client.sealer.seal(b"payload", &mut wire).expect("seal");
        wire[5] ^= 1;
        assert!(open_all(&mut node.opener, &wire).is_err());
    }

    #[test]
    fn sealed_lengths_count_a_prefix_and_a_tag_per_message() {
        assert_eq!(sealed_len(0), 0);
        assert_eq!(sealed_len(1), 1 + LENGTH_BYTES + TAG);
        assert_eq!(sealed_len(MAX_PLAIN), MAX_MESSAGE + LENGTH_BYTES);
        assert_eq!(
            sealed_len(MAX_PLAIN + 1),
            MAX_PLAIN + 1 + 2 * (LENGTH_BYTES + TAG)
        );
        let (mut client, _) = session_pair(&[1; 32], &[1; 32]).expect("handshake");
        let mut out = vec![0xee; sealed_len(MAX_PLAIN + 1) + 7];
        let n = client
            .sealer
            .seal_to(&[0u8; MAX_PLAIN + 1], &mut out)
            .expect("seal");
        assert_eq!(n, sealed_len(MAX_PLAIN + 1));
    }

    #[test]
    fn lengths_above_the_limit_or_below_a_tag_are_refused() {
        assert!(message_len(5000u16.to_be_bytes(), MAX_SEALED_HELLO).is_err());
        assert!(message_len(3u16.to_be_bytes(), MAX_MESSAGE).is_err());
        assert_eq!(
            message_len(100u16.to_be_bytes(), MAX_MESSAGE).expect("fits"),
            100
        );
        assert!(respond(&[0; 32], &[0u8; 300]).is_err());
    }

    #[test]
    fn a_blocking_stream_carries_large_writes_and_small_reads() {
        use std::os::unix::net::UnixStream;
        let key = [5u8; 32];
        let (client_sock, mut node_sock) = UnixStream::pair().expect("pair");
        let node = std::thread::spawn(move || -> io::Result<Vec<u8>> {
            let mut prefix = [0u8; 2];
            node_sock.read_exact(&mut prefix)?;
            let mut first = vec![0u8; message_len(prefix, MAX_HANDSHAKE_MESSAGE)?];
            node_sock.read_exact(&mut first)?;
            let (reply, session) = respond(&psk(&key), &first)?;
            node_sock.write_all(&reply)?;
            let mut stream = Stream::of(node_sock, session);
            let mut got = Vec::new();
            stream.read_to_end(&mut got)?;
            Ok(got)
        });
        let mut client = Stream::connect(client_sock, &key).expect("connect");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&data[..10]).expect("write");
        client.write_all(&data[10..]).expect("write");
        drop(client);
        let got = node.join().expect("thread").expect("node side");
        assert!(got == data, "bytes differ");
    }
}
