//! Actors: a worker kept for one object's life, calls run in the order they
//! were submitted, restarts up to `max_restarts`, names, and kills.

use super::{Core, TaskState};
use crate::engine::actor as engine;
use crate::engine::task_table::TaskStatus;
use raynode_proto::meta::SystemErrorKind;
use raynode_proto::{AckError, ActorId, ActorOptions, JobId, TaskId, TaskSpec, WorkerId};
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum ActorState {
    /// Waiting for its constructor's arguments, resources or a worker.
    Pending,
    /// Its constructor was sent to `worker`, which holds the actor's
    /// resources (in the ledger); calls may follow it.
    Running { worker: WorkerId },
    Dead {
        cause: String,
        /// What its calls raise: `ActorDiedError`, or
        /// `ActorUnschedulableError` for one no node may host.
        kind: SystemErrorKind,
    },
}

impl Actor {
    /// Its state by Ray's name (`ray.util.state`, `ray_actors{State}`).
    pub fn ray_state(&self) -> &'static str {
        match self.state {
            ActorState::Pending if self.restarts > 0 => "RESTARTING",
            ActorState::Pending => "PENDING_CREATION",
            ActorState::Running { .. } => "ALIVE",
            ActorState::Dead { .. } => "DEAD",
        }
    }
}

pub(super) struct Actor {
    pub opts: ActorOptions,
    pub creation: TaskId,
    pub job: JobId,
    pub state: ActorState,
    pub restarts: u32,
    /// Calls not sent yet, in submission order.
    pub queue: VecDeque<TaskId>,
    /// Calls sent to the worker, in order.
    pub inflight: VecDeque<TaskId>,
}

impl Core {
    /// Refuses an actor whose name a live actor already has.
    pub(super) fn check_actor_name(&self, spec: &TaskSpec) -> Result<(), AckError> {
        let raynode_proto::TaskKind::ActorCreate(opts) = &spec.kind else {
            return Ok(());
        };
        let Some(name) = &opts.name else {
            return Ok(());
        };
        let key = (opts.namespace.clone(), name.clone());
        match self.names.get(&key).and_then(|id| self.actors.get(id)) {
            Some(a) if !matches!(a.state, ActorState::Dead { .. }) => {
                Err(name_taken(name, &opts.namespace))
            }
            _ => Ok(()),
        }
    }

    /// Creates an actor whose caller waits for the answer: a named one is
    /// registered in the control store first, so that of two creators of
    /// one name anywhere in the cluster one wins and the other is refused.
    pub(super) fn on_submit_acked(&mut self, conn: super::ConnId, req: u64, spec: TaskSpec) {
        if let Err(error) = self.check_actor_name(&spec) {
            let error = Some(error);
            return self.send(conn, raynode_proto::FromNode::Acked { req, error });
        }
        let named = match &spec.kind {
            raynode_proto::TaskKind::ActorCreate(opts) => {
                opts.name.clone().map(|n| (n, opts.clone()))
            }
            _ => None,
        };
        let Some((name, opts)) = named else {
            self.on_submit(conn, spec);
            return self.send(conn, raynode_proto::FromNode::Acked { req, error: None });
        };
        let info = raft_gcs::ActorInfo {
            name: Some(name_key(&opts.namespace, &name)),
            owner: self.node_id.0.to_vec(),
            detached: opts.detached,
            handle: opts.handle_meta.clone(),
            ..raft_gcs::ActorInfo::default()
        };
        let command = raft_gcs::Command::CreateActor {
            id: crate::cluster::keys::actor_key(opts.actor),
            info,
        };
        let (cluster, events) = (self.cluster.clone(), self.events.clone());
        tokio::spawn(async move {
            let result = match cluster.write(vec![command]).await {
                Ok(responses) => match responses.into_iter().next() {
                    Some(raft_gcs::Response::Ok) => Ok(()),
                    Some(raft_gcs::Response::Conflict(_)) => {
                        Err(name_taken(&name, &opts.namespace))
                    }
                    other => Err(AckError::Refused(format!(
                        "registering the actor name {name} failed: {other:?}"
                    ))),
                },
                Err(e) => Err(AckError::NoQuorum(format!(
                    "registering the actor name {name} failed: {e}"
                ))),
            };
            let spec = Box::new(spec);
            let _ = events
                .send(super::Event::ActorNamed {
                    conn,
                    req,
                    spec,
                    result,
                })
                .await;
        });
    }

    /// `ray.get_actor`: a live actor of this node, else the control store's
    /// name table (waiting a moment for a name just registered elsewhere).
    pub(super) fn on_get_actor(
        &mut self,
        conn: super::ConnId,
        req: u64,
        name: String,
        namespace: String,
    ) {
        let key = (namespace, name);
        let local = self.names.get(&key).and_then(|id| {
            self.actors
                .get(id)
                .filter(|a| !matches!(a.state, ActorState::Dead { .. }))
                .map(|a| (*id, a.opts.handle_meta.clone()))
        });
        if local.is_some() {
            let found = local;
            return self.send(conn, raynode_proto::FromNode::ActorFound { req, found });
        }
        let (gcs, events) = (self.gcs.clone(), self.events.clone());
        let key = name_key(&key.0, &key.1);
        tokio::spawn(async move {
            let mut found = None;
            for attempt in 0..10 {
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                found = gcs.read_local(|s| {
                    let id = s.actor_names.get(&key)?;
                    let info = s.actors.get(id)?;
                    let id = ActorId(<[u8; 16]>::try_from(id.0.as_slice()).ok()?);
                    Some((id, info.handle.clone()))
                });
                if found.is_some() {
                    break;
                }
            }
            let _ = events
                .send(super::Event::ActorFound { conn, req, found })
                .await;
        });
    }

    /// Records an actor about to be created, or created again after it
    /// used `restarts` of its budget.
    pub(super) fn register_actor(
        &mut self,
        opts: &ActorOptions,
        spec: &TaskSpec,
        job: JobId,
        restarts: u32,
    ) {
        if let Some(name) = &opts.name {
            self.names
                .insert((opts.namespace.clone(), name.clone()), opts.actor);
        }
        let actor = Actor {
            opts: opts.clone(),
            creation: spec.task_id,
            job,
            state: ActorState::Pending,
            restarts,
            queue: VecDeque::new(),
            inflight: VecDeque::new(),
        };
        self.actors.insert(opts.actor, actor);
    }

    /// The ledger gave the actor's constructor (`creation`) a worker and
    /// resources: the worker is the actor's from now on; run it there.
    pub(super) fn start_actor(&mut self, actor_id: ActorId, creation: TaskId, worker: WorkerId) {
        let pending = self
            .actors
            .get(&actor_id)
            .is_some_and(|a| a.state == ActorState::Pending && a.creation == creation);
        if !pending || !self.ledger.keep_for_actor(worker, creation, actor_id) {
            self.ledger.task_ended(worker);
            return;
        }
        if let Some(a) = self.actors.get_mut(&actor_id) {
            a.state = ActorState::Running { worker };
        }
        self.record_actor(actor_id, raft_gcs::ActorState::Alive);
        if let Some(t) = self.tasks.get_mut(&creation) {
            t.state = TaskState::Done;
        }
        self.execute(creation, worker);
        self.pump_actor(actor_id);
    }

    /// Sends the actor's calls whose arguments are ready, in order.
    pub(super) fn pump_actor(&mut self, actor_id: ActorId) {
        loop {
            let Some(actor) = self.actors.get(&actor_id) else {
                return;
            };
            let Some(&next) = actor.queue.front() else {
                return;
            };
            let worker = match &actor.state {
                ActorState::Running { worker, .. } => *worker,
                ActorState::Pending => return,
                ActorState::Dead { cause, kind } => {
                    let why = match kind {
                        SystemErrorKind::ActorDiedError => format!("The actor died: {cause}"),
                        _ => cause.clone(),
                    };
                    let kind = *kind;
                    self.fail_task(next, kind, &why);
                    continue;
                }
            };
            let queued = self
                .tasks
                .get(&next)
                .is_some_and(|t| matches!(t.state, TaskState::Queued));
            if !queued {
                if !self.tasks.contains_key(&next) {
                    if let Some(a) = self.actors.get_mut(&actor_id) {
                        a.queue.pop_front();
                    }
                    continue;
                }
                return;
            }
            if let Some(a) = self.actors.get_mut(&actor_id) {
                a.queue.pop_front();
                a.inflight.push_back(next);
            }
            if let Some(t) = self.tasks.get_mut(&next) {
                t.state = TaskState::Running { worker };
            }
            self.execute(next, worker);
        }
    }

    pub(super) fn on_actor_ready(&mut self, actor_id: ActorId, error: Option<String>) {
        if let Some(creation) = self.actors.get(&actor_id).map(|a| a.creation) {
            let failed = error
                .clone()
                .map(|e| ("TASK_EXECUTION_EXCEPTION".to_string(), e));
            self.note_ended(creation, failed);
        }
        if let Some(traceback) = error {
            tracing::info!(actor = %actor_id, "actor constructor raised");
            let cause = format!("its constructor raised:\n{traceback}");
            self.declare_dead(actor_id, cause);
        }
    }

    pub(super) fn on_actor_worker_died(&mut self, actor_id: ActorId, why: &str) {
        let Some(actor) = self.actors.get_mut(&actor_id) else {
            return;
        };
        // Its worker is gone from the ledger already, with what it held.
        if !matches!(actor.state, ActorState::Running { .. }) {
            return;
        }
        let limits = engine::Limits {
            max_restarts: actor.opts.max_restarts,
            max_task_retries: actor.opts.max_task_retries,
        };
        let running: Vec<engine::Call> = actor
            .inflight
            .iter()
            .filter_map(|t| {
                let attempt = self.tasks.get(t)?.attempt;
                Some(engine::Call { task: *t, attempt })
            })
            .collect();
        let (restarts, again, failed) = match engine::after_loss(limits, actor.restarts, &running) {
            engine::AfterLoss::Dead { .. } => {
                let max = limits.max_restarts;
                let cause =
                    format!("its worker process died ({why}) and max_restarts={max} is used up");
                return self.declare_dead(actor_id, cause);
            }
            engine::AfterLoss::Restart {
                restarts,
                again,
                failed,
            } => (restarts, again, failed),
        };
        actor.restarts = restarts;
        actor.state = ActorState::Pending;
        actor.inflight.clear();
        let creation = actor.creation;
        tracing::info!(actor = %actor_id, restart = restarts, "restarting actor: {why}");
        self.record_actor(actor_id, raft_gcs::ActorState::Restarting);
        self.record_event(
            "actor_restarted",
            format!("actor {actor_id} restarts (restart {restarts}): {why}"),
        );
        // Calls in flight go first again if they may be retried, else fail.
        for task_id in &again {
            let cause = format!("the actor's worker died ({why})");
            self.next_attempt(*task_id, "WORKER_DIED", &cause);
            if let Some(task) = self.tasks.get_mut(task_id) {
                task.state = TaskState::Queued;
            }
        }
        for task_id in failed {
            let why = format!("The actor's worker died ({why}) while running this call");
            self.fail_task(task_id, SystemErrorKind::ActorDiedError, &why);
        }
        if let Some(actor) = self.actors.get_mut(&actor_id) {
            for task_id in again.into_iter().rev() {
                actor.queue.push_front(task_id);
            }
        }
        let mut owner = None;
        let cause = format!("the actor's worker died ({why})");
        self.note_ended(creation, Some(("WORKER_DIED".to_string(), cause)));
        if let Some(task) = self.tasks.get_mut(&creation) {
            task.attempt = restarts;
            task.state = TaskState::Queued;
            owner = task.origin;
            let demand = task.spec.demand().into_owned();
            let _ = self.ledger.queue().enqueue(creation, &demand);
        }
        self.note_task(creation, TaskStatus::PendingNodeAssignment);
        if let Some(owner) = owner {
            // The actor is another node's: its budget is kept there too.
            let msg = crate::cluster::wire::PeerMsg::ActorRestarted {
                actor: actor_id,
                restarts,
            };
            self.send_peer(owner, msg);
        }
        self.dispatch();
    }

    /// Kills the actor's worker; unless `no_restart`, it restarts as after a crash.
    pub(super) fn kill_actor(&mut self, actor_id: ActorId, no_restart: bool, why: &str) {
        let Some(actor) = self.actors.get(&actor_id) else {
            return;
        };
        if no_restart {
            return self.declare_dead(actor_id, why.to_string());
        }
        if let ActorState::Running { worker, .. } = &actor.state {
            if let Some(w) = self.workers.get_mut(worker) {
                w.process.kill();
            }
        }
    }

    /// The actor is dead for good: its calls fail, its worker stops, its name is freed.
    pub(super) fn declare_dead(&mut self, actor_id: ActorId, cause: String) {
        self.declare_dead_as(actor_id, cause, SystemErrorKind::ActorDiedError)
    }

    /// As [`Core::declare_dead`], its calls failing with `kind`.
    pub(super) fn declare_dead_as(
        &mut self,
        actor_id: ActorId,
        cause: String,
        kind: SystemErrorKind,
    ) {
        if self
            .actors
            .get(&actor_id)
            .is_some_and(|a| !matches!(a.state, ActorState::Dead { .. }))
        {
            self.record_event("actor_died", format!("actor {actor_id} died: {cause}"));
            self.record_actor(actor_id, raft_gcs::ActorState::Dead);
        }
        let Some(actor) = self.actors.get_mut(&actor_id) else {
            return;
        };
        let previous = std::mem::replace(
            &mut actor.state,
            ActorState::Dead {
                cause: cause.clone(),
                kind,
            },
        );
        let calls: Vec<TaskId> = actor
            .inflight
            .drain(..)
            .chain(actor.queue.drain(..))
            .collect();
        let creation = actor.creation;
        let name = actor
            .opts
            .name
            .clone()
            .map(|n| (actor.opts.namespace.clone(), n));
        match previous {
            ActorState::Running { worker } => {
                self.ledger.retire(worker);
                if let Some(w) = self.workers.get_mut(&worker) {
                    // The worker's exit finds the actor dead and does nothing more.
                    w.process.kill();
                }
            }
            ActorState::Pending => {
                self.ledger.queue().remove(creation);
            }
            ActorState::Dead { .. } => {}
        }
        let why = match kind {
            SystemErrorKind::ActorDiedError => format!("The actor died: {cause}"),
            _ => cause.clone(),
        };
        for task_id in calls {
            self.fail_task(task_id, kind, &why);
        }
        // The constructor's arguments are no longer needed for restarts.
        self.finish_task(creation, Vec::new());
        if let Some(key) = name {
            if self.names.get(&key) == Some(&actor_id) {
                self.names.remove(&key);
            }
            self.forget_actor_name(actor_id);
        }
        self.dispatch();
    }

    /// A driver left: its actors die with it, unless detached.
    /// Whether a worker created actors that are still alive (here or on
    /// another node); forgets the ones that are not.
    pub(super) fn owns_live_actors(&mut self, worker: WorkerId) -> bool {
        let Some(mut owned) = self.owned_actors.remove(&worker) else {
            return false;
        };
        owned.retain(|a| {
            let here = self
                .actors
                .get(a)
                .is_some_and(|a| !matches!(a.state, ActorState::Dead { .. }));
            here || self.remote.actors.contains_key(a)
        });
        let live = !owned.is_empty();
        if live {
            self.owned_actors.insert(worker, owned);
        }
        live
    }

    /// A worker is gone: so are the actors it created, as in Ray.
    pub(super) fn end_owned_actors(&mut self, worker: WorkerId) {
        for actor in self.owned_actors.remove(&worker).unwrap_or_default() {
            let why = crate::cluster::wire::KillReason::OwnerDied;
            if !self.kill_remote_actor(actor, true, why) {
                self.kill_actor(actor, true, why.text());
            }
        }
    }

    pub(super) fn end_job(&mut self, job: JobId) {
        let doomed: Vec<ActorId> = self
            .actors
            .iter()
            .filter(|(_, a)| {
                a.job == job && !a.opts.detached && !matches!(a.state, ActorState::Dead { .. })
            })
            .map(|(id, _)| *id)
            .collect();
        for actor in doomed {
            self.declare_dead(actor, "its driver exited".into());
        }
        self.end_remote_job(job);
        self.end_job_groups(job);
    }
}

fn name_taken(name: &str, namespace: &str) -> AckError {
    AckError::NameTaken(format!(
        "The name {name} (namespace={namespace}) is already taken by another actor"
    ))
}

/// The control store's key of an actor name.
fn name_key(namespace: &str, name: &str) -> String {
    format!("{namespace}\u{0}{name}")
}

impl Core {
    /// Frees an actor's name in the control store (in the background,
    /// trying until it commits): the actor is dead, or it never came to be.
    pub(super) fn forget_actor_name(&self, actor: ActorId) {
        let id = crate::cluster::keys::actor_key(actor);
        self.cluster.write_in_background(
            vec![raft_gcs::Command::RemoveActor { id }],
            "freeing an actor's name",
        );
    }

    /// The control store answered a named actor's registration. The actor
    /// is created if its creator still waits; otherwise (the creator left,
    /// or the write timed out and may still commit later) the name is freed
    /// again, so no name outlives an actor that was never made.
    pub(super) fn on_actor_named(
        &mut self,
        conn: super::ConnId,
        req: u64,
        spec: TaskSpec,
        result: Result<(), AckError>,
    ) {
        let actor = match &spec.kind {
            raynode_proto::TaskKind::ActorCreate(opts) => Some(opts.actor),
            _ => None,
        };
        let waiting = self.clients.contains_key(&conn);
        match &result {
            Ok(()) if waiting => self.on_submit(conn, spec),
            Err(AckError::NameTaken(_)) => {}
            _ => {
                if let Some(actor) = actor {
                    tracing::info!(%actor, "freeing the name of an actor that was not created");
                    self.forget_actor_name(actor);
                }
            }
        }
        let error = result.err();
        self.send(conn, raynode_proto::FromNode::Acked { req, error });
    }
}
