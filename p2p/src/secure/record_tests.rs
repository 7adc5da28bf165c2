//! Tests of the record layer on an in-memory wire that hands over a few
//! bytes per poll: its messages open with snow's own transport state (and
//! it opens snow's), built from the same handshake, in both directions;
//! and whatever the sizes of the writes, the reads and the wire's pieces,
//! the bytes read are the bytes written, in order.

use std::{
    cell::RefCell,
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use futures::{executor::block_on, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{identity::Keypair, PeerId};
use proptest::{collection::vec, prelude::*};
use snow::resolvers::{DefaultResolver, FallbackResolver, RingResolver};

use super::{
    handshake::{encode_payload, verify},
    Encrypted, Noise, MAX_FRAME, MAX_MESSAGE, MAX_PLAIN, PARAMS, RECEIVE_BYTES, STATIC_KEY_DOMAIN,
};

/// One direction of the wire.
#[derive(Default)]
struct Lane {
    bytes: VecDeque<u8>,
    closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// An in-memory wire: each direction holds at most `capacity` bytes, and
/// each poll of side `s` moves at most the next of `steps[s]` bytes (taken
/// in turn); a step of 0 returns `Pending` once, waking itself.
#[derive(Default)]
struct Wire {
    lanes: [Lane; 2],
    capacity: usize,
    steps: [Vec<usize>; 2],
    taken: [usize; 2],
}

impl Wire {
    /// Sets how much the wire holds and hands over from now on.
    fn set(&mut self, capacity: usize, steps: [Vec<usize>; 2]) {
        self.capacity = capacity.max(1);
        self.steps = steps.map(|mut steps| {
            // Some step moves a fair amount, so every transfer ends, and soon.
            steps.push(4_096);
            steps
        });
        self.taken = [0; 2];
    }

    /// Side `side`'s next byte limit; `None` to yield this time.
    fn next_step(&mut self, side: usize, cx: &Context<'_>) -> Option<usize> {
        let steps = &self.steps[side];
        let limit = steps[self.taken[side] % steps.len()];
        self.taken[side] += 1;
        if limit == 0 {
            cx.waker().wake_by_ref();
            return None;
        }
        Some(limit)
    }
}

/// One end of a [`Wire`].
struct End {
    wire: Arc<Mutex<Wire>>,
    side: usize,
}

/// Two connected ends and their wire.
fn wire(capacity: usize, steps: [Vec<usize>; 2]) -> (End, End, Arc<Mutex<Wire>>) {
    let wire = Arc::new(Mutex::new(Wire::default()));
    lock(&wire).set(capacity, steps);
    let end = |side| End {
        wire: Arc::clone(&wire),
        side,
    };
    (end(0), end(1), wire)
}

fn lock(wire: &Mutex<Wire>) -> MutexGuard<'_, Wire> {
    wire.lock().expect("wire lock")
}

impl AsyncRead for End {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut wire = lock(&self.wire);
        let Some(limit) = wire.next_step(self.side, cx) else {
            return Poll::Pending;
        };
        let lane = &mut wire.lanes[1 - self.side];
        if lane.bytes.is_empty() {
            if lane.closed {
                return Poll::Ready(Ok(0));
            }
            lane.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(limit).min(lane.bytes.len());
        for (to, byte) in buf.iter_mut().zip(lane.bytes.drain(..n)) {
            *to = byte;
        }
        if let Some(writer) = lane.writer.take() {
            writer.wake();
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for End {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut wire = lock(&self.wire);
        let Some(limit) = wire.next_step(self.side, cx) else {
            return Poll::Pending;
        };
        let capacity = wire.capacity;
        let lane = &mut wire.lanes[self.side];
        if lane.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = capacity.saturating_sub(lane.bytes.len());
        if room == 0 {
            lane.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(limit).min(room);
        lane.bytes.extend(&buf[..n]);
        if let Some(reader) = lane.reader.take() {
            reader.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut wire = lock(&self.wire);
        let lane = &mut wire.lanes[self.side];
        lane.closed = true;
        if let Some(reader) = lane.reader.take() {
            reader.wake();
        }
        Poll::Ready(Ok(()))
    }
}

fn noise(keypair: &Keypair) -> Noise {
    Noise::new(keypair, b"cluster".to_vec()).expect("noise config")
}

/// Bytes that differ at every position of a long run.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

// ---- Against snow's own transport state ----

/// A plain snow peer: snow's X25519 (its default resolver), ring's
/// AES-GCM and SHA-256 (snow's ring resolver), its own static key signed
/// by `keypair` as our upgrade expects.
struct SnowPeer {
    keypair: Keypair,
    static_keys: snow::Keypair,
}

impl SnowPeer {
    fn new() -> Self {
        let keypair = Keypair::generate_ed25519();
        let static_keys = Self::builder().generate_keypair().expect("static key");
        Self {
            keypair,
            static_keys,
        }
    }

    fn builder() -> snow::Builder<'static> {
        let resolver = FallbackResolver::new(Box::new(RingResolver), Box::new(DefaultResolver));
        snow::Builder::with_resolver(PARAMS.parse().expect("params"), Box::new(resolver))
    }

    fn state(&self, initiator: bool) -> snow::HandshakeState {
        let builder = Self::builder()
            .prologue(b"cluster")
            .expect("prologue")
            .local_private_key(&self.static_keys.private)
            .expect("static key");
        if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .expect("handshake state")
    }

    fn identity(&self) -> Vec<u8> {
        let signature = self
            .keypair
            .sign(&[STATIC_KEY_DOMAIN, &self.static_keys.public].concat())
            .expect("sign");
        encode_payload(&self.keypair.public().encode_protobuf(), &signature)
    }

    /// XX as the responder; the transport state and the verified peer.
    async fn respond(&self, end: &mut End) -> (snow::TransportState, PeerId) {
        let mut state = self.state(false);
        let mut payload = vec![0u8; MAX_MESSAGE];
        let mut message = vec![0u8; MAX_MESSAGE];
        state
            .read_message(&read_frame(end).await, &mut payload)
            .expect("first message");
        let n = state
            .write_message(&self.identity(), &mut message)
            .expect("second message");
        write_frame(end, &message[..n]).await;
        let n = state
            .read_message(&read_frame(end).await, &mut payload)
            .expect("third message");
        let peer = verify(&state, &payload[..n]).expect("the initiator's identity");
        (state.into_transport_mode().expect("transport"), peer)
    }

    /// XX as the initiator, into snow's nonce-explicit transport state.
    async fn initiate(&self, end: &mut End) -> (snow::StatelessTransportState, PeerId) {
        let mut state = self.state(true);
        let mut payload = vec![0u8; MAX_MESSAGE];
        let mut message = vec![0u8; MAX_MESSAGE];
        let n = state.write_message(&[], &mut message).expect("first");
        write_frame(end, &message[..n]).await;
        let n = state
            .read_message(&read_frame(end).await, &mut payload)
            .expect("second message");
        let peer = verify(&state, &payload[..n]).expect("the responder's identity");
        let n = state
            .write_message(&self.identity(), &mut message)
            .expect("third message");
        write_frame(end, &message[..n]).await;
        let session = state.into_stateless_transport_mode().expect("transport");
        (session, peer)
    }
}

async fn write_frame(end: &mut End, message: &[u8]) {
    let len = u16::try_from(message.len()).expect("a noise message");
    end.write_all(&len.to_be_bytes()).await.expect("write");
    end.write_all(message).await.expect("write");
}

async fn read_frame(end: &mut End) -> Vec<u8> {
    let mut len = [0u8; 2];
    end.read_exact(&mut len).await.expect("length");
    let mut message = vec![0u8; u16::from_be_bytes(len) as usize];
    end.read_exact(&mut message).await.expect("message");
    message
}

/// Plaintext pieces the snow peer seals one message each: from one byte
/// to a full message.
const PEER_PIECES: [usize; 5] = [1, 1_000, MAX_PLAIN, 12, MAX_PLAIN - 1];

/// Ours sends `there` then reads `back`; the peer, with `open` and `seal`
/// over its transport state, reads `there` then sends `back` and closes.
async fn exchange(
    ours: &mut Encrypted<End>,
    peer: &mut End,
    there: &[u8],
    back: &[u8],
    mut open: impl FnMut(&[u8], &mut [u8]) -> usize,
    mut seal: impl FnMut(&[u8], &mut [u8]) -> usize,
) {
    let our_side = async {
        ours.write_all(there).await.expect("write");
        ours.flush().await.expect("flush");
        let mut got = vec![0u8; back.len()];
        ours.read_exact(&mut got).await.expect("read");
        assert!(got == back, "we misread what snow sealed");
        let mut rest = [0u8; 4];
        assert_eq!(ours.read(&mut rest).await.expect("read"), 0, "clean end");
    };
    let peer_side = async {
        let mut got = Vec::with_capacity(there.len());
        let mut plain = vec![0u8; MAX_MESSAGE];
        while got.len() < there.len() {
            let n = open(&read_frame(peer).await, &mut plain);
            assert!(n > 0, "we sealed an empty message");
            got.extend_from_slice(&plain[..n]);
        }
        assert!(got == there, "snow misread what we sealed");
        let mut message = vec![0u8; MAX_MESSAGE];
        let mut at = 0;
        for size in PEER_PIECES.iter().cycle() {
            if at == back.len() {
                break;
            }
            let end = (at + size).min(back.len());
            let n = seal(&back[at..end], &mut message);
            write_frame(peer, &message[..n]).await;
            at = end;
        }
        peer.close().await.expect("close");
    };
    futures::join!(our_side, peer_side);
}

/// A wire that hands over odd amounts, sometimes after a `Pending`.
fn uneven_wire() -> (End, End) {
    let (first, second, _) = wire(
        100_000,
        [vec![7, 0, 65_537, 3, 40_000], vec![1_000, 0, 2, 70_000]],
    );
    (first, second)
}

#[test]
fn snow_opens_what_we_seal_and_we_open_what_it_seals_as_responder() {
    let ours = Keypair::generate_ed25519();
    let peer = SnowPeer::new();
    let (our_end, mut peer_end) = uneven_wire();
    let there = pattern(3 * MAX_PLAIN + 100, 3);
    let back = pattern(2 * MAX_PLAIN + 7, 5);
    block_on(async {
        let (dialed, (session, peer_of_ours)) = futures::join!(
            noise(&ours).handshake(our_end, true),
            peer.respond(&mut peer_end)
        );
        let (peer_of_snow, mut encrypted) = dialed.expect("our handshake");
        assert_eq!(peer_of_snow, peer.keypair.public().to_peer_id());
        assert_eq!(peer_of_ours, ours.public().to_peer_id());
        // Both closures use the one transport state.
        let session = RefCell::new(session);
        exchange(
            &mut encrypted,
            &mut peer_end,
            &there,
            &back,
            |message, plain| {
                let mut session = session.borrow_mut();
                session.read_message(message, plain).expect("snow opens")
            },
            |plain, message| {
                let mut session = session.borrow_mut();
                session.write_message(plain, message).expect("snow seals")
            },
        )
        .await;
    });
}

#[test]
fn snow_opens_what_we_seal_and_we_open_what_it_seals_as_initiator() {
    let ours = Keypair::generate_ed25519();
    let peer = SnowPeer::new();
    let (mut peer_end, our_end) = uneven_wire();
    let there = pattern(MAX_PLAIN + 1, 11);
    let back = pattern(4 * MAX_PLAIN, 13);
    block_on(async {
        let ((session, peer_of_ours), accepted) = futures::join!(
            peer.initiate(&mut peer_end),
            noise(&ours).handshake(our_end, false)
        );
        let (peer_of_snow, mut encrypted) = accepted.expect("our handshake");
        assert_eq!(peer_of_snow, peer.keypair.public().to_peer_id());
        assert_eq!(peer_of_ours, ours.public().to_peer_id());
        // The nonce is each direction's message count, from zero.
        let (mut received, mut sent) = (0u64, 0u64);
        exchange(
            &mut encrypted,
            &mut peer_end,
            &there,
            &back,
            |message, plain| {
                let n = session
                    .read_message(received, message, plain)
                    .expect("snow opens");
                received += 1;
                n
            },
            |plain, message| {
                let n = session
                    .write_message(sent, plain, message)
                    .expect("snow seals");
                sent += 1;
                n
            },
        )
        .await;
    });
}

// ---- Message boundaries and partial reads and writes ----

/// Sizes of a write, a read or a step of the wire: tiny, around a
/// message's plaintext, or several messages.
fn piece() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..32,
        (MAX_PLAIN - 2)..(MAX_PLAIN + 3),
        1usize..200_000,
    ]
}

fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..2_000,
        Just(MAX_PLAIN),
        Just(MAX_PLAIN + 1),
        Just(2 * MAX_PLAIN - 1),
        Just(2 * MAX_PLAIN),
        1usize..200_000,
        // Past the receive buffer, which then has to move a partial frame
        // to its front.
        (RECEIVE_BYTES - MAX_FRAME)..(RECEIVE_BYTES + 2 * MAX_FRAME),
    ]
}

/// Wire steps: 0 (a `Pending`), a few bytes, or up to a frame and more.
fn step() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), 1usize..8, 1usize..70_000]
}

/// Writes `data` in pieces of `sizes` (in turn), flushing after every
/// `flush_every` pieces and at the end.
async fn write_pieces(
    stream: &mut Encrypted<End>,
    data: &[u8],
    sizes: &[usize],
    flush_every: usize,
) {
    let mut at = 0;
    for (i, size) in sizes.iter().cycle().enumerate() {
        if at == data.len() {
            break;
        }
        let end = (at + size).min(data.len());
        stream.write_all(&data[at..end]).await.expect("write");
        if (i + 1) % flush_every == 0 {
            stream.flush().await.expect("flush");
        }
        at = end;
    }
    stream.flush().await.expect("flush");
}

/// Reads `len` bytes into buffers of `sizes` (in turn).
async fn read_pieces(stream: &mut Encrypted<End>, len: usize, sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut buf = vec![0u8; sizes.iter().copied().max().unwrap_or(1)];
    for size in sizes.iter().cycle() {
        if out.len() == len {
            break;
        }
        let n = stream.read(&mut buf[..*size]).await.expect("read");
        assert!(n > 0, "the stream ended after {} of {len} bytes", out.len());
        assert!(n <= *size);
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Two record streams connected over one wire, and the wire.
struct Connected {
    dialer: Encrypted<End>,
    listener: Encrypted<End>,
    wire: Arc<Mutex<Wire>>,
}

fn connect() -> Connected {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (dialer_end, listener_end, wire) = wire(MAX_FRAME, [vec![], vec![]]);
    let (dialed, accepted) = block_on(async {
        futures::join!(
            noise(&a).handshake(dialer_end, true),
            noise(&b).handshake(listener_end, false)
        )
    });
    Connected {
        dialer: dialed.expect("dialer").1,
        listener: accepted.expect("listener").1,
        wire,
    }
}

thread_local! {
    /// The handshake is most of a case's time (X25519 and Ed25519 are
    /// slow in unoptimised builds), so the cases share a connection while
    /// they pass (it carries on, nonces counting up); a failed case leaves
    /// none, and the next case connects afresh.
    static CONNECTED: RefCell<Option<Connected>> = const { RefCell::new(None) };
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn bytes_cross_in_order_whatever_the_pieces(
        len in payload_len(),
        seed in any::<u8>(),
        writes in vec(piece(), 1..6),
        reads in vec(piece(), 1..6),
        flush_every in 1usize..5,
        capacity in prop_oneof![1usize..64, 1usize..300_000],
        dialer_steps in vec(step(), 1..6),
        listener_steps in vec(step(), 1..6),
        dialer_writes in any::<bool>(),
    ) {
        let mut connected = CONNECTED
            .with(|shared| shared.borrow_mut().take())
            .unwrap_or_else(connect);
        lock(&connected.wire).set(capacity, [dialer_steps, listener_steps]);
        let data = pattern(len, seed);
        let Connected { dialer, listener, .. } = &mut connected;
        let (writer, reader) = if dialer_writes {
            (dialer, listener)
        } else {
            (listener, dialer)
        };
        let ((), received) = block_on(async {
            futures::join!(
                write_pieces(writer, &data, &writes, flush_every),
                read_pieces(reader, data.len(), &reads)
            )
        });
        prop_assert_eq!(received.len(), data.len());
        prop_assert!(received == data, "bytes differ");
        CONNECTED.with(|shared| *shared.borrow_mut() = Some(connected));
    }
}
