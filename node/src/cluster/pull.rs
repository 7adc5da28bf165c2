//! Objects between stores: a holder serves chunks of a sealed object, a
//! puller writes them straight into an object it created in its own store,
//! several chunks in flight at once, spread over every holder it knows, and
//! seals it. A chunk a holder fails to give is asked of the next holder.

use super::wire::{self, PullRequest, CHUNK_ERROR, CHUNK_OK};
use objstore::ObjectKey;
use p2p::{PeerId, Protocol};
use raynode_proto::ObjectId;
use tokio::task::JoinSet;

/// Chunk requests in flight per pull.
const WINDOW: usize = 8;

/// Answers one chunk request from the local store.
pub fn serve(store: &objstore::Store, request: &[u8]) -> Vec<u8> {
    match chunk(store, request) {
        Ok(reply) => reply,
        Err(e) => {
            let mut reply = vec![CHUNK_ERROR];
            reply.extend_from_slice(e.as_bytes());
            reply
        }
    }
}

fn chunk(store: &objstore::Store, request: &[u8]) -> Result<Vec<u8>, String> {
    let request: PullRequest = wire::decode(request)?;
    let handle = store
        .get(&ObjectKey(request.id.0))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("object {} is not here", request.id))?;
    let bytes = handle.as_slice();
    let start = usize::try_from(request.offset).map_err(|e| e.to_string())?;
    let end = start.saturating_add(request.len as usize).min(bytes.len());
    if start >= end || request.len as usize > p2p::OBJECT_CHUNK_BYTES {
        return Err(format!(
            "bad chunk {}+{} of an object of {} bytes",
            request.offset,
            request.len,
            bytes.len()
        ));
    }
    let mut reply = Vec::with_capacity(1 + end - start);
    reply.push(CHUNK_OK);
    reply.extend_from_slice(&bytes[start..end]);
    Ok(reply)
}

/// Copies object `id` of `size` bytes from `holders` into `store` and
/// seals it. An object already in the store is left as it is.
pub async fn pull(
    p2p: p2p::Handle,
    store: objstore::Store,
    id: ObjectId,
    size: u64,
    holders: Vec<PeerId>,
) -> Result<(), String> {
    let key = ObjectKey(id.0);
    let mut created = match store.create(key, size, true) {
        Ok(c) => c,
        Err(objstore::CreateError::AlreadyExists(_)) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let result = fill(&p2p, created.writer().as_mut_slice(), id, holders).await;
    match result {
        Ok(()) => created.into_writer().seal().map_err(|e| e.to_string()),
        Err(e) => {
            drop(created);
            let _ = store.abort(&key);
            Err(e)
        }
    }
}

async fn fill(
    p2p: &p2p::Handle,
    dst: &mut [u8],
    id: ObjectId,
    mut holders: Vec<PeerId>,
) -> Result<(), String> {
    let size = dst.len() as u64;
    let chunk = p2p::OBJECT_CHUNK_BYTES as u64;
    let mut todo: Vec<(u64, u32)> = (0..size.div_ceil(chunk))
        .rev()
        .map(|i| (i * chunk, chunk.min(size - i * chunk) as u32))
        .collect();
    let mut turn = 0usize;
    let mut last_error = String::new();
    let mut inflight = JoinSet::new();
    loop {
        if holders.is_empty() {
            return Err(format!("pulling {id}: no holder is left ({last_error})"));
        }
        while inflight.len() < WINDOW {
            let Some((offset, len)) = todo.pop() else {
                break;
            };
            let holder = holders[turn % holders.len()];
            turn += 1;
            let request = wire::encode(&PullRequest { id, offset, len });
            let p2p = p2p.clone();
            inflight.spawn(async move {
                let reply = p2p.request(holder, Protocol::Object, request).await;
                (holder, offset, len, reply)
            });
        }
        let Some(joined) = inflight.join_next().await else {
            return Ok(());
        };
        let (holder, offset, len, reply) = joined.map_err(|e| e.to_string())?;
        let failure = match &reply {
            Err(e) => Some(e.to_string()),
            Ok(reply) => match reply.split_first() {
                Some((&CHUNK_OK, bytes)) if bytes.len() == len as usize => None,
                Some((&CHUNK_OK, bytes)) => {
                    Some(format!("a chunk of {} bytes, not {len}", bytes.len()))
                }
                Some((_, message)) => Some(String::from_utf8_lossy(message).into_owned()),
                None => Some("an empty reply".into()),
            },
        };
        if let Some(why) = failure {
            tracing::debug!(object = %id, %holder, "a holder failed a chunk: {why}");
            last_error = format!("{holder}: {why}");
            holders.retain(|h| *h != holder);
            todo.push((offset, len));
            continue;
        }
        let reply = reply.unwrap_or_default();
        let start = offset as usize;
        dst[start..start + len as usize].copy_from_slice(&reply[1..]);
    }
}
