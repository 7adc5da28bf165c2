//! The worker pool: starting workers, returning them to the idle list, and
//! what happens to their work when a worker process dies.

use super::{Core, Worker};
use crate::engine::Slot;
use raynode_proto::meta::SystemErrorKind;
use raynode_proto::{TaskKind, WorkerId};
use std::collections::{HashSet, VecDeque};
use std::time::Instant;

impl Core {
    pub(super) fn start_worker(&mut self) {
        let id = WorkerId(self.next_worker);
        self.next_worker += 1;
        match crate::workers::spawn(&self.config, id, self.events.clone()) {
            Ok(process) => {
                let worker = Worker {
                    process,
                    output_to: VecDeque::new(),
                    conn: None,
                    job: raynode_proto::JobId(0),
                    functions: HashSet::new(),
                    idle_since: Instant::now(),
                };
                self.workers.insert(id, worker);
                self.ledger.add_worker(id);
            }
            Err(e) => {
                tracing::error!(python = %self.config.python.display(), "cannot start a worker: {e}")
            }
        }
    }

    /// The worker's task ended: it and its resources are free again.
    pub(super) fn worker_idle(&mut self, worker: WorkerId) {
        if self.ledger.task_ended(worker).is_some() {
            if let Some(w) = self.workers.get_mut(&worker) {
                w.idle_since = Instant::now();
            }
        }
    }

    pub(super) fn on_worker_exited(&mut self, worker: WorkerId, status: &str) {
        let conn = self.workers.get(&worker).and_then(|w| w.conn);
        match conn {
            // Its connection's end does the rest.
            Some(conn) if self.clients.contains_key(&conn) => {
                tracing::debug!(%worker, status, "worker exited");
                self.on_disconnected(conn);
            }
            _ => self.on_worker_gone(worker, status),
        }
    }

    /// A worker is gone (its process exited or its connection closed):
    /// its task is retried or failed, its actor restarted or declared dead.
    pub(super) fn on_worker_gone(&mut self, worker: WorkerId, why: &str) {
        let Some(mut w) = self.workers.remove(&worker) else {
            return;
        };
        if self.past_workers.len() == super::logs::PAST_WORKERS {
            self.past_workers.pop_front();
        }
        self.past_workers.push_back((w.process.pid, worker));
        w.process.kill();
        if self.owned_actors.contains_key(&worker) {
            self.end_owned_actors(worker);
        }
        // What it held goes back with it.
        match self.ledger.remove_worker(worker) {
            Some(Slot::Starting) => {
                tracing::warn!(%worker, "worker exited before it connected: {why}");
            }
            None | Some(Slot::Idle | Slot::Retiring) => {}
            Some(Slot::Task { task: task_id, .. }) => {
                tracing::warn!(%worker, task = %task_id, "worker died running a task: {why}");
                let Some(task) = self.tasks.get(&task_id) else {
                    return self.dispatch();
                };
                let cancelled = task.cancelled;
                let retry = super::tasks::retries_left(&task.spec, task.attempt);
                let name = task.spec.name.clone();
                if cancelled {
                    self.fail_task(
                        task_id,
                        SystemErrorKind::TaskCancelledError,
                        "the task was cancelled",
                    );
                } else if retry && matches!(task.spec.kind, TaskKind::Normal) {
                    let why = format!("the worker running {name} died ({why})");
                    self.retry_task(task_id, "WORKER_DIED", &why);
                } else {
                    let attempts = task.attempt + 1;
                    let why = format!(
                        "the worker running {name} died ({why}) after {attempts} attempt(s)"
                    );
                    self.fail_task(task_id, SystemErrorKind::WorkerCrashedError, &why);
                }
            }
            Some(Slot::Actor { actor, .. }) => self.on_actor_worker_died(actor, why),
        }
        self.dispatch();
    }
}
