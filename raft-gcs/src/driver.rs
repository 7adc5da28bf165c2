//! The membership driver: on the leader, periodically turns the Raft
//! metrics, the nodes table and peer liveness into a [`View`], asks the pure
//! policy ([`crate::membership`]) what to change and carries it out.
//! Followers run it too but do nothing until they lead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::{BasicNode, Raft, ServerState};
use tokio::sync::watch;

use crate::membership::{decide, learners_to_add, Member, Policy, View};
use crate::network::Contacts;
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
            if membership.get_joint_config().len() > 1 {
                continue; // a change is still in progress
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

            if let Some((id, addr)) = learners_to_add(&registered, &members).into_iter().next() {
                tracing::info!(node = %id, %addr, "adding registered node as GCS learner");
                let add = self.raft.add_learner(id, BasicNode::new(addr), false);
                match tokio::time::timeout(self.op_timeout, add).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!(node = %id, error = %e, "add learner refused"),
                    Err(_) => tracing::debug!(node = %id, "add learner timed out"),
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
