//! The membership driver: on the leader, periodically turns the Raft
//! metrics, the nodes table and peer liveness into a [`View`], asks the pure
//! policy ([`crate::membership`]) what to change and carries it out.
//! Followers run it too but do nothing until they lead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers, Raft, ServerState};
use tokio::sync::watch;

use crate::membership::{decide, learners_to_add, Member, Policy, View};
use crate::network::{Contacts, Learners};
use crate::state_machine::{read, Shared};
use crate::types::{NodeId, TypeConfig};

pub(crate) struct Driver {
    pub id: NodeId,
    pub raft: Raft<TypeConfig>,
    pub shared: Shared,
    pub contacts: Contacts,
    pub policy: Policy,
    pub interval: Duration,
    pub op_timeout: Duration,
    pub stop: watch::Receiver<bool>,
}

impl Driver {
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leader_since: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = self.stop.changed() => break,
                _ = tick.tick() => {}
            }
            let metrics = self.raft.metrics().borrow().clone();
            if metrics.state != ServerState::Leader {
                leader_since = None;
                continue;
            }
            let since = *leader_since.get_or_insert_with(Instant::now);
            let membership = metrics.membership_config.membership().clone();
            if let [_, .., target] = membership.get_joint_config().as_slice() {
                // A change left half done: its leader died or gave up
                // waiting. openraft leaves a joint config as it is until
                // asked again, so ask for its target.
                let target = target.clone();
                tracing::info!(voters = ?target, "finishing a GCS voter change left half done");
                let finish = self.raft.change_membership(target, true);
                match tokio::time::timeout(self.op_timeout, finish).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "finishing a voter change refused"),
                    Err(_) => tracing::debug!("finishing a voter change timed out"),
                }
                continue;
            }
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            let members: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();

            let (registered, ages) = {
                let g = read(&self.shared);
                let registered: BTreeMap<NodeId, String> = g
                    .state
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.alive)
                    .filter_map(|(id, n)| n.addrs.first().map(|a| (*id, a.clone())))
                    .collect();
                let ages: BTreeMap<NodeId, u64> =
                    g.state.nodes.iter().map(|(id, n)| (*id, n.since)).collect();
                (registered, ages)
            };

            let joining = learners_to_add(&registered, &members);
            if !joining.is_empty() {
                // Every node waiting joins in one membership change: a
                // cluster of many nodes starting at once is not added one
                // per policy interval.
                let ids: Vec<NodeId> = joining.iter().map(|(id, _)| *id).collect();
                tracing::info!(nodes = ?ids, "adding registered nodes as GCS learners");
                let nodes: BTreeMap<NodeId, BasicNode> = joining
                    .into_iter()
                    .map(|(id, addr)| (id, BasicNode::new(addr)))
                    .collect();
                let add = self
                    .raft
                    .change_membership(ChangeMembers::AddNodes(nodes), true);
                match tokio::time::timeout(self.op_timeout, add).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(nodes = ?ids, error = %e, "adding learners refused")
                    }
                    Err(_) => tracing::debug!(nodes = ?ids, "adding learners timed out"),
                }
                continue;
            }

            let now = Instant::now();
            let view = View {
                leader: self.id,
                members: members
                    .iter()
                    .map(|id| {
                        let last = self.contacts.last(*id).map_or(since, |t| t.max(since));
                        let down_for = if *id == self.id {
                            Duration::ZERO
                        } else {
                            now.saturating_duration_since(last)
                        };
                        let member = Member {
                            voter: voters.contains(id),
                            since: ages.get(id).copied().unwrap_or(u64::MAX),
                            down_for,
                        };
                        (*id, member)
                    })
                    .collect(),
            };
            let Some(decision) = decide(&self.policy, &view) else {
                continue;
            };
            tracing::info!(voters = ?decision.voters, reason = decision.reason, "changing GCS voters");
            let change = self.raft.change_membership(decision.voters, true);
            match tokio::time::timeout(self.op_timeout, change).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "GCS voter change failed"),
                Err(_) => tracing::warn!("GCS voter change timed out"),
            }
        }
    }
}

/// Keeps `learners` equal to the learners of the latest membership this
/// member knows of, so that heartbeats are thinned to learners only
/// (`network::PeerClient`). A member that is itself a learner turns its
/// Raft timer off: a learner never stands for election, and the timer
/// would wake it several times a second for nothing.
pub(crate) async fn track_learners(
    id: NodeId,
    raft: Raft<TypeConfig>,
    learners: Learners,
    mut stop: watch::Receiver<bool>,
) {
    let mut metrics = raft.metrics();
    let mut seen = None;
    loop {
        let membership = metrics.borrow_and_update().membership_config.clone();
        if seen != Some(*membership.log_id()) {
            seen = Some(*membership.log_id());
            let config = membership.membership();
            let now: BTreeSet<NodeId> = config.learner_ids().collect();
            raft.runtime_config().tick(!now.contains(&id));
            learners.set(now);
        }
        tokio::select! {
            _ = stop.changed() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}
