//! Actors of ours that live on other nodes: their calls forwarded in
//! order to their home (or relayed through their owner), their restarts
//! when their node is lost (one restart budget wherever they live), and
//! `ray.kill` and job ends passed on.

use super::{Core, TaskState};
use crate::cluster::wire::{KillReason, PeerMsg};
use crate::engine::actor as engine;
use raynode_proto::meta::SystemErrorKind;
use raynode_proto::{ActorId, JobId, NodeId, TaskId, TaskKind};

impl Core {
    /// Where calls to an actor we do not host go: its home, or its owner.
    pub(super) fn remote_actor_home(&self, actor: ActorId) -> Option<NodeId> {
        if let Some(a) = self.remote.actors.get(&actor) {
            return Some(a.home);
        }
        self.owner_of(&actor.0).filter(|o| *o != self.node_id)
    }

    /// Forwards an actor's calls whose arguments are ready, in order.
    pub(super) fn pump_remote_actor(&mut self, actor: ActorId) {
        let Some(home) = self.remote_actor_home(actor) else {
            return self.fail_remote_calls(actor, "The actor died");
        };
        loop {
            let Some(&next) = self.remote.actor_queues.get(&actor).and_then(|q| q.front()) else {
                return;
            };
            match self.tasks.get(&next).map(|t| &t.state) {
                Some(TaskState::Queued) => {}
                Some(TaskState::Waiting(_)) => return,
                _ => {
                    self.remote.actor_queue(actor).pop_front();
                    continue;
                }
            }
            self.remote.actor_queue(actor).pop_front();
            self.forward(next, home);
        }
    }

    /// Fails the calls waiting here for an actor that lives elsewhere.
    pub(super) fn fail_remote_calls(&mut self, actor: ActorId, cause: &str) {
        let calls: Vec<TaskId> = self
            .remote
            .actor_queues
            .remove(&actor)
            .unwrap_or_default()
            .into();
        for call in calls {
            self.fail_task(call, SystemErrorKind::ActorDiedError, cause);
        }
    }

    /// Our actor's node was lost: within `max_restarts` the actor starts
    /// again (placed anew) and its calls in flight there are sent again
    /// within `max_task_retries`; past that it is dead.
    pub(super) fn restart_remote_actor(&mut self, actor: ActorId, node: NodeId, why: &str) {
        let creation = self.tasks.iter().find_map(|(id, t)| match &t.spec.kind {
            TaskKind::ActorCreate(o) if o.actor == actor => Some((*id, o.clone(), t.attempt)),
            _ => None,
        });
        let mut inflight: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| {
                matches!(t.state, TaskState::Remote(n) if n == node)
                    && matches!(&t.spec.kind, TaskKind::ActorMethod { actor: a, .. } if *a == actor)
            })
            .map(|(id, _)| *id)
            .collect();
        // Ids of one caller grow with submission order.
        inflight.sort();
        let cause = format!("The actor died: its node {node} was lost ({why})");
        let running: Vec<engine::Call> = inflight
            .iter()
            .filter_map(|t| {
                let attempt = self.tasks.get(t)?.attempt;
                Some(engine::Call { task: *t, attempt })
            })
            .collect();
        let decision = creation.as_ref().map(|(_, opts, attempt)| {
            let limits = engine::Limits {
                max_restarts: opts.max_restarts,
                max_task_retries: opts.max_task_retries,
            };
            engine::after_loss(limits, *attempt, &running)
        });
        let (
            Some((creation, opts, _)),
            Some(engine::AfterLoss::Restart {
                restarts,
                again,
                failed,
            }),
        ) = (creation, decision)
        else {
            for call in inflight {
                self.fail_task(call, SystemErrorKind::ActorDiedError, &cause);
            }
            self.fail_remote_calls(actor, &cause);
            self.forget_actor_name(actor);
            return;
        };
        tracing::info!(%actor, restart = restarts, "restarting an actor whose node was lost: {why}");
        for call in &again {
            self.next_attempt(*call, "NODE_DIED", &cause);
            if let Some(task) = self.tasks.get_mut(call) {
                task.state = TaskState::Queued;
            }
        }
        for call in failed {
            self.fail_task(call, SystemErrorKind::ActorDiedError, &cause);
        }
        let queue = self.remote.actor_queue(actor);
        for call in again.into_iter().rev() {
            queue.push_front(call);
        }
        let Some(task) = self.tasks.get(&creation) else {
            return;
        };
        let (spec, job) = (task.spec.clone(), task.job);
        self.register_actor(&opts, &spec, job, restarts);
        // Calls wait in the actor's own queue while it is placed again.
        let calls = self.remote.actor_queues.remove(&actor).unwrap_or_default();
        if let Some(a) = self.actors.get_mut(&actor) {
            a.queue = calls;
        }
        self.retry_task(creation, "NODE_DIED", &cause);
    }

    /// Our actor restarted on the node it lives on: its restarts count
    /// against its one budget here too.
    pub(super) fn on_remote_actor_restarted(&mut self, actor: ActorId, restarts: u32) {
        let creation = self
            .tasks
            .values_mut()
            .find(|t| matches!(&t.spec.kind, TaskKind::ActorCreate(o) if o.actor == actor));
        if let Some(task) = creation {
            task.attempt = task.attempt.max(restarts);
        }
    }

    /// `ray.kill` of an actor that lives elsewhere: passed to its home.
    pub(super) fn kill_remote_actor(
        &mut self,
        actor: ActorId,
        no_restart: bool,
        why: KillReason,
    ) -> bool {
        if self.actors.contains_key(&actor) {
            return false;
        }
        let Some(home) = self.remote_actor_home(actor) else {
            return false;
        };
        let msg = PeerMsg::KillActor {
            actor,
            no_restart,
            why,
        };
        self.send_peer(home, msg);
        true
    }

    /// A driver left: its non-detached actors on other nodes die with it.
    pub(super) fn end_remote_job(&mut self, job: JobId) {
        let doomed: Vec<(ActorId, NodeId)> = self
            .remote
            .actors
            .iter()
            .filter(|(_, a)| a.job == job && !a.detached)
            .map(|(id, a)| (*id, a.home))
            .collect();
        for (actor, home) in doomed {
            self.send_peer(
                home,
                PeerMsg::KillActor {
                    actor,
                    no_restart: true,
                    why: KillReason::DriverExited,
                },
            );
        }
    }
}
