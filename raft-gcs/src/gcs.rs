//! [`Gcs`]: the cloneable handle to one member of the control store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, RaftMetrics, ServerState};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::batcher::{Batcher, WriteReq};
use crate::config::Config;
use crate::db::Db;
use crate::driver::{track_learners, Driver};
use crate::error::{LeaderHint, MembershipError, OpenError, ReadError, WriteError};
use crate::log_store::LogStore;
use crate::membership::Policy;
use crate::network::{Contacts, Learners, NetworkFactory, RaftReply, RaftRpc, Transport};
use crate::state::State;
use crate::state_machine::{read, Shared, StateMachine};
use crate::types::{Change, Command, NodeId, Response, TypeConfig};

/// Writes waiting for the batcher; callers wait when it is full.
const WRITE_QUEUE: usize = 8192;

/// A member of the replicated control store. Cheap to clone; all clones
/// share one Raft member. See the crate docs for the data flow.
#[derive(Clone)]
pub struct Gcs {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    raft: Raft<TypeConfig>,
    shared: Shared,
    changes: broadcast::Sender<Change>,
    writes: mpsc::Sender<WriteReq>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    db: Db,
    /// When each peer last answered a Raft RPC of ours.
    contacts: Contacts,
    /// The term this member last led in, and since when.
    leading: Mutex<(u64, Instant)>,
}

/// A summary of this member's Raft status.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// This member.
    pub id: NodeId,
    /// Whether it leads, follows, learns or campaigns.
    pub state: ServerState,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Index of the last applied entry.
    pub applied: Option<u64>,
    /// Index of the last entry covered by a snapshot.
    pub snapshot: Option<u64>,
    /// Index of the last purged log entry.
    pub purged: Option<u64>,
    /// Voters of the current membership.
    pub voters: BTreeSet<NodeId>,
    /// Learners of the current membership.
    pub learners: BTreeSet<NodeId>,
    /// False when this member leads but no quorum of voters answered it
    /// lately ([`Gcs::leads_without_quorum`]).
    pub quorum: bool,
}

fn leader_hint(id: Option<NodeId>, node: Option<BasicNode>) -> LeaderHint {
    id.zip(node.map(|n| n.addr))
}

fn membership_err(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => MembershipError::NotLeader {
            leader: leader_hint(f.leader_id, f.leader_node),
        },
        RaftError::APIError(e) => MembershipError::Refused(e.to_string()),
        RaftError::Fatal(e) => MembershipError::Stopped(e.to_string()),
    }
}

impl Gcs {
    /// Open the member described by `config` from its data directory
    /// (creating it if empty) and start it. Peers are reached through
    /// `transport`. Call [`Gcs::bootstrap`] on the first member of a new
    /// cluster; others wait to be added as learners by the leader.
    pub async fn open(config: Config, transport: Arc<dyn Transport>) -> Result<Gcs, OpenError> {
        config.validate()?;
        let raft_config = Arc::new(config.raft_config()?);
        let (path, cluster, id) = (
            config.data_dir.clone(),
            config.cluster.clone(),
            config.node_id,
        );
        let db = tokio::task::spawn_blocking(move || Db::open(&path, &cluster, id))
            .await
            .map_err(|e| OpenError::Storage {
                path: config.data_dir.clone(),
                reason: e.to_string(),
            })??;
        let (changes, _) = broadcast::channel(config.subscriber_buffer);
        let log_store = LogStore::open(db.clone())?;
        let sm = StateMachine::open(db.clone(), changes.clone())?;
        let shared = sm.shared();
        let contacts = Contacts::default();
        let learners = Learners::default();
        let network = NetworkFactory {
            transport,
            contacts: contacts.clone(),
            learners: learners.clone(),
            learner_heartbeat: config
                .learner_heartbeat_interval
                .min(config.voter_down_after / 2)
                .max(config.heartbeat_interval),
            backoff: config.heartbeat_interval.max(Duration::from_millis(50)),
        };
        let raft = Raft::new(config.node_id, raft_config, network, log_store, sm)
            .await
            .map_err(|e| OpenError::Start {
                path: config.data_dir.clone(),
                reason: e.to_string(),
            })?;

        let (stop, stop_rx) = watch::channel(false);
        let (writes, writes_rx) = mpsc::channel(WRITE_QUEUE);
        let batcher = Batcher {
            raft: raft.clone(),
            rx: writes_rx,
            stop: stop_rx.clone(),
            max_commands: config.max_batch_commands,
            max_inflight: config.max_inflight_entries,
            event_capacity: config.event_log_capacity,
        };
        let driver = Driver {
            id: config.node_id,
            raft: raft.clone(),
            shared: shared.clone(),
            contacts: contacts.clone(),
            policy: Policy {
                voters: config.voters,
                down_after: config.voter_down_after,
            },
            interval: config.policy_interval,
            op_timeout: config.op_timeout,
            stop: stop_rx.clone(),
        };
        let tasks = vec![
            tokio::spawn(batcher.run()),
            tokio::spawn(driver.run()),
            tokio::spawn(track_learners(
                config.node_id,
                raft.clone(),
                learners,
                stop_rx.clone(),
            )),
        ];
        tracing::info!(node = %config.node_id, dir = %config.data_dir.display(), "GCS member started");
        Ok(Gcs {
            inner: Arc::new(Inner {
                config,
                raft,
                shared,
                changes,
                writes,
                stop,
                tasks: Mutex::new(tasks),
                db,
                contacts,
                leading: Mutex::new((0, Instant::now())),
            }),
        })
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// This member's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Make this member a one-member group if it has never been part of
    /// one, and wait until it leads. Does nothing on a member restarted from
    /// a directory that already holds a membership.
    pub async fn bootstrap(&self) -> Result<(), MembershipError> {
        let raft = &self.inner.raft;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| MembershipError::Stopped(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let me = BTreeMap::from([(self.id(), BasicNode::new(self.inner.config.addr.clone()))]);
        match raft.initialize(me).await {
            Ok(()) => {}
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => return Ok(()),
            Err(RaftError::APIError(e)) => return Err(MembershipError::Refused(e.to_string())),
            Err(RaftError::Fatal(e)) => return Err(MembershipError::Stopped(e.to_string())),
        }
        raft.wait(Some(self.inner.config.op_timeout))
            .current_leader(self.id(), "bootstrap")
            .await
            .map_err(|_| MembershipError::Timeout)?;
        Ok(())
    }

    /// Add `id`, reachable at `addr`, as a learner (leader only; does not
    /// wait for it to catch up). The membership policy promotes learners.
    pub async fn add_learner(&self, id: NodeId, addr: &str) -> Result<(), MembershipError> {
        let add = self.inner.raft.add_learner(id, BasicNode::new(addr), false);
        match tokio::time::timeout(self.inner.config.op_timeout, add).await {
            Err(_) => Err(MembershipError::Timeout),
            Ok(r) => r.map(|_| ()).map_err(membership_err),
        }
    }

    /// Make `voters` the voter set (leader only); members left out stay
    /// as learners. The leader's policy does this by itself; this is for
    /// operators and tests.
    pub async fn change_voters(&self, voters: BTreeSet<NodeId>) -> Result<(), MembershipError> {
        let change = self.inner.raft.change_membership(voters, true);
        match tokio::time::timeout(self.inner.config.op_timeout, change).await {
            Err(_) => Err(MembershipError::Timeout),
            Ok(r) => r.map(|_| ()).map_err(membership_err),
        }
    }

    /// Remove learners from the membership (leader only).
    pub async fn remove_learners(&self, ids: BTreeSet<NodeId>) -> Result<(), MembershipError> {
        let change = self
            .inner
            .raft
            .change_membership(ChangeMembers::RemoveNodes(ids), false);
        match tokio::time::timeout(self.inner.config.op_timeout, change).await {
            Err(_) => Err(MembershipError::Timeout),
            Ok(r) => r.map(|_| ()).map_err(membership_err),
        }
    }

    /// Commit one command and return its response.
    pub async fn write(&self, command: Command) -> Result<Response, WriteError> {
        let mut out = self.write_batch(vec![command]).await?;
        Ok(out
            .pop()
            .unwrap_or(Response::Rejected("no response".into())))
    }

    /// Commit several commands in one log entry, applied in order; returns
    /// their responses in order. Concurrent writes are packed together.
    pub async fn write_batch(&self, commands: Vec<Command>) -> Result<Vec<Response>, WriteError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        if self.leads_without_quorum() {
            return Err(WriteError::NoQuorum);
        }
        let (tx, rx) = oneshot::channel();
        let req = WriteReq {
            commands,
            reply: tx,
        };
        let timeout = self.inner.config.op_timeout;
        let fut = async {
            self.inner
                .writes
                .send(req)
                .await
                .map_err(|_| WriteError::Stopped("write batcher stopped".into()))?;
            rx.await
                .map_err(|_| WriteError::Stopped("write batcher stopped".into()))?
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| WriteError::Timeout)?
    }

    /// Read the state after confirming, with a quorum, that this member
    /// leads and has applied every committed write (leader only).
    pub async fn read_linearizable<R>(&self, f: impl FnOnce(&State) -> R) -> Result<R, ReadError> {
        let check = self.inner.raft.ensure_linearizable();
        match tokio::time::timeout(self.inner.config.op_timeout, check).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                return Err(ReadError::NotLeader {
                    leader: leader_hint(f.leader_id, f.leader_node),
                })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                return Err(ReadError::Timeout)
            }
            Ok(Err(RaftError::Fatal(e))) => return Err(ReadError::Stopped(e.to_string())),
            Ok(Ok(_)) => {}
        }
        Ok(self.read_local(f))
    }

    /// Read this member's replica as applied so far: no I/O, possibly
    /// stale. Keep `f` short: it holds a read lock on the tables.
    pub fn read_local<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&read(&self.inner.shared).state)
    }

    /// Index of the last entry applied to this replica.
    pub fn applied_index(&self) -> Option<u64> {
        read(&self.inner.shared).last_applied.map(|l| l.index)
    }

    /// Subscribe to changes of the tables as this replica applies them.
    /// A receiver that falls behind gets `RecvError::Lagged` and should
    /// re-read the tables; [`crate::ChangeKind::Reset`] asks the same.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// The leader this member knows of, with its Raft address.
    pub fn leader(&self) -> LeaderHint {
        let m = self.inner.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    /// Whether this member leads but is cut off: fewer than a quorum of
    /// voters (itself included) answered it within the quorum lease. Such a
    /// leader refuses writes and reports itself without quorum; a leader
    /// elected less than a lease ago counts every voter as answering.
    pub fn leads_without_quorum(&self) -> bool {
        let (state, term, me, voters) = {
            let m = self.inner.raft.metrics();
            let m = m.borrow();
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            (m.state, m.current_term, m.id, voters)
        };
        if state != ServerState::Leader {
            return false;
        }
        let now = Instant::now();
        let since = {
            let mut leading = self.inner.leading.lock().unwrap_or_else(|e| e.into_inner());
            if leading.0 != term {
                *leading = (term, now);
            }
            leading.1
        };
        let lease = self.inner.config.quorum_lease;
        let answered = voters
            .iter()
            .filter(|id| {
                **id == me || {
                    let last = self
                        .inner
                        .contacts
                        .last(**id)
                        .map_or(since, |t| t.max(since));
                    now.saturating_duration_since(last) < lease
                }
            })
            .count();
        answered * 2 <= voters.len()
    }

    /// This member's Raft status.
    pub fn status(&self) -> Status {
        let m: RaftMetrics<NodeId, BasicNode> = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        Status {
            id: m.id,
            state: m.state,
            leader: m.current_leader,
            term: m.current_term,
            applied: m.last_applied.map(|l| l.index),
            snapshot: m.snapshot.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            quorum: !self.leads_without_quorum(),
        }
    }

    /// Watch this member's Raft metrics (for dashboards and tests).
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        self.inner.raft.metrics()
    }

    /// Build a snapshot now (and compact the log behind it).
    pub async fn trigger_snapshot(&self) -> Result<(), WriteError> {
        self.inner
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| WriteError::Stopped(e.to_string()))
    }

    /// Serve an RPC from a peer (the receiving end of a [`Transport`]).
    pub async fn handle_rpc(&self, rpc: RaftRpc) -> RaftReply {
        if *self.inner.stop.borrow() {
            return RaftReply::Unavailable(format!("GCS member {} is shut down", self.id()));
        }
        let raft = &self.inner.raft;
        match rpc {
            RaftRpc::AppendEntries(r) => RaftReply::AppendEntries(raft.append_entries(r).await),
            RaftRpc::Vote(r) => RaftReply::Vote(raft.vote(r).await),
            RaftRpc::InstallSnapshot(r) => {
                RaftReply::InstallSnapshot(raft.install_snapshot(r).await)
            }
        }
    }

    /// Stop this member: stop batching and policy, stop Raft, flush sled.
    /// The data directory can be reopened afterwards.
    pub async fn shutdown(&self) {
        if self.inner.stop.send_replace(true) {
            return; // already shut down
        }
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "GCS raft did not stop cleanly");
        }
        let tasks: Vec<JoinHandle<()>> = {
            let mut g = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
            g.drain(..).collect()
        };
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if let Err(e) = crate::db::flush(&self.inner.db.db).await {
            tracing::warn!(error = %e, "GCS flush at shutdown failed");
        }
        tracing::info!(node = %self.id(), "GCS member stopped");
    }
}
