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
pub(super) fn resources_json(r: &Resources) -> Value {
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
                let role = |raft: raft_gcs::NodeId| raft_role(&status, raft);
                let mut nodes = vec![json!({
                    "NodeID": self.node_id.to_string(),
                    "Alive": true,
                    "NodeManagerAddress": "127.0.0.1",
                    "NodeManagerHostname": hostname(),
                    "ObjectStoreSocketName": self.store.root().display().to_string(),
                    "NodeManagerSocketName": self.config.socket_path().display().to_string(),
                    "Resources": resources_json(&total),
                    "alive": true,
                    "RaftRole": role(crate::cluster::keys::raft_id(self.node_id)),
                    "PeerId": self.cluster.peer_id.to_string(),
                    "P2pAddress": self.cluster.p2p_addrs.first(),
                    "ClientAddress": self.client_addr,
                    "DashboardAddress": self.dashboard_addr,
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
                        "RaftRole": role(crate::cluster::keys::raft_id(*id)),
                        "PeerId": load.peer,
                        "P2pAddress": load.p2p_addrs.first(),
                        "ClientAddress": load.client_addr,
                        "DashboardAddress": load.dashboard_addr,
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
            // Asked of every node: answered by `answer_info`.
            InfoKind::Tasks | InfoKind::Actors | InfoKind::Objects | InfoKind::NodeStats => {
                json!({"rows": [], "missing": []})
            }
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

/// A member's part in the control store's Raft group, as `status` (this
/// member's view) has it.
pub(super) fn raft_role(status: &raft_gcs::Status, raft: raft_gcs::NodeId) -> &'static str {
    if status.voters.contains(&raft) {
        if status.leader == Some(raft) && raft == status.id && !status.quorum {
            // Leads in name only: cut off from a quorum, it refuses writes.
            "isolated"
        } else if status.leader == Some(raft) {
            "leader"
        } else if raft == status.id && status.state == raft_gcs::ServerState::Candidate {
            "candidate"
        } else {
            "follower"
        }
    } else if status.learners.contains(&raft) {
        "learner"
    } else {
        "none"
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

impl Core {
    /// What the Prometheus endpoint serves: this node's own gauges (with
    /// Ray's names where Ray has one), then its clients' metrics.
    pub(super) fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        let store = self.store.shared().stats();
        let status = self.gcs.status();
        let me = self.node_id.to_string();
        let mut tasks: std::collections::BTreeMap<&str, f64> = Default::default();
        for row in self.task_table.rows() {
            // Counted by their owner's node only, so the cluster sums once.
            if row.facts.job.starts_with(&me) {
                *tasks.entry(row.status.name()).or_default() += 1.0;
            }
        }
        let mut actors: std::collections::BTreeMap<&str, f64> = Default::default();
        for a in self.actors.values() {
            *actors.entry(a.ray_state()).or_default() += 1.0;
        }
        let (mem_total, mem_available) = crate::config::machine_memory();
        let one = |v: f64| vec![(String::new(), v)];
        let by = |label: &str, m: &std::collections::BTreeMap<&str, f64>| {
            m.iter()
                .map(|(k, v)| (format!("{label}=\"{k}\""), *v))
                .collect::<Vec<_>>()
        };
        let leads = status.leader == Some(status.id);
        // (name, type, help, samples as (labels, value)).
        type Gauge<'a> = (&'a str, &'a str, &'a str, Vec<(String, f64)>);
        let gauges: Vec<Gauge> = vec![
            (
                "ray_tasks",
                "gauge",
                "Tasks this node owns, by state (of the task table)",
                by("State", &tasks),
            ),
            (
                "ray_actors",
                "gauge",
                "Actors living on this node, by state",
                by("State", &actors),
            ),
            (
                "ray_object_store_memory",
                "gauge",
                "Object store bytes, in shared memory and spilled to disk",
                vec![
                    ("Location=\"MMAP_SHM\"".into(), store.used as f64),
                    ("Location=\"SPILLED\"".into(), store.spilled_bytes as f64),
                ],
            ),
            (
                "ray_object_store_available_memory",
                "gauge",
                "Object store bytes free",
                one(store.capacity.saturating_sub(store.used) as f64),
            ),
            (
                "ray_node_cpu_count",
                "gauge",
                "CPUs this node offers",
                one(self.ledger.sched().total().get("CPU")),
            ),
            (
                "ray_node_cpu_utilization",
                "gauge",
                "Percent of this machine's CPU time in use over the last second",
                one(self.cpu.percent),
            ),
            (
                "ray_node_mem_total",
                "gauge",
                "Memory of this machine in bytes",
                one(mem_total as f64),
            ),
            (
                "ray_node_mem_used",
                "gauge",
                "Memory of this machine in use in bytes",
                one(mem_total.saturating_sub(mem_available) as f64),
            ),
            (
                "raynode_workers",
                "gauge",
                "Worker processes of this node",
                one(self.workers.len() as f64),
            ),
            (
                "raynode_busy_workers",
                "gauge",
                "Workers running a task or holding an actor",
                one(self.ledger.busy() as f64),
            ),
            (
                "raynode_queued_tasks",
                "gauge",
                "Tasks waiting for resources on this node",
                one(self.ledger.sched().queued() as f64),
            ),
            (
                "raynode_tasks",
                "gauge",
                "Tasks this node knows of (owned or running here)",
                one(self.tasks.len() as f64),
            ),
            (
                "raynode_actors",
                "gauge",
                "Actors living on this node",
                one(self.actors.len() as f64),
            ),
            (
                "raynode_objects",
                "gauge",
                "Objects in this node's object table",
                one(self.objects.len() as f64),
            ),
            (
                "raynode_object_store_used_bytes",
                "gauge",
                "Bytes of objects in the shared-memory store",
                one(store.used as f64),
            ),
            (
                "raynode_object_store_capacity_bytes",
                "gauge",
                "Capacity of the shared-memory store",
                one(store.capacity as f64),
            ),
            (
                "raynode_object_store_spilled_bytes",
                "gauge",
                "Bytes of objects spilled to disk",
                one(store.spilled_bytes as f64),
            ),
            (
                "raynode_peers",
                "gauge",
                "Other nodes this node hears from",
                one(self.remote.peers.len() as f64),
            ),
            (
                "raynode_pulls_in_flight",
                "gauge",
                "Objects being pulled from other nodes or waiting to be",
                one(self.remote.pulls.in_flight() as f64),
            ),
            (
                "raynode_pulled_objects_total",
                "counter",
                "Objects pulled from other nodes",
                one(self.remote.pulls.done as f64),
            ),
            (
                "raynode_pulled_bytes_total",
                "counter",
                "Bytes pulled from other nodes",
                one(self.remote.pulls.done_bytes as f64),
            ),
            (
                "raynode_lineage_bytes",
                "gauge",
                "Bytes of task specs kept to make lost results again",
                one(self.remote.lineage.bytes() as f64),
            ),
            (
                "raynode_lineage_evicted_total",
                "counter",
                "Tasks whose lineage was dropped to stay within --max-lineage-bytes",
                one(self.remote.lineage.evicted as f64),
            ),
            (
                "raynode_objects_rebuilt_total",
                "counter",
                "Tasks run again to make lost results again (lineage)",
                one(self.remote.rebuilt as f64),
            ),
            (
                "raynode_load_reports_sent_total",
                "counter",
                "Load reports this node gossiped (when its load changed, or as a keepalive)",
                one(self.remote.loads_sent as f64),
            ),
            (
                "raynode_load_reports_received_total",
                "counter",
                "Load reports received from peers, each counted once",
                one(self.remote.loads_received as f64),
            ),
            (
                "raynode_raft_term",
                "gauge",
                "The control store's Raft term, as this member knows it",
                one(status.term as f64),
            ),
            (
                "raynode_raft_applied_index",
                "gauge",
                "The last control-store entry this member applied",
                one(status.applied.unwrap_or(0) as f64),
            ),
            (
                "raynode_raft_is_leader",
                "gauge",
                "1 if this node leads the control store",
                one(f64::from(u8::from(leads))),
            ),
            (
                "raynode_task_table_rows",
                "gauge",
                "Task attempts this node's task table keeps",
                one(self.task_table.len() as f64),
            ),
            (
                "raynode_task_table_dropped_total",
                "counter",
                "Task attempts dropped from the full task table",
                one(self.task_table.dropped() as f64),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, samples) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let sep = if labels.is_empty() { "" } else { "," };
                let _ = writeln!(out, "{name}{{node=\"{me}\"{sep}{labels}}} {value}");
            }
        }
        out.push_str(&self.metrics.render());
        out
    }
}

/// The machine's CPU use between two ticks, from /proc/stat.
#[derive(Default)]
pub(super) struct CpuGauge {
    /// The last sample: (busy, total) jiffies.
    last: Option<(u64, u64)>,
    /// Percent of all CPUs busy between the last two samples.
    pub percent: f64,
}

impl CpuGauge {
    pub fn sample(&mut self) {
        let Some(now) = cpu_jiffies() else { return };
        if let Some((busy, total)) = self.last {
            let (d_busy, d_total) = (now.0.saturating_sub(busy), now.1.saturating_sub(total));
            if d_total > 0 {
                self.percent = 100.0 * d_busy as f64 / d_total as f64;
            }
        }
        self.last = Some(now);
    }
}

/// (busy, total) jiffies of all CPUs since boot.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait are the 4th and 5th.
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}
