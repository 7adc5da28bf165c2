//! The core: the one task that owns the node's state.
//!
//! Connections, worker processes and timers send it [`Event`]s; it updates
//! its tables and answers through each connection's writer. Nothing here
//! blocks or awaits besides receiving the next event, so the hot path of a
//! task (submit, dispatch, done, get) is a few table updates.
//!
//! - `clients.rs`: hello, references, puts and store objects, disconnects;
//! - `tasks.rs`: submission, dependencies, dispatch to workers, completion;
//! - `pool.rs`: worker processes coming and going;
//! - `actors.rs`: actor creation, ordered method calls, restarts, kills;
//! - `waiters.rs`: `get` and `wait` requests;
//! - `streams.rs`: generator tasks' items, held until their caller takes them;
//! - `info.rs`: cluster information and the timeline;
//! - `logs.rs`: the node's and its workers' logs, for clients of any node;
//! - `state.rs`: the task table, and the state API's queries of every node;
//! - `groups.rs`: placement groups: created, placed, reserved, removed;
//! - `history.rs`: the jobs table and the event log in the control store;
//! - `pulls.rs`: objects pulled from other nodes' stores, within the room
//!   this node's store has;
//! - `remote.rs`: the other nodes: placement, forwarded tasks and their
//!   results, and the gossiped load of peers;
//! - `locality.rs`: objects across nodes: results kept where they were
//!   made, pulled copies, lineage, objects owned elsewhere;
//! - `remote_actors.rs`: actors of ours that live on other nodes.

mod actors;
mod clients;
mod groups;
mod history;
mod info;
mod locality;
mod logs;
mod output;
mod pool;
mod pulls;
mod remote;
mod remote_actors;
mod state;
mod streams;
mod tasks;
mod waiters;

use crate::cluster::wire::{Load, PeerMsg};
use crate::cluster::Cluster;
use crate::config::NodeConfig;
use crate::engine::Ledger;
use crate::objects::{Objects, WaiterId};
use crate::server::ConnTx;
use crate::store::Store;
use crate::workers::WorkerProcess;
use raynode_proto::{
    ActorId, FromNode, FunctionId, JobId, NodeId, ObjectId, Role, TaskId, TaskSpec, ToNode,
    WorkerId,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Capacity of the core's event queue; senders wait when it is full.
pub const EVENT_QUEUE: usize = 8192;

/// Workers above the pool's minimum that sat idle this long are stopped.
const IDLE_WORKER_TTL: Duration = Duration::from_secs(10);

/// Workers started at once while tasks wait for one.
const MAX_STARTING_WORKERS: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ConnId(pub u64);

pub enum Event {
    /// A client connected; over TCP it has proved it holds the cluster key.
    Connected {
        conn: ConnId,
        tx: ConnTx,
    },
    Frame {
        conn: ConnId,
        msg: ToNode,
    },
    Disconnected {
        conn: ConnId,
    },
    WorkerExited {
        worker: WorkerId,
        status: String,
    },
    /// Whole lines a worker wrote to stdout (or stderr) for `task`.
    WorkerOutput {
        worker: WorkerId,
        task: TaskId,
        stderr: bool,
        lines: Vec<String>,
    },
    Timeout {
        waiter: WaiterId,
    },
    /// Messages from another node, in the order it sent them.
    Peer {
        from: NodeId,
        peer: p2p::PeerId,
        msgs: Vec<PeerMsg>,
    },
    /// A peer's gossiped load report.
    Load(Box<Load>),
    PeerDisconnected(p2p::PeerId),
    /// Gossiping this node's load failed: send it again at the next tick.
    LoadUnsent,
    /// Messages to a peer could not be delivered, even when sent again.
    PeerUnreachable(p2p::PeerId),
    /// A client's large inline put, already written into the store by its reader.
    PutStored {
        conn: ConnId,
        id: ObjectId,
        size: u64,
        nested: Vec<ObjectId>,
    },
    /// The control store's answer to registering a named actor.
    ActorNamed {
        conn: ConnId,
        req: u64,
        spec: Box<TaskSpec>,
        result: Result<(), raynode_proto::AckError>,
    },
    /// A reply for `ray.get_actor`, found in the control store.
    ActorFound {
        conn: ConnId,
        req: u64,
        found: Option<(ActorId, Vec<u8>)>,
    },
    /// A pull of a remote object into the local store ended.
    Pulled {
        id: ObjectId,
        size: u64,
        result: Result<(), crate::cluster::PullError>,
    },
    /// Pulls that waited for room in the store may be tried again.
    PullsDue,
    /// The owner of an object that could not be pulled is to be asked again.
    Reask {
        id: ObjectId,
        /// The holder the owner named, which could not serve it.
        failed: NodeId,
    },
    /// The control store answered a placement group's creation or removal.
    GroupRecorded {
        conn: ConnId,
        req: u64,
        error: Option<raynode_proto::AckError>,
        /// The event log's entry for it: (kind, message).
        event: (&'static str, String),
    },
    /// A placement this node proposed for a group was answered.
    GroupPlaced {
        id: raynode_proto::PlacementGroupId,
    },
    /// The control store's placement groups changed.
    GroupsChanged,
    /// A Prometheus scrape: the metrics text, please.
    Scrape(tokio::sync::oneshot::Sender<String>),
    /// The dashboard asks for information (the whole cluster's, for the
    /// kinds that fan out).
    Query {
        what: raynode_proto::InfoKind,
        reply: tokio::sync::oneshot::Sender<String>,
    },
    /// Another node asks for one of this node's logs.
    LogQuery {
        query: raynode_proto::LogQuery,
        reply: tokio::sync::oneshot::Sender<Vec<u8>>,
    },
    /// Another node asks for this node's own rows of a state query.
    StateQuery {
        what: crate::cluster::wire::StateQuery,
        reply: tokio::sync::oneshot::Sender<Vec<u8>>,
    },
    Tick,
    Shutdown,
}

struct Client {
    tx: ConnTx,
    /// Set by the client's hello; frames before it are refused.
    role: Option<Role>,
    job: JobId,
    /// Objects this client holds references to.
    held: HashSet<ObjectId>,
    /// Store objects it created and has not sealed yet.
    unsealed: HashSet<ObjectId>,
    /// It cannot map the store: values go to it inline.
    inline_only: bool,
}

struct Worker {
    process: WorkerProcess,
    /// Where what it prints goes: its latest pieces of work, newest last.
    output_to: VecDeque<(TaskId, output::Route)>,
    conn: Option<ConnId>,
    /// The job whose work it is doing, for the tasks it submits.
    job: JobId,
    functions: HashSet<FunctionId>,
    idle_since: Instant,
}

#[derive(Debug)]
enum TaskState {
    /// Waiting for this many dependencies.
    Waiting(usize),
    Queued,
    /// On `worker` (which holds its resources, in the ledger).
    Running {
        worker: WorkerId,
    },
    /// An actor's constructor has run: the entry lives on as the actor's lineage.
    Done,
    /// Forwarded to another node, which reports back when it is done.
    Remote(NodeId),
}

struct Task {
    spec: Arc<TaskSpec>,
    job: JobId,
    state: TaskState,
    attempt: u32,
    cancelled: bool,
    started: Option<Instant>,
    /// The node that owns this task, when it runs here for another node.
    origin: Option<NodeId>,
    /// The job the owning node gave it (`origin`'s numbering).
    origin_job: JobId,
    /// Times it was forwarded before it got here.
    hops: u8,
}

pub struct Core {
    config: NodeConfig,
    node_id: NodeId,
    store: Store,
    gcs: raft_gcs::Gcs,
    events: mpsc::Sender<Event>,
    clients: HashMap<ConnId, Client>,
    workers: HashMap<WorkerId, Worker>,
    /// What each worker does and the resources it holds.
    ledger: Ledger,
    next_worker: u64,
    next_job: u32,
    objects: Objects,
    functions: HashMap<FunctionId, Arc<Vec<u8>>>,
    tasks: HashMap<TaskId, Task>,
    actors: HashMap<ActorId, actors::Actor>,
    names: HashMap<(String, String), ActorId>,
    waiters: HashMap<WaiterId, waiters::Waiter>,
    next_waiter: WaiterId,
    timeline: VecDeque<info::Span>,
    started: Instant,
    cluster: Cluster,
    remote: remote::Remote,
    /// The TCP address drivers reach this node at, if it serves one.
    pub client_addr: Option<String>,
    /// Where this node's dashboard listens, if it serves one.
    pub dashboard_addr: Option<String>,
    /// Workers that exited, (pid, id), newest last: their logs stay
    /// reachable by pid.
    past_workers: VecDeque<(u32, WorkerId)>,
    /// The machine's CPU use, sampled each tick.
    cpu: info::CpuGauge,
    /// The tasks this node owns or runs, each attempt's states (bounded).
    task_table: crate::engine::task_table::TaskTable,
    groups: groups::Groups,
    /// Generator tasks this node owns, by task.
    streams: HashMap<TaskId, streams::Stream>,
    /// User metrics its clients recorded.
    metrics: crate::metrics::Registry,
    /// Actors that are not detached, by the local worker that created them:
    /// they die with it, as in Ray.
    owned_actors: HashMap<WorkerId, Vec<ActorId>>,
    /// Jobs and events waiting to be written to the control store.
    history: history::History,
    /// When each connected driver's job started (ms since the epoch).
    job_started: HashMap<JobId, u64>,
}

impl Core {
    pub fn new(
        config: NodeConfig,
        node_id: NodeId,
        store: Store,
        cluster: Cluster,
        events: mpsc::Sender<Event>,
    ) -> Core {
        let gcs = cluster.gcs.clone();
        let ledger = Ledger::new(config.total_resources());
        let task_table_size = config.task_table_size;
        let remote = remote::Remote::with_lineage_bytes(config.max_lineage_bytes);
        Core {
            config,
            node_id,
            store,
            gcs,
            events,
            clients: HashMap::new(),
            workers: HashMap::new(),
            ledger,
            next_worker: 1,
            next_job: 1,
            objects: Objects::default(),
            functions: HashMap::new(),
            tasks: HashMap::new(),
            actors: HashMap::new(),
            names: HashMap::new(),
            waiters: HashMap::new(),
            next_waiter: 1,
            timeline: VecDeque::new(),
            started: Instant::now(),
            cluster,
            remote,
            client_addr: None,
            dashboard_addr: None,
            past_workers: VecDeque::new(),
            cpu: info::CpuGauge::default(),
            task_table: crate::engine::task_table::TaskTable::new(task_table_size),
            groups: groups::Groups::default(),
            streams: HashMap::new(),
            metrics: crate::metrics::Registry::default(),
            owned_actors: HashMap::new(),
            history: history::History::default(),
            job_started: HashMap::new(),
        }
    }

    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        for _ in 0..self.config.min_workers {
            self.start_worker();
        }
        let ticker = self.events.clone();
        let tick = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                if ticker.send(Event::Tick).await.is_err() {
                    return;
                }
            }
        });
        let mut changes = self.gcs.subscribe();
        let notify = self.events.clone();
        let watch = tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let groups = match changes.recv().await {
                    Ok(c) => {
                        c.table == raft_gcs::Table::PlacementGroups
                            || c.kind == raft_gcs::ChangeKind::Reset
                    }
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                };
                if groups && notify.send(Event::GroupsChanged).await.is_err() {
                    return;
                }
            }
        });
        while let Some(event) = events.recv().await {
            match event {
                Event::Connected { conn, tx } => self.on_connected(conn, tx),
                Event::Frame { conn, msg } => self.on_frame(conn, msg),
                Event::Disconnected { conn } => self.on_disconnected(conn),
                Event::WorkerExited { worker, status } => self.on_worker_exited(worker, &status),
                Event::WorkerOutput {
                    worker,
                    task,
                    stderr,
                    lines,
                } => self.on_worker_output(worker, task, stderr, lines),
                Event::Timeout { waiter } => self.on_timeout(waiter),
                Event::Peer { from, peer, msgs } => self.on_peer_msgs(from, peer, msgs),
                Event::Load(load) => self.on_load(*load),
                Event::PeerDisconnected(peer) => {
                    self.on_peer_disconnected(peer, "its connection closed")
                }
                Event::PeerUnreachable(peer) => {
                    self.on_peer_disconnected(peer, "messages to it could not be delivered")
                }
                Event::Pulled { id, size, result } => self.on_pulled(id, size, result),
                Event::ActorNamed {
                    conn,
                    req,
                    spec,
                    result,
                } => self.on_actor_named(conn, req, *spec, result),
                Event::PutStored {
                    conn,
                    id,
                    size,
                    nested,
                } => self.on_put_stored(conn, id, size, nested),
                Event::ActorFound { conn, req, found } => {
                    self.send(conn, FromNode::ActorFound { req, found })
                }
                Event::PullsDue => self.start_pulls(),
                Event::Reask { id, failed } => self.reask_owner(id, failed),
                Event::GroupRecorded {
                    conn,
                    req,
                    error,
                    event,
                } => self.on_group_recorded(conn, req, error, event),
                Event::GroupPlaced { id } => self.on_group_placed(id),
                Event::GroupsChanged => self.sync_groups(),
                Event::Scrape(reply) => {
                    let _ = reply.send(self.metrics_text());
                }
                Event::Query { what, reply } => self.answer_info(what, state::Reply::Http(reply)),
                Event::LogQuery { query, reply } => self.on_peer_logs(query, reply),
                Event::StateQuery { what, reply } => {
                    let _ = reply.send(self.state_rows(what));
                }
                Event::Tick => self.on_tick(),
                Event::LoadUnsent => self.on_load_unsent(),
                Event::Shutdown => break,
            }
        }
        tick.abort();
        watch.abort();
        self.shutdown();
    }

    fn on_frame(&mut self, conn: ConnId, msg: ToNode) {
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        if client.role.is_none() {
            return match msg {
                ToNode::Hello { version, role } => self.on_hello(conn, version, role),
                other => self.refuse(conn, &format!("expected hello, got {}", frame_name(&other))),
            };
        }
        match msg {
            ToNode::Hello { .. } => self.refuse(conn, "second hello"),
            ToNode::RegisterFunction { id, body } => self.register_function(id, body),
            ToNode::Submit(spec) => self.on_submit(conn, spec),
            ToNode::SubmitAcked { req, spec } => self.on_submit_acked(conn, req, spec),
            ToNode::Put { id, bytes, nested } => self.on_put(conn, id, bytes, nested),
            ToNode::Create { req, id, size } => self.on_create(conn, req, id, size),
            ToNode::Seal { id, nested } => self.on_seal(conn, id, nested),
            ToNode::Get {
                req,
                ids,
                timeout_ms,
            } => self.on_get(conn, req, ids, timeout_ms),
            ToNode::Wait {
                req,
                ids,
                num_returns,
                timeout_ms,
            } => self.on_wait(conn, req, ids, num_returns, timeout_ms),
            ToNode::Refs { add, remove } => self.on_refs(conn, add, remove),
            ToNode::Cancel { id, force } => self.on_cancel(id, force),
            ToNode::KillActor { actor, no_restart } => {
                let why = crate::cluster::wire::KillReason::RayKill;
                if !self.kill_remote_actor(actor, no_restart, why) {
                    self.kill_actor(actor, no_restart, why.text())
                }
            }
            ToNode::GetActor {
                req,
                name,
                namespace,
            } => self.on_get_actor(conn, req, name, namespace),
            ToNode::Info { req, what } => {
                if let Some(client) = self.clients.get(&conn) {
                    let tx = client.tx.clone();
                    self.answer_info(what, state::Reply::Client { tx, req });
                }
            }
            ToNode::Logs { req, node, query } => self.on_logs(conn, req, node, query),
            ToNode::TaskDone {
                task,
                results,
                app_error,
                error,
            } => self.on_task_done(conn, task, results, app_error, error),
            ToNode::ActorReady { actor, error } => self.on_actor_ready(actor, error),
            ToNode::Yield { task, index, value } => self.on_yield(conn, task, index, value),
            ToNode::DefineMetric {
                name,
                kind,
                description,
                boundaries,
            } => {
                if let Err(e) = self.metrics.define(&name, kind, &description, &boundaries) {
                    tracing::warn!("a client's metric was refused: {e}");
                }
            }
            ToNode::RecordMetric { name, tags, value } => {
                if let Err(e) = self.metrics.record(&name, tags, value) {
                    tracing::debug!("a client's metric value was refused: {e}");
                }
            }
            ToNode::NextItem {
                req,
                task,
                index,
                max,
                timeout_ms,
            } => self.on_next_item(conn, req, task, (index, max), timeout_ms),
            ToNode::NoSharedMemory => {
                if let Some(c) = self.clients.get_mut(&conn) {
                    c.inline_only = true;
                }
            }
            ToNode::CreatePlacementGroup { req, group } => self.on_create_group(conn, req, group),
            ToNode::RemovePlacementGroup { req, id } => self.on_remove_group(conn, req, id),
        }
    }

    /// Caches a function for the hot path and records it in the control
    /// store in the background (the write is batched; nobody waits for it).
    fn register_function(&mut self, id: FunctionId, body: Vec<u8>) {
        if self.functions.contains_key(&id) {
            return;
        }
        let command = raft_gcs::Command::RegisterFunction {
            id: crate::cluster::keys::function_key(id),
            body: body.clone(),
        };
        self.functions.insert(id, Arc::new(body));
        self.cluster
            .write_in_background(vec![command], "recording a function");
    }

    /// A function's body: from the cache, else from the control store's replica.
    fn function_body(&mut self, id: FunctionId) -> Option<Arc<Vec<u8>>> {
        if let Some(body) = self.functions.get(&id) {
            return Some(body.clone());
        }
        let body = self.gcs.read_local(|s| {
            s.functions
                .get(&crate::cluster::keys::function_key(id))
                .cloned()
        })?;
        let body = Arc::new(body);
        self.functions.insert(id, body.clone());
        Some(body)
    }

    fn send(&self, conn: ConnId, msg: FromNode) {
        if let Some(client) = self.clients.get(&conn) {
            let _ = client.tx.send(msg);
        }
    }

    /// Tells the client why, then closes its connection.
    fn refuse(&mut self, conn: ConnId, why: &str) {
        tracing::warn!(conn = conn.0, "refusing client: {why}");
        self.send(
            conn,
            FromNode::Error {
                req: 0,
                message: why.to_string(),
            },
        );
        self.on_disconnected(conn);
    }

    fn on_tick(&mut self) {
        self.gossip_tick();
        self.cpu.sample();
        self.watch_changes();
        self.flush_history();
        self.sync_groups();
        self.place_groups();
        self.start_pulls();
        let now = Instant::now();
        let mut surplus = self.ledger.pooled().saturating_sub(self.config.min_workers);
        let mut expired = Vec::new();
        let idle: Vec<WorkerId> = self.ledger.idle().to_vec();
        for id in &idle {
            if surplus == 0 {
                break;
            }
            if self.owns_live_actors(*id) {
                // Stopping it would end the actors it created.
                continue;
            }
            if let Some(w) = self.workers.get(id) {
                if now.duration_since(w.idle_since) > IDLE_WORKER_TTL {
                    expired.push(*id);
                    surplus -= 1;
                }
            }
        }
        for id in expired {
            tracing::debug!(worker = %id, "stopping an idle worker");
            self.ledger.retire(id);
            if let Some(w) = self.workers.get_mut(&id) {
                w.process.kill();
            }
        }
    }

    fn shutdown(&mut self) {
        for worker in self.workers.values_mut() {
            worker.process.kill();
        }
        self.store.remove_all();
    }
}

fn frame_name(msg: &ToNode) -> &'static str {
    match msg {
        ToNode::Hello { .. } => "Hello",
        ToNode::RegisterFunction { .. } => "RegisterFunction",
        ToNode::Submit(_) => "Submit",
        ToNode::SubmitAcked { .. } => "SubmitAcked",
        ToNode::Put { .. } => "Put",
        ToNode::Create { .. } => "Create",
        ToNode::Seal { .. } => "Seal",
        ToNode::Get { .. } => "Get",
        ToNode::Wait { .. } => "Wait",
        ToNode::Refs { .. } => "Refs",
        ToNode::Cancel { .. } => "Cancel",
        ToNode::KillActor { .. } => "KillActor",
        ToNode::GetActor { .. } => "GetActor",
        ToNode::Info { .. } => "Info",
        ToNode::Logs { .. } => "Logs",
        ToNode::TaskDone { .. } => "TaskDone",
        ToNode::ActorReady { .. } => "ActorReady",
        ToNode::Yield { .. } => "Yield",
        ToNode::DefineMetric { .. } => "DefineMetric",
        ToNode::RecordMetric { .. } => "RecordMetric",
        ToNode::NextItem { .. } => "NextItem",
        ToNode::NoSharedMemory => "NoSharedMemory",
        ToNode::CreatePlacementGroup { .. } => "CreatePlacementGroup",
        ToNode::RemovePlacementGroup { .. } => "RemovePlacementGroup",
    }
}
