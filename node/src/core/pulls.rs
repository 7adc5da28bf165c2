//! Pulls of objects from other nodes' stores into this node's.
//!
//! A pull waits in line until the store can take it: the bytes of pulls
//! under way stay within a quarter of the store (one pull always may run),
//! so copies being written never crowd out everything else and a store
//! under pressure spills instead of refusing. A pull the store has no room
//! for now waits and is tried again; only a pull no holder can serve fails.
//! An item of a generator lent by the node that ran it is freed there once
//! our copy is sealed. A result of ours whose holder cannot serve it is
//! made again (lineage, see `remote.rs`).

use super::Core;
use crate::cluster::wire::PeerMsg;
use crate::cluster::PullError;
use crate::objects::ObjState;
use raynode_proto::meta::SystemErrorKind;
use raynode_proto::{NodeId, ObjectId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pause before a pull the store had no room for is tried again.
const NO_ROOM_RETRY: Duration = Duration::from_millis(200);

/// Pause before the owner of an object that could not be pulled is asked
/// for it again, and how often it is.
const REASK_AFTER: Duration = Duration::from_millis(500);
const MAX_REASKS: u32 = 20;

/// A pull of an object into this node's store.
pub(super) struct Pull {
    holder: NodeId,
    size: u64,
    /// Lent by the node that made it, which frees its copy once we have ours.
    lent: bool,
    /// Whether our copy is primary (else the holder keeps its own, and ours
    /// may be evicted).
    primary: bool,
    running: bool,
    /// Not to be started before this (after the store had no room).
    not_before: Option<Instant>,
}

/// Pulls waiting (in arrival order) or under way.
#[derive(Default)]
pub(super) struct Pulls {
    all: HashMap<ObjectId, Pull>,
    line: VecDeque<ObjectId>,
    running_bytes: u64,
    /// Objects a pull is writing into the store now (given up or not).
    writing: HashSet<ObjectId>,
    /// Creates of those objects by a new run of their task, answered once
    /// the pull ends: (client, request, size).
    creates: HashMap<ObjectId, Vec<(super::ConnId, u64, u64)>>,
    /// Objects and bytes pulled since the node started.
    pub done: u64,
    pub done_bytes: u64,
}

impl Pulls {
    /// Pulls waiting or under way.
    pub fn in_flight(&self) -> usize {
        self.all.len()
    }

    pub fn contains(&self, id: ObjectId) -> bool {
        self.all.contains_key(&id)
    }

    /// Holds a create of `id` back if a pull is writing it now; returns
    /// whether it did.
    pub fn defer_create(&mut self, id: ObjectId, create: (super::ConnId, u64, u64)) -> bool {
        if !self.writing.contains(&id) {
            return false;
        }
        self.creates.entry(id).or_default().push(create);
        true
    }

    /// Gives up a pull (its object is to be made again): what it brings is dropped.
    pub fn forget(&mut self, id: ObjectId) {
        self.remove(id);
    }

    fn remove(&mut self, id: ObjectId) -> Option<Pull> {
        let pull = self.all.remove(&id)?;
        if pull.running {
            self.running_bytes = self.running_bytes.saturating_sub(pull.size);
        } else {
            self.line.retain(|queued| *queued != id);
        }
        Some(pull)
    }

    /// The pulls to start now, within `budget` bytes under way, in order:
    /// first come, first served, so a pull that cannot start holds the line.
    /// A pull of an object an earlier, given-up pull still writes waits
    /// aside until that one ends.
    fn due(&mut self, budget: u64, now: Instant) -> Vec<(ObjectId, NodeId, u64, bool)> {
        let mut start = Vec::new();
        let mut aside = VecDeque::new();
        while let Some(&id) = self.line.front() {
            let Some(pull) = self.all.get_mut(&id) else {
                self.line.pop_front();
                continue;
            };
            if self.writing.contains(&id) {
                self.line.pop_front();
                aside.push_back(id);
                continue;
            }
            let waiting = pull.not_before.is_some_and(|t| t > now);
            let fits = self.running_bytes == 0 || self.running_bytes + pull.size <= budget;
            if waiting || !fits {
                break;
            }
            self.line.pop_front();
            pull.running = true;
            pull.not_before = None;
            self.running_bytes += pull.size;
            start.push((id, pull.holder, pull.size, pull.primary));
        }
        while let Some(id) = aside.pop_back() {
            self.line.push_front(id);
        }
        start
    }
}

impl Core {
    /// Lines up a pull of `id` (of `size` bytes) from `holder`.
    pub(super) fn queue_pull(
        &mut self,
        id: ObjectId,
        holder: NodeId,
        size: u64,
        lent: bool,
        primary: bool,
    ) {
        let pull = Pull {
            holder,
            size,
            lent,
            primary,
            running: false,
            not_before: None,
        };
        self.remote.pulls.all.insert(id, pull);
        self.remote.pulls.line.push_back(id);
        self.start_pulls();
    }

    /// Starts the pulls in line that the store has room for now.
    pub(super) fn start_pulls(&mut self) {
        let budget = (self.config.object_store_memory / 4).max(1);
        for (id, holder, size, primary) in self.remote.pulls.due(budget, Instant::now()) {
            let Some(peer) = self.peer_id_of(holder) else {
                self.remote.pulls.remove(id);
                let why = format!("no address is known for its holder {holder}");
                self.set_lost(id, &why);
                continue;
            };
            let (p2p, store, events) = (
                self.cluster.p2p.clone(),
                self.store.shared(),
                self.events.clone(),
            );
            let holders = self.holders(id, peer);
            tracing::debug!(object = %id, holders = holders.len(), size, "pulling an object");
            self.remote.pulls.writing.insert(id);
            tokio::spawn(async move {
                let result = crate::cluster::pull(p2p, store, id, size, holders, primary).await;
                let _ = events.send(super::Event::Pulled { id, size, result }).await;
            });
        }
    }

    pub(super) fn on_pulled(&mut self, id: ObjectId, size: u64, result: Result<(), PullError>) {
        self.remote.pulls.writing.remove(&id);
        let creates = self.remote.pulls.creates.remove(&id);
        self.pull_ended(id, size, result);
        // A new run of the object's task may write it now.
        for (conn, req, size) in creates.unwrap_or_default() {
            self.on_create(conn, req, id, size);
        }
    }

    fn pull_ended(&mut self, id: ObjectId, size: u64, result: Result<(), PullError>) {
        let Some(mut pull) = self.remote.pulls.remove(id) else {
            // The pull was given up (its object is made again, or freed).
            if result.is_ok() {
                match self.objects.get(&id).map(|e| &e.state) {
                    // Made elsewhere again meanwhile: this copy is as good.
                    Some(ObjState::Remote { .. }) => {
                        self.store.record(id, size);
                        self.set_value(id, ObjState::Stored { size }, Vec::new());
                    }
                    Some(ObjState::Stored { .. }) => {}
                    _ => self.store.delete(id),
                }
            }
            return self.start_pulls();
        };
        match result {
            Ok(()) => {
                self.remote.pulls.done += 1;
                self.remote.pulls.done_bytes += size;
                if !self.remote.reasked.is_empty() {
                    self.remote.reasked.remove(&id);
                }
                // A copy of a result of ours made elsewhere keeps the
                // references its entry already holds.
                let nested = match self.objects.get_mut(&id) {
                    Some(e) if !matches!(e.state, ObjState::Remote { .. }) => {
                        std::mem::take(&mut e.nested)
                    }
                    _ => Vec::new(),
                };
                self.store.record(id, size);
                self.set_value(id, ObjState::Stored { size }, nested);
                if pull.lent {
                    self.send_peer(pull.holder, PeerMsg::Free { ids: vec![id] });
                }
            }
            Err(PullError::NoRoom(why)) if self.remote.peers.contains_key(&pull.holder) => {
                tracing::debug!(object = %id, "no room for a pull yet; it waits: {why}");
                pull.running = false;
                pull.not_before = Some(Instant::now() + NO_ROOM_RETRY);
                self.remote.pulls.all.insert(id, pull);
                self.remote.pulls.line.push_front(id);
                let events = self.events.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(NO_ROOM_RETRY).await;
                    let _ = events.send(super::Event::PullsDue).await;
                });
            }
            Err(e) => {
                tracing::warn!(object = %id, "pull failed: {e}");
                self.pull_failed(id, pull, &format!("pulling it failed: {e}"));
            }
        }
        self.start_pulls();
    }

    /// A pull failed: a result of ours is made again by running its task
    /// once more (lineage); anything else is lost.
    fn pull_failed(&mut self, id: ObjectId, pull: Pull, why: &str) {
        let ours_elsewhere = self
            .objects
            .get(&id)
            .is_some_and(|e| matches!(e.state, ObjState::Remote { .. }));
        if ours_elsewhere {
            // Its holder cannot serve it (and may drop whatever it has of
            // it): another copy serves, or it is made again.
            self.send_peer(pull.holder, PeerMsg::Free { ids: vec![id] });
            if self.relocate(id, pull.holder) {
                let why = format!("its holder {} could not serve it ({why})", pull.holder);
                return self.rebuild_lost(vec![id], &why);
            }
            return self.localize(id);
        }
        if pull.lent {
            self.send_peer(pull.holder, PeerMsg::Free { ids: vec![id] });
        } else if self.reask_owner_later(id, pull.holder) {
            return;
        }
        self.remote.reasked.remove(&id);
        match self.owner_of(&id.0) {
            Some(owner) if self.remote.lost.contains(&owner) => {
                let why = format!("object {id} is lost: its owner, node {owner}, died ({why})");
                self.set_error(id, SystemErrorKind::OwnerDiedError, &why);
            }
            _ => self.set_lost(id, why),
        }
    }

    /// An object owned by a live peer could not be pulled from the holder it
    /// named: that holder may have died, and the owner be making the object
    /// again. The owner is asked anew shortly, a bounded number of times.
    fn reask_owner_later(&mut self, id: ObjectId, failed: NodeId) -> bool {
        let owner = self.owner_of(&id.0);
        let alive = owner.is_some_and(|o| o != self.node_id && self.remote.peers.contains_key(&o));
        let wanted = self.objects.get(&id).is_some_and(|e| !e.is_ready());
        if !alive || !wanted {
            return false;
        }
        let tries = self.remote.reasked.entry(id).or_default();
        *tries += 1;
        if *tries > MAX_REASKS {
            return false;
        }
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REASK_AFTER).await;
            let _ = events.send(super::Event::Reask { id, failed }).await;
        });
        true
    }

    /// Asks an object's owner again for it (see [`Core::reask_owner_later`]).
    pub(super) fn reask_owner(&mut self, id: ObjectId, failed: NodeId) {
        self.remote.subscribed.remove(&id);
        self.ask_owner(id, Some(failed));
    }

    pub(super) fn set_lost(&mut self, id: ObjectId, why: &str) {
        self.set_error(
            id,
            SystemErrorKind::ObjectLostError,
            &format!("object {id} was lost: {why}"),
        );
    }

    /// A pending object's value becomes the error `kind`, saying `why`.
    pub(super) fn set_error(&mut self, id: ObjectId, kind: SystemErrorKind, why: &str) {
        let bytes = crate::values::system_error(kind, why);
        let state = ObjState::Inline {
            bytes: Arc::new(bytes),
            error: true,
        };
        self.set_value(id, state, Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raynode_proto::TaskId;

    fn pulls(sizes: &[u64]) -> (Pulls, Vec<ObjectId>) {
        let mut p = Pulls::default();
        let mut ids = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let id = ObjectId::for_return(TaskId([i as u8 + 1; 16]), 0);
            p.all.insert(
                id,
                Pull {
                    holder: NodeId([9; 16]),
                    size: *size,
                    lent: false,
                    primary: true,
                    running: false,
                    not_before: None,
                },
            );
            p.line.push_back(id);
            ids.push(id);
        }
        (p, ids)
    }

    #[test]
    fn pulls_start_in_order_within_the_budget() {
        let (mut p, ids) = pulls(&[8, 8, 8, 8]);
        let now = Instant::now();
        let started: Vec<ObjectId> = p.due(16, now).into_iter().map(|(id, ..)| id).collect();
        assert_eq!(started, ids[..2].to_vec());
        assert!(p.due(16, now).is_empty(), "nothing more fits while two run");
        p.remove(ids[0]);
        let started: Vec<ObjectId> = p.due(16, now).into_iter().map(|(id, ..)| id).collect();
        assert_eq!(started, vec![ids[2]]);
    }

    #[test]
    fn one_pull_always_runs_even_past_the_budget() {
        let (mut p, ids) = pulls(&[100, 1]);
        let started: Vec<ObjectId> = p
            .due(10, Instant::now())
            .into_iter()
            .map(|(id, ..)| id)
            .collect();
        assert_eq!(started, vec![ids[0]]);
    }

    #[test]
    fn a_pull_of_an_object_still_written_by_a_given_up_pull_waits_aside() {
        let (mut p, ids) = pulls(&[1, 1]);
        p.writing.insert(ids[0]);
        let now = Instant::now();
        let started: Vec<ObjectId> = p.due(10, now).into_iter().map(|(id, ..)| id).collect();
        assert_eq!(started, vec![ids[1]]);
        assert_eq!(p.line.front(), Some(&ids[0]), "it keeps its place");
        p.writing.remove(&ids[0]);
        assert_eq!(p.due(10, now).len(), 1);
    }

    #[test]
    fn a_pull_told_to_wait_holds_the_line_until_due() {
        let (mut p, ids) = pulls(&[1, 1]);
        let now = Instant::now();
        if let Some(first) = p.all.get_mut(&ids[0]) {
            first.not_before = Some(now + Duration::from_secs(1));
        }
        assert!(p.due(10, now).is_empty());
        let later = now + Duration::from_secs(2);
        assert_eq!(p.due(10, later).len(), 2);
        assert_eq!(p.running_bytes, 2);
        p.remove(ids[1]);
        assert_eq!(p.running_bytes, 1);
    }
}
