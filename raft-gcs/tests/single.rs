//! One-member group: the write, read and subscribe API, restart, bad dirs.

mod common;

use std::collections::BTreeMap;

use common::{config, func, has_func, wait_until, WAIT};
use raft_gcs::inproc::Router;
use raft_gcs::{
    ChangeKind, Command, Config, FunctionId, Gcs, NodeId, OpenError, RaftRole, Response, Table,
};

async fn open(router: &Router, cfg: Config) -> Gcs {
    let g = Gcs::open(cfg, router.endpoint(NodeId(1)))
        .await
        .expect("open");
    router.add(g.clone());
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_writes_reads_and_notifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = Router::new();
    let g = open(&router, config(1, dir.path(), 3)).await;
    g.bootstrap().await.expect("bootstrap");
    let mut changes = g.subscribe();

    assert_eq!(g.write(func(1)).await.expect("write"), Response::Ok);
    assert!(has_func(&g, 1));
    let change = tokio::time::timeout(WAIT, async {
        loop {
            let c = changes.recv().await.expect("change");
            if c.table == Table::Functions {
                return c;
            }
        }
    })
    .await
    .expect("change in time");
    assert_eq!(change.table, Table::Functions);
    assert_eq!(change.key, 1u64.to_be_bytes().to_vec());
    assert_eq!(change.kind, ChangeKind::Upsert);

    let conflict = Command::RegisterFunction {
        id: FunctionId(1u64.to_be_bytes().to_vec()),
        body: b"other".to_vec(),
    };
    let out = g
        .write_batch(vec![func(2), conflict, func(2)])
        .await
        .expect("batch");
    assert!(matches!(
        out.as_slice(),
        [Response::Ok, Response::Conflict(_), Response::Unchanged]
    ));
    let n = g
        .read_linearizable(|s| s.functions.len())
        .await
        .expect("linearizable read");
    assert_eq!(n, 2);
    // The member itself appears in the nodes table as a voter.
    let role = g.read_local(|s| s.nodes.get(&NodeId(1)).map(|n| n.role));
    assert_eq!(role, Some(RaftRole::Voter));

    // Concurrent writers share entries and all commit.
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let r = g.write(func(1000 + w * 100 + i)).await.expect("write");
                assert_eq!(r, Response::Ok);
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    assert_eq!(g.read_local(|s| s.functions.len()), 2 + 16 * 20);
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_state_and_bootstrap_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = Router::new();
    let g = open(&router, config(1, dir.path(), 3)).await;
    g.bootstrap().await.expect("bootstrap");
    for i in 0..50 {
        g.write(func(i)).await.expect("write");
    }
    g.trigger_snapshot().await.expect("snapshot");
    wait_until("snapshot", || g.status().snapshot.is_some()).await;
    for i in 50..60 {
        g.write(func(i)).await.expect("write");
    }
    g.shutdown().await;
    router.remove(NodeId(1));
    drop(g);

    let g = open(&router, config(1, dir.path(), 3)).await;
    g.bootstrap().await.expect("bootstrap again");
    wait_until("replay", || has_func(&g, 59)).await;
    assert_eq!(g.read_local(|s| s.functions.len()), 60);
    wait_until("leadership", || g.leader().is_some()).await;
    assert_eq!(g.write(func(60)).await.expect("write"), Response::Ok);
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_of_another_cluster_or_node_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = Router::new();
    let g = open(&router, config(1, dir.path(), 3)).await;
    g.shutdown().await;
    router.remove(NodeId(1));
    drop(g);

    let other = config(1, dir.path(), 3).with_cluster("elsewhere");
    let err = Gcs::open(other, router.endpoint(NodeId(1))).await.err();
    assert!(
        matches!(err, Some(OpenError::WrongCluster { .. })),
        "{err:?}"
    );
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");

    let err = Gcs::open(config(2, dir.path(), 3), router.endpoint(NodeId(2)))
        .await
        .err();
    assert!(matches!(err, Some(OpenError::WrongNode { .. })), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_log_and_tables_through_the_handle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = Router::new();
    let g = open(&router, config(1, dir.path(), 3).with_event_log_capacity(5)).await;
    g.bootstrap().await.expect("bootstrap");
    let events: Vec<Command> = (0..12)
        .map(|i| Command::AppendEvent {
            time_ms: i,
            source: Some(NodeId(1)),
            kind: "test".into(),
            message: format!("event {i}"),
        })
        .collect();
    g.write_batch(events).await.expect("events");
    let seqs: Vec<u64> = g.read_local(|s| s.events.iter().map(|e| e.seq).collect());
    assert_eq!(seqs, vec![8, 9, 10, 11, 12]);

    let reg = Command::RegisterNode {
        id: NodeId(7),
        addrs: vec![],
        resources: BTreeMap::from([("CPU".to_string(), 2.0)]),
    };
    assert_eq!(g.write(reg).await.expect("register"), Response::Ok);
    let gone = g
        .write(Command::SetNodeAlive {
            id: NodeId(8),
            alive: false,
        })
        .await
        .expect("write");
    assert_eq!(gone, Response::NotFound);
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_without_group_answers_not_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = Router::new();
    let g = open(&router, config(1, dir.path(), 3)).await;
    // Never bootstrapped: no leader known.
    let err = g.write(func(1)).await.err();
    assert!(
        matches!(err, Some(raft_gcs::WriteError::NotLeader { leader: None })),
        "{err:?}"
    );
    g.shutdown().await;
}
