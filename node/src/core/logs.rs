//! Logs for `raynode logs` and `ray.util.state.get_log`: the node's own
//! log file and its workers' output files, found here and read off the core
//! (file reads never hold the core up). A client may ask any node for
//! another node's log: the node it asks fetches it from that peer.

use super::Core;
use crate::cluster::wire::{self, PeerRequest};
use raynode_proto::{FromNode, LogQuery, LogTarget, NodeId, WorkerId};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::oneshot;

/// The most a log answer carries (its last bytes; the first ones when following).
const MAX_LOG_BYTES: u64 = 4 << 20;

/// Longest another node may take to send one of its logs.
const PEER_LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// Workers that exited, remembered (newest last) so that their logs stay
/// reachable by pid.
pub(super) const PAST_WORKERS: usize = 256;

/// Reads the asked part of a log, as the JSON a client gets.
fn read(path: PathBuf, query: &LogQuery) -> Result<String, String> {
    let tail = query.tail as usize;
    let (text, end) = crate::logfile::read(&path, query.offset, tail, MAX_LOG_BYTES)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(serde_json::json!({"path": path, "text": text, "end": end}).to_string())
}

impl Core {
    /// The file `query` asks for on this node.
    fn log_path(&self, query: &LogQuery) -> Result<PathBuf, String> {
        let logs = self.config.logs_dir();
        let worker = match &query.target {
            LogTarget::Node => return Ok(logs.join(crate::logfile::NODE_LOG)),
            LogTarget::Worker(n) => WorkerId(*n),
            LogTarget::Pid(pid) => {
                let live = self.workers.iter().find(|(_, w)| w.process.pid == *pid);
                let past = self.past_workers.iter().rev().find(|(p, _)| p == pid);
                match (live, past) {
                    (Some((id, _)), _) => *id,
                    (None, Some((_, id))) => *id,
                    (None, None) => {
                        return Err(format!("no worker of node {} has pid {pid}", self.node_id))
                    }
                }
            }
            LogTarget::Actor(actor) => match self.actors.get(actor).map(|a| &a.state) {
                Some(super::actors::ActorState::Running { worker }) => *worker,
                Some(_) => return Err(format!("the actor {actor} has no worker now")),
                None => return Err(format!("no actor {actor} lives on node {}", self.node_id)),
            },
        };
        Ok(crate::output::log_path(&logs, worker, query.stderr))
    }

    /// A client's `Logs` request: read here, or fetched from `node`.
    pub(super) fn on_logs(
        &mut self,
        conn: super::ConnId,
        req: u64,
        node: Option<NodeId>,
        query: LogQuery,
    ) {
        let Some(tx) = self.clients.get(&conn).map(|c| c.tx.clone()) else {
            return;
        };
        let answer = move |result: Result<String, String>| {
            let _ = tx.send(match result {
                Ok(json) => FromNode::Info { req, json },
                Err(message) => FromNode::Error { req, message },
            });
        };
        match node.filter(|n| *n != self.node_id) {
            None => match self.log_path(&query) {
                Ok(path) => {
                    tokio::task::spawn_blocking(move || answer(read(path, &query)));
                }
                Err(e) => answer(Err(e)),
            },
            Some(other) => {
                let Some(peer) = self.peer_id_of(other) else {
                    return answer(Err(format!("no node {other} is known to this node")));
                };
                let p2p = self.cluster.p2p.clone();
                tokio::spawn(async move {
                    let request = wire::encode(&PeerRequest::Logs(query));
                    let asked = p2p.request(peer, p2p::Protocol::Rpc, request);
                    let result = match tokio::time::timeout(PEER_LOG_TIMEOUT, asked).await {
                        Ok(Ok(bytes)) => wire::decode::<Result<String, String>>(&bytes)
                            .unwrap_or_else(|e| Err(format!("an undecodable answer: {e}"))),
                        Ok(Err(e)) => Err(format!("asking node {other}: {e}")),
                        Err(_) => Err(format!(
                            "node {other} did not answer within {PEER_LOG_TIMEOUT:?}"
                        )),
                    };
                    answer(result);
                });
            }
        }
    }

    /// Another node asks for one of this node's logs for its client.
    pub(super) fn on_peer_logs(&mut self, query: LogQuery, reply: oneshot::Sender<Vec<u8>>) {
        match self.log_path(&query) {
            Ok(path) => {
                tokio::task::spawn_blocking(move || {
                    let _ = reply.send(wire::encode(&read(path, &query)));
                });
            }
            Err(e) => {
                let _ = reply.send(wire::encode(&Err::<String, String>(e)));
            }
        }
    }
}
