//! The object table: every object this node owns or holds, its state,
//! its reference count, and who waits for it. Pure data, no I/O: the core
//! acts on what these methods return (ids to free, waiters to wake).

use raynode_proto::{NodeId, ObjectId, TaskId};
use std::collections::HashMap;
use std::sync::Arc;

/// A waiting `get`/`wait` request, numbered by the core.
pub type WaiterId = u64;

#[derive(Clone, Debug)]
pub enum ObjState {
    /// Not made yet (its task is queued or running, or its put is being written).
    Pending,
    /// Layout bytes held in this node's memory; `error` if the value is an error.
    Inline { bytes: Arc<Vec<u8>>, error: bool },
    /// Sealed in the shared-memory store.
    Stored { size: u64 },
    /// Sealed in another node's store (a result of ours made there): ready,
    /// but pulled here before anything here reads it.
    Remote { holder: NodeId, size: u64 },
}

#[derive(Debug)]
pub struct ObjectEntry {
    pub state: ObjState,
    /// Holders: client connections, pending tasks, containing objects.
    pub refs: u32,
    /// References inside this value, held while it lives.
    pub nested: Vec<ObjectId>,
    /// Tasks whose arguments include this object.
    pub dependents: Vec<TaskId>,
    pub waiters: Vec<WaiterId>,
}

impl ObjectEntry {
    fn pending() -> ObjectEntry {
        ObjectEntry {
            state: ObjState::Pending,
            refs: 0,
            nested: Vec::new(),
            dependents: Vec::new(),
            waiters: Vec::new(),
        }
    }

    pub fn is_ready(&self) -> bool {
        !matches!(self.state, ObjState::Pending)
    }
}

/// What became of an object whose value was just set.
pub struct Readied {
    pub dependents: Vec<TaskId>,
    pub waiters: Vec<WaiterId>,
}

#[derive(Default)]
pub struct Objects {
    table: HashMap<ObjectId, ObjectEntry>,
}

impl Objects {
    pub fn get(&self, id: &ObjectId) -> Option<&ObjectEntry> {
        self.table.get(id)
    }

    pub fn get_mut(&mut self, id: &ObjectId) -> Option<&mut ObjectEntry> {
        self.table.get_mut(id)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ObjectId, &ObjectEntry)> + '_ {
        self.table.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Adds one holder, creating a pending entry for an id not seen before.
    pub fn add_ref(&mut self, id: ObjectId) -> &mut ObjectEntry {
        let entry = self.table.entry(id).or_insert_with(ObjectEntry::pending);
        entry.refs += 1;
        entry
    }

    /// Drops one holder. Returns the ids freed as a result (this one and,
    /// transitively, the references it contained), with their last state.
    pub fn remove_ref(&mut self, id: ObjectId) -> Vec<(ObjectId, ObjState)> {
        let mut freed = Vec::new();
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            let Some(entry) = self.table.get_mut(&id) else {
                continue;
            };
            entry.refs = entry.refs.saturating_sub(1);
            if entry.refs > 0 {
                continue;
            }
            // A freed object that tasks or requests still wait on stays, pending.
            if !entry.dependents.is_empty() || !entry.waiters.is_empty() {
                continue;
            }
            if let Some(entry) = self.table.remove(&id) {
                stack.extend(entry.nested.iter().copied());
                freed.push((id, entry.state));
            }
        }
        freed
    }

    /// Sets a value. Returns `None` if nobody holds the object any more (the
    /// value is then to be discarded), else the tasks and waiters to wake.
    pub fn set_value(
        &mut self,
        id: ObjectId,
        state: ObjState,
        nested: Vec<ObjectId>,
    ) -> Option<Readied> {
        let entry = self.table.get_mut(&id)?;
        if let (ObjState::Remote { .. }, ObjState::Stored { .. }) = (&entry.state, &state) {
            // A copy of a value made elsewhere is here now: what waited
            // for it here goes on; the references inside stay as they are.
            entry.state = state;
            return Some(Readied {
                dependents: std::mem::take(&mut entry.dependents),
                waiters: std::mem::take(&mut entry.waiters),
            });
        }
        if entry.is_ready() {
            // A retried task's second result: the first one stands.
            return Some(Readied {
                dependents: Vec::new(),
                waiters: Vec::new(),
            });
        }
        entry.state = state;
        let nested_now = nested.clone();
        entry.nested = nested;
        let readied = Readied {
            dependents: std::mem::take(&mut entry.dependents),
            waiters: std::mem::take(&mut entry.waiters),
        };
        for inner in nested_now {
            self.add_ref(inner);
        }
        Some(readied)
    }

    /// Makes a ready object pending again (its value was lost and is to be
    /// made again, or replaced by an error). Returns the references that
    /// were inside the value, for the caller to drop.
    pub fn reset(&mut self, id: ObjectId) -> Vec<ObjectId> {
        match self.table.get_mut(&id) {
            Some(entry) if entry.is_ready() => {
                entry.state = ObjState::Pending;
                std::mem::take(&mut entry.nested)
            }
            _ => Vec::new(),
        }
    }

    /// Points a stored object back at the node that holds its value (the
    /// copy here is gone), or a remote one at another holder.
    pub fn unlocalize(&mut self, id: ObjectId, holder: NodeId) {
        if let Some(entry) = self.table.get_mut(&id) {
            if let ObjState::Stored { size } | ObjState::Remote { size, .. } = entry.state {
                entry.state = ObjState::Remote { holder, size };
            }
        }
    }

    /// Forgets a waiter on the given objects (it was answered or timed out).
    pub fn drop_waiter(&mut self, ids: &[ObjectId], waiter: WaiterId) -> Vec<(ObjectId, ObjState)> {
        let mut freed = Vec::new();
        for id in ids {
            let unreferenced = match self.table.get_mut(id) {
                Some(entry) => {
                    entry.waiters.retain(|w| *w != waiter);
                    entry.refs == 0 && entry.waiters.is_empty() && entry.dependents.is_empty()
                }
                None => false,
            };
            if unreferenced {
                // Re-run the release now that nothing waits on it.
                if let Some(entry) = self.table.get_mut(id) {
                    entry.refs = 1;
                }
                freed.extend(self.remove_ref(*id));
            }
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId([n; 20])
    }

    fn inline() -> ObjState {
        ObjState::Inline {
            bytes: Arc::new(vec![1]),
            error: false,
        }
    }

    #[test]
    fn last_ref_frees_the_object_and_what_it_contains() {
        let mut objects = Objects::default();
        objects.add_ref(id(1));
        objects.add_ref(id(2));
        objects.set_value(id(2), inline(), vec![]);
        objects.set_value(id(1), inline(), vec![id(2)]);
        // id(2) is held by the client and by id(1).
        assert!(objects.remove_ref(id(2)).is_empty());
        let freed: Vec<_> = objects
            .remove_ref(id(1))
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(freed, vec![id(1), id(2)]);
        assert!(objects.is_empty());
    }

    #[test]
    fn value_for_a_dropped_object_is_discarded() {
        let mut objects = Objects::default();
        assert!(objects.set_value(id(3), inline(), vec![]).is_none());
    }

    #[test]
    fn an_awaited_object_outlives_its_last_ref_until_answered() {
        let mut objects = Objects::default();
        objects.add_ref(id(4)).waiters.push(7);
        assert!(objects.remove_ref(id(4)).is_empty());
        assert!(objects.get(&id(4)).is_some());
        let freed = objects.drop_waiter(&[id(4)], 7);
        assert_eq!(freed.len(), 1);
        assert!(objects.is_empty());
    }

    #[test]
    fn a_remote_value_pulled_here_wakes_its_waiters_once() {
        let mut objects = Objects::default();
        objects.add_ref(id(6));
        objects.add_ref(id(7));
        let remote = ObjState::Remote {
            holder: NodeId([2; 16]),
            size: 9,
        };
        objects.set_value(id(6), remote, vec![id(7)]);
        if let Some(entry) = objects.get_mut(&id(6)) {
            entry.waiters.push(1);
        }
        let readied = objects.set_value(id(6), ObjState::Stored { size: 9 }, vec![]);
        assert_eq!(readied.map(|r| r.waiters), Some(vec![1]));
        let entry = objects
            .get(&id(6))
            .map(|e| (e.state.clone(), e.nested.clone()));
        assert!(matches!(entry, Some((ObjState::Stored { size: 9 }, ref n)) if n == &vec![id(7)]));
        // Lost: pending again, and what it held is handed back once.
        assert_eq!(objects.reset(id(6)), vec![id(7)]);
        assert!(objects.reset(id(6)).is_empty());
        assert!(!objects.get(&id(6)).is_some_and(|e| e.is_ready()));
    }

    #[test]
    fn first_value_wins() {
        let mut objects = Objects::default();
        objects.add_ref(id(5));
        objects.set_value(id(5), inline(), vec![]);
        objects.set_value(id(5), ObjState::Stored { size: 9 }, vec![]);
        assert!(matches!(
            objects.get(&id(5)).map(|e| &e.state),
            Some(ObjState::Inline { .. })
        ));
    }
}
