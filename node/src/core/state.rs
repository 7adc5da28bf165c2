//! The node's part of the cluster's state API.
//!
//! - The task table (`engine::task_table`) is kept here as tasks move:
//!   each `note_*` records one step of one attempt. Nothing on a task's
//!   path waits for a query; a step is a table update.
//! - This node's rows: its tasks, the actors living here, the objects in
//!   its object table, and its own stats.
//! - A query for the whole cluster ([`Core::answer_info`]) takes this
//!   node's rows, asks every other live node for theirs (at most
//!   [`PEER_TIMEOUT`] each, all at once) and merges them. A node that does
//!   not answer is listed under `missing`; it never holds the answer up.

use super::history::now_ms;
use super::{Core, Task};
use crate::cluster::wire::{self, PeerRequest, StateQuery};
use crate::engine::task_table::{self, TaskFacts, TaskRow, TaskStatus, TaskType};
use crate::server::ConnTx;
use raynode_proto::meta::{self, SystemErrorKind};
use raynode_proto::{FromNode, InfoKind, NodeId, ObjectId, TaskId, TaskKind, WorkerId};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a cluster-wide query waits for each other node.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// Rows of one kind a node sends for a query at most (the newest).
const MAX_ROWS: usize = 10_000;

/// Where the answer to a query goes.
pub enum Reply {
    /// A client's `Info` request.
    Client { tx: ConnTx, req: u64 },
    /// The dashboard's HTTP server.
    Http(oneshot::Sender<String>),
}

impl Reply {
    fn send(self, json: String) {
        match self {
            Reply::Client { tx, req } => {
                let _ = tx.send(FromNode::Info { req, json });
            }
            Reply::Http(tx) => {
                let _ = tx.send(json);
            }
        }
    }
}

/// The query another node answers for a client's kind of information, if
/// that kind is the whole cluster's (asked of every node).
fn fan_out(what: InfoKind) -> Option<StateQuery> {
    match what {
        InfoKind::Tasks => Some(StateQuery::Tasks),
        InfoKind::Actors => Some(StateQuery::Actors),
        InfoKind::Objects => Some(StateQuery::Objects),
        InfoKind::NodeStats => Some(StateQuery::Node),
        _ => None,
    }
}

/// Ray's error type and message of an error value, from its bytes.
pub(super) fn error_of(bytes: &[u8]) -> (String, String) {
    let parsed = objstore::layout::parse(bytes).ok();
    let part = |r: Option<std::ops::Range<usize>>| r.and_then(|r| bytes.get(r));
    let tag = part(parsed.as_ref().map(|l| l.meta.clone()));
    if tag == Some(meta::SYSTEM_ERROR) {
        if let Some((kind, message)) =
            part(parsed.as_ref().map(|l| l.data.clone())).and_then(meta::parse_system_error)
        {
            return (kind.ray_error_type().to_string(), message);
        }
    }
    ("TASK_EXECUTION_EXCEPTION".to_string(), String::new())
}

fn facts_of(task: &Task, node: NodeId) -> TaskFacts {
    let (kind, actor) = match &task.spec.kind {
        TaskKind::Normal => (TaskType::Normal, None),
        TaskKind::ActorCreate(opts) => (TaskType::ActorCreation, Some(opts.actor)),
        TaskKind::ActorMethod { actor, .. } => (TaskType::ActorTask, Some(*actor)),
    };
    // A job is named by the node its driver connected to, then its number there.
    let job = match task.origin {
        Some(owner) => format!("{owner}{}", task.origin_job),
        None => format!("{node}{}", task.job),
    };
    TaskFacts {
        name: task.spec.name.clone(),
        kind,
        job,
        actor,
    }
}

impl Core {
    // ---- the task table, kept as tasks move ----

    /// The current attempt of a task moved to `status` (recorded anew if
    /// the table has no row for it).
    pub(super) fn note_task(&mut self, task_id: TaskId, status: TaskStatus) {
        if !self.task_table.is_on() {
            return;
        }
        let Some(task) = self.tasks.get(&task_id) else {
            return;
        };
        let node = self.node_id;
        self.task_table.record(
            task_id,
            task.attempt,
            || facts_of(task, node),
            status,
            now_ms(),
        );
    }

    /// The current attempt of a known task, with a row in the table (made
    /// if missing); `None` when the table is off or the task unknown.
    fn noted_attempt(&mut self, task_id: TaskId) -> Option<u32> {
        if !self.task_table.is_on() {
            return None;
        }
        let attempt = self.tasks.get(&task_id)?.attempt;
        self.note_task(task_id, TaskStatus::PendingNodeAssignment);
        Some(attempt)
    }

    /// It was sent to `node` to run.
    pub(super) fn note_sent(&mut self, task_id: TaskId, node: NodeId) {
        if let Some(attempt) = self.noted_attempt(task_id) {
            self.task_table.sent(task_id, attempt, node, now_ms());
        }
    }

    /// It was handed to `worker` here.
    pub(super) fn note_running(&mut self, task_id: TaskId, worker: WorkerId) {
        if let Some(attempt) = self.noted_attempt(task_id) {
            let pid = self.workers.get(&worker).map_or(0, |w| w.process.pid);
            self.task_table
                .running(task_id, attempt, self.node_id, pid, now_ms());
        }
    }

    /// The current attempt ended: `error` is Ray's error type and message.
    pub(super) fn note_ended(&mut self, task_id: TaskId, error: Option<(String, String)>) {
        if let Some(attempt) = self.noted_attempt(task_id) {
            self.task_table.ended(task_id, attempt, error, now_ms());
        }
    }

    /// The current attempt failed and another follows: the next attempt's
    /// number is set here, so every retry goes through this.
    pub(super) fn next_attempt(&mut self, task_id: TaskId, error_type: &str, why: &str) {
        self.note_ended(task_id, Some((error_type.to_string(), why.to_string())));
        if let Some(task) = self.tasks.get_mut(&task_id) {
            task.attempt += 1;
        }
        self.note_task(task_id, TaskStatus::PendingNodeAssignment);
    }

    /// A system error ends the current attempt.
    pub(super) fn note_failed(&mut self, task_id: TaskId, kind: SystemErrorKind, why: &str) {
        let error = (kind.ray_error_type().to_string(), why.to_string());
        self.note_ended(task_id, Some(error));
    }

    // ---- this node's rows ----

    fn task_rows(&self) -> Vec<TaskRow> {
        let skip = self.task_table.len().saturating_sub(MAX_ROWS);
        self.task_table.rows().skip(skip).cloned().collect()
    }

    fn actor_rows(&self) -> Vec<Value> {
        let node = self.node_id.to_string();
        self.actors
            .iter()
            .map(|(id, a)| {
                let spec = self.tasks.get(&a.creation).map(|t| t.spec.clone());
                let class = spec.as_ref().map_or("", |s| s.name.as_str());
                let class = class.strip_suffix(".__init__").unwrap_or(class);
                let (pid, death) = match &a.state {
                    super::actors::ActorState::Running { worker } => {
                        (self.workers.get(worker).map(|w| w.process.pid), None)
                    }
                    super::actors::ActorState::Dead { cause, .. } => (None, Some(cause.clone())),
                    super::actors::ActorState::Pending => (None, None),
                };
                let state = a.ray_state();
                json!({
                    "actor_id": id.to_string(),
                    "class_name": class,
                    "name": a.opts.name.clone().unwrap_or_default(),
                    "ray_namespace": a.opts.namespace,
                    "state": state,
                    "node_id": node,
                    "pid": pid,
                    "job_id": format!("{}{}", self.node_id, a.job),
                    "num_restarts": a.restarts,
                    "death_cause": death,
                    "is_detached": a.opts.detached,
                })
            })
            .collect()
    }

    fn object_rows(&self) -> Vec<Value> {
        let node = self.node_id.to_string();
        let mut owners = HashMap::new();
        for id in self
            .remote
            .peers
            .keys()
            .chain(std::iter::once(&self.node_id))
        {
            owners.insert(raynode_proto::owner_tag(&id.0), id.to_string());
        }
        let owner = |id: &ObjectId| owners.get(&raynode_proto::owner_tag(&id.0)).cloned();
        self.objects
            .iter()
            .take(MAX_ROWS)
            .map(|(id, entry)| {
                use crate::objects::ObjState;
                let (state, location, size, error) = match &entry.state {
                    ObjState::Pending => ("PENDING", None, None, false),
                    ObjState::Inline { bytes, error } => {
                        ("READY", Some("inline"), Some(bytes.len() as u64), *error)
                    }
                    ObjState::Stored { size } => ("READY", Some("store"), Some(*size), false),
                    // Its holder lists it as stored there.
                    ObjState::Remote { size, .. } => ("READY", Some("remote"), Some(*size), false),
                };
                json!({
                    "object_id": id.to_string(),
                    "object_size": size,
                    "state": state,
                    "location": location,
                    "error": error,
                    "ref_count": entry.refs,
                    "node_id": node,
                    "owner_node_id": owner(id),
                })
            })
            .collect()
    }

    /// This node as the dashboard's cluster page shows it.
    fn node_row(&self) -> Value {
        let status = self.gcs.status();
        let role = super::info::raft_role(&status, crate::cluster::keys::raft_id(self.node_id));
        let store = self.store.shared().stats();
        json!({
            "node_id": self.node_id.to_string(),
            "alive": true,
            "raft_role": role,
            "is_leader": role == "leader",
            "raft_term": status.term,
            "resources_total": super::info::resources_json(self.ledger.sched().total()),
            "resources_available": super::info::resources_json(&self.ledger.sched().available()),
            "workers": self.workers.len(),
            "busy_workers": self.ledger.busy(),
            "queued_tasks": self.ledger.sched().queued(),
            "tasks": self.tasks.len(),
            "actors": self.actors.len(),
            "objects": self.objects.len(),
            "store_used_bytes": store.used,
            "store_capacity_bytes": store.capacity,
            "spilled_bytes": store.spilled_bytes,
            "rss_bytes": rss_bytes(),
            "task_table_rows": self.task_table.len(),
            "task_table_dropped": self.task_table.dropped(),
            "dashboard_address": self.dashboard_addr,
            "client_address": self.client_addr,
            "p2p_address": self.cluster.p2p_addrs.first(),
        })
    }

    /// The live actors the control store holds (their state as their nodes
    /// last wrote it), for the rows of nodes that do not answer. `known`:
    /// the nodes of the cluster, to name an actor's node by its id.
    fn stored_actor_rows(&self, known: &[NodeId]) -> Vec<Value> {
        let node_of = |raft: raft_gcs::NodeId| {
            known
                .iter()
                .find(|n| crate::cluster::keys::raft_id(**n) == raft)
                .map(|n| n.to_string())
        };
        self.gcs.read_local(|s| {
            s.actors
                .iter()
                .filter_map(|(id, info)| {
                    let id = raynode_proto::ActorId::from_slice(&id.0)?;
                    let (namespace, name) = info
                        .name
                        .as_deref()
                        .and_then(|n| n.split_once('\u{0}'))
                        .unwrap_or(("", ""));
                    let state = match info.state {
                        raft_gcs::ActorState::Pending => "PENDING_CREATION",
                        raft_gcs::ActorState::Alive => "ALIVE",
                        raft_gcs::ActorState::Restarting => "RESTARTING",
                        raft_gcs::ActorState::Dead => "DEAD",
                    };
                    Some(json!({
                        "actor_id": id.to_string(),
                        "class_name": "",
                        "name": name,
                        "ray_namespace": namespace,
                        "state": state,
                        "node_id": info.node.and_then(node_of),
                        "pid": null,
                        "num_restarts": info.restarts,
                        "death_cause": null,
                        "is_detached": info.detached,
                        "from_control_store": true,
                    }))
                })
                .collect()
        })
    }

    /// This node's answer to another node's query.
    pub(super) fn state_rows(&self, what: StateQuery) -> Vec<u8> {
        match what {
            StateQuery::Tasks => wire::encode(&self.task_rows()),
            StateQuery::Actors => Value::Array(self.actor_rows()).to_string().into_bytes(),
            StateQuery::Objects => Value::Array(self.object_rows()).to_string().into_bytes(),
            StateQuery::Node => Value::Array(vec![self.node_row()]).to_string().into_bytes(),
        }
    }

    // ---- queries ----

    /// Answers a query: at once from this node's tables, or, for the whole
    /// cluster's tasks, actors, objects and node stats, once every other
    /// live node answered or timed out.
    pub(super) fn answer_info(&mut self, what: InfoKind, reply: Reply) {
        let Some(query) = fan_out(what) else {
            return reply.send(self.info_json(what));
        };
        let own = self.state_rows(query);
        let peers: Vec<(NodeId, p2p::PeerId)> = self
            .remote
            .peers
            .iter()
            .filter_map(|(id, p)| Some((*id, p.load.peer.parse().ok()?)))
            .collect();
        // Nodes the control store knows of that do not gossip: dead, or
        // just starting. The node page lists them as such.
        let known: Vec<NodeId> = self.gcs.read_local(|s| {
            s.nodes
                .values()
                .filter_map(|n| n.addrs.iter().find_map(|a| crate::cluster::peer_of(a)))
                .map(|p| crate::cluster::node_id_of(&p))
                .collect()
        });
        let silent: Vec<NodeId> = known
            .iter()
            .copied()
            .filter(|n| *n != self.node_id && !peers.iter().any(|(id, _)| id == n))
            .collect();
        let stored = if query == StateQuery::Actors {
            self.stored_actor_rows(&known)
        } else {
            Vec::new()
        };
        let p2p = self.cluster.p2p.clone();
        let me = self.node_id;
        tokio::spawn(async move {
            let mut asked = tokio::task::JoinSet::new();
            for (node, peer) in peers {
                let p2p = p2p.clone();
                asked.spawn(async move {
                    let request = wire::encode(&PeerRequest::State(query));
                    let answer = tokio::time::timeout(
                        PEER_TIMEOUT,
                        p2p.request(peer, p2p::Protocol::Rpc, request),
                    )
                    .await;
                    let answer = match answer {
                        Ok(Ok(bytes)) => Ok(bytes),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!(
                            "no answer within {:.0} s",
                            PEER_TIMEOUT.as_secs_f64()
                        )),
                    };
                    (node, answer)
                });
            }
            let mut answers = vec![(me, own)];
            let mut missing = Vec::new();
            while let Some(joined) = asked.join_next().await {
                match joined {
                    Ok((node, Ok(bytes))) => answers.push((node, bytes)),
                    Ok((node, Err(error))) => missing.push((node, error)),
                    Err(_) => {}
                }
            }
            reply.send(merge_answers(query, answers, &missing, &silent, stored));
        });
    }
}

/// The cluster's rows from every node's answer, as `{"rows", "missing"}`.
fn merge_answers(
    query: StateQuery,
    answers: Vec<(NodeId, Vec<u8>)>,
    missing: &[(NodeId, String)],
    silent: &[NodeId],
    stored: Vec<Value>,
) -> String {
    let mut missing_rows: Vec<Value> = missing
        .iter()
        .map(|(node, error)| json!({"node_id": node.to_string(), "error": error}))
        .collect();
    let rows: Vec<Value> = match query {
        StateQuery::Tasks => {
            let mut merged: HashMap<(TaskId, u32), TaskRow> = HashMap::new();
            for (node, bytes) in answers {
                let rows: Vec<TaskRow> = match wire::decode(&bytes) {
                    Ok(rows) => rows,
                    Err(e) => {
                        missing_rows.push(json!({"node_id": node.to_string(), "error": e}));
                        continue;
                    }
                };
                for row in rows {
                    let key = (row.task, row.attempt);
                    let row = match merged.remove(&key) {
                        Some(old) => task_table::merge(old, row),
                        None => row,
                    };
                    merged.insert(key, row);
                }
            }
            let mut rows: Vec<TaskRow> = merged.into_values().collect();
            rows.sort_by_key(|r| (r.created_ms(), r.task, r.attempt));
            rows.iter().map(task_json).collect()
        }
        StateQuery::Actors | StateQuery::Objects | StateQuery::Node => {
            let mut rows = Vec::new();
            for (node, bytes) in answers {
                match serde_json::from_slice::<Vec<Value>>(&bytes) {
                    Ok(r) => rows.extend(r),
                    Err(e) => missing_rows
                        .push(json!({"node_id": node.to_string(), "error": e.to_string()})),
                }
            }
            if query == StateQuery::Actors {
                // Actors of nodes that did not answer, as the control store last heard.
                rows = newest_actor_rows(rows);
                for row in stored {
                    if !rows.iter().any(|r| r["actor_id"] == row["actor_id"]) {
                        rows.push(row);
                    }
                }
            }
            if query == StateQuery::Objects {
                rows = merged_object_rows(rows);
            }
            if query == StateQuery::Node {
                let unanswered = missing.iter().map(|(n, _)| (n, false));
                let dead = silent.iter().map(|n| (n, true));
                for (node, gone) in unanswered.chain(dead) {
                    rows.push(json!({
                        "node_id": node.to_string(),
                        "alive": !gone,
                        "raft_role": Value::Null,
                        "is_leader": false,
                    }));
                }
            }
            rows
        }
    };
    json!({"rows": rows, "missing": missing_rows}).to_string()
}

/// One row per object: the nodes that hold it (its value in their table)
/// become its `locations`; its state, size and references are its owner's
/// where the owner answered (the first holder's otherwise).
fn merged_object_rows(rows: Vec<Value>) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::with_capacity(rows.len());
    let mut at: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let id = row["object_id"].as_str().unwrap_or_default().to_string();
        let node = row["node_id"].clone();
        let holds = row["state"] == "READY" && row["location"] != "remote";
        let owners = row["node_id"] == row["owner_node_id"];
        match at.get(&id) {
            None => {
                let mut row = row;
                row["locations"] = Value::Array(if holds { vec![node] } else { Vec::new() });
                row["pinned"] = Value::Bool(row["ref_count"].as_u64().unwrap_or(0) > 0);
                at.insert(id, merged.len());
                merged.push(row);
            }
            Some(&i) => {
                let mut locations = match merged[i]["locations"].take() {
                    Value::Array(l) => l,
                    _ => Vec::new(),
                };
                if holds {
                    locations.push(node);
                }
                if owners {
                    let mut row = row;
                    row["pinned"] = Value::Bool(row["ref_count"].as_u64().unwrap_or(0) > 0);
                    if row["object_size"].is_null() {
                        row["object_size"] = merged[i]["object_size"].take();
                    }
                    merged[i] = row;
                }
                merged[i]["locations"] = Value::Array(locations);
            }
        }
    }
    merged
}

/// One row per actor: an actor that moved (restarted on another node)
/// has an old row where it died and a new one where it lives.
fn newest_actor_rows(rows: Vec<Value>) -> Vec<Value> {
    let rank = |row: &Value| match row["state"].as_str() {
        Some("ALIVE") => 3,
        Some("RESTARTING") => 2,
        Some("PENDING_CREATION") => 1,
        _ => 0,
    };
    let mut best: Vec<Value> = Vec::with_capacity(rows.len());
    let mut at: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let id = row["actor_id"].as_str().unwrap_or_default().to_string();
        match at.get(&id) {
            Some(&i) if rank(&best[i]) >= rank(&row) => {}
            Some(&i) => best[i] = row,
            None => {
                at.insert(id, best.len());
                best.push(row);
            }
        }
    }
    best
}

/// A task row with Ray's state-API names.
fn task_json(row: &TaskRow) -> Value {
    let (error_type, error_message) = match &row.error {
        Some((t, m)) => (Some(t.as_str()), Some(m.as_str())),
        None => (None, None),
    };
    let events: Vec<Value> = row
        .events
        .iter()
        .map(|(s, t)| json!({"state": s.name(), "created_ms": t}))
        .collect();
    json!({
        "task_id": row.task.to_string(),
        "attempt_number": row.attempt,
        "name": row.facts.name,
        "func_or_class_name": row.facts.name,
        "type": row.facts.kind.name(),
        "state": row.status.name(),
        "job_id": row.facts.job,
        "actor_id": row.facts.actor.map(|a| a.to_string()),
        "node_id": row.node.map(|n| n.to_string()),
        "worker_pid": row.worker_pid,
        "error_type": error_type,
        "error_message": error_message,
        "creation_time_ms": row.created_ms(),
        "start_time_ms": row.start_ms(),
        "end_time_ms": row.end_ms(),
        "events": events,
    })
}

/// This process's resident memory, from /proc.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// What became of a task whose returns hold these values.
pub(super) fn outcome(
    values: &[(ObjectId, crate::objects::ObjState, Vec<ObjectId>)],
) -> Option<(String, String)> {
    values.iter().find_map(|(_, state, _)| match state {
        crate::objects::ObjState::Inline { bytes, error: true } => Some(error_of(bytes)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_values_give_rays_error_types() {
        let bytes = crate::values::system_error(SystemErrorKind::WorkerCrashedError, "it died");
        assert_eq!(error_of(&bytes), ("WORKER_DIED".into(), "it died".into()));
        let raised = objstore::layout::encode(meta::TASK_ERROR, b"pickled", &[]);
        assert_eq!(error_of(&raised).0, "TASK_EXECUTION_EXCEPTION");
        assert_eq!(error_of(b"garbage").0, "TASK_EXECUTION_EXCEPTION");
    }

    #[test]
    fn an_object_held_by_two_nodes_is_one_row_with_two_locations() {
        let rows = vec![
            json!({"object_id": "o", "state": "READY", "node_id": "b", "owner_node_id": "a", "ref_count": 0, "object_size": 8}),
            json!({"object_id": "o", "state": "READY", "node_id": "a", "owner_node_id": "a", "ref_count": 2, "object_size": null}),
            json!({"object_id": "p", "state": "PENDING", "node_id": "a", "owner_node_id": "a", "ref_count": 1, "object_size": null}),
        ];
        let rows = merged_object_rows(rows);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["locations"], json!(["b", "a"]));
        assert_eq!(rows[0]["node_id"], "a");
        assert_eq!(rows[0]["pinned"], true);
        assert_eq!(rows[0]["object_size"], 8);
        assert_eq!(rows[1]["locations"], json!([]));
    }

    #[test]
    fn an_actor_that_moved_is_listed_where_it_lives() {
        let rows = vec![
            json!({"actor_id": "a", "state": "DEAD", "node_id": "1"}),
            json!({"actor_id": "a", "state": "ALIVE", "node_id": "2"}),
            json!({"actor_id": "b", "state": "ALIVE", "node_id": "1"}),
            json!({"actor_id": "b", "state": "DEAD", "node_id": "2"}),
        ];
        let rows = newest_actor_rows(rows);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r["state"] == "ALIVE"));
        assert_eq!(rows[0]["node_id"], "2");
        assert_eq!(rows[1]["node_id"], "1");
    }
}
