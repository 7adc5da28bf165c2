//! Membership policy: which members vote. Pure decision logic, no I/O.
//!
//! The leader feeds a [`View`] (members, their age and how long each has
//! been unreachable) to [`decide`] and carries out the [`Decision`] it gets
//! with one Raft membership change, then asks again. Rules, in order:
//!
//! 1. A voter unreachable longer than the timeout is replaced by the
//!    longest-lived reachable learner (one swap per step).
//! 2. Voters grow towards the target (configured count, odd, capped by the
//!    reachable members), two at a time from an odd count so the count
//!    stays odd; longest-lived learners first.
//! 3. Voters above the configured count, or an even count that cannot
//!    grow, shrink: unreachable voters first, then the youngest; two
//!    unreachable voters without replacement are dropped together. Never
//!    the leader.
//!
//! Every decision has an odd, non-empty voter set holding the leader, and
//! keeps a majority of reachable voters whenever the current set has one.
//! Nodes registered in the store but not in Raft are added as learners
//! ([`learners_to_add`]); there is no fixed head.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::types::NodeId;

/// Policy settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Target voter count (odd).
    pub voters: usize,
    /// A member unreachable this long counts as down.
    pub down_after: Duration,
}

/// What the leader knows of one Raft member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Whether it votes now.
    pub voter: bool,
    /// When it joined (log index); smaller is longer-lived.
    pub since: u64,
    /// How long it has been unreachable (zero if it answers).
    pub down_for: Duration,
}

/// The leader's view of the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// The leader deciding (always counted reachable, never removed).
    pub leader: NodeId,
    /// Every Raft member, voters and learners.
    pub members: BTreeMap<NodeId, Member>,
}

/// A membership change to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The complete new voter set.
    pub voters: BTreeSet<NodeId>,
    /// Why, for the log.
    pub reason: &'static str,
}

impl View {
    fn live(&self, id: &NodeId, policy: &Policy) -> bool {
        *id == self.leader
            || self
                .members
                .get(id)
                .is_some_and(|m| m.down_for < policy.down_after)
    }

    /// Current voters.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.members
            .iter()
            .filter(|(_, m)| m.voter)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Voters of `set` that are reachable.
    pub fn live_count(&self, set: &BTreeSet<NodeId>, policy: &Policy) -> usize {
        set.iter().filter(|id| self.live(id, policy)).count()
    }

    /// Reachable learners, longest-lived first.
    fn live_learners(&self, policy: &Policy) -> Vec<NodeId> {
        let mut v: Vec<(u64, NodeId)> = self
            .members
            .iter()
            .filter(|(id, m)| !m.voter && self.live(id, policy))
            .map(|(id, m)| (m.since, *id))
            .collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// Voters in removal order: unreachable first (longest down), then the
    /// youngest; the leader never.
    fn removal_order(&self, policy: &Policy) -> Vec<NodeId> {
        let mut v: Vec<(bool, Duration, u64, NodeId)> = self
            .members
            .iter()
            .filter(|(id, m)| m.voter && **id != self.leader)
            .map(|(id, m)| (self.live(id, policy), m.down_for, m.since, *id))
            .collect();
        // dead before live; among dead, longest down first; among live, youngest first
        v.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(b.1.cmp(&a.1))
                .then(b.2.cmp(&a.2))
                .then(a.3.cmp(&b.3))
        });
        v.into_iter().map(|(_, _, _, id)| id).collect()
    }
}

fn odd_floor(n: usize) -> usize {
    if n == 0 {
        0
    } else if n.is_multiple_of(2) {
        n - 1
    } else {
        n
    }
}

fn has_majority(view: &View, set: &BTreeSet<NodeId>, policy: &Policy) -> bool {
    !set.is_empty() && view.live_count(set, policy) * 2 > set.len()
}

/// The next membership change, or `None` when the voters are as they
/// should be.
pub fn decide(policy: &Policy, view: &View) -> Option<Decision> {
    let voters = view.voters();
    let learners = view.live_learners(policy);
    let live_voters = view.live_count(&voters, policy);
    let target = policy
        .voters
        .min(odd_floor(live_voters + learners.len()))
        .max(1);
    let mut decision = None;

    // 1. Replace an unreachable voter.
    let dead: Vec<NodeId> = view
        .removal_order(policy)
        .into_iter()
        .filter(|id| !view.live(id, policy))
        .collect();
    if let (Some(gone), Some(best)) = (dead.first(), learners.first()) {
        let mut next = voters.clone();
        next.remove(gone);
        next.insert(*best);
        if next.len() % 2 == 1 {
            decision = Some(Decision {
                voters: next,
                reason: "replace unreachable voter",
            });
        }
    }

    // 2. Grow towards the target, keeping the count odd.
    if decision.is_none() && voters.len() < target {
        let step = if voters.len() % 2 == 1 { 2 } else { 1 };
        if voters.len() + step <= target && learners.len() >= step {
            let mut next = voters.clone();
            next.extend(learners.iter().take(step));
            decision = Some(Decision {
                voters: next,
                reason: "promote learners",
            });
        }
    }

    // 3. Shrink from an even count or above the configured count (dead
    //    voters first, then the youngest), or drop two unreachable voters
    //    that nobody can replace.
    if decision.is_none() {
        let even = voters.len().is_multiple_of(2);
        let over = voters.len() > policy.voters;
        let (step, order) = if even {
            (1, view.removal_order(policy))
        } else if over {
            (2, view.removal_order(policy))
        } else {
            (2, dead)
        };
        if order.len() >= step && voters.len() > step {
            let mut next = voters.clone();
            for id in order.iter().take(step) {
                next.remove(id);
            }
            decision = Some(Decision {
                voters: next,
                reason: "shrink voters",
            });
        }
    }

    let decision = decision?;
    let safe = decision.voters.len() % 2 == 1
        && decision.voters.contains(&view.leader)
        && (!has_majority(view, &voters, policy) || has_majority(view, &decision.voters, policy));
    (safe && decision.voters != voters).then_some(decision)
}

/// Nodes registered in the store (with their Raft address) that are not yet
/// Raft members: the leader adds them as learners.
pub fn learners_to_add(
    registered: &BTreeMap<NodeId, String>,
    members: &BTreeSet<NodeId>,
) -> Vec<(NodeId, String)> {
    registered
        .iter()
        .filter(|(id, addr)| !members.contains(id) && !addr.is_empty())
        .map(|(id, addr)| (*id, addr.clone()))
        .collect()
}

#[cfg(test)]
#[path = "membership_test.rs"]
mod membership_test;
