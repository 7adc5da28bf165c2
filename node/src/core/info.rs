//! What a node tells about itself: nodes, resources, and the task timeline.

use super::{Core, WorkerState};
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

fn resources_json(r: &Resources) -> Value {
    let mut map = Map::new();
    for (name, value) in &r.0 {
        map.insert(name.clone(), json!(value));
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
        let mut total = self.sched.total().clone();
        total.set(
            "object_store_memory",
            self.config.object_store_memory as f64,
        );
        let value = match what {
            InfoKind::Nodes => {
                let busy = self
                    .workers
                    .values()
                    .filter(|w| !matches!(w.state, WorkerState::Idle))
                    .count();
                json!([{
                    "NodeID": self.node_id.to_string(),
                    "Alive": true,
                    "NodeManagerAddress": "127.0.0.1",
                    "NodeManagerHostname": hostname(),
                    "ObjectStoreSocketName": self.store.root().display().to_string(),
                    "NodeManagerSocketName": self.config.socket_path().display().to_string(),
                    "Resources": resources_json(&total),
                    "alive": true,
                    "RaftRole": "leader",
                    "Workers": self.workers.len(),
                    "BusyWorkers": busy,
                    "QueuedTasks": self.sched.queued(),
                    "Objects": self.objects.len(),
                    "Actors": self.actors.len(),
                }])
            }
            InfoKind::ClusterResources => resources_json(&total),
            InfoKind::AvailableResources => resources_json(&self.sched.available()),
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
