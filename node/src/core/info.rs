//! What a node tells about itself: nodes, resources, and the task timeline.

use super::Core;
use raynode_proto::{InfoKind, Resources, TaskId};
use serde_json::{json, Map, Value};

/// Finished tasks kept for `ray.timeline()`.
const TIMELINE_CAPACITY: usize = 100_000;

pub(super) struct Span {
    name: String,
    pid: u32,
    start_us: u64,
    dur_us: u64,
}

/// Resources by name, without those placement groups' bundles provide
/// (as Ray's `cluster_resources()` and `available_resources()` show them).
fn resources_json(r: &Resources) -> Value {
    let mut map = Map::new();
    for (name, value) in &r.0 {
        if !raynode_proto::task::is_group_resource(name) {
            map.insert(name.clone(), json!(value));
        }
    }
    Value::Object(map)
}

impl Core {
    pub(super) fn record_span(&mut self, task_id: TaskId) {
        let Some(task) = self.tasks.get(&task_id) else {
            return;
        };
        let (Some(started), super::TaskState::Running { worker, .. }) = (task.started, &task.state)
        else {
            return;
        };
        let pid = self.workers.get(worker).map_or(0, |w| w.process.pid);
        let span = Span {
            name: task.spec.name.clone(),
            pid,
            start_us: started.duration_since(self.started).as_micros() as u64,
            dur_us: started.elapsed().as_micros() as u64,
        };
        if self.timeline.len() == TIMELINE_CAPACITY {
            self.timeline.pop_front();
        }
        self.timeline.push_back(span);
    }

    pub(super) fn info_json(&self, what: InfoKind) -> String {
        let mut total = self.ledger.sched().total().clone();
        total.set(
            "object_store_memory",
            self.config.object_store_memory as f64,
        );
        let value = match what {
            InfoKind::Nodes => {
                let busy = self.ledger.busy();
                let status = self.gcs.status();
                let role = |raft: raft_gcs::NodeId| -> &'static str {
                    if status.voters.contains(&raft) {
                        if status.leader == Some(raft) && raft == status.id && !status.quorum {
                            // Leads in name only: cut off from a quorum, it refuses writes.
                            "isolated"
                        } else if status.leader == Some(raft) {
                            "leader"
                        } else if raft == status.id
                            && status.state == raft_gcs::ServerState::Candidate
                        {
                            "candidate"
                        } else {
                            "follower"
                        }
                    } else if status.learners.contains(&raft) {
                        "learner"
                    } else {
                        "none"
                    }
                };
                let mut nodes = vec![json!({
                    "NodeID": self.node_id.to_string(),
                    "Alive": true,
                    "NodeManagerAddress": "127.0.0.1",
                    "NodeManagerHostname": hostname(),
                    "ObjectStoreSocketName": self.store.root().display().to_string(),
                    "NodeManagerSocketName": self.config.socket_path().display().to_string(),
                    "Resources": resources_json(&total),
                    "alive": true,
                    "RaftRole": role(crate::cluster::raft_id(self.node_id)),
                    "PeerId": self.cluster.peer_id.to_string(),
                    "P2pAddress": self.cluster.p2p_addrs.first(),
                    "ClientAddress": self.client_addr,
                    "Available": resources_json(&self.ledger.sched().available()),
                    "Workers": self.workers.len(),
                    "BusyWorkers": busy,
                    "QueuedTasks": self.ledger.sched().queued(),
                    "Objects": self.objects.len(),
                    "Actors": self.actors.len(),
                })];
                let mut seen = vec![self.node_id];
                for (id, peer) in &self.remote.peers {
                    seen.push(*id);
                    let load = &peer.load;
                    nodes.push(json!({
                        "NodeID": id.to_string(),
                        "Alive": true,
                        "alive": true,
                        "NodeManagerAddress": "127.0.0.1",
                        "Resources": resources_json(&load.total),
                        "Available": resources_json(&load.available),
                        "QueuedTasks": load.queued,
                        "RaftRole": role(crate::cluster::raft_id(*id)),
                        "PeerId": load.peer,
                        "P2pAddress": load.p2p_addrs.first(),
                        "ClientAddress": load.client_addr,
                    }));
                }
                // Nodes the control store knows of that do not gossip: gone (or just starting).
                let recorded: Vec<(raft_gcs::NodeId, raft_gcs::NodeInfo)> = self
                    .gcs
                    .read_local(|s| s.nodes.iter().map(|(k, v)| (*k, v.clone())).collect());
                for (raft, info) in recorded {
                    let peer = info.addrs.iter().find_map(|a| crate::cluster::peer_of(a));
                    let Some(peer) = peer else { continue };
                    let id = crate::cluster::node_id_of(&peer);
                    if seen.contains(&id) {
                        continue;
                    }
                    let resources: Map<String, Value> = info
                        .resources
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(v)))
                        .collect();
                    nodes.push(json!({
                        "NodeID": id.to_string(),
                        "Alive": false,
                        "alive": false,
                        "Resources": resources,
                        "RaftRole": role(raft),
                        "PeerId": peer.to_string(),
                        "P2pAddress": info.addrs.first(),
                        "ClientAddress": null,
                    }));
                }
                Value::Array(nodes)
            }
            InfoKind::ClusterResources => {
                let mut sum = total.clone();
                for peer in self.remote.peers.values() {
                    for (name, v) in &peer.load.total.0 {
                        sum.set(name, sum.get(name) + v);
                    }
                }
                resources_json(&sum)
            }
            InfoKind::AvailableResources => {
                let mut sum = self.ledger.sched().available();
                for peer in self.remote.peers.values() {
                    for (name, v) in &peer.load.available.0 {
                        sum.set(name, sum.get(name) + v);
                    }
                }
                resources_json(&sum)
            }
            InfoKind::NamedActors => self.named_actors_json(),
            InfoKind::PlacementGroups => self.groups_json(),
            InfoKind::Jobs => self.jobs_json(),
            InfoKind::Events => self.events_json(),
            InfoKind::Timeline => Value::Array(
                self.timeline
                    .iter()
                    .map(|s| {
                        json!({
                            "name": s.name, "cat": "task", "ph": "X", "pid": s.pid, "tid": s.pid,
                            "ts": s.start_us, "dur": s.dur_us,
                        })
                    })
                    .collect(),
            ),
        };
        value.to_string()
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

impl Core {
    /// What the Prometheus endpoint serves: this node's own gauges, then
    /// the user metrics its clients recorded.
    pub(super) fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        let store = self.store.shared().stats();
        let gauges: [(&str, &str, f64); 9] = [
            (
                "raynode_workers",
                "Worker processes of this node",
                self.workers.len() as f64,
            ),
            (
                "raynode_busy_workers",
                "Workers running a task or holding an actor",
                self.ledger.busy() as f64,
            ),
            (
                "raynode_queued_tasks",
                "Tasks waiting for resources on this node",
                self.ledger.sched().queued() as f64,
            ),
            (
                "raynode_tasks",
                "Tasks this node knows of (owned or running here)",
                self.tasks.len() as f64,
            ),
            (
                "raynode_actors",
                "Actors living on this node",
                self.actors.len() as f64,
            ),
            (
                "raynode_objects",
                "Objects in this node's object table",
                self.objects.len() as f64,
            ),
            (
                "raynode_object_store_used_bytes",
                "Bytes of objects in the shared-memory store",
                store.used as f64,
            ),
            (
                "raynode_object_store_spilled_bytes",
                "Bytes of objects spilled to disk",
                store.spilled_bytes as f64,
            ),
            (
                "raynode_peers",
                "Other nodes this node hears from",
                self.remote.peers.len() as f64,
            ),
        ];
        let mut out = String::new();
        let node = self.node_id.to_string();
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name}{{node=\"{node}\"}} {value}");
        }
        out.push_str(&self.metrics.render());
        out
    }
}
