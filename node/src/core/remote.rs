//! The other nodes, as the core sees them.
//!
//! - Load: every node gossips its resources and queue when they change, at
//!   most once a tick, and every [`LOAD_KEEPALIVE`] while they do not
//!   ([`Core::gossip_tick`]). An idle cluster so sends little: the cost of
//!   a report grows with the cluster, as every node receives every report.
//!   A node that hears of a new peer sends it its load straight away, so a
//!   newcomer knows the whole cluster within a tick. Peers silent for
//!   [`PEER_TIMEOUT`] or disconnected are gone ([`Core::on_peer_lost`]).
//! - Placement ([`Core::place`]): the engine's decision
//!   ([`crate::engine::placement`]) over this node's resources and the
//!   peers' gossiped load (minus what was sent there since). Tasks that wait
//!   for room on a peer, or for a node that can run them at all, are placed
//!   again with every load report. A forwarded task is not forwarded again.
//! - Ownership: the node a task was submitted to owns it and its results.
//!   It sends the task with its arguments' values ([`PeerMsg::Run`]); the
//!   node that runs it answers [`PeerMsg::Done`] with inline values or the
//!   location of stored ones, which stay where they were made (see
//!   `locality.rs`, with objects owned elsewhere and lineage).
//! - Actors placed on a peer stay reachable (see `remote_actors.rs`).

use super::{Core, TaskState};
use crate::cluster::wire::{Load, PeerMsg, RunTask, WireValue, MAX_HOPS};
use crate::engine::lineage::Lineage;
use crate::objects::ObjState;
use p2p::PeerId;
use raynode_proto::meta::SystemErrorKind;
use raynode_proto::{
    ActorId, JobId, NodeId, ObjectId, Resources, SchedulingStrategy, TaskId, TaskKind, TaskSpec,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// An idle node repeats its unchanged load this often, to show it lives.
const LOAD_KEEPALIVE: Duration = Duration::from_secs(10);
/// A peer that has not gossiped for this long (three keepalives) is taken
/// for gone. A node that dies closes its connections, which is noticed at
/// once; this catches one that hangs or is cut off.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) use crate::engine::placement::{self, Place};

pub(super) struct Peer {
    pub load: Load,
    pub seen: Instant,
    /// Functions already sent to it.
    sent_functions: HashSet<raynode_proto::FunctionId>,
}

/// An actor of ours that lives on another node.
pub(super) struct RemoteActor {
    pub home: NodeId,
    pub job: JobId,
    pub detached: bool,
}

#[derive(Default)]
pub(super) struct Remote {
    pub peers: HashMap<NodeId, Peer>,
    peer_ids: HashMap<NodeId, PeerId>,
    outboxes: HashMap<NodeId, UnboundedSender<PeerMsg>>,
    /// Objects owned elsewhere that we asked their owner for.
    pub subscribed: HashSet<ObjectId>,
    /// Peers waiting for objects we own.
    pub subscribers: HashMap<ObjectId, Vec<NodeId>>,
    /// Pulls waiting or under way.
    pub pulls: super::pulls::Pulls,
    /// Stored results we made for other owners, kept until they free them.
    pub lent: HashSet<ObjectId>,
    /// Our results stored on the node that made them (their holder).
    pub borrowed: HashMap<ObjectId, NodeId>,
    /// How to make those results again should their holder die.
    pub lineage: Lineage<(Arc<TaskSpec>, JobId)>,
    /// Results made again since the node started.
    pub rebuilt: u64,
    /// Nodes seen lost (and not back since): objects they owned are gone.
    pub lost: HashSet<NodeId>,
    /// Objects owned elsewhere whose pull failed, and how often: their
    /// owner is asked again, as it may be making them again.
    pub reasked: HashMap<ObjectId, u32>,
    /// Our objects referenced inside values we sent to other nodes, held
    /// (once per sending) until that node frees its entry.
    pub lent_nested: HashMap<ObjectId, u32>,
    /// Our actors on other nodes.
    pub actors: HashMap<ActorId, RemoteActor>,
    /// Calls to actors that live elsewhere, in submission order.
    pub actor_queues: HashMap<ActorId, VecDeque<TaskId>>,
    /// Tasks waiting here for room on a peer, or for a node that can run
    /// them at all; placed again with every load report.
    pub unplaced: Vec<TaskId>,
    /// Work placed by `SPREAD` on each node since the last gossip tick:
    /// it counts against the node until its load report shows it.
    spread: HashMap<NodeId, f64>,
    /// The load this node last gossiped, and when.
    published: Option<(Load, Instant)>,
    /// Load reports gossiped by this node, and received from peers (each
    /// once, however many peers passed it on).
    pub loads_sent: u64,
    pub loads_received: u64,
}

impl Remote {
    pub fn with_lineage_bytes(max_bytes: usize) -> Remote {
        Remote {
            lineage: Lineage::new(max_bytes),
            ..Remote::default()
        }
    }

    pub fn actor_queue(&mut self, actor: ActorId) -> &mut VecDeque<TaskId> {
        self.actor_queues.entry(actor).or_default()
    }
}

fn fits(capacity: &Resources, demand: &Resources) -> bool {
    demand
        .0
        .iter()
        .all(|(name, need)| *need <= 0.0 || capacity.get(name) + 1e-9 >= *need)
}

fn take(capacity: &mut Resources, demand: &Resources) {
    for (name, need) in &demand.0 {
        let left = capacity.get(name) - need;
        capacity.set(name, left.max(0.0));
    }
}

use raynode_proto::owner_tag as tag;

impl Core {
    // ---- peers and their load ----

    /// Gossiping the load failed: send it again at the next tick.
    pub(super) fn on_load_unsent(&mut self) {
        self.remote.published = None;
    }

    /// This node's load as peers see it.
    fn own_load(&self) -> Load {
        Load {
            node: self.node_id,
            peer: self.cluster.peer_id.to_string(),
            p2p_addrs: self.cluster.p2p_addrs.clone(),
            client_addr: self.client_addr.clone(),
            dashboard_addr: self.dashboard_addr.clone(),
            total: self.ledger.sched().total().clone(),
            available: self.ledger.sched().available(),
            queued: (self.ledger.sched().queued() + self.remote.unplaced.len()) as u32,
        }
    }

    /// Publishes this node's load if it changed or the keepalive is due;
    /// forgets peers that went silent.
    pub(super) fn gossip_tick(&mut self) {
        let load = self.own_load();
        let due = match &self.remote.published {
            Some((last, at)) => *last != load || at.elapsed() >= LOAD_KEEPALIVE,
            None => true,
        };
        if due {
            self.remote.published = Some((load.clone(), Instant::now()));
            self.remote.loads_sent += 1;
            let p2p = self.cluster.p2p.clone();
            let events = self.events.clone();
            tokio::spawn(async move {
                let data = crate::cluster::wire::encode(&load);
                if let Err(e) = p2p.publish(crate::cluster::wire::LOAD_TOPIC, data).await {
                    // No peer subscribed yet (a node just joining): the next
                    // tick sends it again rather than wait for the keepalive.
                    tracing::trace!("publishing load: {e}");
                    let _ = events.send(super::Event::LoadUnsent).await;
                }
            });
        }
        self.remote.spread.clear();
        let now = Instant::now();
        let silent: Vec<NodeId> = self
            .remote
            .peers
            .iter()
            .filter(|(_, p)| now.duration_since(p.seen) > PEER_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for node in silent {
            self.on_peer_lost(node, "it stopped gossiping");
        }
        if !self.remote.unplaced.is_empty() {
            self.place_unplaced();
        }
        self.publish_locations();
    }

    /// Tells the control store's object directory which large objects this
    /// node gained and lost since the last tick, in one batched write.
    fn publish_locations(&mut self) {
        let changes = self.store.directory_changes();
        if changes.is_empty() {
            return;
        }
        let me = crate::cluster::keys::raft_id(self.node_id);
        let commands: Vec<raft_gcs::Command> = changes
            .into_iter()
            .map(|(id, size)| {
                let id_key = crate::cluster::keys::object_key(id);
                match size {
                    Some(size) => raft_gcs::Command::AddObjectLocation {
                        id: id_key,
                        node: me,
                        size,
                        owner: tag(&id.0).to_vec(),
                    },
                    None => raft_gcs::Command::RemoveObjectLocation {
                        id: id_key,
                        node: me,
                    },
                }
            })
            .collect();
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            if let Err(e) = cluster.write(commands).await {
                tracing::debug!("updating the object directory failed: {e}");
            }
        });
    }

    /// Live peers the object directory lists as holding a copy of `id`.
    pub(super) fn listed_holders(&self, id: ObjectId) -> Vec<NodeId> {
        let key = crate::cluster::keys::object_key(id);
        let listed: Vec<raft_gcs::NodeId> = self
            .gcs
            .read_local(|s| {
                s.objects
                    .get(&key)
                    .map(|o| o.locations.iter().copied().collect())
            })
            .unwrap_or_default();
        self.remote
            .peers
            .keys()
            .filter(|node| listed.contains(&crate::cluster::keys::raft_id(**node)))
            .copied()
            .collect()
    }

    /// Peers that hold a copy of `id`, by the object directory, besides `first`.
    pub(super) fn holders(&self, id: ObjectId, first: PeerId) -> Vec<PeerId> {
        let mut holders = vec![first];
        for node in self.listed_holders(id) {
            if let Some(peer) = self.remote.peer_ids.get(&node) {
                if !holders.contains(peer) {
                    holders.push(*peer);
                }
            }
        }
        holders
    }

    pub(super) fn on_load(&mut self, load: Load) {
        if load.node == self.node_id {
            return;
        }
        let node = load.node;
        self.remote.loads_received += 1;
        self.remote.lost.remove(&node);
        if let Ok(peer) = load.peer.parse::<PeerId>() {
            self.remote.peer_ids.insert(node, peer);
        }
        match self.remote.peers.get_mut(&node) {
            Some(p) => {
                p.load = load;
                p.seen = Instant::now();
            }
            None => {
                tracing::info!(%node, "peer joined");
                // It may not have heard our load yet: gossip repeats an
                // unchanged load only every keepalive.
                let ours = self.own_load();
                self.send_peer(node, PeerMsg::Load(Box::new(ours)));
                if self.leads_control_store() {
                    self.record_event("node_joined", format!("node {node} joined"));
                    self.record_node_alive(node, true);
                }
                self.remote.peers.insert(
                    node,
                    Peer {
                        load,
                        seen: Instant::now(),
                        sent_functions: HashSet::new(),
                    },
                );
            }
        }
        if !self.remote.unplaced.is_empty() {
            // A new peer, or fresh room on one: waiting tasks may go there.
            self.place_unplaced();
        }
        self.rebalance(node);
    }

    /// Sends tasks waiting here for resources to a peer that has them free.
    fn rebalance(&mut self, node: NodeId) {
        while self.ledger.sched().queued() > 0 && !self.ledger.sched().has_fitting() {
            let Some(peer) = self.remote.peers.get(&node) else {
                return;
            };
            let tasks = &self.tasks;
            let stolen = self.ledger.queue().steal(|task, demand| {
                fits(&peer.load.available, demand)
                    && tasks.get(&task).is_some_and(|t| {
                        t.origin.is_none()
                            && t.hops < MAX_HOPS
                            && matches!(t.spec.kind, TaskKind::Normal)
                            && t.spec.strategy == SchedulingStrategy::Default
                    })
            });
            match stolen {
                Some(task) => self.forward(task, node),
                None => return,
            }
        }
    }

    pub(super) fn on_peer_disconnected(&mut self, peer: PeerId, why: &str) {
        let node = self
            .remote
            .peer_ids
            .iter()
            .find(|(_, p)| **p == peer)
            .map(|(n, _)| *n);
        if let Some(node) = node {
            if self.remote.peers.contains_key(&node) {
                self.on_peer_lost(node, why);
            }
        }
    }

    /// A peer is gone: what it ran for us runs again elsewhere (or fails
    /// past its retries); actors that lived there are dead.
    pub(super) fn on_peer_lost(&mut self, node: NodeId, why: &str) {
        if self.remote.peers.remove(&node).is_none() {
            return;
        }
        tracing::warn!(%node, "peer lost: {why}");
        if self.leads_control_store() {
            self.record_event("node_lost", format!("node {node} was lost: {why}"));
            self.record_node_alive(node, false);
        }
        self.remote.outboxes.remove(&node);
        self.remote.lost.insert(node);
        // First, so that tasks sent again below wait for lost arguments.
        self.lost_holder(node, why);
        self.lost_owner(node, why);
        let homed_there: Vec<ActorId> = self
            .remote
            .actors
            .iter()
            .filter(|(_, a)| a.home == node)
            .map(|(id, _)| *id)
            .collect();
        for actor in homed_there {
            self.remote.actors.remove(&actor);
            self.restart_remote_actor(actor, node, why);
        }
        let orphans: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.state, TaskState::Remote(n) if n == node))
            .map(|(id, _)| *id)
            .collect();
        for task_id in orphans {
            let Some(task) = self.tasks.get(&task_id) else {
                continue;
            };
            let retry = matches!(task.spec.kind, TaskKind::Normal)
                && super::tasks::retries_left(&task.spec, task.attempt)
                && !task.cancelled;
            if retry {
                tracing::info!(task = %task_id, "re-running a task whose node was lost");
                let cause = format!("the node {node} running it was lost ({why})");
                self.retry_task(task_id, "NODE_DIED", &cause);
            } else {
                let kind = match task.spec.kind {
                    TaskKind::Normal => SystemErrorKind::WorkerCrashedError,
                    _ => SystemErrorKind::ActorDiedError,
                };
                let cause = format!("the node {node} running it was lost ({why})");
                self.fail_task(task_id, kind, &cause);
            }
        }
        // Pulls from a lost holder go on from other holders, or fail by themselves.
    }

    pub(super) fn peer_id_of(&self, node: NodeId) -> Option<PeerId> {
        if let Some(p) = self.remote.peer_ids.get(&node) {
            return Some(*p);
        }
        let raft = crate::cluster::keys::raft_id(node);
        self.gcs.read_local(|s| {
            s.nodes
                .get(&raft)
                .and_then(|n| n.addrs.iter().find_map(|a| crate::cluster::peer_of(a)))
        })
    }

    /// Queues a message to another node; false if it cannot be reached.
    pub(super) fn send_peer(&mut self, node: NodeId, msg: PeerMsg) -> bool {
        if !self.remote.outboxes.contains_key(&node) {
            let Some(peer) = self.peer_id_of(node) else {
                tracing::warn!(%node, "no address known for a node; a message to it is dropped");
                return false;
            };
            self.remote.peer_ids.insert(node, peer);
            let outbox = self.cluster.outbox(peer, self.events.clone());
            self.remote.outboxes.insert(node, outbox);
        }
        match self.remote.outboxes.get(&node) {
            Some(outbox) => outbox.send(msg).is_ok(),
            None => false,
        }
    }

    /// The node whose clients made `id` (from the tag in its first bytes).
    pub(super) fn owner_of(&self, id: &[u8]) -> Option<NodeId> {
        let t = tag(id);
        if t == tag(&self.node_id.0) {
            return Some(self.node_id);
        }
        if let Some(node) = self.remote.peers.keys().find(|n| tag(&n.0) == t) {
            return Some(*node);
        }
        self.gcs.read_local(|s| {
            s.nodes
                .values()
                .filter_map(|n| n.addrs.iter().find_map(|a| crate::cluster::peer_of(a)))
                .map(|p| crate::cluster::node_id_of(&p))
                .find(|n| tag(&n.0) == t)
        })
    }

    /// Whether `id` belongs to another node of the cluster.
    pub(super) fn owned_elsewhere(&self, id: ObjectId) -> bool {
        self.owner_of(&id.0).is_some_and(|o| o != self.node_id)
    }

    // ---- placement ----

    /// Where a ready task runs (the engine's placement decision, by the
    /// task's scheduling strategy, over this node's resources and the
    /// peers' gossiped load).
    pub(super) fn place(&mut self, spec: &TaskSpec, hops: u8, foreign: bool) -> Place {
        let demand = spec.demand();
        let demand = demand.as_ref();
        let sched = self.ledger.sched();
        let spread = |node: &NodeId| self.remote.spread.get(node).copied().unwrap_or(0.0);
        let here = placement::Here {
            node: self.node_id,
            score: sched.available().get("CPU") - sched.queued() as f64 - spread(&self.node_id),
            feasible: sched.feasible(demand),
            fits_now: sched.fits(demand),
            queue_empty: sched.queued() == 0,
        };
        let kind = match spec.kind {
            TaskKind::ActorCreate(_) => placement::Kind::ActorCreate,
            _ => placement::Kind::Normal,
        };
        let holders = self.arg_holders(&spec.args);
        let peers: Vec<placement::Peer> = self
            .remote
            .peers
            .iter()
            .map(|(id, p)| placement::Peer {
                node: *id,
                feasible: fits(&p.load.total, demand),
                free: fits(&p.load.available, demand),
                score: p.load.available.get("CPU") - f64::from(p.load.queued) - spread(id),
                holds_args: holders.contains(id),
            })
            .collect();
        let bundle_nodes;
        let rule = match &spec.strategy {
            SchedulingStrategy::Default => placement::Rule::Default,
            SchedulingStrategy::Spread => placement::Rule::Spread,
            SchedulingStrategy::NodeAffinity { node, soft } => placement::Rule::Affinity {
                node: *node,
                soft: *soft,
            },
            SchedulingStrategy::PlacementGroup { group, bundle, .. } => {
                bundle_nodes = self.bundle_nodes(*group, *bundle);
                placement::Rule::Bundle {
                    nodes: &bundle_nodes,
                }
            }
        };
        let spreads = matches!(rule, placement::Rule::Spread);
        let place = placement::place_with(rule, here, kind, hops, foreign, &peers, |n| {
            rand::random::<usize>() % n
        });
        if spreads {
            let node = match place {
                Place::Local => Some(self.node_id),
                Place::Remote(n) => Some(n),
                _ => None,
            };
            if let Some(node) = node {
                *self.remote.spread.entry(node).or_default() += 1.0;
            }
        }
        place
    }

    /// A task whose strategy forbids every node that could run it fails
    /// (an actor's constructor: the actor is dead), as Ray's
    /// `TaskUnschedulableError` and `ActorUnschedulableError`.
    pub(super) fn unschedulable(&mut self, task_id: TaskId) {
        let Some(task) = self.tasks.get(&task_id) else {
            return;
        };
        let actor = match &task.spec.kind {
            TaskKind::ActorCreate(opts) => Some(opts.actor),
            _ => None,
        };
        let why = "The node specified via NodeAffinitySchedulingStrategy doesn't exist any \
                   more or is infeasible, and soft=False was specified.";
        match actor {
            Some(actor) if self.actors.contains_key(&actor) => {
                let cause = format!("The actor is not schedulable: {why}");
                self.fail_task(task_id, SystemErrorKind::ActorUnschedulableError, &cause);
                self.declare_dead_as(actor, cause, SystemErrorKind::ActorUnschedulableError);
            }
            _ => {
                let cause = format!("The task is not schedulable: {why} name={}", task.spec.name);
                let kind = if actor.is_some() {
                    SystemErrorKind::ActorUnschedulableError
                } else {
                    SystemErrorKind::TaskUnschedulableError
                };
                self.fail_task(task_id, kind, &cause);
            }
        }
    }

    /// Nodes that hold one of these arguments stored (large) there.
    fn arg_holders(&self, args: &[raynode_proto::Arg]) -> HashSet<NodeId> {
        args.iter()
            .filter_map(|a| match a {
                raynode_proto::Arg::Ref(id) => Some(*id),
                _ => None,
            })
            .filter_map(|id| match self.objects.get(&id).map(|e| &e.state) {
                Some(ObjState::Remote { holder, .. }) => Some(*holder),
                Some(ObjState::Stored { .. }) => self
                    .remote
                    .borrowed
                    .get(&id)
                    .copied()
                    .or_else(|| self.owner_of(&id.0)),
                _ => None,
            })
            .collect()
    }

    pub(super) fn place_unplaced(&mut self) {
        let tasks = std::mem::take(&mut self.remote.unplaced);
        for task_id in tasks {
            let Some(task) = self.tasks.get(&task_id) else {
                continue;
            };
            let (spec, hops, foreign) = (task.spec.clone(), task.hops, task.origin.is_some());
            match self.place(&spec, hops, foreign) {
                Place::Remote(node) => self.forward(task_id, node),
                Place::SpillBack => self.spill_back(task_id),
                Place::Local if self.pull_args_first(task_id) => {}
                Place::Local => {
                    let _ = self.ledger.queue().enqueue(task_id, &spec.demand());
                    self.dispatch();
                }
                Place::Unschedulable => self.unschedulable(task_id),
                Place::Wait | Place::Nowhere => self.remote.unplaced.push(task_id),
            }
        }
    }

    // ---- tasks sent to and run for other nodes ----

    /// The value of a ready object as another node can use it.
    pub(super) fn wire_value(&self, id: ObjectId) -> Option<WireValue> {
        match &self.objects.get(&id)?.state {
            ObjState::Pending => None,
            ObjState::Inline { bytes, error } => Some(WireValue::Inline {
                bytes: bytes.as_ref().clone(),
                error: *error,
            }),
            // A copy pulled here may be evicted; the holder keeps its own.
            ObjState::Stored { size } => Some(WireValue::Stored {
                holder: self
                    .remote
                    .borrowed
                    .get(&id)
                    .copied()
                    .unwrap_or(self.node_id),
                size: *size,
            }),
            ObjState::Remote { holder, size } => Some(WireValue::Stored {
                holder: *holder,
                size: *size,
            }),
        }
    }

    /// Sends a ready task to `node` to run there.
    pub(super) fn forward(&mut self, task_id: TaskId, node: NodeId) {
        if self.await_args_again(task_id) {
            return;
        }
        self.note_sent(task_id, node);
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return;
        };
        task.state = TaskState::Remote(node);
        let (spec, job, hops, attempt) = (task.spec.clone(), task.job, task.hops, task.attempt);
        let mut args = Vec::new();
        for dep in spec.dependencies() {
            match self.wire_value(dep) {
                Some(v) => args.push((dep, v)),
                None => {
                    let why = format!("argument {dep} of task {} is gone", spec.name);
                    return self.fail_task(task_id, SystemErrorKind::ObjectLostError, &why);
                }
            }
        }
        let needs_function = self
            .remote
            .peers
            .get(&node)
            .is_none_or(|p| !p.sent_functions.contains(&spec.function));
        let function = if needs_function {
            self.function_body(spec.function)
                .map(|b| b.as_ref().clone())
        } else {
            None
        };
        if let Some(p) = self.remote.peers.get_mut(&node) {
            p.sent_functions.insert(spec.function);
            take(&mut p.load.available, &spec.demand());
            p.load.queued += 1;
        }
        if let TaskKind::ActorCreate(opts) = &spec.kind {
            // Calls already queued here follow the actor to its home.
            if let Some(local) = self.actors.remove(&opts.actor) {
                let queue = self.remote.actor_queue(opts.actor);
                for call in local.queue.into_iter().rev() {
                    queue.push_front(call);
                }
            }
            self.remote.actors.insert(
                opts.actor,
                RemoteActor {
                    home: node,
                    job,
                    detached: opts.detached,
                },
            );
        }
        tracing::debug!(task = %task_id, %node, "forwarding a task");
        let run = RunTask {
            spec: spec.as_ref().clone(),
            job,
            function,
            args,
            hops: hops + 1,
            attempt,
        };
        if !self.send_peer(node, PeerMsg::Run(Box::new(run))) {
            self.on_peer_lost(node, "it cannot be reached");
        }
        if let TaskKind::ActorCreate(opts) = &spec.kind {
            self.pump_remote_actor(opts.actor);
        }
    }

    pub(super) fn on_peer_msgs(&mut self, from: NodeId, peer: PeerId, msgs: Vec<PeerMsg>) {
        self.remote.peer_ids.entry(from).or_insert(peer);
        for msg in msgs {
            match msg {
                PeerMsg::Run(run) => self.on_run(from, *run),
                PeerMsg::Done { task, results } => self.on_remote_done(from, task, results),
                PeerMsg::Item {
                    task,
                    index,
                    value,
                    nested,
                } => self.on_remote_item(from, task, index, value, nested),
                PeerMsg::Subscribe { id, failed } => self.on_subscribe(from, id, failed),
                PeerMsg::Value { id, value, nested } => self.receive_value(id, value, nested, None),
                PeerMsg::Free { ids } => {
                    for id in ids {
                        if self.remote.lent.remove(&id) {
                            self.release(id);
                        } else if let Some(n) = self.remote.lent_nested.get_mut(&id) {
                            *n -= 1;
                            if *n == 0 {
                                self.remote.lent_nested.remove(&id);
                            }
                            self.release(id);
                        }
                    }
                }
                PeerMsg::SpillBack { task } => self.on_spilled_back(from, task),
                PeerMsg::Load(load) if load.node == from && load.peer == peer.to_string() => {
                    self.on_load(*load)
                }
                PeerMsg::Load(load) => {
                    tracing::warn!(%from, node = %load.node, "dropping a load report about another node")
                }
                PeerMsg::Cancel { task, force } => {
                    self.on_cancel(ObjectId::for_return(task, 0), force)
                }
                PeerMsg::ActorRestarted { actor, restarts } => {
                    self.on_remote_actor_restarted(actor, restarts)
                }
                PeerMsg::Output { job, output } => self.output_to_drivers(job, output),
                PeerMsg::KillActor {
                    actor,
                    no_restart,
                    why,
                } => {
                    if !self.kill_remote_actor(actor, no_restart, why) {
                        self.kill_actor(actor, no_restart, why.text())
                    }
                }
            }
        }
    }

    /// A task another node owns, to run here (or, for an actor call, to relay
    /// to the actor's home).
    fn on_run(&mut self, from: NodeId, run: RunTask) {
        let RunTask {
            spec,
            job,
            function,
            args,
            hops,
            attempt,
        } = run;
        if let Some(body) = function {
            self.functions
                .entry(spec.function)
                .or_insert_with(|| Arc::new(body));
        }
        if self.tasks.contains_key(&spec.task_id) {
            return;
        }
        self.submit(spec, JobId(0), Some((from, job)), hops, attempt);
        for (id, value) in args {
            self.receive_value(id, value, Vec::new(), None);
        }
    }

    /// Sends a task run for another node back to it, to be placed again.
    pub(super) fn spill_back(&mut self, task_id: TaskId) {
        let Some(owner) = self.tasks.get(&task_id).and_then(|t| t.origin) else {
            return;
        };
        tracing::debug!(task = %task_id, %owner, "spilling a task back to its owner");
        self.send_peer(owner, PeerMsg::SpillBack { task: task_id });
        self.drop_task(task_id);
    }

    fn on_spilled_back(&mut self, from: NodeId, task_id: TaskId) {
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return;
        };
        if !matches!(task.state, TaskState::Remote(n) if n == from) {
            return;
        }
        task.hops += 1;
        task.state = TaskState::Waiting(0);
        self.on_task_ready(task_id);
    }

    /// Results of a task we forwarded: keep them (pulling stored ones), or
    /// pass them on to the node we ran it for.
    fn on_remote_done(
        &mut self,
        from: NodeId,
        task_id: TaskId,
        results: Vec<(WireValue, Vec<ObjectId>)>,
    ) {
        let Some(task) = self.tasks.get(&task_id) else {
            self.free_lent(from, &results, task_id);
            return;
        };
        if !matches!(task.state, TaskState::Remote(n) if n == from) {
            self.free_lent(from, &results, task_id);
            return;
        }
        if matches!(task.spec.kind, TaskKind::Normal) {
            let demand = task.spec.demand().into_owned();
            if let Some(p) = self.remote.peers.get_mut(&from) {
                for (name, v) in &demand.0 {
                    let now = p.load.available.get(name) + v;
                    p.load.available.set(name, now.min(p.load.total.get(name)));
                }
                p.load.queued = p.load.queued.saturating_sub(1);
            }
        }
        if let TaskKind::ActorCreate(opts) = &task.spec.kind {
            // The actor is gone for good on its node.
            let actor = opts.actor;
            self.remote.actors.remove(&actor);
            self.fail_remote_calls(actor, "The actor died");
        }
        let error = results.iter().find_map(|(value, _)| match value {
            WireValue::Inline { bytes, error: true } => Some(super::state::error_of(bytes)),
            _ => None,
        });
        self.note_ended(task_id, error);
        if let Some(owner) = self.tasks.get(&task_id).and_then(|t| t.origin) {
            self.send_peer(
                owner,
                PeerMsg::Done {
                    task: task_id,
                    results,
                },
            );
            return self.drop_task(task_id);
        }
        let Some((spec, job, attempt)) = self
            .tasks
            .get(&task_id)
            .map(|t| (t.spec.clone(), t.job, t.attempt))
        else {
            return;
        };
        for (i, (value, nested)) in results.into_iter().enumerate() {
            let id = ObjectId::for_return(task_id, i as u32);
            self.keep_result(id, value, nested, (&spec, job, attempt));
        }
        self.drop_task(task_id);
        self.rebalance(from);
    }

    fn free_lent(&mut self, from: NodeId, results: &[(WireValue, Vec<ObjectId>)], task_id: TaskId) {
        let ids: Vec<ObjectId> = results
            .iter()
            .enumerate()
            .filter(|(_, (v, _))| matches!(v, WireValue::Stored { .. }))
            .map(|(i, _)| ObjectId::for_return(task_id, i as u32))
            .collect();
        if !ids.is_empty() {
            self.send_peer(from, PeerMsg::Free { ids });
        }
    }

    /// Reports the results of a task run for `owner`. Stored values stay
    /// here, lent to the owner until it has pulled its copy.
    pub(super) fn send_results(
        &mut self,
        owner: NodeId,
        task_id: TaskId,
        values: Vec<(ObjectId, ObjState, Vec<ObjectId>)>,
    ) {
        let results = values
            .into_iter()
            .filter_map(|(id, state, nested)| self.lend_result(id, state, nested))
            .collect();
        if !self.send_peer(
            owner,
            PeerMsg::Done {
                task: task_id,
                results,
            },
        ) {
            tracing::warn!(task = %task_id, %owner, "the results of a task are lost: its owner cannot be reached");
        }
    }

    /// A result made here for another node, as it travels there. A stored
    /// one stays here, lent to the owner until it has pulled its copy, and
    /// so do the references inside it.
    pub(super) fn lend_result(
        &mut self,
        id: ObjectId,
        state: ObjState,
        nested: Vec<ObjectId>,
    ) -> Option<(WireValue, Vec<ObjectId>)> {
        let value = match &state {
            ObjState::Inline { bytes, error } => WireValue::Inline {
                bytes: bytes.as_ref().clone(),
                error: *error,
            },
            ObjState::Stored { size } => {
                let size = *size;
                if self.remote.lent.insert(id) {
                    self.objects.add_ref(id);
                    // What waits here for it (a task of another owner
                    // that takes it as an argument) goes on.
                    self.set_value(id, state, nested.clone());
                }
                WireValue::Stored {
                    holder: self.node_id,
                    size,
                }
            }
            // Made elsewhere and relayed through us: it stays where it is.
            ObjState::Remote { holder, size } => WireValue::Stored {
                holder: *holder,
                size: *size,
            },
            ObjState::Pending => return None,
        };
        for inner in &nested {
            if self.objects.get(inner).is_some() {
                self.objects.add_ref(*inner);
                *self.remote.lent_nested.entry(*inner).or_default() += 1;
            }
        }
        Some((value, nested))
    }

    /// Item `index` of a generator task run for us on `from` (or relayed
    /// through us to its owner).
    fn on_remote_item(
        &mut self,
        from: NodeId,
        task: TaskId,
        index: u32,
        value: WireValue,
        nested: Vec<ObjectId>,
    ) {
        let id = ObjectId::for_return(task, index);
        if let Some(owner) = self.tasks.get(&task).and_then(|t| t.origin) {
            let msg = PeerMsg::Item {
                task,
                index,
                value,
                nested,
            };
            self.send_peer(owner, msg);
            return;
        }
        if index == 0 || !self.hold_item(task, index) {
            if let WireValue::Stored { .. } = value {
                self.send_peer(from, PeerMsg::Free { ids: vec![id] });
            }
            return;
        }
        self.receive_value(id, value, nested, Some((from, task)));
    }

    /// Drops the copy of a result an earlier run of its task made here
    /// for another owner (about to be made again).
    pub(super) fn forget_stale_result(&mut self, id: ObjectId) {
        if self.remote.lent.remove(&id) {
            self.release(id);
        }
        if self.objects.get(&id).is_none() {
            self.store.delete(id);
        }
    }
}
