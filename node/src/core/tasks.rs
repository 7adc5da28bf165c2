//! Tasks: submission, dependencies, dispatch to workers, completion.

use super::{ConnId, Core, Task, TaskState};
use crate::engine::task_table::TaskStatus;
use crate::engine::Slot;
use crate::objects::ObjState;
use raynode_proto::meta::SystemErrorKind;
use raynode_proto::{
    Arg, Execute, FromNode, ObjectId, ReturnValue, TaskId, TaskKind, TaskSpec, Value, WorkerId,
};
use std::sync::Arc;
use std::time::Instant;

impl Core {
    pub(super) fn on_submit(&mut self, conn: ConnId, spec: TaskSpec) {
        let job = match self.clients.get(&conn) {
            Some(c) => match c.role {
                Some(raynode_proto::Role::Worker { worker }) => {
                    self.workers.get(&worker).map_or(c.job, |w| w.job)
                }
                _ => c.job,
            },
            None => return,
        };
        if self.tasks.contains_key(&spec.task_id) {
            tracing::warn!(task = %spec.task_id, "duplicate task id ignored");
            return;
        }
        for id in spec.return_ids() {
            self.hold(conn, id);
        }
        if spec.generator != raynode_proto::Generator::No {
            self.open_stream(spec.task_id);
        }
        if let (TaskKind::ActorCreate(opts), Some(raynode_proto::Role::Worker { worker })) = (
            &spec.kind,
            self.clients.get(&conn).and_then(|c| c.role.as_ref()),
        ) {
            if !opts.detached {
                let owned = self.owned_actors.entry(*worker).or_default();
                owned.push(opts.actor);
            }
        }
        self.submit(spec, job, None, 0, 0);
    }

    /// Takes a task in: from a local client (`origin` none), or from the
    /// node that owns it (with the job it gave it), which holds its return
    /// values.
    pub(super) fn submit(
        &mut self,
        spec: TaskSpec,
        job: raynode_proto::JobId,
        origin: Option<(raynode_proto::NodeId, raynode_proto::JobId)>,
        hops: u8,
        attempt: u32,
    ) {
        let task_id = spec.task_id;
        let mut missing = 0;
        let mut wanted = Vec::new();
        for dep in spec.dependencies() {
            let entry = self.objects.add_ref(dep);
            if !entry.is_ready() {
                entry.dependents.push(task_id);
                missing += 1;
                wanted.push(dep);
            }
        }
        for id in &spec.nested_refs {
            self.objects.add_ref(*id);
        }
        let mut task = Task::new(Arc::new(spec), job, TaskState::Waiting(missing));
        task.origin = origin.map(|(node, _)| node);
        task.origin_job = origin.map_or(raynode_proto::JobId(0), |(_, job)| job);
        task.hops = hops;
        task.attempt = attempt;
        let spec = task.spec.clone();
        self.tasks.insert(task_id, task);
        self.note_task(
            task_id,
            if missing > 0 {
                TaskStatus::PendingArgsAvail
            } else {
                TaskStatus::PendingNodeAssignment
            },
        );
        if let Err(e) = spec.validate() {
            // Checked again here whatever the client checked: a bad value
            // would corrupt the resource ledger.
            let why = format!("the task {} was refused: {e}", spec.name);
            return self.fail_task(task_id, SystemErrorKind::RaySystemError, &why);
        }
        if let TaskKind::ActorMethod { actor, .. } = &spec.kind {
            let actor = *actor;
            let elsewhere = self.remote_actor_home(actor).is_some();
            match self.actors.get_mut(&actor) {
                Some(a) => a.queue.push_back(task_id),
                None if elsewhere => self.remote.actor_queue(actor).push_back(task_id),
                None => {
                    let why =
                        format!("the actor {actor} is unknown to this node (it may have died)");
                    return self.fail_task(task_id, SystemErrorKind::ActorDiedError, &why);
                }
            }
        }
        if let TaskKind::ActorCreate(opts) = &spec.kind {
            self.register_actor(opts, &spec, job, attempt);
        }
        for id in wanted {
            self.want(id);
        }
        if missing == 0 {
            self.on_task_ready(task_id);
        }
    }

    /// All dependencies are here: queue it (or its actor's call), or fail it
    /// at once with the error one of its arguments holds.
    pub(super) fn on_task_ready(&mut self, task_id: TaskId) {
        self.note_task(task_id, TaskStatus::PendingNodeAssignment);
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return;
        };
        let spec = task.spec.clone();
        if let Some(error) = spec
            .dependencies()
            .find_map(|d| self.objects.get(&d).and_then(error_bytes))
        {
            return self.finish_with(task_id, |_| error.clone());
        }
        let (hops, foreign) = (task.hops, task.origin.is_some());
        match &spec.kind {
            TaskKind::ActorMethod { actor, .. } => {
                task.state = TaskState::Queued;
                let actor = *actor;
                if self.actors.contains_key(&actor) {
                    if self.pull_args_first(task_id) {
                        return;
                    }
                    self.pump_actor(actor);
                } else {
                    self.pump_remote_actor(actor);
                }
            }
            _ => {
                task.state = TaskState::Queued;
                match self.place(&spec, hops, foreign) {
                    super::remote::Place::Local if self.pull_args_first(task_id) => return,
                    super::remote::Place::Local => {}
                    super::remote::Place::Remote(node) => return self.forward(task_id, node),
                    super::remote::Place::SpillBack => return self.spill_back(task_id),
                    super::remote::Place::Unschedulable => return self.unschedulable(task_id),
                    super::remote::Place::Wait => {
                        tracing::debug!(task = %task_id, "no peer has room for a task now; it waits");
                        self.remote.unplaced.push(task_id);
                        return;
                    }
                    super::remote::Place::Nowhere => {
                        tracing::warn!(
                            task = %spec.name,
                            demand = ?spec.resources.0,
                            "no node of the cluster has the resources this task needs; \
                             it stays pending until one joins"
                        );
                        self.remote.unplaced.push(task_id);
                        return;
                    }
                }
                let demand = spec.demand().into_owned();
                if let Err(infeasible) = self.ledger.queue().enqueue(task_id, &demand) {
                    tracing::warn!(
                        task = %spec.name,
                        demand = ?infeasible.demand.0,
                        total = ?self.ledger.sched().total().0,
                        "a task needs more resources than this node has; it stays pending"
                    );
                }
                self.dispatch();
            }
        }
    }

    /// Hands queued tasks to idle workers, and starts workers if tasks that
    /// fit the free resources wait for one.
    pub(super) fn dispatch(&mut self) {
        while let Some((task_id, worker, _)) = self.ledger.dispatch_next() {
            let kind = self.tasks.get(&task_id).map(|t| t.spec.kind.clone());
            match kind {
                Some(TaskKind::ActorCreate(opts)) => self.start_actor(opts.actor, task_id, worker),
                Some(_) => {
                    if let Some(t) = self.tasks.get_mut(&task_id) {
                        t.state = TaskState::Running { worker };
                    }
                    self.execute(task_id, worker);
                }
                None => {
                    self.ledger.task_ended(worker);
                }
            }
        }
        let waiting = self.ledger.sched().fitting_len(super::MAX_STARTING_WORKERS);
        let starting = self.ledger.starting();
        for _ in starting..waiting.min(super::MAX_STARTING_WORKERS) {
            self.start_worker();
        }
    }

    /// Sends a task to a worker, resolving its arguments to values.
    pub(super) fn execute(&mut self, task_id: TaskId, worker: WorkerId) {
        self.note_running(task_id, worker);
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return;
        };
        task.started = Some(Instant::now());
        let spec = task.spec.clone();
        let attempt = task.attempt;
        let job = task.job;
        let route = self.output_route(task_id);
        let needs_body = match self.workers.get_mut(&worker) {
            Some(w) => {
                w.job = job;
                if let Some(route) = route {
                    w.remember_output_route(task_id, route);
                }
                !w.functions.contains(&spec.function)
            }
            None => {
                let why = format!("the worker given task {} is gone", spec.name);
                let kind = SystemErrorKind::WorkerCrashedError;
                return self.abort_execute(task_id, worker, kind, &why);
            }
        };
        let Some(conn) = self.workers.get(&worker).and_then(|w| w.conn) else {
            let why = format!("the worker given task {} has no connection", spec.name);
            let kind = SystemErrorKind::WorkerCrashedError;
            return self.abort_execute(task_id, worker, kind, &why);
        };
        let function_body = if needs_body {
            match self.function_body(spec.function) {
                Some(body) => {
                    if let Some(w) = self.workers.get_mut(&worker) {
                        w.functions.insert(spec.function);
                    }
                    Some(body.as_ref().clone())
                }
                None => {
                    let why = format!(
                        "function {} of task {} was never registered",
                        spec.function, spec.name
                    );
                    return self.abort_execute(
                        task_id,
                        worker,
                        SystemErrorKind::RaySystemError,
                        &why,
                    );
                }
            }
        } else {
            None
        };
        let mut args = Vec::with_capacity(spec.args.len());
        for arg in &spec.args {
            args.push(match arg {
                Arg::Value(bytes) => Value::Inline(bytes.clone()),
                Arg::Ref(id) => match self.value_of(*id) {
                    Some(v) => v,
                    None if self.is_plain_task(worker) && self.await_args_again(task_id) => {
                        // Being made again: the worker is free meanwhile.
                        self.worker_idle(worker);
                        return self.dispatch();
                    }
                    None => {
                        let why = format!("argument {id} of task {} is gone", spec.name);
                        let kind = SystemErrorKind::ObjectLostError;
                        return self.abort_execute(task_id, worker, kind, &why);
                    }
                },
            });
        }
        let exec = Execute {
            spec: spec.as_ref().clone(),
            job,
            function_body,
            args,
            attempt,
            gpu_ids: self.ledger.gpu_ids(worker),
        };
        self.send(conn, FromNode::Execute(Box::new(exec)));
    }

    /// A task handed to `worker` cannot start after all: it fails, and what
    /// its dispatch took goes back. A plain task returns its worker to the
    /// idle list and its resources to the scheduler; an actor whose
    /// constructor cannot start is dead (its worker and resources go back
    /// with it); a method call leaves its actor as it was.
    fn abort_execute(
        &mut self,
        task_id: TaskId,
        worker: WorkerId,
        kind: SystemErrorKind,
        why: &str,
    ) {
        tracing::warn!(task = %task_id, %worker, "a task cannot start: {why}");
        let actor = match self.ledger.slot(worker) {
            Some(Slot::Actor { actor, .. }) => Some(*actor),
            _ => None,
        };
        let creation_of = actor.filter(|a| {
            self.actors
                .get(a)
                .is_some_and(|entry| entry.creation == task_id)
        });
        if let Some(actor) = creation_of {
            self.fail_task(task_id, kind, why);
            return self.declare_dead(actor, format!("its constructor could not start: {why}"));
        }
        if actor.is_none() {
            match self.workers.get_mut(&worker) {
                Some(w) if w.conn.is_some() => self.worker_idle(worker),
                // Never handed out again: its exit is noticed as any other.
                Some(w) => {
                    w.process.kill();
                    self.ledger.retire(worker);
                }
                None => {
                    self.ledger.remove_worker(worker);
                }
            }
        }
        self.fail_task(task_id, kind, why);
        self.dispatch();
    }

    /// Whether `worker` runs plain tasks (not an actor).
    fn is_plain_task(&self, worker: WorkerId) -> bool {
        !matches!(self.ledger.slot(worker), Some(Slot::Actor { .. }))
    }

    /// The value of a ready object, as a client reads it.
    pub(super) fn value_of(&mut self, id: ObjectId) -> Option<Value> {
        match &self.objects.get(&id)?.state {
            ObjState::Pending | ObjState::Remote { .. } => None,
            ObjState::Inline { bytes, .. } => Some(Value::Inline(bytes.as_ref().clone())),
            ObjState::Stored { size } => {
                let size = *size;
                let path = self.store.resident_path(id)?;
                Some(Value::Store {
                    path: path.display().to_string(),
                    size,
                    id,
                })
            }
        }
    }

    pub(super) fn on_task_done(
        &mut self,
        conn: ConnId,
        task_id: TaskId,
        results: Vec<ReturnValue>,
        app_error: bool,
        error: Option<String>,
    ) {
        let Some(task) = self.tasks.get(&task_id) else {
            return;
        };
        let retry = app_error
            && task.spec.retry_exceptions
            && retries_left(&task.spec, task.attempt)
            && !task.cancelled;
        let worker = match &task.state {
            TaskState::Running { worker } => Some(*worker),
            _ => None,
        };
        self.record_span(task_id);
        if let Some(worker) = worker {
            self.worker_idle(worker);
        }
        let error = error.map(|e| ("TASK_EXECUTION_EXCEPTION".to_string(), e));
        if retry {
            tracing::debug!(task = %task_id, "retrying a task that raised");
            let (kind, why) = error.unwrap_or_default();
            return self.retry_task(task_id, &kind, &why);
        }
        if error.is_some() {
            self.note_ended(task_id, error);
        }
        let mut values = Vec::with_capacity(results.len());
        for (i, result) in results.into_iter().enumerate() {
            let id = ObjectId::for_return(task_id, i as u32);
            match result {
                ReturnValue::Inline { bytes, nested } => {
                    let error = app_error || crate::values::is_error(&bytes);
                    values.push((
                        id,
                        ObjState::Inline {
                            bytes: Arc::new(bytes),
                            error,
                        },
                        nested,
                    ));
                }
                ReturnValue::Stored { nested } => {
                    if let Some(state) = self.seal_created(conn, id) {
                        values.push((id, state, nested));
                    }
                }
            }
        }
        self.finish_task(task_id, values);
        self.dispatch();
    }

    /// Puts a task back in line for another attempt: the one before failed
    /// with Ray's `error_type`, for the reason `why`. It waits for any of
    /// its arguments that are being made again.
    pub(super) fn retry_task(&mut self, task_id: TaskId, error_type: &str, why: &str) {
        self.next_attempt(task_id, error_type, why);
        let Some(deps) = self
            .tasks
            .get(&task_id)
            .map(|t| t.spec.dependencies().collect::<Vec<_>>())
        else {
            return;
        };
        let pending: Vec<ObjectId> = deps
            .into_iter()
            .filter(|d| self.objects.get(d).is_some_and(|e| !e.is_ready()))
            .collect();
        self.wait_for(task_id, &pending);
        if pending.is_empty() {
            self.on_task_ready(task_id);
        }
    }

    /// The task waits (again) until each of `ids` is set; one entry per
    /// occurrence, as `submit` counts them.
    fn wait_for(&mut self, task_id: TaskId, ids: &[ObjectId]) {
        for id in ids {
            if let Some(entry) = self.objects.get_mut(id) {
                entry.dependents.push(task_id);
            }
        }
        if let Some(task) = self.tasks.get_mut(&task_id) {
            task.state = TaskState::Waiting(ids.len());
        }
    }

    /// A task whose arguments were ready when it was queued, one of which is
    /// being made again since (its holder died), waits for it anew. Returns
    /// whether it waits.
    pub(super) fn await_args_again(&mut self, task_id: TaskId) -> bool {
        let Some(spec) = self.tasks.get(&task_id).map(|t| t.spec.clone()) else {
            return false;
        };
        if matches!(spec.kind, TaskKind::ActorMethod { .. }) {
            // Calls keep their place in their actor's queue.
            return false;
        }
        let pending: Vec<ObjectId> = spec
            .dependencies()
            .filter(|d| self.objects.get(d).is_some_and(|e| !e.is_ready()))
            .collect();
        if pending.is_empty() {
            return false;
        }
        tracing::debug!(task = %task_id, "a task waits again for arguments being made again");
        self.ledger.queue().remove(task_id);
        self.remote.unplaced.retain(|t| *t != task_id);
        self.wait_for(task_id, &pending);
        true
    }

    /// A task to run here whose arguments were made on other nodes waits
    /// for copies of them pulled here. Returns whether it waits.
    pub(super) fn pull_args_first(&mut self, task_id: TaskId) -> bool {
        let Some(spec) = self.tasks.get(&task_id).map(|t| t.spec.clone()) else {
            return false;
        };
        let remote: Vec<ObjectId> = spec
            .dependencies()
            .filter(|d| self.needs_pull(*d))
            .collect();
        // Copies evicted here since the task was ready: asked for anew.
        let evicted: Vec<ObjectId> = spec
            .dependencies()
            .filter(|d| self.objects.get(d).is_some_and(|e| !e.is_ready()))
            .collect();
        if remote.is_empty() && evicted.is_empty() {
            return false;
        }
        let waited: Vec<ObjectId> = remote.iter().chain(&evicted).copied().collect();
        self.wait_for(task_id, &waited);
        for id in remote {
            self.localize(id);
        }
        for id in evicted {
            self.want(id);
        }
        true
    }

    /// Sets every return value from `make` (given the return's id) and ends the task.
    pub(super) fn finish_with(&mut self, task_id: TaskId, make: impl Fn(ObjectId) -> Vec<u8>) {
        let Some(task) = self.tasks.get(&task_id) else {
            return;
        };
        let values = task
            .spec
            .return_ids()
            .map(|id| {
                (
                    id,
                    ObjState::Inline {
                        bytes: Arc::new(make(id)),
                        error: true,
                    },
                    Vec::new(),
                )
            })
            .collect();
        self.finish_task(task_id, values);
    }

    pub(super) fn fail_task(&mut self, task_id: TaskId, kind: SystemErrorKind, why: &str) {
        if kind != SystemErrorKind::TaskCancelledError {
            let name = self.tasks.get(&task_id).map(|t| t.spec.name.clone());
            let name = name.unwrap_or_default();
            self.record_event(
                "task_failed",
                format!("{name} ({task_id}): {kind:?}: {why}"),
            );
        }
        self.note_failed(task_id, kind, why);
        let bytes = crate::values::system_error(kind, why);
        self.finish_with(task_id, |_| bytes.clone());
    }

    /// Records results and drops the task with what it held.
    pub(super) fn finish_task(
        &mut self,
        task_id: TaskId,
        values: Vec<(ObjectId, ObjState, Vec<ObjectId>)>,
    ) {
        self.note_ended(task_id, super::state::outcome(&values));
        match self.tasks.get(&task_id).and_then(|t| t.origin) {
            Some(owner) => self.send_results(owner, task_id, values),
            None => {
                for (id, state, nested) in values {
                    self.set_value(id, state, nested);
                }
            }
        }
        self.drop_task(task_id);
    }

    /// Forgets an ended task and releases what it held.
    pub(super) fn drop_task(&mut self, task_id: TaskId) {
        let Some(task) = self.tasks.remove(&task_id) else {
            return;
        };
        if matches!(task.state, TaskState::Queued) {
            self.ledger.queue().remove(task_id);
        }
        if let TaskKind::ActorMethod { actor, .. } = &task.spec.kind {
            if let Some(a) = self.actors.get_mut(actor) {
                a.queue.retain(|t| *t != task_id);
                a.inflight.retain(|t| *t != task_id);
            }
        }
        for dep in task.spec.dependencies() {
            if let Some(entry) = self.objects.get_mut(&dep) {
                entry.dependents.retain(|t| *t != task_id);
            }
            self.release(dep);
        }
        for id in &task.spec.nested_refs {
            self.release(*id);
        }
    }

    /// Stores a value and wakes what waited for it; discards it if nobody holds it.
    pub(super) fn set_value(&mut self, id: ObjectId, state: ObjState, nested: Vec<ObjectId>) {
        let stored = matches!(state, ObjState::Stored { .. });
        let Some(readied) = self.objects.set_value(id, state, nested) else {
            if stored {
                self.store.delete(id);
            }
            return;
        };
        self.answer_subscribers(id);
        if !self.streams.is_empty() {
            self.stream_progress(id);
        }
        for task_id in readied.dependents {
            let ready = match self.tasks.get_mut(&task_id) {
                Some(Task {
                    state: TaskState::Waiting(n),
                    ..
                }) => {
                    *n = n.saturating_sub(1);
                    *n == 0
                }
                _ => false,
            };
            if ready {
                self.on_task_ready(task_id);
            }
        }
        for waiter in readied.waiters {
            self.on_waiter_progress(waiter, id);
        }
    }

    /// Cancels the task making `id`. A queued task fails at once; a running
    /// one is stopped by ending its worker (with or without `force`: Python
    /// code cannot be interrupted safely from outside), and is not retried.
    /// `ray.cancel`: a task not started yet fails with TaskCancelledError;
    /// a running one is interrupted by its worker (KeyboardInterrupt), or
    /// with `force` its worker is ended; an actor's call is left to its
    /// worker (see `_worker.py`).
    pub(super) fn on_cancel(&mut self, id: ObjectId, force: bool) {
        let task_id = id.task();
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return;
        };
        if matches!(task.spec.kind, TaskKind::ActorCreate(_)) {
            return;
        }
        task.cancelled = true;
        match &task.state {
            TaskState::Remote(node) => {
                let node = *node;
                self.send_peer(
                    node,
                    crate::cluster::wire::PeerMsg::Cancel {
                        task: task_id,
                        force,
                    },
                );
            }
            TaskState::Waiting(_) | TaskState::Queued => {
                self.fail_task(
                    task_id,
                    SystemErrorKind::TaskCancelledError,
                    "the task was cancelled before it ran",
                );
            }
            TaskState::Running { worker, .. } => {
                let worker = *worker;
                if !force || matches!(task.spec.kind, TaskKind::ActorMethod { .. }) {
                    // The worker is told. A task gets KeyboardInterrupt; an
                    // actor keeps its state: its worker cancels the call if
                    // it has not started or is a coroutine, else the call
                    // may check `is_canceled()`.
                    if let Some(conn) = self.workers.get(&worker).and_then(|w| w.conn) {
                        self.send(conn, FromNode::Cancel { task: task_id });
                    }
                    return;
                }
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.process.kill();
                }
            }
            TaskState::Done => {}
        }
    }
}

impl Task {
    pub(super) fn new(spec: Arc<TaskSpec>, job: raynode_proto::JobId, state: TaskState) -> Task {
        Task {
            spec,
            job,
            state,
            attempt: 0,
            cancelled: false,
            started: None,
            origin: None,
            origin_job: raynode_proto::JobId(0),
            hops: 0,
        }
    }
}

/// Whether a task may run once more after `attempt` failed runs.
pub(super) fn retries_left(spec: &TaskSpec, attempt: u32) -> bool {
    spec.max_retries < 0 || (attempt as i64) < spec.max_retries as i64
}

fn error_bytes(entry: &crate::objects::ObjectEntry) -> Option<Vec<u8>> {
    match &entry.state {
        ObjState::Inline { bytes, error: true } => Some(bytes.as_ref().clone()),
        _ => None,
    }
}
