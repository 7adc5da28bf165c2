//! Tests of the whole upgrade over loopback TCP: both sides learn the
//! peer, bytes cross intact in both directions, and a wrong prologue, a
//! forged identity or a changed byte on the wire is an error.

use std::{io, sync::Arc, time::Duration};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{identity::Keypair, tcp::tokio::TcpStream, PeerId};
use tokio::net::TcpListener;

use super::{
    handshake::{decode_payload, encode_payload, Identity},
    Encrypted, Noise,
};

type Session = Result<(PeerId, Encrypted<TcpStream>), io::Error>;

fn bounded<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(Duration::from_secs(20), f)
}

/// A listener whose accepted connections go through `relay` first.
async fn pair_through(dialer: Noise, listener: Noise, relay: Option<usize>) -> (Session, Session) {
    let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server_addr = server.local_addr().expect("addr");
    let mut target = server_addr;
    if let Some(flip_at) = relay {
        let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        target = front.local_addr().expect("addr");
        tokio::spawn(async move {
            let (inbound, _) = front.accept().await.expect("accept");
            let outbound = tokio::net::TcpStream::connect(server_addr)
                .await
                .expect("connect");
            corrupting_relay(inbound, outbound, flip_at).await;
        });
    }
    let (dialed, accepted) = tokio::join!(
        async {
            let socket = tokio::net::TcpStream::connect(target)
                .await
                .expect("connect");
            bounded(dialer.handshake(TcpStream(socket), true))
                .await
                .expect("in time")
        },
        async {
            let (socket, _) = server.accept().await.expect("accept");
            bounded(listener.handshake(TcpStream(socket), false))
                .await
                .expect("in time")
        }
    );
    (dialed, accepted)
}

/// Copies both ways, flipping one bit of the dialer's byte `flip_at`.
async fn corrupting_relay(
    inbound: tokio::net::TcpStream,
    outbound: tokio::net::TcpStream,
    flip_at: usize,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut in_read, mut in_write) = inbound.into_split();
    let (mut out_read, mut out_write) = outbound.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
    });
    let mut seen = 0;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match in_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if (seen..seen + n).contains(&flip_at) {
            buf[flip_at - seen] ^= 1;
        }
        seen += n;
        if out_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    back.abort();
}

fn noise(keypair: &Keypair, prologue: &[u8]) -> Noise {
    Noise::new(keypair, prologue.to_vec()).expect("noise config")
}

/// Bytes that differ at every position of a long run.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Writes `data` in pieces of the given sizes, in turn, then flushes.
async fn write_in_pieces(stream: &mut Encrypted<TcpStream>, data: &[u8], sizes: &[usize]) {
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at == data.len() {
            break;
        }
        let end = (at + size).min(data.len());
        stream.write_all(&data[at..end]).await.expect("write");
        at = end;
    }
    stream.flush().await.expect("flush");
}

async fn read_in_pieces(stream: &mut Encrypted<TcpStream>, len: usize, sizes: &[usize]) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at == len {
            break;
        }
        let end = (at + size).min(len);
        let n = stream.read(&mut out[at..end]).await.expect("read");
        assert!(n > 0, "stream ended after {at} of {len} bytes");
        at += n;
    }
    out
}

#[tokio::test]
async fn both_sides_learn_the_peer_and_bytes_cross_intact() {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (x, y) = pair_through(noise(&a, b"key"), noise(&b, b"key"), None).await;
    let (peer_of_y, mut y) = y.expect("listener");
    let (peer_of_x, mut x) = x.expect("dialer");
    assert_eq!(peer_of_x, b.public().to_peer_id());
    assert_eq!(peer_of_y, a.public().to_peer_id());

    // Multiplexer-like writes (a 12-byte header, then a large body) and
    // reads both smaller and larger than a message.
    let there = pattern(3 << 20, 7);
    let back = pattern(1 << 20, 9);
    let ((), received) = bounded(async {
        tokio::join!(
            write_in_pieces(&mut x, &there, &[12, 256 * 1024, 1, 70_000]),
            read_in_pieces(&mut y, there.len(), &[12, 256 * 1024, 5, 65_519, 65_535])
        )
    })
    .await
    .expect("in time");
    assert!(received == there, "bytes differ");
    let ((), received) = bounded(async {
        tokio::join!(
            write_in_pieces(&mut y, &back, &[65_519, 3]),
            read_in_pieces(&mut x, back.len(), &[1 << 20])
        )
    })
    .await
    .expect("in time");
    assert!(received == back, "bytes differ");

    x.close().await.expect("close");
    let mut rest = [0u8; 8];
    let n = bounded(y.read(&mut rest))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(n, 0, "a close is a clean end of stream");
}

#[tokio::test]
async fn another_prologue_fails_the_handshake() {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (x, y) = pair_through(noise(&a, b"one key"), noise(&b, b"another"), None).await;
    assert!(x.is_err() || y.is_err(), "one side must refuse");
    assert!(y.is_err(), "the listener cannot open the dialer's identity");
}

#[tokio::test]
async fn an_identity_that_did_not_sign_the_static_key_is_refused() {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let honest = noise(&a, b"key");
    // The signature is over some other static key.
    let other = noise(&a, b"key");
    let forged = Noise(Arc::new(Identity {
        static_private: honest.0.static_private.clone(),
        payload: other.0.payload.clone(),
        prologue: b"key".to_vec(),
    }));
    let (x, _) = pair_through(noise(&b, b"key"), forged, None).await;
    let error = x.err().expect("the dialer refuses the listener");
    assert!(error.to_string().contains("signature"), "{error}");
}

#[tokio::test]
async fn a_changed_byte_is_an_error_not_a_crash() {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (x, y) = pair_through(noise(&a, b"key"), noise(&b, b"key"), Some(5_000)).await;
    let (_, mut x) = x.expect("dialer");
    let (_, mut y) = y.expect("listener");
    let data = pattern(256 * 1024, 1);
    let (_, read) = bounded(async {
        tokio::join!(
            async { x.write_all(&data).await.and(x.flush().await) },
            async {
                let mut out = vec![0u8; data.len()];
                y.read_exact(&mut out).await
            }
        )
    })
    .await
    .expect("in time");
    let error = read.expect_err("a changed message must not be read");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
}

#[test]
fn malformed_identity_payloads_are_refused() {
    assert!(decode_payload(&[]).is_none());
    assert!(decode_payload(&[0, 5, 1, 2]).is_none());
    assert!(decode_payload(&encode_payload(b"k", b"s")).is_some());
    let mut trailing = encode_payload(b"k", b"s");
    trailing.push(0);
    assert!(decode_payload(&trailing).is_none());
}
