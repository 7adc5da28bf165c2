//! Objects across nodes: where a result of ours lives, and how a node
//! gets a value it does not hold.
//!
//! - A stored result stays on the node that made it (its holder, which
//!   keeps it "lent" until we free it). The owner notes the holder
//!   ([`Core::keep_result`]), pulls a secondary copy only when something
//!   here reads it ([`Core::localize`]), and frees the holder's copy with
//!   the last reference ([`Core::free_borrowed`]).
//! - Lineage: should a holder die, its results move to another live copy,
//!   or are made again by running their tasks once more
//!   ([`Core::lost_holder`], [`Core::rebuild_lost`]; the bounded table is
//!   [`crate::engine::lineage`]).
//! - Objects owned elsewhere: a node that needs one asks its owner
//!   ([`Core::want`]), which answers with the value or its holder; a node
//!   that could not pull from that holder asks again, naming it. An
//!   object whose owner died raises `OwnerDiedError`.

use super::Core;
use crate::cluster::wire::{PeerMsg, WireValue};
use crate::engine::lineage::Rebuild;
use crate::objects::ObjState;
use raynode_proto::meta::SystemErrorKind;
use raynode_proto::{JobId, NodeId, ObjectId, TaskId, TaskKind, TaskSpec};
use std::collections::HashMap;
use std::sync::Arc;

impl Core {
    /// A result of a task of ours run on another node. A stored one stays
    /// on its holder: we note where it is, and keep the task's lineage to
    /// make it again should the holder die.
    pub(super) fn keep_result(
        &mut self,
        id: ObjectId,
        value: WireValue,
        nested: Vec<ObjectId>,
        (spec, job, attempt): (&Arc<TaskSpec>, JobId, u32),
    ) {
        let WireValue::Stored { holder, size } = value else {
            return self.receive_value(id, value, nested, None);
        };
        if holder == self.node_id {
            return self.receive_value(id, value, nested, None);
        }
        if self.objects.get(&id).is_none_or(|e| e.is_ready()) {
            // Nobody wants it, or an earlier run's value stands.
            self.send_peer(holder, PeerMsg::Free { ids: vec![id] });
            return;
        }
        self.remote.borrowed.insert(id, holder);
        // Plain tasks only: an actor call's result depends on its actor's
        // state, and a generator's items are taken as they come.
        if matches!(spec.kind, TaskKind::Normal) && spec.generator == raynode_proto::Generator::No {
            let args: Vec<ObjectId> = spec
                .dependencies()
                .chain(spec.nested_refs.iter().copied())
                .collect();
            let recorded = self.remote.lineage.record(
                spec.task_id,
                &(spec.clone(), job),
                lineage_cost(spec),
                &args,
                spec.max_retries,
                attempt,
                id.index(),
            );
            for arg in recorded.hold {
                self.objects.add_ref(arg);
            }
            for arg in recorded.release {
                self.release(arg);
            }
        }
        self.set_value(id, ObjState::Remote { holder, size }, nested);
    }

    /// A result of ours whose last reference went: its holder may free it,
    /// and its lineage may go. Returns the references the lineage held.
    pub(super) fn free_borrowed(&mut self, id: ObjectId) -> Vec<ObjectId> {
        if let Some(holder) = self.remote.borrowed.remove(&id) {
            self.send_peer(holder, PeerMsg::Free { ids: vec![id] });
        }
        if self.remote.lineage.is_empty() {
            return Vec::new();
        }
        self.remote.lineage.freed(id)
    }

    /// Whether object `id` is ready but must be pulled here before it is
    /// read here (made elsewhere, or our copy of it was evicted). A copy of
    /// an object owned elsewhere that was evicted here makes it pending
    /// again, to be asked of its owner anew.
    pub(super) fn needs_pull(&mut self, id: ObjectId) -> bool {
        match self.objects.get(&id).map(|e| &e.state) {
            Some(ObjState::Remote { .. }) => true,
            Some(ObjState::Stored { .. }) => match self.remote.borrowed.get(&id) {
                Some(&holder) if !self.store.contains(id) => {
                    self.objects.unlocalize(id, holder);
                    true
                }
                None if !self.remote.lent.contains(&id)
                    && self.owned_elsewhere(id)
                    && !self.store.contains(id) =>
                {
                    for inner in self.objects.reset(id) {
                        self.release(inner);
                    }
                    false
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Pulls a copy of a result of ours from its holder, once. The copy is
    /// secondary: the holder keeps its own, so ours may be evicted.
    pub(super) fn localize(&mut self, id: ObjectId) {
        if self.remote.pulls.contains(id) {
            return;
        }
        if let Some(ObjState::Remote { holder, size }) = self.objects.get(&id).map(|e| &e.state) {
            let (holder, size) = (*holder, *size);
            self.queue_pull(id, holder, size, false, false);
        }
    }

    /// `node` died: results of ours it held are made again, or fail. A copy
    /// of one pulled here is the one left, so it is kept as primary.
    pub(super) fn lost_holder(&mut self, node: NodeId, why: &str) {
        let held: Vec<ObjectId> = self
            .remote
            .borrowed
            .iter()
            .filter(|(_, holder)| **holder == node)
            .map(|(id, _)| *id)
            .collect();
        let lost: Vec<ObjectId> = held
            .into_iter()
            .filter(|id| self.relocate(*id, node))
            .collect();
        if !lost.is_empty() {
            let why = format!("the node {node} that held it was lost ({why})");
            self.rebuild_lost(lost, &why);
        }
    }

    /// Result `id` of ours is no longer on `gone`, the node that held it:
    /// our own copy or another node's serves from now on. Returns whether
    /// none is left (it is to be made again).
    pub(super) fn relocate(&mut self, id: ObjectId, gone: NodeId) -> bool {
        self.remote.borrowed.remove(&id);
        match self.objects.get(&id).map(|e| &e.state) {
            Some(ObjState::Stored { .. }) if self.store.contains(id) => {
                self.store.set_primary(id, true);
                false
            }
            Some(ObjState::Stored { .. } | ObjState::Remote { .. }) => {
                match self.other_holder(id, gone) {
                    // A node that pulled a copy serves it from now on
                    // (should it have dropped it, the pull fails and the
                    // object is made again then).
                    Some(other) => {
                        self.remote.borrowed.insert(id, other);
                        self.objects.unlocalize(id, other);
                        false
                    }
                    None => true,
                }
            }
            _ => false,
        }
    }

    /// A live peer the object directory lists as holding a copy of `id`,
    /// other than `gone`.
    fn other_holder(&self, id: ObjectId, gone: NodeId) -> Option<NodeId> {
        self.listed_holders(id).into_iter().find(|n| *n != gone)
    }

    /// `node` died: objects it owned that we asked it for will never come.
    pub(super) fn lost_owner(&mut self, node: NodeId, why: &str) {
        let orphans: Vec<ObjectId> = self
            .remote
            .subscribed
            .iter()
            .filter(|id| self.owner_of(&id.0) == Some(node))
            .copied()
            .collect();
        for id in orphans {
            self.remote.subscribed.remove(&id);
            let why = format!("object {id} is lost: its owner, node {node}, died ({why})");
            self.set_error(id, SystemErrorKind::OwnerDiedError, &why);
        }
    }

    /// Results of ours whose every copy is gone: made again by running
    /// their tasks once more (lineage), within the tasks' retries; else
    /// they become Ray's errors for a lost object.
    pub(super) fn rebuild_lost(&mut self, lost: Vec<ObjectId>, why: &str) {
        // All pending first, so that a task run again waits for its own
        // lost arguments to be made again.
        for id in &lost {
            self.remote.pulls.forget(*id);
            for inner in self.objects.reset(*id) {
                self.release(inner);
            }
        }
        let mut tasks: Vec<TaskId> = lost.iter().map(|id| id.task()).collect();
        tasks.sort();
        tasks.dedup();
        for task_id in tasks {
            if self.tasks.contains_key(&task_id) {
                // Running again already: its results come with it.
                continue;
            }
            let (kind, what) = match self.remote.lineage.rebuild(task_id) {
                Rebuild::Run {
                    spec: (spec, job),
                    attempt,
                } => {
                    tracing::info!(task = %task_id, attempt, "making lost results again by running their task once more: {why}");
                    self.remote.rebuilt += 1;
                    self.submit(spec.as_ref().clone(), job, None, 0, attempt);
                    continue;
                }
                Rebuild::MaxAttempts => (
                    SystemErrorKind::ObjectReconstructionFailedMaxAttemptsExceededError,
                    "its task's retries (max_retries) are used up",
                ),
                Rebuild::Evicted => (
                    SystemErrorKind::ObjectReconstructionFailedLineageEvictedError,
                    "its task's lineage was dropped to stay within --max-lineage-bytes",
                ),
                Rebuild::Unknown => (
                    SystemErrorKind::ObjectLostError,
                    "only results of plain tasks are made again (not of actor calls or generators)",
                ),
            };
            for id in lost.iter().filter(|id| id.task() == task_id) {
                let why = format!("object {id} was lost: {why}; {what}");
                self.set_error(*id, kind, &why);
            }
        }
    }

    /// Entries of objects owned elsewhere were freed here: tell their
    /// owners, which may hold them on our behalf.
    pub(super) fn freed_here(&mut self, ids: &[ObjectId]) {
        let mut by_owner: HashMap<NodeId, Vec<ObjectId>> = HashMap::new();
        for id in ids {
            if let Some(owner) = self.owner_of(&id.0).filter(|o| *o != self.node_id) {
                by_owner.entry(owner).or_default().push(*id);
            }
        }
        for (owner, ids) in by_owner {
            if self.remote.peers.contains_key(&owner) {
                self.send_peer(owner, PeerMsg::Free { ids });
            }
        }
    }

    /// Asks the owner of a pending object for its value, once.
    pub(super) fn want(&mut self, id: ObjectId) {
        self.ask_owner(id, None);
    }

    /// Asks the owner of a pending object for its value, once; `failed` is
    /// a holder it named that could not serve it.
    pub(super) fn ask_owner(&mut self, id: ObjectId, failed: Option<NodeId>) {
        if self.objects.get(&id).is_none_or(|e| e.is_ready())
            || self.remote.subscribed.contains(&id)
            || self.remote.pulls.contains(id)
        {
            return;
        }
        let Some(owner) = self.owner_of(&id.0) else {
            return;
        };
        if owner == self.node_id {
            return;
        }
        if self.remote.lost.contains(&owner) {
            let why = format!("object {id} is lost: its owner, node {owner}, died");
            return self.set_error(id, SystemErrorKind::OwnerDiedError, &why);
        }
        self.remote.subscribed.insert(id);
        if !self.send_peer(owner, PeerMsg::Subscribe { id, failed }) {
            self.remote.subscribed.remove(&id);
            let why = format!("object {id} is lost: its owner {owner} cannot be reached");
            self.set_error(id, SystemErrorKind::OwnerDiedError, &why);
        }
    }

    pub(super) fn on_subscribe(&mut self, from: NodeId, id: ObjectId, failed: Option<NodeId>) {
        if let Some(bad) = failed.filter(|bad| self.remote.borrowed.get(&id) == Some(bad)) {
            // The holder we named could not serve it: another copy serves,
            // or it is made again (the asker hears of it then).
            self.send_peer(bad, PeerMsg::Free { ids: vec![id] });
            if self.relocate(id, bad) {
                let why = format!("its holder {bad} could not serve it to {from}");
                self.rebuild_lost(vec![id], &why);
            }
        }
        let ready = self.objects.get(&id).map(|e| e.is_ready());
        match ready {
            Some(true) => {
                if let Some(value) = self.wire_value(id) {
                    let nested = self.nested_of(id);
                    self.send_peer(from, PeerMsg::Value { id, value, nested });
                }
            }
            Some(false) => {
                self.objects.add_ref(id);
                self.remote.subscribers.entry(id).or_default().push(from);
            }
            None => {
                let bytes = crate::values::system_error(
                    SystemErrorKind::ObjectLostError,
                    &format!(
                        "object {id} is no longer held by its owner {}",
                        self.node_id
                    ),
                );
                let value = WireValue::Inline { bytes, error: true };
                self.send_peer(
                    from,
                    PeerMsg::Value {
                        id,
                        value,
                        nested: Vec::new(),
                    },
                );
            }
        }
    }

    /// The refs nested in object `id`'s value (none if it is unknown).
    fn nested_of(&self, id: ObjectId) -> Vec<ObjectId> {
        self.objects
            .get(&id)
            .map(|e| e.nested.clone())
            .unwrap_or_default()
    }

    /// An object we own became ready: tell the peers that asked for it.
    pub(super) fn answer_subscribers(&mut self, id: ObjectId) {
        let Some(peers) = self.remote.subscribers.remove(&id) else {
            return;
        };
        if let Some(value) = self.wire_value(id) {
            let nested = self.nested_of(id);
            for peer in &peers {
                let msg = PeerMsg::Value {
                    id,
                    value: value.clone(),
                    nested: nested.clone(),
                };
                self.send_peer(*peer, msg);
            }
        }
        for _ in peers {
            self.release(id);
        }
    }

    /// A value from another node: set it, pulling it first if it is stored
    /// there. A result lent by the node that ran our task (`lent`: that
    /// node and the task) is freed there once we have our copy.
    pub(super) fn receive_value(
        &mut self,
        id: ObjectId,
        value: WireValue,
        nested: Vec<ObjectId>,
        lent: Option<(NodeId, TaskId)>,
    ) {
        self.remote.subscribed.remove(&id);
        if self.objects.get(&id).is_none_or(|e| e.is_ready()) {
            if let (Some((lender, _)), WireValue::Stored { .. }) = (lent, &value) {
                self.send_peer(lender, PeerMsg::Free { ids: vec![id] });
            }
            return;
        }
        match value {
            WireValue::Inline { bytes, error } => {
                let state = ObjState::Inline {
                    bytes: Arc::new(bytes),
                    error,
                };
                self.set_value(id, state, nested);
            }
            WireValue::Stored { holder, size } if holder == self.node_id => {
                match self.store.resident_path(id) {
                    Some(_) => self.set_value(id, ObjState::Stored { size }, nested),
                    None => self.set_lost(id, "this node no longer holds it"),
                }
            }
            WireValue::Stored { holder, size } => {
                if self.remote.pulls.contains(id) {
                    return;
                }
                if let Some(entry) = self.objects.get_mut(&id) {
                    entry.nested = nested;
                }
                // A copy of an object another node holds is secondary here
                // (evicted first); an item its maker frees is the one copy.
                let primary = lent.is_some();
                self.queue_pull(id, holder, size, primary, primary);
            }
        }
    }
}

/// What keeping a task's spec for lineage costs, in bytes: its inline
/// arguments and name, plus a fixed part for the rest.
fn lineage_cost(spec: &TaskSpec) -> usize {
    let inline: usize = spec
        .args
        .iter()
        .map(|a| match a {
            raynode_proto::Arg::Value(bytes) => bytes.len(),
            raynode_proto::Arg::Ref(_) => 20,
        })
        .sum();
    512 + spec.name.len() + inline + 20 * spec.nested_refs.len()
}
