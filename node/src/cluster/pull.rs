//! Objects between stores, over the swarm's object streams: a puller opens
//! a few streams (lanes) to the holders it knows and asks for one chunk after
//! another on each; the holder writes a chunk's bytes into the stream
//! straight from its mapped store, and the puller reads them straight into
//! the object it created in its own store. A chunk a holder fails to give is
//! asked of the next holder.
//!
//! On a stream, per chunk: the puller writes a [`PullRequest`] (a 4-byte
//! big-endian length, then the request, at most
//! [`p2p::MAX_OBJECT_REQUEST_BYTES`]); the holder answers [`CHUNK_OK`] and
//! exactly the requested bytes, or [`CHUNK_ERROR`] and a length-prefixed
//! message of at most [`MAX_ERROR_BYTES`]. The puller closes the stream when
//! it has all its chunks.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{
    stream::FuturesUnordered, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt,
};
use objstore::ObjectKey;
use p2p::PeerId;
use raynode_proto::ObjectId;
use tokio::sync::Semaphore;

use super::wire::{self, PullRequest, CHUNK_ERROR, CHUNK_OK};

/// Streams (so chunks in flight) per pull.
const WINDOW: usize = 4;
/// Tries of a fresh stream before its holder counts as failed, and the
/// pause between them (times the try's number).
const FRESH_ATTEMPTS: u64 = 4;
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Streams a holder serves at once; further streams wait their turn.
const SERVING: usize = 32;
/// Bound on one chunk's exchange, both sides.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a holder's error message.
pub const MAX_ERROR_BYTES: usize = 4096;

/// Takes the object streams peers open and serves each, until the swarm
/// stops.
pub async fn accept(mut streams: p2p::ObjectStreams, store: objstore::Store) {
    let serving = Arc::new(Semaphore::new(SERVING));
    while let Some((peer, stream)) = streams.next().await {
        let (store, serving) = (store.clone(), serving.clone());
        tokio::spawn(async move {
            let Ok(_permit) = serving.acquire().await else {
                return;
            };
            // `serve` bounds each exchange; the stream as a whole lasts as
            // long as the puller has chunks to ask for.
            if let Err(e) = serve(&store, stream).await {
                tracing::debug!(%peer, "serving object chunks failed: {e}");
            }
        });
    }
}

/// Answers the chunk requests on one stream, one after another, until the
/// puller closes it.
async fn serve(store: &objstore::Store, mut stream: p2p::Stream) -> std::io::Result<()> {
    loop {
        let exchange = async {
            let Some(request) = read_request(&mut stream).await? else {
                return Ok(false);
            };
            match find_chunk(store, &request) {
                Ok((handle, start, end)) => {
                    stream.write_all(&[CHUNK_OK]).await?;
                    stream.write_all(&handle.as_slice()[start..end]).await?;
                }
                Err(message) => {
                    let mut message = message.into_bytes();
                    message.truncate(MAX_ERROR_BYTES);
                    stream.write_all(&[CHUNK_ERROR]).await?;
                    write_frame(&mut stream, &message).await?;
                }
            }
            stream.flush().await?;
            Ok::<_, std::io::Error>(true)
        };
        match tokio::time::timeout(CHUNK_TIMEOUT, exchange).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return stream.close().await,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no request or no progress within the chunk timeout",
                ))
            }
        }
    }
}

/// The next request on a stream, or `None` if the puller closed it.
async fn read_request(stream: &mut p2p::Stream) -> std::io::Result<Option<Vec<u8>>> {
    match read_frame(stream, p2p::MAX_OBJECT_REQUEST_BYTES).await {
        Ok(request) => Ok(Some(request)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// The sealed object a request names and the byte range it asks for.
fn find_chunk(
    store: &objstore::Store,
    request: &[u8],
) -> Result<(objstore::ReadHandle, usize, usize), String> {
    let request: PullRequest = wire::decode(request)?;
    let handle = store
        .get(&ObjectKey(request.id.0))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("object {} is not here", request.id))?;
    let size = handle.as_slice().len();
    let start = usize::try_from(request.offset).map_err(|e| e.to_string())?;
    let end = start.saturating_add(request.len as usize);
    if start >= end || end > size || request.len as usize > p2p::OBJECT_CHUNK_BYTES {
        return Err(format!(
            "bad chunk {}+{} of an object of {size} bytes",
            request.offset, request.len
        ));
    }
    Ok((handle, start, end))
}

/// Writes `frame` with its length prefix (see [`read_frame`]).
async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, frame: &[u8]) -> std::io::Result<()> {
    stream
        .write_all(&raynode_proto::frame::header(frame.len()))
        .await?;
    stream.write_all(frame).await
}

/// Reads a length-prefixed frame of at most `limit` bytes.
async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; raynode_proto::frame::HEADER_BYTES];
    stream.read_exact(&mut header).await?;
    let len = raynode_proto::frame::body_len_within(header, limit)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut frame = vec![0u8; len];
    stream.read_exact(&mut frame).await?;
    Ok(frame)
}

/// Copies object `id` of `size` bytes from `holders` into `store` and
/// seals it. An object already in the store is left as it is.
#[tracing::instrument(name = "pull", level = "debug", skip_all, fields(object = %id, size, holders = holders.len()))]
pub async fn pull(
    p2p: p2p::Handle,
    store: objstore::Store,
    id: ObjectId,
    size: u64,
    holders: Vec<PeerId>,
    primary: bool,
) -> Result<(), PullError> {
    let key = ObjectKey(id.0);
    // Making room may spill objects to disk: off the async threads.
    let room = store.clone();
    let created = tokio::task::spawn_blocking(move || room.create(key, size, primary))
        .await
        .map_err(|e| PullError::Failed(format!("creating the copy: {e}")))?;
    let mut created = match created {
        Ok(c) => c,
        Err(objstore::CreateError::AlreadyExists(_)) => return Ok(()),
        Err(e @ objstore::CreateError::StoreFull { .. }) => {
            return Err(PullError::NoRoom(e.to_string()))
        }
        Err(e) => return Err(PullError::Failed(e.to_string())),
    };
    let result = fill(&p2p, created.writer().as_mut_slice(), id, holders).await;
    match result {
        Ok(()) => created
            .into_writer()
            .seal()
            .map_err(|e| PullError::Failed(e.to_string())),
        Err(e) => {
            drop(created);
            let _ = store.abort(&key);
            Err(PullError::Failed(e))
        }
    }
}

/// Why a pull did not bring its object.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    /// This store has no room now (what it holds is pinned or being
    /// written): the pull may be tried again later.
    #[error("no room in this node's store: {0}")]
    NoRoom(String),
    /// No holder could give the object.
    #[error("{0}")]
    Failed(String),
}

/// Chunks not yet fetched: offset and the part of the object to fill.
type Work<'a> = Mutex<Vec<(u64, &'a mut [u8])>>;

/// The work list; a lane never holds it across an await.
fn take<'w, 'a>(todo: &'w Work<'a>) -> std::sync::MutexGuard<'w, Vec<(u64, &'a mut [u8])>> {
    todo.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fills `dst` over up to [`WINDOW`] lanes (a stream each), spread over the
/// holders in turn. A lane takes chunks one after another; a lane that fails
/// gives its chunk back and its holder is dropped.
async fn fill(
    p2p: &p2p::Handle,
    dst: &mut [u8],
    id: ObjectId,
    mut holders: Vec<PeerId>,
) -> Result<(), String> {
    let chunk = p2p::OBJECT_CHUNK_BYTES;
    let todo: Work = Mutex::new(
        dst.chunks_mut(chunk)
            .enumerate()
            .map(|(i, part)| ((i * chunk) as u64, part))
            .rev()
            .collect(),
    );
    let mut turn = 0usize;
    let mut last_error = String::new();
    let mut lanes = FuturesUnordered::new();
    loop {
        let waiting = take(&todo).len();
        while !holders.is_empty() && lanes.len() < WINDOW.min(waiting) {
            let holder = holders[turn % holders.len()];
            turn += 1;
            lanes.push(lane(p2p, holder, id, &todo));
        }
        match lanes.next().await {
            Some((_, Ok(()))) => {}
            Some((holder, Err(why))) => {
                tracing::debug!(object = %id, %holder, "a holder failed a chunk: {why}");
                last_error = format!("{holder}: {why}");
                holders.retain(|h| *h != holder);
            }
            None if take(&todo).is_empty() => return Ok(()),
            None => return Err(format!("pulling {id}: no holder is left ({last_error})")),
        }
    }
}

/// One lane: a stream to `holder` that takes chunks from `todo` until none
/// is left. A fresh stream is retried a few times before the holder counts
/// as failed: a holder busy taking other streams may drop a new one.
async fn lane<'a>(
    p2p: &p2p::Handle,
    holder: PeerId,
    id: ObjectId,
    todo: &Work<'a>,
) -> (PeerId, Result<(), String>) {
    let mut attempt = 0u64;
    'stream: loop {
        attempt += 1;
        let mut stream = match p2p.open_object_stream(holder).await {
            Ok(stream) => stream,
            Err(e) if attempt < FRESH_ATTEMPTS => {
                tracing::debug!(%holder, "opening an object stream: {e}");
                tokio::time::sleep(RETRY_PAUSE * attempt as u32).await;
                continue 'stream;
            }
            Err(e) => return (holder, Err(e.to_string())),
        };
        let mut served = 0usize;
        loop {
            let Some((offset, part)) = take(todo).pop() else {
                let _ = stream.close().await;
                return (holder, Ok(()));
            };
            let exchange = fetch(&mut stream, id, offset, &mut *part);
            let result = match tokio::time::timeout(CHUNK_TIMEOUT, exchange).await {
                Ok(result) => result,
                Err(_) => Err(format!("no chunk within {CHUNK_TIMEOUT:?}")),
            };
            if let Err(why) = result {
                take(todo).push((offset, part));
                if served == 0 && attempt < FRESH_ATTEMPTS {
                    tracing::debug!(%holder, "a fresh object stream failed: {why}");
                    tokio::time::sleep(RETRY_PAUSE * attempt as u32).await;
                    continue 'stream;
                }
                return (holder, Err(why));
            }
            served += 1;
        }
    }
}

/// Asks for one chunk on `stream` and reads it into `part`.
async fn fetch(
    stream: &mut p2p::Stream,
    id: ObjectId,
    offset: u64,
    part: &mut [u8],
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let request = wire::encode(&PullRequest {
        id,
        offset,
        len: part.len() as u32,
    });
    write_frame(stream, &request).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut status = [0u8; 1];
    stream.read_exact(&mut status).await.map_err(io)?;
    match status[0] {
        CHUNK_OK => stream.read_exact(part).await.map_err(io),
        CHUNK_ERROR => {
            let message = read_frame(stream, MAX_ERROR_BYTES).await.map_err(io)?;
            Err(String::from_utf8_lossy(&message).into_owned())
        }
        other => Err(format!("a reply that starts with byte {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A swarm on loopback with a store whose object streams are served.
    struct Member {
        p2p: p2p::Handle,
        peer: PeerId,
        addr: p2p::Multiaddr,
        store: objstore::Store,
        _dir: tempfile::TempDir,
    }

    async fn member(key: &p2p::ClusterKey, join: Vec<p2p::Multiaddr>) -> Member {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = objstore::Store::open(
            objstore::Config::default()
                .with_root(dir.path().join("store"))
                .with_spill_dir(dir.path().join("spill"))
                .with_capacity(256 << 20),
        )
        .expect("store");
        let config = p2p::Config::new(p2p::Keypair::generate_ed25519(), key.clone())
            .with_listen(vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")])
            .with_bootstrap(join);
        let started = p2p::spawn(config).await.expect("swarm");
        let addr = started.join_addrs()[0].clone();
        tokio::spawn(accept(started.object_streams, store.clone()));
        let mut events = started.events;
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        Member {
            addr,
            p2p: started.handle,
            peer: started.peer_id,
            store,
            _dir: dir,
        }
    }

    /// A sealed object of `len` data bytes with a byte pattern; its bytes
    /// (the header names the object, as the store's seal records).
    fn put(store: &objstore::Store, id: ObjectId, len: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut bytes = objstore::layout::encode(b"meta", &data, &[]);
        objstore::layout::stamp_key(&mut bytes, &ObjectKey(id.0));
        let mut created = store
            .create(ObjectKey(id.0), bytes.len() as u64, true)
            .expect("create");
        created.writer().as_mut_slice().copy_from_slice(&bytes);
        created.into_writer().seal().expect("seal");
        bytes
    }

    impl Member {
        /// Pulls `id` of `size` bytes from `holders` into this member's
        /// store, bounded by a minute.
        async fn pull(&self, id: ObjectId, size: u64, holders: Vec<PeerId>) -> Result<(), String> {
            let pulled = pull(
                self.p2p.clone(),
                self.store.clone(),
                id,
                size,
                holders,
                true,
            );
            bounded(pulled).await.map_err(|e| e.to_string())
        }
    }

    fn read(store: &objstore::Store, id: ObjectId) -> Vec<u8> {
        let handle = store.get(&ObjectKey(id.0)).expect("get").expect("present");
        handle.as_slice().to_vec()
    }

    async fn bounded<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("within a minute")
    }

    /// Data bytes of the test objects: two and a half chunks.
    const SIZE: usize = 5 * p2p::OBJECT_CHUNK_BYTES / 2;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pull_takes_chunks_from_several_holders() {
        let key = p2p::ClusterKey::generate();
        let a = member(&key, vec![]).await;
        let b = member(&key, vec![a.addr.clone()]).await;
        let c = member(&key, vec![a.addr.clone(), b.addr.clone()]).await;
        let id = ObjectId([1; 20]);
        let bytes = put(&a.store, id, SIZE);
        assert_eq!(put(&b.store, id, SIZE), bytes);

        let size = bytes.len() as u64;
        let holders = vec![a.peer, b.peer];
        c.pull(id, size, holders).await.expect("pull");
        assert!(read(&c.store, id) == bytes, "the pulled copy differs");

        // Pulling again is a no-op.
        c.pull(id, size, vec![a.peer]).await.expect("second pull");
        for m in [a, b, c] {
            m.p2p.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn holders_that_lack_the_object_or_are_gone_are_replaced() {
        let key = p2p::ClusterKey::generate();
        let a = member(&key, vec![]).await;
        let b = member(&key, vec![a.addr.clone()]).await;
        let gone = member(&key, vec![a.addr.clone()]).await;
        let c = member(&key, vec![a.addr.clone(), b.addr.clone()]).await;
        let id = ObjectId([2; 20]);
        let bytes = put(&b.store, id, SIZE); // only b has it
        gone.p2p.shutdown().await;

        let holders = vec![a.peer, gone.peer, b.peer];
        c.pull(id, bytes.len() as u64, holders).await.expect("pull");
        assert!(read(&c.store, id) == bytes, "the pulled copy differs");
        for m in [a, b, c] {
            m.p2p.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pull_no_holder_can_serve_fails_and_leaves_nothing() {
        let key = p2p::ClusterKey::generate();
        let a = member(&key, vec![]).await;
        let c = member(&key, vec![a.addr.clone()]).await;
        let id = ObjectId([3; 20]);
        let err = c
            .pull(id, 1 << 20, vec![a.peer])
            .await
            .expect_err("a has nothing");
        assert!(err.contains("no holder is left"), "{err}");
        assert!(err.contains("is not here"), "{err}");
        assert!(!c.store.contains(&ObjectKey(id.0)));
        // A range outside the object is refused by the holder.
        let bytes = put(&a.store, id, 1000);
        let err = c
            .pull(id, bytes.len() as u64 + 10, vec![a.peer])
            .await
            .expect_err("wrong size");
        assert!(err.contains("bad chunk"), "{err}");
        for m in [a, c] {
            m.p2p.shutdown().await;
        }
    }
}
