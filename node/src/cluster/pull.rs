//! Objects between stores: a holder serves chunks of a sealed object, a
//! puller writes them straight into an object it created in its own store,
//! several chunks in flight at once, and seals it.

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

/// Copies object `id` of `size` bytes from `holder` into `store` and seals
/// it. An object already in the store is left as it is.
pub async fn pull(
    p2p: p2p::Handle,
    store: objstore::Store,
    id: ObjectId,
    size: u64,
    holder: PeerId,
) -> Result<(), String> {
    let key = ObjectKey(id.0);
    let mut created = match store.create(key, size, true) {
        Ok(c) => c,
        Err(objstore::CreateError::AlreadyExists(_)) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let result = fill(&p2p, created.writer().as_mut_slice(), id, holder).await;
    match result {
        Ok(()) => created.into_writer().seal().map_err(|e| e.to_string()),
        Err(e) => {
            drop(created);
            let _ = store.abort(&key);
            Err(e)
        }
    }
}

async fn fill(p2p: &p2p::Handle, dst: &mut [u8], id: ObjectId, holder: PeerId) -> Result<(), String> {
    let size = dst.len() as u64;
    let chunk = p2p::OBJECT_CHUNK_BYTES as u64;
    let mut next = 0u64;
    let mut inflight = JoinSet::new();
    loop {
        while inflight.len() < WINDOW && next < size {
            let len = chunk.min(size - next) as u32;
            let request = wire::encode(&PullRequest {
                id,
                offset: next,
                len,
            });
            let p2p = p2p.clone();
            let offset = next;
            inflight.spawn(async move {
                let reply = p2p.request(holder, Protocol::Object, request).await;
                (offset, len, reply)
            });
            next += u64::from(len);
        }
        let Some(joined) = inflight.join_next().await else {
            return Ok(());
        };
        let (offset, len, reply) = joined.map_err(|e| e.to_string())?;
        let reply = reply.map_err(|e| format!("pulling {id} from {holder}: {e}"))?;
        let bytes = match reply.split_first() {
            Some((&CHUNK_OK, bytes)) => bytes,
            Some((_, message)) => {
                return Err(format!(
                    "pulling {id} from {holder}: {}",
                    String::from_utf8_lossy(message)
                ))
            }
            None => return Err(format!("pulling {id} from {holder}: empty reply")),
        };
        if bytes.len() != len as usize {
            return Err(format!(
                "pulling {id}: chunk at {offset} has {} bytes, expected {len}",
                bytes.len()
            ));
        }
        let start = offset as usize;
        dst[start..start + bytes.len()].copy_from_slice(&bytes);
    }
}
