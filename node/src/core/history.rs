//! What the control store keeps of the cluster's past: the jobs table (one
//! row per driver connection, with its start and end) and the bounded event
//! log (nodes joined and lost, leader and voter changes, actors restarted
//! and dead, placement groups, tasks that failed for a system reason,
//! objects spilled and evicted). Each node records what it saw itself;
//! what every node sees alike (a node's loss, a new voter set) is recorded
//! by the Raft leader alone, so once.
//!
//! Rows wait in a batch written at most once a second (on the tick), in the
//! background: nothing on a task's path waits for the control store.

use super::Core;
use raynode_proto::JobId;
use std::time::{SystemTime, UNIX_EPOCH};

/// Rows kept for the next write at most; past it, events are dropped (and
/// counted in the log) rather than the node's memory.
const MAX_PENDING: usize = 1024;

#[derive(Default)]
pub(super) struct History {
    pending: Vec<raft_gcs::Command>,
    dropped: u64,
    /// What the last tick saw, to record what changed since.
    seen: Seen,
}

/// The control store's leadership and voters, and the store's spill and
/// eviction counts, as the last tick saw them.
#[derive(Default)]
struct Seen {
    leader: Option<raft_gcs::NodeId>,
    voters: std::collections::BTreeSet<raft_gcs::NodeId>,
    spills: u64,
    spilled_bytes: u64,
    evictions: u64,
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl History {
    fn push(&mut self, command: raft_gcs::Command) {
        if self.pending.len() >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        self.pending.push(command);
    }
}

impl Core {
    /// The jobs table's key of one of this node's jobs.
    fn job_key(&self, job: JobId) -> raft_gcs::JobId {
        crate::cluster::keys::job_key(self.node_id, job)
    }

    /// A driver connected (`ended` false) or left: its row in the jobs table.
    pub(super) fn record_job(&mut self, job: JobId, pid: u32, ended: bool) {
        let now = now_ms();
        let start_ms = if ended {
            self.job_started.remove(&job).unwrap_or(now)
        } else {
            self.job_started.insert(job, now);
            now
        };
        let info = raft_gcs::JobInfo {
            driver_node: crate::cluster::keys::raft_id(self.node_id),
            state: if ended {
                raft_gcs::JobState::Finished
            } else {
                raft_gcs::JobState::Running
            },
            start_ms,
            end_ms: ended.then_some(now),
            metadata: format!("{{\"pid\":{pid}}}").into_bytes(),
        };
        let id = self.job_key(job);
        self.history.push(raft_gcs::Command::PutJob { id, info });
    }

    /// An actor living here started, is restarting, or died: its row in
    /// the control store's actors table says so (the table holds the
    /// actors that live, so a dead one's row goes).
    pub(super) fn record_actor(
        &mut self,
        actor: raynode_proto::ActorId,
        state: raft_gcs::ActorState,
    ) {
        let id = crate::cluster::keys::actor_key(actor);
        let me = crate::cluster::keys::raft_id(self.node_id);
        let (restarts, detached) = self
            .actors
            .get(&actor)
            .map_or((0, false), |a| (a.restarts, a.opts.detached));
        let node = (state == raft_gcs::ActorState::Alive).then_some(me);
        if state == raft_gcs::ActorState::Dead {
            return self.history.push(raft_gcs::Command::RemoveActor { id });
        }
        if state == raft_gcs::ActorState::Alive {
            // Unnamed actors enter the table here; a named one is in it
            // already (this is then refused as a conflict, harmlessly).
            let info = raft_gcs::ActorInfo {
                owner: self.node_id.0.to_vec(),
                detached,
                ..raft_gcs::ActorInfo::default()
            };
            self.history.push(raft_gcs::Command::CreateActor {
                id: id.clone(),
                info,
            });
        }
        self.history.push(raft_gcs::Command::UpdateActor {
            id,
            node,
            state,
            restarts,
        });
    }

    /// The Raft leader's word on a node's liveness, in the nodes table.
    pub(super) fn record_node_alive(&mut self, node: raynode_proto::NodeId, alive: bool) {
        let id = crate::cluster::keys::raft_id(node);
        self.history
            .push(raft_gcs::Command::SetNodeAlive { id, alive });
    }

    /// Adds an entry to the cluster's event log, about this node.
    pub(super) fn record_event(&mut self, kind: &str, message: String) {
        let command = raft_gcs::Command::AppendEvent {
            time_ms: now_ms(),
            source: Some(crate::cluster::keys::raft_id(self.node_id)),
            kind: kind.to_string(),
            message,
        };
        self.history.push(command);
    }

    /// Whether this node leads the control store now (and so records what
    /// every node sees alike, such as a node's loss).
    pub(super) fn leads_control_store(&self) -> bool {
        let status = self.gcs.status();
        status.leader == Some(status.id)
    }

    /// Records what changed since the last tick: a new leader and new
    /// voters (by the leader, so once), and this node's spills and
    /// evictions (one event per tick at most, with the counts).
    pub(super) fn watch_changes(&mut self) {
        let status = self.gcs.status();
        let me = status.id;
        if status.leader == Some(me) && self.history.seen.leader != Some(me) {
            self.record_event(
                "leader_changed",
                format!(
                    "node {} leads the control store (term {})",
                    self.node_id, status.term
                ),
            );
        }
        if status.leader == Some(me)
            && !self.history.seen.voters.is_empty()
            && status.voters != self.history.seen.voters
        {
            let names: Vec<String> = status
                .voters
                .iter()
                .map(|v| format!("{:016x}", v.0))
                .collect();
            self.record_event("voters_changed", format!("voters: {}", names.join(", ")));
        }
        self.history.seen.leader = status.leader;
        self.history.seen.voters = status.voters;
        let store = self.store.shared().stats();
        let seen = &self.history.seen;
        let spills = store.spills.saturating_sub(seen.spills);
        let evictions = store.evictions.saturating_sub(seen.evictions);
        let spilled_mib =
            store.spilled_bytes.saturating_sub(seen.spilled_bytes) as f64 / (1 << 20) as f64;
        let (total_spills, total_bytes, total_evictions) =
            (store.spills, store.spilled_bytes, store.evictions);
        if spills > 0 {
            self.record_event(
                "objects_spilled",
                format!("{spills} objects ({spilled_mib:.1} MiB) spilled to disk; {:.1} MiB spilled in all", total_bytes as f64 / (1 << 20) as f64),
            );
        }
        if evictions > 0 {
            self.record_event(
                "objects_evicted",
                format!("{evictions} objects evicted from the store to make room"),
            );
        }
        let seen = &mut self.history.seen;
        seen.spills = total_spills;
        seen.spilled_bytes = total_bytes;
        seen.evictions = total_evictions;
    }

    /// Writes the rows waiting, in one batch.
    pub(super) fn flush_history(&mut self) {
        if self.history.dropped > 0 {
            let dropped = std::mem::take(&mut self.history.dropped);
            tracing::warn!(
                dropped,
                "control-store history rows dropped: too many at once"
            );
        }
        if self.history.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.history.pending);
        self.cluster
            .write_in_background(batch, "recording jobs and events");
    }
}

impl Core {
    /// The jobs table as the control store's replica here holds it.
    pub(super) fn jobs_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self.gcs.read_local(|s| {
            s.jobs
                .iter()
                .map(|(id, info)| {
                    let key = String::from_utf8_lossy(&id.0);
                    let state = match info.state {
                        raft_gcs::JobState::Running => "RUNNING",
                        raft_gcs::JobState::Finished => "SUCCEEDED",
                        raft_gcs::JobState::Failed => "FAILED",
                    };
                    let meta: serde_json::Value =
                        serde_json::from_slice(&info.metadata).unwrap_or_default();
                    serde_json::json!({
                        "job_id": key,
                        "status": state,
                        "driver_node_id": format!("{:016x}", info.driver_node.0),
                        "start_time": info.start_ms,
                        "end_time": info.end_ms,
                        "driver_pid": meta.get("pid"),
                    })
                })
                .collect()
        });
        serde_json::Value::Array(rows)
    }

    /// The cluster's event log as the control store's replica here holds it.
    pub(super) fn events_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self.gcs.read_local(|s| {
            s.events
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "event_id": e.seq,
                        "time": e.time_ms,
                        "source_node": e.source.map(|n| format!("{:016x}", n.0)),
                        "kind": e.kind,
                        "message": e.message,
                    })
                })
                .collect()
        });
        serde_json::Value::Array(rows)
    }
}
