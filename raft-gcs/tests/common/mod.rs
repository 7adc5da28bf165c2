//! An in-process cluster harness: members on tempdirs joined by a Router.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use raft_gcs::inproc::Router;
use raft_gcs::{Command, Config, FunctionId, Gcs, NodeId, Response, ServerState, WriteError};
use tempfile::TempDir;

/// Upper bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn config(id: u64, dir: &std::path::Path, voters: usize) -> Config {
    Config::new(NodeId(id), dir)
        .with_addr(format!("mem-{id}"))
        .with_cluster("test")
        .with_voters(voters)
        .with_timing(Duration::from_millis(50), Duration::from_millis(400))
        .with_voter_down_after(Duration::from_millis(1500))
        .with_policy_interval(Duration::from_millis(100))
        .with_op_timeout(Duration::from_secs(3))
}

/// Poll `cond` until it holds; fail the test after [`WAIT`].
pub async fn wait_until<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Like [`wait_until`] for an async condition.
pub async fn wait_until_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn func(i: u64) -> Command {
    Command::RegisterFunction {
        id: FunctionId(i.to_be_bytes().to_vec()),
        body: format!("body-{i}").into_bytes(),
    }
}

pub fn has_func(g: &Gcs, i: u64) -> bool {
    g.read_local(|s| {
        s.functions
            .contains_key(&FunctionId(i.to_be_bytes().to_vec()))
    })
}

pub struct Cluster {
    pub router: Router,
    pub dirs: BTreeMap<u64, TempDir>,
    pub members: BTreeMap<u64, Gcs>,
    pub voters: usize,
    pub tweak: fn(Config) -> Config,
}

impl Cluster {
    pub fn new(voters: usize) -> Self {
        Cluster {
            router: Router::new(),
            dirs: BTreeMap::new(),
            members: BTreeMap::new(),
            voters,
            tweak: |c| c,
        }
    }

    /// Open member `id` (reusing its directory if it had one).
    pub async fn open(&mut self, id: u64) -> Gcs {
        let dir = self
            .dirs
            .entry(id)
            .or_insert_with(|| tempfile::tempdir().expect("tempdir"));
        let cfg = (self.tweak)(config(id, dir.path(), self.voters));
        let g = Gcs::open(cfg, self.router.endpoint(NodeId(id)))
            .await
            .expect("open member");
        self.router.add(g.clone());
        self.members.insert(id, g.clone());
        g
    }

    /// Start member 1 as a new group and members 2..=n as joiners that
    /// register themselves; wait until the policy has settled.
    pub async fn start(voters: usize, n: u64) -> Self {
        let mut c = Cluster::new(voters);
        c.start_with(n).await;
        c
    }

    pub async fn start_with(&mut self, n: u64) {
        let first = self.open(1).await;
        first.bootstrap().await.expect("bootstrap");
        for id in 2..=n {
            self.open(id).await;
            self.join(id).await;
        }
        let want = (self.voters as u64).min(if n.is_multiple_of(2) { n - 1 } else { n }) as usize;
        let ids: BTreeSet<NodeId> = (1..=n).map(NodeId).collect();
        let this = &*self;
        wait_until("membership to settle", || {
            this.leader().is_some_and(|l| {
                let s = l.status();
                s.voters.len() == want
                    && s.voters
                        .union(&s.learners)
                        .copied()
                        .collect::<BTreeSet<_>>()
                        == ids
            })
        })
        .await;
    }

    /// Register member `id` in the nodes table through the leader; the
    /// leader's policy adds it as a learner.
    pub async fn join(&self, id: u64) {
        let cmd = Command::RegisterNode {
            id: NodeId(id),
            addrs: vec![format!("mem-{id}")],
            resources: BTreeMap::new(),
        };
        self.write(cmd).await.expect("register node");
    }

    /// The member every live member agrees leads, if any.
    pub fn leader(&self) -> Option<Gcs> {
        let live: Vec<&Gcs> = self.members.values().collect();
        live.iter()
            .find(|g| g.status().state == ServerState::Leader)
            .map(|g| (*g).clone())
    }

    /// Write through whichever member leads, following NotLeader hints.
    pub async fn write(&self, cmd: Command) -> Result<Response, WriteError> {
        self.write_batch(vec![cmd]).await.map(|mut v| v.remove(0))
    }

    pub async fn write_batch(&self, cmds: Vec<Command>) -> Result<Vec<Response>, WriteError> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let target = self
                .leader()
                .or_else(|| self.members.values().next().cloned());
            let Some(g) = target else {
                return Err(WriteError::Timeout);
            };
            match g.write_batch(cmds.clone()).await {
                Ok(r) => return Ok(r),
                Err(e @ (WriteError::NotLeader { .. } | WriteError::Timeout)) => {
                    if tokio::time::Instant::now() > deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Crash member `id`: cut it off and stop it. Its directory stays.
    pub async fn kill(&mut self, id: u64) {
        self.router.remove(NodeId(id));
        if let Some(g) = self.members.remove(&id) {
            g.shutdown().await;
        }
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<u64> = self.members.keys().copied().collect();
        for id in ids {
            self.kill(id).await;
        }
    }
}
