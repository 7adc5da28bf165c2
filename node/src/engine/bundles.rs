//! Which node each bundle of a placement group goes to: a pure decision
//! over the nodes' room, made once by the node that creates the group and
//! checked by the control store when it records it (see `raft-gcs`'s
//! `groups.rs`), so that the reservation is all or nothing.
//!
//! `room` is what a node can still reserve: its registered resources less
//! the bundles of created groups already there. Strategies, as Ray's:
//! - `STRICT_PACK`: every bundle on one node;
//! - `PACK`: one node if one can hold them all, else as few as the greedy
//!   fill (the node already used first) finds;
//! - `STRICT_SPREAD`: every bundle on a different node (a bipartite
//!   matching of bundles to nodes, so it is found whenever one exists);
//! - `SPREAD`: different nodes when that is possible, else the greedy fill
//!   preferring the nodes used least by the group.
//!
//! Nodes earlier in the list win ties (the caller puts them in the order it
//! prefers).

use raynode_proto::{GroupStrategy, NodeId, Resources};

const EPSILON: f64 = 1e-9;

/// A node, by the resources it can still reserve.
#[derive(Clone, Debug)]
pub struct Room {
    pub node: NodeId,
    pub room: Resources,
}

fn fits(room: &Resources, demand: &Resources) -> bool {
    demand
        .0
        .iter()
        .all(|(name, need)| *need <= EPSILON || room.get(name) + EPSILON >= *need)
}

fn take(room: &mut Resources, demand: &Resources) {
    for (name, need) in &demand.0 {
        let left = room.get(name) - need;
        room.set(name, left);
    }
}

fn sum(bundles: &[Resources]) -> Resources {
    let mut out = Resources::default();
    for b in bundles {
        for (name, v) in &b.0 {
            out.set(name, out.get(name) + v);
        }
    }
    out
}

/// The node of each bundle, in order; `None` if the nodes have no room for
/// the group as its strategy asks (it stays pending).
pub fn assign(
    bundles: &[Resources],
    strategy: GroupStrategy,
    nodes: &[Room],
) -> Option<Vec<NodeId>> {
    if bundles.is_empty() {
        return Some(Vec::new());
    }
    match strategy {
        GroupStrategy::StrictPack => one_node(bundles, nodes),
        GroupStrategy::Pack => one_node(bundles, nodes).or_else(|| greedy(bundles, nodes, true)),
        GroupStrategy::StrictSpread => distinct(bundles, nodes),
        GroupStrategy::Spread => distinct(bundles, nodes).or_else(|| greedy(bundles, nodes, false)),
    }
}

fn one_node(bundles: &[Resources], nodes: &[Room]) -> Option<Vec<NodeId>> {
    let all = sum(bundles);
    let node = nodes.iter().find(|n| fits(&n.room, &all))?;
    Some(vec![node.node; bundles.len()])
}

/// Bundle by bundle, largest first: on a node already holding the most of
/// the group's bundles (`pack`) or the fewest, among those with room.
fn greedy(bundles: &[Resources], nodes: &[Room], pack: bool) -> Option<Vec<NodeId>> {
    let mut room: Vec<Resources> = nodes.iter().map(|n| n.room.clone()).collect();
    let mut used = vec![0usize; nodes.len()];
    let mut order: Vec<usize> = (0..bundles.len()).collect();
    let size = |b: &Resources| b.0.iter().map(|(_, v)| *v).sum::<f64>();
    order.sort_by(|a, b| size(&bundles[*b]).total_cmp(&size(&bundles[*a])));
    let mut out = vec![None; bundles.len()];
    for i in order {
        let candidates = (0..nodes.len()).filter(|j| fits(&room[*j], &bundles[i]));
        let best = if pack {
            candidates.max_by_key(|j| (used[*j], std::cmp::Reverse(*j)))
        } else {
            candidates.min_by_key(|j| (used[*j], *j))
        }?;
        take(&mut room[best], &bundles[i]);
        used[best] += 1;
        out[i] = Some(nodes[best].node);
    }
    out.into_iter().collect()
}

/// Every bundle on its own node: Kuhn's augmenting paths over "bundle fits
/// node".
fn distinct(bundles: &[Resources], nodes: &[Room]) -> Option<Vec<NodeId>> {
    if bundles.len() > nodes.len() {
        return None;
    }
    let fit: Vec<Vec<usize>> = bundles
        .iter()
        .map(|b| {
            (0..nodes.len())
                .filter(|j| fits(&nodes[*j].room, b))
                .collect()
        })
        .collect();
    let mut owner: Vec<Option<usize>> = vec![None; nodes.len()];
    for i in 0..bundles.len() {
        let mut seen = vec![false; nodes.len()];
        if !augment(i, &fit, &mut owner, &mut seen) {
            return None;
        }
    }
    let mut out = vec![nodes[0].node; bundles.len()];
    for (j, o) in owner.iter().enumerate() {
        if let Some(i) = o {
            out[*i] = nodes[j].node;
        }
    }
    Some(out)
}

fn augment(i: usize, fit: &[Vec<usize>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
    for &j in &fit[i] {
        if seen[j] {
            continue;
        }
        seen[j] = true;
        let free = match owner[j] {
            None => true,
            Some(k) => augment(k, fit, owner, seen),
        };
        if free {
            owner[j] = Some(i);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn cpu(n: f64) -> Resources {
        Resources(vec![("CPU".into(), n)])
    }

    fn nodes(cpus: &[f64]) -> Vec<Room> {
        cpus.iter()
            .enumerate()
            .map(|(i, c)| Room {
                node: NodeId([i as u8 + 1; 16]),
                room: cpu(*c),
            })
            .collect()
    }

    fn distinct_count(v: &[NodeId]) -> usize {
        let mut v = v.to_vec();
        v.sort();
        v.dedup();
        v.len()
    }

    #[test]
    fn strict_spread_puts_three_bundles_on_three_nodes() {
        let got = assign(
            &[cpu(1.0), cpu(1.0), cpu(1.0)],
            GroupStrategy::StrictSpread,
            &nodes(&[2.0, 2.0, 2.0]),
        );
        assert_eq!(got.map(|v| distinct_count(&v)), Some(3));
        let two = assign(
            &[cpu(1.0), cpu(1.0), cpu(1.0)],
            GroupStrategy::StrictSpread,
            &nodes(&[8.0, 8.0]),
        );
        assert_eq!(two, None, "three bundles never share two nodes");
    }

    #[test]
    fn strict_spread_finds_the_matching_a_greedy_pick_misses() {
        // The small bundle fits either node, the big one only the first.
        let got = assign(
            &[cpu(1.0), cpu(3.0)],
            GroupStrategy::StrictSpread,
            &nodes(&[4.0, 1.0]),
        );
        let n = nodes(&[4.0, 1.0]);
        assert_eq!(got, Some(vec![n[1].node, n[0].node]));
    }

    #[test]
    fn pack_prefers_one_node_and_spills_when_it_must() {
        let n = nodes(&[2.0, 2.0]);
        assert_eq!(
            assign(&[cpu(1.0), cpu(1.0)], GroupStrategy::Pack, &n),
            Some(vec![n[0].node; 2])
        );
        let got = assign(&[cpu(2.0), cpu(2.0)], GroupStrategy::Pack, &n).expect("fits on two");
        assert_eq!(distinct_count(&got), 2);
        assert_eq!(
            assign(&[cpu(2.0), cpu(2.0)], GroupStrategy::StrictPack, &n),
            None
        );
        assert_eq!(
            assign(&[cpu(3.0)], GroupStrategy::Pack, &n),
            None,
            "infeasible stays pending"
        );
    }

    #[test]
    fn spread_shares_nodes_only_when_it_must() {
        let n = nodes(&[4.0, 4.0]);
        let got = assign(&vec![cpu(1.0); 4], GroupStrategy::Spread, &n).expect("fits");
        assert_eq!(distinct_count(&got), 2);
        let counts = got.iter().fold(HashMap::new(), |mut m, x| {
            *m.entry(*x).or_insert(0) += 1;
            m
        });
        assert!(counts.values().all(|c| *c == 2), "{counts:?}");
    }

    fn brute_force_distinct(bundles: &[f64], room: &[f64]) -> bool {
        fn go(i: usize, bundles: &[f64], room: &[f64], used: &mut Vec<bool>) -> bool {
            if i == bundles.len() {
                return true;
            }
            for j in 0..room.len() {
                if !used[j] && bundles[i] <= room[j] + EPSILON {
                    used[j] = true;
                    if go(i + 1, bundles, room, used) {
                        return true;
                    }
                    used[j] = false;
                }
            }
            false
        }
        go(0, bundles, room, &mut vec![false; room.len()])
    }

    proptest! {
        #[test]
        fn assignments_fit_and_keep_the_strategy(
            bundles in proptest::collection::vec(0u8..5, 1..6),
            room in proptest::collection::vec(0u8..8, 0..6),
            strategy in 0usize..4,
        ) {
            let strategy = [GroupStrategy::Pack, GroupStrategy::Spread,
                GroupStrategy::StrictPack, GroupStrategy::StrictSpread][strategy];
            let b: Vec<Resources> = bundles.iter().map(|c| cpu(f64::from(*c))).collect();
            let room_f: Vec<f64> = room.iter().map(|c| f64::from(*c)).collect();
            let n = nodes(&room_f);
            let got = assign(&b, strategy, &n);
            let total: f64 = bundles.iter().map(|c| f64::from(*c)).sum();
            let one_fits = room_f.iter().any(|r| *r + EPSILON >= total);
            let matching = brute_force_distinct(&bundles.iter().map(|c| f64::from(*c)).collect::<Vec<_>>(), &room_f);
            if let Some(v) = &got {
                prop_assert_eq!(v.len(), b.len());
                // Never more on a node than its room.
                for node in &n {
                    let used: f64 = v.iter().zip(&bundles).filter(|(x, _)| **x == node.node)
                        .map(|(_, c)| f64::from(*c)).sum();
                    prop_assert!(used <= node.room.get("CPU") + EPSILON, "node overcommitted");
                }
                match strategy {
                    GroupStrategy::StrictPack => prop_assert_eq!(distinct_count(v), 1),
                    GroupStrategy::StrictSpread => prop_assert_eq!(distinct_count(v), v.len()),
                    GroupStrategy::Pack if one_fits => prop_assert_eq!(distinct_count(v), 1),
                    GroupStrategy::Spread if matching => prop_assert_eq!(distinct_count(v), v.len()),
                    _ => {}
                }
            }
            // Complete where an answer is easy to know.
            match strategy {
                GroupStrategy::StrictPack | GroupStrategy::Pack if one_fits => prop_assert!(got.is_some()),
                GroupStrategy::StrictPack => prop_assert!(got.is_none()),
                GroupStrategy::StrictSpread => prop_assert_eq!(got.is_some(), matching),
                GroupStrategy::Spread if matching => prop_assert!(got.is_some()),
                _ => {}
            }
            if total > room_f.iter().sum::<f64>() + EPSILON {
                prop_assert!(got.is_none(), "never more than the whole cluster");
            }
        }
    }
}
