//! Swarms on 127.0.0.1: discovery, request/response, gossip, cluster key,
//! size limits, identity persistence. Every wait is bounded; every swarm a
//! test starts is shut down.

use std::{future::Future, time::Duration};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use p2p::{
    ClusterKey, Config, DialError, Event, Handle, Keypair, Multiaddr, PeerId, Protocol,
    PublishError, RequestError, StartError, OBJECT_CHUNK_BYTES,
};
use tokio::{sync::mpsc, task::JoinHandle};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(TEST_TIMEOUT, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out: {what}"),
    }
}

fn loopback() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")
}

fn config(key: &ClusterKey, bootstrap: Vec<Multiaddr>) -> Config {
    Config::new(Keypair::generate_ed25519(), key.clone())
        .with_listen(vec![loopback()])
        .with_bootstrap(bootstrap)
}

/// A running swarm whose inbound requests are answered by an echo server
/// (`echo:` + request), whose object streams are answered with as many
/// bytes of 7 as the 4-byte length the opener wrote, and whose other events
/// are forwarded to `events`.
struct Node {
    handle: Handle,
    peer: PeerId,
    addr: Multiaddr,
    events: mpsc::Receiver<Event>,
    server: JoinHandle<()>,
}

impl Node {
    async fn start(config: Config) -> Result<Node, StartError> {
        let started = p2p::spawn(config).await?;
        let addr = started.join_addrs()[0].clone();
        let (tx, events) = mpsc::channel(1024);
        let handle = started.handle.clone();
        let mut inbound = started.events;
        let mut object_streams = started.object_streams;
        tokio::spawn(async move {
            while let Some((_peer, mut stream)) = object_streams.next().await {
                tokio::spawn(async move {
                    let mut len = [0u8; 4];
                    if stream.read_exact(&mut len).await.is_ok() {
                        let len = u32::from_be_bytes(len) as usize;
                        let _ = stream.write_all(&vec![7u8; len]).await;
                        let _ = stream.close().await;
                    }
                });
            }
        });
        let server = tokio::spawn(async move {
            while let Some(event) = inbound.recv().await {
                match event {
                    Event::InboundRequest {
                        request, responder, ..
                    } => {
                        let response = [b"echo:".as_slice(), &request].concat();
                        let _ = handle.respond(responder, response).await;
                    }
                    other => {
                        let _ = tx.try_send(other);
                    }
                }
            }
        });
        Ok(Node {
            handle: started.handle,
            peer: started.peer_id,
            addr,
            events,
            server,
        })
    }

    async fn stop(self) {
        self.handle.shutdown().await;
        assert!(self.handle.is_closed());
        let _ = bounded("echo server ends", self.server).await;
    }

    async fn wait_connected(&self, peer: PeerId) {
        bounded("peer connects", async {
            while !self.handle.connected_peers().await.contains(&peer) {
                tokio::time::sleep(POLL).await;
            }
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_exchange_requests_both_ways() {
    init_tracing();
    let key = ClusterKey::new(rand_key());
    let a = Node::start(config(&key, vec![])).await.expect("start a");
    let b = Node::start(config(&key, vec![a.addr.clone()]))
        .await
        .expect("start b");
    assert!(b.handle.connected_peers().await.contains(&a.peer));

    let reply = bounded(
        "b -> a",
        b.handle.request(a.peer, Protocol::Rpc, b"ping".to_vec()),
    )
    .await
    .expect("request b -> a");
    assert_eq!(reply, b"echo:ping");

    a.wait_connected(b.peer).await;
    let reply = bounded(
        "a -> b",
        a.handle.request(b.peer, Protocol::Rpc, b"pong".to_vec()),
    )
    .await
    .expect("request a -> b");
    assert_eq!(reply, b"echo:pong");

    // A full object chunk over an object stream.
    let chunk = bounded("chunk", async {
        let mut stream = b
            .handle
            .open_object_stream(a.peer)
            .await
            .map_err(std::io::Error::other)?;
        stream
            .write_all(&(OBJECT_CHUNK_BYTES as u32).to_be_bytes())
            .await?;
        let mut chunk = Vec::new();
        stream.read_to_end(&mut chunk).await?;
        Ok::<_, std::io::Error>(chunk)
    })
    .await
    .expect("chunk");
    assert_eq!(chunk.len(), OBJECT_CHUNK_BYTES);
    assert!(chunk.iter().all(|&b| b == 7));

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_node_finds_the_first_through_the_second() {
    init_tracing();
    let key = ClusterKey::new(rand_key());
    let a = Node::start(config(&key, vec![])).await.expect("start a");
    let b = Node::start(config(&key, vec![a.addr.clone()]))
        .await
        .expect("start b");
    // b must know a's listen address (identify) before c asks it.
    bounded("b learns a's addresses", async {
        while b.handle.peer_addrs(a.peer).await.is_empty() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    let c = Node::start(config(&key, vec![b.addr.clone()]))
        .await
        .expect("start c");

    // c was told only of b; Kademlia leads it to a.
    c.wait_connected(a.peer).await;
    let reply = bounded(
        "c -> a",
        c.handle.request(a.peer, Protocol::Rpc, b"hi".to_vec()),
    )
    .await
    .expect("request c -> a");
    assert_eq!(reply, b"echo:hi");
    assert!(!c.handle.peer_addrs(a.peer).await.is_empty());

    a.stop().await;
    b.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_reaches_subscribers() {
    init_tracing();
    let key = ClusterKey::new(rand_key());
    let a = Node::start(config(&key, vec![])).await.expect("start a");
    let mut b = Node::start(config(&key, vec![a.addr.clone()]))
        .await
        .expect("start b");
    assert!(a.handle.subscribe("load").await.expect("subscribe a"));
    assert!(b.handle.subscribe("load").await.expect("subscribe b"));
    assert!(!b.handle.subscribe("load").await.expect("again"));

    let got = bounded("gossip delivered", async {
        let mut n = 0u32;
        loop {
            n += 1;
            match a
                .handle
                .publish("load", format!("load {n}").into_bytes())
                .await
            {
                Ok(()) | Err(PublishError::NoPeers) => {}
                Err(e) => panic!("publish: {e}"),
            }
            let deadline = tokio::time::sleep(Duration::from_millis(200));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    event = b.events.recv() => match event {
                        Some(Event::Gossip { from, topic, data }) => return (from, topic, data),
                        Some(_) => {}
                        None => panic!("b's events ended"),
                    },
                    _ = &mut deadline => break,
                }
            }
        }
    })
    .await;
    assert_eq!(got.0, a.peer);
    assert_eq!(got.1, "load");
    assert!(got.2.starts_with(b"load "));

    let too_big = vec![0u8; p2p::DEFAULT_MAX_GOSSIP_BYTES + 1];
    assert!(matches!(
        a.handle.publish("load", too_big).await,
        Err(PublishError::TooLarge { .. })
    ));

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cluster_key_cannot_connect() {
    init_tracing();
    let a = Node::start(config(&ClusterKey::new(rand_key()), vec![]))
        .await
        .expect("start a");
    let other_key = ClusterKey::new(rand_key());

    // Joining through a node of another cluster fails at start, saying why.
    let err = match Node::start(config(&other_key, vec![a.addr.clone()])).await {
        Ok(node) => {
            node.stop().await;
            panic!("a node with another cluster key joined");
        }
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(text.contains(p2p::CLUSTER_KEY_MISMATCH), "{text}");
    match &err {
        StartError::Join(failures) => {
            assert!(
                failures.iter().all(|(_, e)| e.is_cluster_key_mismatch()),
                "{err:?}"
            )
        }
        other => panic!("unexpected error: {other:?}"),
    }

    // A running node of another cluster gets the same answer from dial.
    let b = Node::start(config(&other_key, vec![]))
        .await
        .expect("start b");
    let err = bounded("dial", b.handle.dial(a.addr.clone()))
        .await
        .expect_err("dial must fail");
    assert!(
        matches!(err, DialError::ClusterKeyMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("cluster key"), "{err}");
    assert!(b.handle.connected_peers().await.is_empty());
    assert!(a.handle.connected_peers().await.is_empty());

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_is_refused_and_the_swarm_keeps_serving() {
    init_tracing();
    let key = ClusterKey::new(rand_key());
    let a = Node::start(config(&key, vec![]).with_max_request_bytes(1024))
        .await
        .expect("start a");
    let b = Node::start(config(&key, vec![a.addr.clone()]).with_max_request_bytes(1 << 20))
        .await
        .expect("start b");

    // Over a's limit but within b's: b sends it, a refuses it on read.
    let err = bounded(
        "oversized",
        b.handle.request(a.peer, Protocol::Rpc, vec![1u8; 4096]),
    )
    .await
    .expect_err("a must refuse");
    assert!(
        matches!(err, RequestError::Io(_) | RequestError::ConnectionClosed),
        "{err:?}"
    );
    // Over b's own limit: refused before it leaves.
    let err = b
        .handle
        .request(a.peer, Protocol::Rpc, vec![1u8; (1 << 20) + 1])
        .await
        .expect_err("b must refuse");
    assert!(matches!(err, RequestError::TooLarge { .. }), "{err:?}");

    // a still serves, on the same connection.
    let reply = bounded(
        "small",
        b.handle.request(a.peer, Protocol::Rpc, b"ok".to_vec()),
    )
    .await
    .expect("small request");
    assert_eq!(reply, b"echo:ok");
    assert!(a.handle.connected_peers().await.contains(&b.peer));

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_persists_across_restart() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("keys/cluster.key");
    let key = p2p::load_or_create_cluster_key(Some(&key_path)).expect("cluster key");

    let identity = p2p::load_or_create_identity(&dir.path().join("data")).expect("identity");
    let first = p2p::spawn(Config::new(identity, key).with_listen(vec![loopback()]))
        .await
        .expect("first start");
    let first_id = first.peer_id;
    first.handle.shutdown().await;

    let identity = p2p::load_or_create_identity(&dir.path().join("data")).expect("identity");
    let key = p2p::load_or_create_cluster_key(Some(&key_path)).expect("cluster key");
    let second = p2p::spawn(Config::new(identity, key).with_listen(vec![loopback()]))
        .await
        .expect("second start");
    assert_eq!(second.peer_id, first_id);
    assert!(second.join_addrs()[0]
        .to_string()
        .ends_with(&first_id.to_string()));
    second.handle.shutdown().await;
}

fn rand_key() -> [u8; 32] {
    // A fresh key per test keeps concurrently running tests apart.
    rand::random()
}
