//! Multi-member in-process groups: replication, failover, restart,
//! partitions, membership policy and snapshot catch-up.

mod common;

use std::collections::BTreeSet;

use common::{func, has_func, wait_until, wait_until_async, Cluster};
use raft_gcs::{NodeId, Response, ServerState, WriteError};

fn ids(v: &[u64]) -> BTreeSet<NodeId> {
    v.iter().map(|&i| NodeId(i)).collect()
}

async fn replicates_to_all(voters: usize, n: u64) {
    let c = Cluster::start(voters, n).await;
    let leader = c.leader().expect("leader");
    assert_eq!(leader.status().voters.len(), voters);
    for i in 0..100 {
        assert_eq!(c.write(func(i)).await.expect("write"), Response::Ok);
    }
    let batch: Vec<_> = (100..200).map(func).collect();
    c.write_batch(batch).await.expect("batch");
    for g in c.members.values() {
        wait_until("replication to every member", || {
            g.read_local(|s| s.functions.len()) == 200
        })
        .await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_every_write() {
    replicates_to_all(3, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_replicate_every_write() {
    replicates_to_all(5, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_loses_nothing() {
    let mut c = Cluster::start(3, 3).await;
    for i in 0..50 {
        c.write(func(i)).await.expect("write");
    }
    let old = c.leader().expect("leader").id();
    c.kill(old.0).await;
    wait_until("a new leader", || c.leader().is_some_and(|l| l.id() != old)).await;
    let leader = c.leader().expect("leader");
    let n = leader
        .read_linearizable(|s| {
            (0..50)
                .filter(|i| s.functions.contains_key(&fid(*i)))
                .count()
        })
        .await
        .expect("read");
    assert_eq!(n, 50, "committed writes lost");
    for i in 50..60 {
        c.write(func(i)).await.expect("write after failover");
    }
    c.shutdown().await;
}

fn fid(i: u64) -> raft_gcs::FunctionId {
    raft_gcs::FunctionId(i.to_be_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_member_catches_up_from_its_directory() {
    let mut c = Cluster::start(3, 3).await;
    for i in 0..20 {
        c.write(func(i)).await.expect("write");
    }
    let leader = c.leader().expect("leader").id().0;
    let follower = (1..=3).find(|i| *i != leader).expect("follower");
    wait_until("follower has the writes", || {
        has_func(&c.members[&follower], 19)
    })
    .await;
    c.kill(follower).await;
    for i in 20..40 {
        c.write(func(i)).await.expect("write");
    }
    let g = c.open(follower).await;
    // Before any peer could reach it, it restored what it had from disk.
    assert!(
        has_func(&g, 19),
        "state not restored from the data directory"
    );
    wait_until("catch-up", || has_func(&g, 39)).await;
    assert_eq!(g.read_local(|s| s.functions.len()), 40);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_cannot_commit_and_heals() {
    let c = Cluster::start(3, 3).await;
    c.write(func(0)).await.expect("write");
    let old = c.leader().expect("leader");
    // The leader alone is a minority.
    c.router.partition(&[old.id()]);
    let lost = old.write(func(999)).await;
    assert!(
        matches!(
            lost,
            Err(WriteError::Timeout | WriteError::NotLeader { .. })
        ),
        "a minority leader committed: {lost:?}"
    );
    // The majority elects a leader and commits.
    let majority: Vec<_> = c
        .members
        .values()
        .filter(|g| g.id() != old.id())
        .cloned()
        .collect();
    wait_until("majority leader", || {
        majority
            .iter()
            .any(|g| g.status().state == ServerState::Leader)
    })
    .await;
    let new_leader = majority
        .iter()
        .find(|g| g.status().state == ServerState::Leader)
        .expect("leader")
        .clone();
    let mut wrote = false;
    for _ in 0..50 {
        if new_leader.write(func(1)).await.is_ok() {
            wrote = true;
            break;
        }
    }
    assert!(wrote, "majority could not commit");
    c.router.heal();
    for g in c.members.values() {
        wait_until("partitioned member converges", || has_func(g, 1)).await;
    }
    for g in c.members.values() {
        assert!(
            !has_func(g, 999),
            "uncommitted minority write applied on {}",
            g.id()
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learners_hear_from_the_leader_only_with_news_or_now_and_then() {
    // 3 voters and 2 learners; heartbeats every 50 ms, and a learner's at
    // most every 750 ms (half of voter_down_after) while nothing changes.
    let c = Cluster::start(3, 5).await;
    let leader = c.leader().expect("leader");
    let status = leader.status();
    let follower = *status
        .voters
        .iter()
        .find(|v| **v != leader.id())
        .expect("a follower");
    let learners: Vec<NodeId> = status.learners.iter().copied().collect();
    assert_eq!(learners.len(), 2, "{status:?}");

    let before = |id: NodeId| c.router.appends_to(id);
    let (f0, l0): (u64, Vec<u64>) = (
        before(follower),
        learners.iter().map(|l| before(*l)).collect(),
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let follower_got = c.router.appends_to(follower) - f0;
    let learner_got: Vec<u64> = learners
        .iter()
        .zip(&l0)
        .map(|(l, b)| c.router.appends_to(*l) - b)
        .collect();
    // About 40 for the voter and 3 for each learner: the counts are far
    // apart, whatever the scheduling.
    assert!(
        follower_got >= 10,
        "a voter got {follower_got} heartbeats in 2 s"
    );
    for got in &learner_got {
        assert!(
            *got <= 8,
            "a learner got {got} heartbeats in 2 s while nothing changed: {learner_got:?}"
        );
    }

    // News still reaches them at once: a write is applied on every learner.
    c.write(func(7)).await.expect("write");
    for id in &learners {
        let g = &c.members[&id.0];
        wait_until("the write on a learner", || {
            g.read_local(|s| s.functions.len()) == 1
        })
        .await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learners_are_promoted_and_dead_voters_replaced_by_oldest() {
    // 5 nodes, 3 voters: 4 and 5 stay learners, 4 joined first.
    let mut c = Cluster::start(3, 5).await;
    let leader = c.leader().expect("leader");
    let st = leader.status();
    assert_eq!(st.voters, ids(&[1, 2, 3]), "longest-lived nodes vote");
    assert_eq!(st.learners, ids(&[4, 5]));
    let victim = (1..=3).find(|i| *i != leader.id().0).expect("voter");
    c.kill(victim).await;
    let want: BTreeSet<NodeId> = ids(&[1, 2, 3, 4])
        .into_iter()
        .filter(|i| i.0 != victim)
        .collect();
    wait_until("dead voter replaced by the oldest learner", || {
        c.leader().is_some_and(|l| l.status().voters == want)
    })
    .await;
    for i in 0..5 {
        c.write(func(i)).await.expect("write");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_node_waits_as_learner_until_a_third_joins() {
    let mut c = Cluster::start(3, 2).await;
    let st = c.leader().expect("leader").status();
    assert_eq!(st.voters, ids(&[1]));
    assert_eq!(st.learners, ids(&[2]));
    c.open(3).await;
    c.join(3).await;
    wait_until("three voters", || {
        c.leader()
            .is_some_and(|l| l.status().voters == ids(&[1, 2, 3]))
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_and_new_members_catch_up_by_snapshot() {
    let mut c = Cluster::new(3);
    c.tweak = |cfg| cfg.with_snapshots(20, 5);
    c.start_with(3).await;
    let leader = c.leader().expect("leader").id().0;
    let follower = (1..=3).find(|i| *i != leader).expect("follower");
    c.kill(follower).await;
    for i in 0..200 {
        c.write(func(i)).await.expect("write");
    }
    let l = c.leader().expect("leader");
    wait_until("log compaction on the leader", || {
        l.status().purged.is_some_and(|p| p > 50)
    })
    .await;

    // The lagging member's log ends before the purged point: snapshot.
    let g = c.open(follower).await;
    wait_until("lagging member catches up", || has_func(&g, 199)).await;
    assert!(
        g.status().snapshot.is_some(),
        "caught up without a snapshot"
    );

    // A brand-new member too.
    let n = c.open(4).await;
    c.join(4).await;
    wait_until("new member catches up", || has_func(&n, 199)).await;
    assert!(
        n.status().snapshot.is_some(),
        "new member caught up without a snapshot"
    );
    let all = |g: &raft_gcs::Gcs| g.read_local(|s| s.functions.clone());
    assert_eq!(all(&n), all(&l));
    wait_until_async("linearizable read on the leader", || async {
        l.read_linearizable(|s| s.functions.len() == 200)
            .await
            .unwrap_or(false)
    })
    .await;
    c.shutdown().await;
}
