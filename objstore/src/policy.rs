//! The eviction policy: a state machine with no I/O.
//!
//! It tracks each object's size, residence (being written, resident in
//! memory, spilled to disk), pin count and whether it is a primary copy, and
//! the bytes held by recycled files. Asked for room, it answers with the
//! steps to take, cheapest first: give back recycled files, evict the least
//! recently used unpinned secondary copies, spill the least recently used
//! unpinned primary copies. The store carries the steps out and reports each
//! one back. Invariants (checked by [`Policy::check`] in tests):
//! `used + recycled <= capacity`; `used` is the sum of the sizes of objects
//! in memory; a pinned or unsealed object is never a victim.

use std::collections::{BTreeMap, HashMap};

/// The store's internal number for one incarnation of an object.
pub(crate) type Id = u64;

/// Where an object's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Residence {
    /// Created, not yet sealed: in memory, never a victim.
    Writing,
    /// Sealed and in memory.
    Resident,
    /// Sealed and on disk only.
    Spilled,
}

/// One step to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Drop recycled files holding at least this many bytes.
    ShrinkRecycled(u64),
    /// Drop this unpinned secondary copy.
    Evict(Id),
    /// Write this unpinned primary copy to disk and drop it from memory.
    Spill(Id),
}

/// Why room cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoRoom {
    /// Larger than the whole store.
    TooLarge { requested: u64, capacity: u64 },
    /// Everything that could go is not enough.
    Full {
        requested: u64,
        capacity: u64,
        used: u64,
        pinned: u64,
    },
}

/// What `remove` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Gone; its bytes (if it was in memory) are free.
    Freed(Residence),
    /// Pinned: hidden now, freed when the last pin goes.
    Deferred,
    /// No such object.
    Missing,
}

#[derive(Clone, Debug)]
struct Entry {
    size: u64,
    residence: Residence,
    pins: u32,
    primary: bool,
    doomed: bool,
    tick: u64,
}

impl Entry {
    fn victim_class(&self) -> Option<bool> {
        (self.residence == Residence::Resident && self.pins == 0 && !self.doomed)
            .then_some(self.primary)
    }
}

/// The eviction state machine.
#[derive(Debug)]
pub(crate) struct Policy {
    capacity: u64,
    used: u64,
    recycled: u64,
    clock: u64,
    entries: HashMap<Id, Entry>,
    /// Unpinned resident secondary copies, least recently used first.
    evictable: BTreeMap<u64, Id>,
    /// Unpinned resident primary copies, least recently used first.
    spillable: BTreeMap<u64, Id>,
}

impl Policy {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            capacity,
            used: 0,
            recycled: 0,
            clock: 0,
            entries: HashMap::new(),
            evictable: BTreeMap::new(),
            spillable: BTreeMap::new(),
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes of objects in memory (written, resident, or deleted but pinned).
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    pub(crate) fn recycled(&self) -> u64 {
        self.recycled
    }

    pub(crate) fn residence(&self, id: Id) -> Option<Residence> {
        self.entries.get(&id).map(|e| e.residence)
    }

    pub(crate) fn size(&self, id: Id) -> Option<u64> {
        self.entries.get(&id).map(|e| e.size)
    }

    #[cfg(test)]
    pub(crate) fn pins(&self, id: Id) -> u32 {
        self.entries.get(&id).map_or(0, |e| e.pins)
    }

    /// Bytes that cannot be freed now: unsealed, pinned or doomed objects.
    pub(crate) fn pinned_bytes(&self) -> u64 {
        self.entries
            .values()
            .filter(|e| {
                e.residence == Residence::Writing
                    || (e.residence == Residence::Resident && (e.pins > 0 || e.doomed))
            })
            .map(|e| e.size)
            .sum()
    }

    /// (count, bytes) of spilled objects.
    pub(crate) fn spilled(&self) -> (usize, u64) {
        self.entries
            .values()
            .filter(|e| e.residence == Residence::Spilled)
            .fold((0, 0), |(n, b), e| (n + 1, b + e.size))
    }

    /// Number of objects tracked (any residence, doomed included).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn detach(&mut self, id: Id) {
        if let Some(e) = self.entries.get(&id) {
            match e.victim_class() {
                Some(false) => self.evictable.remove(&e.tick),
                Some(true) => self.spillable.remove(&e.tick),
                None => None,
            };
        }
    }

    fn attach(&mut self, id: Id, touch: bool) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(e) = self.entries.get_mut(&id) {
            if touch {
                e.tick = clock;
            }
            match e.victim_class() {
                Some(false) => self.evictable.insert(e.tick, id),
                Some(true) => self.spillable.insert(e.tick, id),
                None => None,
            };
        }
    }

    /// The steps that free room for `size` more bytes, without taking them.
    pub(crate) fn make_room(&self, size: u64) -> Result<Vec<Step>, NoRoom> {
        if size > self.capacity {
            return Err(NoRoom::TooLarge {
                requested: size,
                capacity: self.capacity,
            });
        }
        let free = self.capacity - self.used - self.recycled;
        let mut needed = size.saturating_sub(free);
        let mut steps = Vec::new();
        if needed > 0 && self.recycled > 0 {
            let take = needed.min(self.recycled);
            steps.push(Step::ShrinkRecycled(take));
            needed -= take;
        }
        let victims = self
            .evictable
            .values()
            .map(|&id| Step::Evict(id))
            .chain(self.spillable.values().map(|&id| Step::Spill(id)));
        for step in victims {
            if needed == 0 {
                break;
            }
            let (Step::Evict(id) | Step::Spill(id)) = step else {
                continue;
            };
            needed = needed.saturating_sub(self.entries.get(&id).map_or(0, |e| e.size));
            steps.push(step);
        }
        if needed > 0 {
            return Err(NoRoom::Full {
                requested: size,
                capacity: self.capacity,
                used: self.used + self.recycled,
                pinned: self.pinned_bytes(),
            });
        }
        Ok(steps)
    }

    /// Whether `size` more bytes fit now.
    pub(crate) fn fits(&self, size: u64) -> bool {
        self.used + self.recycled + size <= self.capacity
    }

    /// Records a new unsealed object; the caller made room first.
    pub(crate) fn insert(&mut self, id: Id, size: u64, primary: bool) {
        debug_assert!(self.fits(size), "insert without room");
        self.entries.insert(
            id,
            Entry {
                size,
                residence: Residence::Writing,
                pins: 0,
                primary,
                doomed: false,
                tick: 0,
            },
        );
        self.used += size;
    }

    /// Records the seal; the object becomes a victim candidate if unpinned.
    pub(crate) fn seal(&mut self, id: Id) -> bool {
        match self.entries.get_mut(&id) {
            Some(e) if e.residence == Residence::Writing => {
                e.residence = Residence::Resident;
                self.attach(id, true);
                true
            }
            _ => false,
        }
    }

    /// Pins a resident object (a reader holds it) and marks it recently used.
    pub(crate) fn pin(&mut self, id: Id) -> bool {
        match self.entries.get(&id) {
            Some(e) if e.residence == Residence::Resident && !e.doomed => {}
            _ => return false,
        }
        self.detach(id);
        if let Some(e) = self.entries.get_mut(&id) {
            e.pins += 1;
        }
        self.attach(id, true);
        true
    }

    /// Drops one pin. Returns the freed residence if this was the last pin
    /// of a deleted object (the caller frees its memory).
    pub(crate) fn unpin(&mut self, id: Id) -> Option<Residence> {
        let e = self.entries.get_mut(&id)?;
        e.pins = e.pins.saturating_sub(1);
        if e.pins == 0 && e.doomed {
            let residence = e.residence;
            let size = e.size;
            self.entries.remove(&id);
            self.used -= size;
            return Some(residence);
        }
        self.attach(id, false);
        None
    }

    /// Marks or unmarks a primary copy (a primary copy is spilled, not
    /// evicted).
    pub(crate) fn set_primary(&mut self, id: Id, primary: bool) -> bool {
        if !self.entries.contains_key(&id) {
            return false;
        }
        self.detach(id);
        if let Some(e) = self.entries.get_mut(&id) {
            e.primary = primary;
        }
        self.attach(id, false);
        true
    }

    /// Records that a victim was evicted (it is gone).
    pub(crate) fn evicted(&mut self, id: Id) {
        self.detach(id);
        if let Some(e) = self.entries.remove(&id) {
            debug_assert!(e.victim_class() == Some(false), "evicted a non-victim");
            self.used -= e.size;
        }
    }

    /// Records that a victim was spilled (its memory is free).
    pub(crate) fn spilled_one(&mut self, id: Id) {
        self.detach(id);
        if let Some(e) = self.entries.get_mut(&id) {
            debug_assert!(e.victim_class() == Some(true), "spilled a non-victim");
            e.residence = Residence::Spilled;
            self.used -= e.size;
        }
    }

    /// Records that a spilled object is back in memory; the caller made room.
    pub(crate) fn restored(&mut self, id: Id) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.residence != Residence::Spilled {
            return;
        }
        e.residence = Residence::Resident;
        let size = e.size;
        debug_assert!(self.used + self.recycled + size <= self.capacity);
        self.used += size;
        self.attach(id, true);
    }

    /// Forgets an object (delete or abort).
    pub(crate) fn remove(&mut self, id: Id) -> Removal {
        let Some(e) = self.entries.get(&id) else {
            return Removal::Missing;
        };
        if e.residence == Residence::Resident && e.pins > 0 {
            self.detach(id);
            if let Some(e) = self.entries.get_mut(&id) {
                e.doomed = true;
            }
            return Removal::Deferred;
        }
        self.detach(id);
        let Some(e) = self.entries.remove(&id) else {
            return Removal::Missing;
        };
        if e.residence != Residence::Spilled {
            self.used -= e.size;
        }
        Removal::Freed(e.residence)
    }

    /// Sets the bytes held by recycled files.
    pub(crate) fn set_recycled(&mut self, bytes: u64) {
        self.recycled = bytes;
    }

    /// Checks every invariant; for tests.
    #[cfg(test)]
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.used + self.recycled > self.capacity {
            return Err(format!(
                "used {} + recycled {} > capacity {}",
                self.used, self.recycled, self.capacity
            ));
        }
        let in_memory: u64 = self
            .entries
            .values()
            .filter(|e| e.residence != Residence::Spilled)
            .map(|e| e.size)
            .sum();
        if in_memory != self.used {
            return Err(format!("used {} != sum {}", self.used, in_memory));
        }
        let want_evict = self
            .entries
            .values()
            .filter(|e| e.victim_class() == Some(false))
            .count();
        let want_spill = self
            .entries
            .values()
            .filter(|e| e.victim_class() == Some(true))
            .count();
        if want_evict != self.evictable.len() || want_spill != self.spillable.len() {
            return Err("victim indexes out of step".into());
        }
        for (tick, id) in self.evictable.iter().chain(&self.spillable) {
            match self.entries.get(id) {
                Some(e) if e.tick == *tick && e.victim_class().is_some() => {}
                _ => return Err(format!("stale victim index entry {id}")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "policy_test.rs"]
mod tests;
