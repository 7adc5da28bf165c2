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

use raynode_proto::NodeId;

/// A forwarded plain task is sent back to its owner at most this often.
pub const MAX_HOPS: u8 = 2;

/// What kind of task is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Normal,
    ActorCreate,
}

/// This node, for one task.
#[derive(Clone, Copy, Debug)]
pub struct Here {
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
}

/// The decision for one ready task. `pick(n)` returns a random index below
/// `n` (it is called at most twice).
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
            let here = Here { feasible, fits_now: fits_now && feasible, queue_empty };
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
            }
            if !foreign && peers.iter().any(|p| p.free) && !(feasible && fits_now && queue_empty) {
                prop_assert!(matches!(got, Place::Remote(_)), "room on a peer is used");
            }
        }
    }
}
