use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const POLICY: Policy = Policy {
    voters: 3,
    down_after: Duration::from_secs(10),
};
const DOWN: Duration = Duration::from_secs(60);

fn member(voter: bool, since: u64, down: bool) -> Member {
    Member {
        voter,
        since,
        down_for: if down { DOWN } else { Duration::ZERO },
    }
}

fn view(members: &[(u64, bool, u64, bool)]) -> View {
    View {
        leader: NodeId(members[0].0),
        members: members
            .iter()
            .map(|&(id, voter, since, down)| (NodeId(id), member(voter, since, down)))
            .collect(),
    }
}

fn ids(v: &[u64]) -> BTreeSet<NodeId> {
    v.iter().map(|&i| NodeId(i)).collect()
}

/// Apply decisions until the policy is satisfied; voters removed become
/// learners (as Raft does with `retain`).
fn settle(policy: &Policy, mut v: View) -> (View, Vec<Decision>) {
    let mut steps = Vec::new();
    for _ in 0..20 {
        let Some(d) = decide(policy, &v) else { break };
        for (id, m) in v.members.iter_mut() {
            m.voter = d.voters.contains(id);
        }
        steps.push(d);
    }
    (v, steps)
}

#[test]
fn single_node_stays_alone() {
    assert_eq!(decide(&POLICY, &view(&[(1, true, 1, false)])), None);
}

#[test]
fn learners_are_promoted_in_pairs_longest_lived_first() {
    let v = view(&[
        (1, true, 1, false),
        (2, false, 30, false),
        (3, false, 10, false),
        (4, false, 20, false),
    ]);
    let d = decide(&POLICY, &v).expect("promote");
    assert_eq!(d.voters, ids(&[1, 3, 4]));
}

#[test]
fn one_learner_is_not_promoted_to_an_even_count() {
    let v = view(&[(1, true, 1, false), (2, false, 2, false)]);
    assert_eq!(decide(&POLICY, &v), None);
}

#[test]
fn unreachable_voter_is_replaced_by_longest_lived_learner() {
    let v = view(&[
        (1, true, 1, false),
        (2, true, 2, true),
        (3, true, 3, false),
        (4, false, 9, false),
        (5, false, 5, false),
    ]);
    let d = decide(&POLICY, &v).expect("replace");
    assert_eq!(d.voters, ids(&[1, 3, 5]));
}

#[test]
fn dead_voter_without_spare_is_kept() {
    let v = view(&[(1, true, 1, false), (2, true, 2, true), (3, true, 3, false)]);
    assert_eq!(decide(&POLICY, &v), None);
}

#[test]
fn five_with_two_dead_and_no_spare_shrinks_to_three_live() {
    let policy = Policy {
        voters: 5,
        ..POLICY
    };
    let v = view(&[
        (1, true, 1, false),
        (2, true, 2, true),
        (3, true, 3, false),
        (4, true, 4, true),
        (5, true, 5, false),
    ]);
    let d = decide(&policy, &v).expect("shrink");
    assert_eq!(d.voters, ids(&[1, 3, 5]));
}

#[test]
fn leader_is_never_removed() {
    let policy = Policy {
        voters: 1,
        ..POLICY
    };
    let v = view(&[
        (3, true, 9, false),
        (1, true, 1, false),
        (2, true, 2, false),
    ]);
    let (end, _) = settle(&policy, v);
    assert_eq!(end.voters(), ids(&[3]));
}

#[test]
fn registered_nodes_become_learners() {
    let reg: BTreeMap<NodeId, String> = [(NodeId(1), "a".into()), (NodeId(2), "b".into())].into();
    assert_eq!(
        learners_to_add(&reg, &ids(&[1])),
        vec![(NodeId(2), "b".to_string())]
    );
}

fn arb_view() -> impl Strategy<Value = (Policy, View)> {
    let arb_member = (any::<bool>(), 0u64..100, any::<bool>());
    (
        prop_oneof![Just(1usize), Just(3), Just(5), Just(7)],
        proptest::collection::vec(arb_member, 1..10),
    )
        .prop_map(|(voters, ms)| {
            let mut members: BTreeMap<NodeId, Member> = ms
                .into_iter()
                .enumerate()
                .map(|(i, (voter, since, down))| (NodeId(i as u64 + 1), member(voter, since, down)))
                .collect();
            // The leader is a reachable voter.
            members.insert(NodeId(1), member(true, 0, false));
            let policy = Policy {
                voters,
                down_after: Duration::from_secs(10),
            };
            (
                policy,
                View {
                    leader: NodeId(1),
                    members,
                },
            )
        })
}

proptest! {
    #[test]
    fn every_decision_is_odd_and_keeps_a_live_majority((policy, v) in arb_view()) {
        let (_, steps) = settle(&policy, v.clone());
        let mut cur = v;
        for d in steps {
            prop_assert!(d.voters.len() % 2 == 1, "even voter set {:?}", d.voters);
            prop_assert!(d.voters.contains(&cur.leader));
            let before = cur.voters();
            if has_majority(&cur, &before, &policy) {
                prop_assert!(has_majority(&cur, &d.voters, &policy),
                    "{:?} -> {:?} loses the live majority", before, d.voters);
            }
            // Only reachable nodes are added.
            for id in d.voters.difference(&before) {
                prop_assert!(cur.live(id, &policy));
            }
            for (id, m) in cur.members.iter_mut() {
                m.voter = d.voters.contains(id);
            }
        }
    }

    #[test]
    fn settled_voters_are_odd_and_reach_the_target((policy, v) in arb_view()) {
        let (end, steps) = settle(&policy, v.clone());
        prop_assert!(steps.len() < 20, "policy does not settle");
        let voters = end.voters();
        let live_total = end.members.keys().filter(|id| end.live(id, &policy)).count();
        prop_assert!(voters.len() % 2 == 1, "settled on even {:?}", voters);
        if live_total >= policy.voters {
            prop_assert_eq!(end.live_count(&voters, &policy), policy.voters);
        }
    }
}
