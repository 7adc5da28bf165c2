//! Where a ready task runs: a pure decision over this node's resources and
//! the peers' gossiped load, with the random picks passed in.
//!
//! For a task this node owns:
//! 1. here, when it fits now and nothing waits ahead of it;
//! 2. else on a peer that has its resources free (the better of two random
//!    ones, or one holding a large argument);
//! 3. else here, in the queue, when this node could ever run it;
//! 4. else, when some peer could run it but none has room now: a plain task
//!    on its first placement queues at such a peer (which sends it back if
//!    it is busy), while an actor's constructor and a task sent back before
//!    wait here until a peer reports room, so they never sit behind
//!    long-lived work on a node that cannot take them;
//! 5. else nowhere: no node of the cluster can run it (yet).
//!
//! A task run for another node runs here if it fits now, is sent back once
//! (plain tasks below [`MAX_HOPS`]), or queues here if it ever can.
//!
//! A scheduling strategy ([`Rule`]) changes this:
//! - `Spread`: among the nodes with room now (this one included), the
//!   most idle, ties broken at random; with no room anywhere, as above;
//! - node affinity: on that node, waiting there for room; when it is gone
//!   or could never run the task, elsewhere as above if soft, else the
//!   task cannot be scheduled ([`Place::Unschedulable`]);
//! - a placement group's bundle: only on the nodes holding the bundle
//!   (those whose resources include the bundle's), waiting while the group
//!   is not placed yet; never unschedulable.

use raynode_proto::NodeId;

/// A forwarded plain task is sent back to its owner at most this often.
pub const MAX_HOPS: u8 = 2;

/// What kind of task is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Normal,
    ActorCreate,
}

/// Where a task may run: its scheduling strategy, as the engine sees it.
#[derive(Clone, Copy, Debug)]
pub enum Rule<'a> {
    Default,
    Spread,
    Affinity {
        node: NodeId,
        soft: bool,
    },
    /// The nodes holding the task's bundle (empty: the group is not
    /// placed, or was removed).
    Bundle {
        nodes: &'a [NodeId],
    },
}

/// This node, for one task.
#[derive(Clone, Copy, Debug)]
pub struct Here {
    pub node: NodeId,
    /// How idle it is (free CPUs less its queue); higher is better.
    pub score: f64,
    /// Its total resources could ever run the task.
    pub feasible: bool,
    /// Its free resources fit the task now.
    pub fits_now: bool,
    /// No task waits in its queue.
    pub queue_empty: bool,
}

/// A peer, for one task, by its last gossiped load.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub node: NodeId,
    /// Its total resources could ever run the task.
    pub feasible: bool,
    /// Its free resources fit the task now.
    pub free: bool,
    /// How idle it is (free CPUs less its queue); higher is better.
    pub score: f64,
    /// It holds one of the task's large arguments.
    pub holds_args: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Local,
    Remote(NodeId),
    /// Back to the node that owns it.
    SpillBack,
    /// Here, out of the queue, until a peer reports room.
    Wait,
    /// No node of the cluster can run it.
    Nowhere,
    /// Its strategy forbids every node that could run it (a hard node
    /// affinity to a node that is gone or too small).
    Unschedulable,
}

/// The decision for one ready task under its strategy. `pick(n)` returns a
/// random index below `n` (it is called at most twice).
#[allow(clippy::too_many_arguments)]
pub fn place_with(
    rule: Rule<'_>,
    here: Here,
    kind: Kind,
    hops: u8,
    foreign: bool,
    peers: &[Peer],
    mut pick: impl FnMut(usize) -> usize,
) -> Place {
    match rule {
        Rule::Default => place(here, kind, hops, foreign, peers, pick),
        Rule::Spread => {
            if foreign {
                return place(here, kind, hops, foreign, peers, pick);
            }
            let mut best: Vec<(Option<NodeId>, f64)> = Vec::new();
            if here.feasible && here.fits_now {
                best.push((None, here.score));
            }
            for p in peers.iter().filter(|p| p.feasible && p.free) {
                best.push((Some(p.node), p.score));
            }
            let top = best.iter().map(|b| b.1).fold(f64::NEG_INFINITY, f64::max);
            best.retain(|b| b.1 >= top);
            if best.is_empty() {
                return place(here, kind, hops, foreign, peers, pick);
            }
            match best[pick(best.len()) % best.len()].0 {
                None => Place::Local,
                Some(node) => Place::Remote(node),
            }
        }
        Rule::Affinity { node, soft } => {
            let fallback = |pick| {
                if soft {
                    place(here, kind, hops, foreign, peers, pick)
                } else {
                    Place::Unschedulable
                }
            };
            if node == here.node {
                return if here.feasible {
                    Place::Local
                } else {
                    fallback(pick)
                };
            }
            if foreign {
                // Sent here as the fallback of a soft affinity.
                return place(here, kind, hops, foreign, peers, pick);
            }
            match peers.iter().find(|p| p.node == node) {
                Some(p) if p.feasible => Place::Remote(node),
                _ => fallback(pick),
            }
        }
        Rule::Bundle { nodes } => {
            if nodes.contains(&here.node) && here.feasible {
                return Place::Local;
            }
            if foreign {
                return if hops < MAX_HOPS {
                    Place::SpillBack
                } else {
                    Place::Wait
                };
            }
            let holders: Vec<&Peer> = peers
                .iter()
                .filter(|p| p.feasible && nodes.contains(&p.node))
                .collect();
            let free: Vec<&Peer> = holders.iter().copied().filter(|p| p.free).collect();
            best_of_two(&free, &mut pick)
                .or_else(|| best_of_two(&holders, &mut pick))
                .map_or(Place::Wait, Place::Remote)
        }
    }
}

/// The decision for one ready task with the default strategy. `pick(n)`
/// returns a random index below `n` (it is called at most twice).
pub fn place(
    here: Here,
    kind: Kind,
    hops: u8,
    foreign: bool,
    peers: &[Peer],
    mut pick: impl FnMut(usize) -> usize,
) -> Place {
    let now = here.feasible && here.fits_now && here.queue_empty;
    if foreign {
        let may_spill = hops < MAX_HOPS && kind == Kind::Normal;
        return if now {
            Place::Local
        } else if may_spill {
            Place::SpillBack
        } else if here.feasible {
            Place::Local
        } else {
            Place::Nowhere
        };
    }
    if now {
        return Place::Local;
    }
    let free: Vec<&Peer> = peers.iter().filter(|p| p.feasible && p.free).collect();
    if let Some(node) = best_of_two(&free, &mut pick) {
        return Place::Remote(node);
    }
    if here.feasible {
        return Place::Local;
    }
    let feasible: Vec<&Peer> = peers.iter().filter(|p| p.feasible).collect();
    if feasible.is_empty() {
        return Place::Nowhere;
    }
    if kind == Kind::ActorCreate || hops > 0 {
        return Place::Wait;
    }
    best_of_two(&feasible, &mut pick).map_or(Place::Nowhere, Place::Remote)
}

/// Power of two choices: a candidate holding a large argument wins, else
/// the better of two random ones.
fn best_of_two(choices: &[&Peer], pick: &mut impl FnMut(usize) -> usize) -> Option<NodeId> {
    if choices.is_empty() {
        return None;
    }
    if let Some(holder) = choices.iter().find(|p| p.holds_args) {
        return Some(holder.node);
    }
    let a = choices[pick(choices.len()) % choices.len()];
    let b = choices[pick(choices.len()) % choices.len()];
    Some(if b.score > a.score { b.node } else { a.node })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(n: u8) -> NodeId {
        NodeId([n; 16])
    }

    fn peer(n: u8, feasible: bool, free: bool) -> Peer {
        Peer {
            node: node(n),
            feasible,
            free,
            score: f64::from(n),
            holds_args: false,
        }
    }

    const NOT_HERE: Here = Here {
        node: NodeId([0; 16]),
        score: 0.0,
        feasible: false,
        fits_now: false,
        queue_empty: true,
    };

    #[test]
    fn an_actor_waits_for_room_instead_of_queueing_behind_busy_peers() {
        let busy = [peer(2, true, false), peer(3, true, false)];
        assert_eq!(
            place(NOT_HERE, Kind::ActorCreate, 0, false, &busy, |_| 0),
            Place::Wait
        );
        let one_free = [peer(2, true, false), peer(3, true, true)];
        assert_eq!(
            place(NOT_HERE, Kind::ActorCreate, 0, false, &one_free, |_| 0),
            Place::Remote(node(3))
        );
    }

    #[test]
    fn a_task_sent_back_goes_only_where_there_is_room() {
        let busy = [peer(2, true, false)];
        assert_eq!(
            place(NOT_HERE, Kind::Normal, 1, false, &busy, |_| 0),
            Place::Wait
        );
        assert_eq!(
            place(NOT_HERE, Kind::Normal, 2, false, &busy, |_| 0),
            Place::Wait
        );
        assert_eq!(
            place(NOT_HERE, Kind::Normal, 0, false, &busy, |_| 0),
            Place::Remote(node(2)),
            "a first placement may queue at a busy peer, which can send it back"
        );
    }

    #[test]
    fn a_holder_of_a_large_argument_wins() {
        let mut peers = [peer(2, true, true), peer(9, true, true)];
        peers[0].holds_args = true;
        assert_eq!(
            place(NOT_HERE, Kind::Normal, 0, false, &peers, |_| 1),
            Place::Remote(node(2))
        );
    }

    fn peers() -> impl Strategy<Value = Vec<Peer>> {
        let flags = (any::<bool>(), any::<bool>(), any::<bool>());
        proptest::collection::vec(flags, 0..6).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (feasible, free, holds))| Peer {
                    holds_args: holds && feasible,
                    ..peer(i as u8 + 1, feasible, free && feasible)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn decisions_respect_resources_and_hops(
            feasible in any::<bool>(),
            fits_now in any::<bool>(),
            queue_empty in any::<bool>(),
            actor in any::<bool>(),
            hops in 0u8..4,
            foreign in any::<bool>(),
            peers in peers(),
            seed in any::<u64>(),
        ) {
            let here = Here { node: node(0), score: 0.0, feasible, fits_now: fits_now && feasible, queue_empty };
            let kind = if actor { Kind::ActorCreate } else { Kind::Normal };
            let mut state = seed;
            let got = place(here, kind, hops, foreign, &peers, |n| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 33) as usize % n
            });
            match got {
                Place::Local => prop_assert!(feasible, "never queued where it can never run"),
                Place::Remote(n) => {
                    prop_assert!(!foreign, "a task run for another node is not sent on");
                    let p = peers.iter().find(|p| p.node == n);
                    prop_assert!(p.is_some_and(|p| p.feasible), "sent only to a peer that can run it");
                    if actor || hops > 0 {
                        prop_assert!(p.is_some_and(|p| p.free),
                            "an actor or a task sent back goes only to a peer with room");
                    }
                }
                Place::SpillBack => prop_assert!(foreign && !actor && hops < MAX_HOPS),
                Place::Wait => {
                    prop_assert!(!foreign && !feasible);
                    prop_assert!(peers.iter().any(|p| p.feasible) && !peers.iter().any(|p| p.free));
                }
                Place::Nowhere => {
                    prop_assert!(!feasible);
                    prop_assert!(foreign || !peers.iter().any(|p| p.feasible));
                }
                Place::Unschedulable => prop_assert!(false, "the default strategy always schedules"),
            }
            if !foreign && peers.iter().any(|p| p.free) && !(feasible && fits_now && queue_empty) {
                prop_assert!(matches!(got, Place::Remote(_)), "room on a peer is used");
            }
        }
    }

    fn lcg(seed: u64) -> impl FnMut(usize) -> usize {
        let mut state = seed;
        move |n| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 33) as usize % n
        }
    }

    #[test]
    fn spread_goes_to_the_most_idle_node_with_room() {
        let mut peers = [peer(2, true, true), peer(3, true, true)];
        peers[0].score = 5.0;
        peers[1].score = 1.0;
        let here = Here {
            node: node(1),
            score: 2.0,
            feasible: true,
            fits_now: true,
            queue_empty: true,
        };
        let got = place_with(Rule::Spread, here, Kind::Normal, 0, false, &peers, |_| 0);
        assert_eq!(
            got,
            Place::Remote(node(2)),
            "the default would keep it here"
        );
        let idle_here = Here { score: 9.0, ..here };
        assert_eq!(
            place_with(
                Rule::Spread,
                idle_here,
                Kind::Normal,
                0,
                false,
                &peers,
                |_| 0
            ),
            Place::Local
        );
    }

    #[test]
    fn hard_affinity_to_a_lost_node_is_unschedulable_and_soft_runs_elsewhere() {
        let peers = [peer(2, true, true)];
        let here = Here {
            node: node(1),
            score: 0.0,
            feasible: true,
            fits_now: true,
            queue_empty: true,
        };
        let gone = node(9);
        let hard = Rule::Affinity {
            node: gone,
            soft: false,
        };
        let soft = Rule::Affinity {
            node: gone,
            soft: true,
        };
        assert_eq!(
            place_with(hard, here, Kind::Normal, 0, false, &peers, |_| 0),
            Place::Unschedulable
        );
        assert_eq!(
            place_with(soft, here, Kind::Normal, 0, false, &peers, |_| 0),
            Place::Local
        );
        let busy_peer = [peer(2, true, false)];
        let to_peer = Rule::Affinity {
            node: node(2),
            soft: false,
        };
        assert_eq!(
            place_with(to_peer, here, Kind::Normal, 0, false, &busy_peer, |_| 0),
            Place::Remote(node(2)),
            "a hard affinity waits on its node, even when it is busy"
        );
    }

    #[test]
    fn a_bundle_task_waits_until_its_group_is_placed() {
        let peers = [peer(2, true, true)];
        let here = Here {
            node: node(1),
            score: 0.0,
            feasible: false,
            fits_now: false,
            queue_empty: true,
        };
        assert_eq!(
            place_with(
                Rule::Bundle { nodes: &[] },
                here,
                Kind::Normal,
                0,
                false,
                &peers,
                |_| 0
            ),
            Place::Wait
        );
        let there = [node(2)];
        assert_eq!(
            place_with(
                Rule::Bundle { nodes: &there },
                here,
                Kind::Normal,
                0,
                false,
                &peers,
                |_| 0
            ),
            Place::Remote(node(2))
        );
    }

    proptest! {
        #[test]
        fn strategies_keep_their_promises(
            feasible in any::<bool>(),
            fits_now in any::<bool>(),
            actor in any::<bool>(),
            foreign in any::<bool>(),
            hops in 0u8..4,
            peers in peers(),
            rule in 0u8..4,
            target in 0u8..8,
            soft in any::<bool>(),
            bundle_nodes in proptest::collection::vec(0u8..8, 0..4),
            seed in any::<u64>(),
        ) {
            let here = Here { node: node(0), score: 1.5, feasible, fits_now: fits_now && feasible, queue_empty: true };
            let kind = if actor { Kind::ActorCreate } else { Kind::Normal };
            let holders: Vec<NodeId> = bundle_nodes.iter().map(|n| node(*n)).collect();
            let r = match rule {
                0 => Rule::Default,
                1 => Rule::Spread,
                2 => Rule::Affinity { node: node(target), soft },
                _ => Rule::Bundle { nodes: &holders },
            };
            let got = place_with(r, here, kind, hops, foreign, &peers, lcg(seed));
            let peer_of = |n: NodeId| peers.iter().find(|p| p.node == n);
            if let Place::Local = got {
                prop_assert!(feasible, "never queued where it can never run");
            }
            if let Place::Remote(n) = got {
                prop_assert!(!foreign, "a task run for another node is not sent on");
                prop_assert!(peer_of(n).is_some_and(|p| p.feasible), "sent only to a live peer that can run it");
            }
            match r {
                Rule::Affinity { node: t, soft: false } => {
                    match got {
                        Place::Local => prop_assert!(t == here.node || foreign),
                        Place::Remote(n) => prop_assert_eq!(n, t, "a hard affinity never runs elsewhere"),
                        Place::Unschedulable => prop_assert!(
                            if t == here.node { !feasible } else { !foreign && peer_of(t).is_none_or(|p| !p.feasible) },
                            "unschedulable only when its node is gone or too small"
                        ),
                        _ => prop_assert!(foreign, "a hard affinity goes to its node or fails"),
                    }
                }
                Rule::Bundle { nodes } => {
                    prop_assert!(got != Place::Unschedulable && got != Place::Nowhere);
                    match got {
                        Place::Local => prop_assert!(nodes.contains(&here.node)),
                        Place::Remote(n) => prop_assert!(nodes.contains(&n), "only to a node holding the bundle"),
                        _ => {}
                    }
                }
                Rule::Spread if !foreign => {
                    let mut best = f64::NEG_INFINITY;
                    if feasible && fits_now { best = here.score; }
                    for p in peers.iter().filter(|p| p.feasible && p.free) { best = best.max(p.score); }
                    match got {
                        Place::Local if feasible && fits_now => prop_assert!(here.score >= best),
                        Place::Remote(n) if peer_of(n).is_some_and(|p| p.free) =>
                            prop_assert!(peer_of(n).is_some_and(|p| p.score >= best), "spread picks the most idle"),
                        _ => {}
                    }
                    prop_assert!(got != Place::Unschedulable);
                }
                _ => prop_assert!(got != Place::Unschedulable, "only a hard affinity is unschedulable"),
            }
        }
    }
}
