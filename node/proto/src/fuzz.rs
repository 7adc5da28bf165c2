//! A structure-aware fuzzer for every decoder a stranger's bytes reach:
//! client frames, peer messages, the client channel's handshake and its
//! sealed messages. Valid messages (from the types' `Arbitrary`
//! strategies) are encoded, mutated (bits flipped, bytes cut, inserted or
//! set to extremes) and fed to the decoder, which must return a value or an
//! error and never panic; an unmutated encoding must round trip, and a
//! changed sealed message must never open.
//!
//! CI runs [`SHORT_RUN`] inputs per target as a unit test; `bench/fuzz`
//! runs as many as it is asked for (`RAYNODE_FUZZ_INPUTS`).

use crate::{frame, peer, secure, FromNode, PutView, ToNode};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};

/// Inputs per target in the unit test.
pub const SHORT_RUN: u64 = 20_000;

/// What one target saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub inputs: u64,
    /// Mutated inputs that still decoded (not a finding: many bytes are
    /// valid values).
    pub decoded: u64,
}

/// Mutates `bytes` in place a few times.
fn mutate(rng: &mut TestRng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..4) {
        let choice = rng.random_range(0..5);
        if bytes.is_empty() || choice == 0 {
            let at = rng.random_range(0..=bytes.len());
            let extreme = [0u8, 0x7f, 0x80, 0xff][rng.random_range(0..4)];
            bytes.insert(
                at,
                if rng.random_bool(0.5) {
                    extreme
                } else {
                    rng.random()
                },
            );
            continue;
        }
        let at = rng.random_range(0..bytes.len());
        match choice {
            1 => bytes[at] ^= 1 << rng.random_range(0..8),
            2 => bytes.truncate(at),
            3 => bytes[at] = 0xff,
            _ => {
                bytes.remove(at);
            }
        }
    }
}

fn values<T: std::fmt::Debug>(
    strategy: impl Strategy<Value = T>,
    seed: u64,
    count: u64,
    mut each: impl FnMut(T, &mut TestRng),
) {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Default::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    for _ in 0..count {
        let value = strategy
            .new_tree(&mut runner)
            .expect("the strategies never reject")
            .current();
        each(value, &mut rng);
    }
}

/// Client frames, both ways, and the in-place put reader.
pub fn client_frames(seed: u64, count: u64) -> Tally {
    let mut tally = Tally::default();
    values(
        any::<(ToNode, FromNode)>(),
        seed,
        count,
        |(to, from), rng| {
            for mut body in [
                postcard::to_allocvec(&to).expect("encodes"),
                postcard::to_allocvec(&from).expect("encodes"),
            ] {
                let to_ok = frame::decode::<ToNode>(&body).is_ok();
                let from_ok = frame::decode::<FromNode>(&body).is_ok();
                assert!(to_ok || from_ok, "an encoding did not decode");
                mutate(rng, &mut body);
                let decoded = frame::decode::<ToNode>(&body).is_ok()
                    | frame::decode::<FromNode>(&body).is_ok();
                let _ = PutView::of(&body);
                let header = [body.first(), body.get(1), body.get(2), body.get(3)]
                    .map(|b| b.copied().unwrap_or(0));
                let _ = frame::body_len(header);
                tally.inputs += 1;
                tally.decoded += u64::from(decoded);
            }
        },
    );
    tally
}

/// Peer requests, messages, load reports and pull requests.
pub fn peer_messages(seed: u64, count: u64) -> Tally {
    let mut tally = Tally::default();
    let strategy = any::<(
        peer::PeerRequest,
        peer::PeerMsg,
        peer::Load,
        peer::PullRequest,
    )>();
    values(strategy, seed, count, |(request, msg, load, pull), rng| {
        for mut bytes in [
            peer::encode(&request),
            peer::encode(&msg),
            peer::encode(&load),
            peer::encode(&pull),
        ] {
            mutate(rng, &mut bytes);
            let decoded = peer::decode::<peer::PeerRequest>(&bytes).is_ok()
                | peer::decode::<peer::PeerMsg>(&bytes).is_ok()
                | peer::decode::<peer::Load>(&bytes).is_ok()
                | peer::decode::<peer::PullRequest>(&bytes).is_ok();
            tally.inputs += 1;
            tally.decoded += u64::from(decoded);
        }
    });
    tally
}

/// The node's side of the handshake on mutated first messages, and sealed
/// messages with a change: neither may ever be accepted.
pub fn handshake(seed: u64, count: u64) -> Tally {
    let mut tally = Tally::default();
    let key = [seed as u8; 32];
    let psk = secure::psk(&key);
    let plain = proptest::collection::vec(any::<u8>(), 1..256);
    values(plain, seed, count, |plain, rng| {
        let (initiator, first) = secure::Initiator::start(&psk).expect("starts");
        let mut changed = first[secure::LENGTH_BYTES..].to_vec();
        let original = changed.clone();
        mutate(rng, &mut changed);
        let accepted = secure::respond(&psk, &changed).is_ok();
        assert!(
            !accepted || changed == original,
            "a changed first message was accepted"
        );

        let (reply, mut node) = secure::respond(&psk, &original).expect("responds");
        let mut client = initiator
            .finish(&reply[secure::LENGTH_BYTES..])
            .expect("finishes");
        let mut sealed = Vec::new();
        client.sealer.seal(&plain, &mut sealed).expect("seals");
        let mut message = sealed[secure::LENGTH_BYTES..].to_vec();
        let intact = message.clone();
        mutate(rng, &mut message);
        let mut out = vec![0u8; message.len().max(intact.len())];
        let opened = node.opener.open(&message, &mut out).is_ok();
        assert!(
            !opened || message == intact,
            "a changed sealed message opened"
        );
        let prefix = [sealed[0], sealed[1]];
        let _ = secure::message_len(prefix, secure::MAX_SEALED_HELLO);
        tally.inputs += 2;
        tally.decoded += u64::from(accepted) + u64::from(opened);
    });
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_never_panic() {
        assert_eq!(client_frames(1, SHORT_RUN / 2).inputs, SHORT_RUN);
    }

    #[test]
    fn peer_messages_never_panic() {
        assert_eq!(peer_messages(2, SHORT_RUN / 4).inputs, SHORT_RUN);
    }

    #[test]
    fn changed_handshakes_and_sealed_messages_are_refused() {
        assert_eq!(handshake(3, SHORT_RUN / 2).inputs, SHORT_RUN);
    }

    /// The long run: `RAYNODE_FUZZ_INPUTS` inputs per target (`bench/fuzz`).
    #[test]
    #[ignore = "long; run by bench/fuzz"]
    fn long_run() {
        let inputs: u64 = std::env::var("RAYNODE_FUZZ_INPUTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000);
        let seed: u64 = std::env::var("RAYNODE_FUZZ_SEED")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(7);
        for (name, run, per_value) in [
            ("client frames", client_frames as fn(u64, u64) -> Tally, 2),
            ("peer messages", peer_messages, 4),
            ("handshake and sealed messages", handshake, 2),
        ] {
            let started = std::time::Instant::now();
            let tally = run(seed, inputs.div_ceil(per_value));
            println!(
                "fuzz {name}: {} inputs, {} still decoded, 0 panics, {:.1} s",
                tally.inputs,
                tally.decoded,
                started.elapsed().as_secs_f64()
            );
        }
    }
}
