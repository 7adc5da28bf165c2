//! The write batcher: packs concurrent writes into shared log entries.
//!
//! Callers send their commands over a bounded channel; the batcher takes
//! every request waiting, encodes them as one [`Batch`] (one Raft entry),
//! proposes it and hands each caller its slice of the responses. Up to
//! `max_inflight_entries` entries are in flight at once, so a steady stream
//! of writers keeps the log pipeline full while each entry carries many
//! commands.

use std::sync::Arc;

use openraft::error::ClientWriteError;
use openraft::Raft;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::error::WriteError;
use crate::types::{Batch, BatchResponse, Command, Response, TypeConfig};

/// One caller's write.
pub(crate) struct WriteReq {
    pub commands: Vec<Command>,
    pub reply: oneshot::Sender<Result<Vec<Response>, WriteError>>,
}

pub(crate) struct Batcher {
    pub raft: Raft<TypeConfig>,
    pub rx: mpsc::Receiver<WriteReq>,
    pub stop: watch::Receiver<bool>,
    pub max_commands: usize,
    pub max_inflight: usize,
    pub event_capacity: u32,
}

impl Batcher {
    pub async fn run(mut self) {
        let inflight = Arc::new(Semaphore::new(self.max_inflight));
        loop {
            let first = tokio::select! {
                _ = self.stop.changed() => break,
                r = self.rx.recv() => match r { Some(r) => r, None => break },
            };
            // Wait for a slot first: requests arriving meanwhile join this entry.
            let permit = tokio::select! {
                _ = self.stop.changed() => break,
                p = inflight.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let mut reqs = vec![first];
            let mut count = reqs[0].commands.len();
            while count < self.max_commands {
                match self.rx.try_recv() {
                    Ok(r) => {
                        count += r.commands.len();
                        reqs.push(r);
                    }
                    Err(_) => break,
                }
            }
            let sizes: Vec<usize> = reqs.iter().map(|r| r.commands.len()).collect();
            let all: Vec<Command> = reqs
                .iter_mut()
                .flat_map(|r| std::mem::take(&mut r.commands))
                .collect();
            let replies: Vec<_> = reqs.into_iter().map(|r| r.reply).collect();
            let batch = Batch::encode(&all, self.event_capacity);
            drop(all);
            match self.raft.client_write_ff(batch).await {
                Err(fatal) => {
                    let e = WriteError::Stopped(fatal.to_string());
                    for r in replies {
                        let _ = r.send(Err(e.clone()));
                    }
                    break;
                }
                Ok(rx) => {
                    tokio::spawn(async move {
                        let res = rx.await;
                        drop(permit);
                        distribute(res, sizes, replies);
                    });
                }
            }
        }
    }
}

type WriteResult = Result<
    Result<
        openraft::raft::ClientWriteResponse<TypeConfig>,
        ClientWriteError<crate::NodeId, openraft::BasicNode>,
    >,
    oneshot::error::RecvError,
>;

fn distribute(
    res: WriteResult,
    sizes: Vec<usize>,
    replies: Vec<oneshot::Sender<Result<Vec<Response>, WriteError>>>,
) {
    let outcome = match res {
        Ok(Ok(resp)) => Ok(resp.data),
        Ok(Err(ClientWriteError::ForwardToLeader(f))) => Err(WriteError::NotLeader {
            leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
        }),
        Ok(Err(e)) => Err(WriteError::Stopped(e.to_string())),
        Err(_) => Err(WriteError::Stopped("raft stopped before answering".into())),
    };
    match outcome {
        Err(e) => {
            for r in replies {
                let _ = r.send(Err(e.clone()));
            }
        }
        Ok(BatchResponse(all)) => {
            let total: usize = sizes.iter().sum();
            if all.len() != total {
                // The entry was rejected as a whole: every command shares the verdict.
                let verdict = all
                    .into_iter()
                    .next()
                    .unwrap_or(Response::Rejected("entry produced no responses".into()));
                for (r, n) in replies.into_iter().zip(sizes) {
                    let _ = r.send(Ok(vec![verdict.clone(); n]));
                }
                return;
            }
            let mut it = all.into_iter();
            for (r, n) in replies.into_iter().zip(sizes) {
                let part: Vec<Response> = it.by_ref().take(n).collect();
                let _ = r.send(Ok(part));
            }
        }
    }
}
