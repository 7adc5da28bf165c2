//! Lineage: how to make again the results of ours that live on other nodes.
//!
//! A task's stored results stay on the node that made them. If that node
//! dies, its owner makes them again by running the task once more. So the
//! owner keeps, per task with such results, the task's spec and a hold on
//! its arguments (which may themselves have to be made again first), until
//! the last of those results is freed.
//!
//! The table is bounded by the bytes of the specs it keeps. Past the bound
//! the oldest tasks lose their spec and their holds: their results can no
//! longer be rebuilt, and the owner says so if they are lost
//! ([`Rebuild::Evicted`]). A stub of a few bytes per such task remains
//! until its results are freed, so the error is the right one.
//!
//! Pure: the owner adds and drops the references this table asks it to
//! (the `hold` and `release` lists it returns), and runs what
//! [`Lineage::rebuild`] says.

use raynode_proto::{ObjectId, TaskId};
use std::collections::{HashMap, HashSet, VecDeque};

/// Default bound on the bytes of specs kept (`--max-lineage-bytes`).
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

/// What a rebuild of the results of a task is to do.
#[derive(Debug, PartialEq)]
pub enum Rebuild<S> {
    /// Run the task again, as attempt `attempt`.
    Run { spec: S, attempt: u32 },
    /// Its retries are used up.
    MaxAttempts,
    /// Its spec was dropped to stay within the bound.
    Evicted,
    /// Nothing is known of it: its results were never ours to rebuild.
    Unknown,
}

struct Entry<S> {
    /// `None` once evicted.
    spec: Option<S>,
    /// Return indices still alive that may need rebuilding.
    live: HashSet<u32>,
    /// References held on the task's arguments while the spec is kept.
    args: Vec<ObjectId>,
    attempt: u32,
    max_retries: i32,
    cost: usize,
}

/// What a [`Lineage::record`] asks of the owner.
#[derive(Debug, Default, PartialEq)]
pub struct Recorded {
    /// References to add (the task's arguments, now held by the table).
    pub hold: Vec<ObjectId>,
    /// References to drop (arguments of tasks evicted to make room).
    pub release: Vec<ObjectId>,
}

pub struct Lineage<S> {
    entries: HashMap<TaskId, Entry<S>>,
    /// Tasks with a spec, oldest first (ids of evicted or gone tasks are
    /// skipped when met).
    order: VecDeque<TaskId>,
    bytes: usize,
    max_bytes: usize,
    /// Tasks evicted since the start, for the state API and metrics.
    pub evicted: u64,
}

impl<S: Clone> Default for Lineage<S> {
    fn default() -> Self {
        Lineage::new(DEFAULT_MAX_BYTES)
    }
}

impl<S: Clone> Lineage<S> {
    pub fn new(max_bytes: usize) -> Lineage<S> {
        Lineage {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_bytes,
            evicted: 0,
        }
    }

    /// Bytes of the specs kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Tasks known (with a spec or evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, task: TaskId) -> bool {
        self.entries.contains_key(&task)
    }

    /// A run of `task` (attempt `attempt`) left result `index` on another
    /// node. The first time, the spec is kept and the arguments held.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        task: TaskId,
        spec: &S,
        cost: usize,
        args: &[ObjectId],
        max_retries: i32,
        attempt: u32,
        index: u32,
    ) -> Recorded {
        if let Some(entry) = self.entries.get_mut(&task) {
            entry.live.insert(index);
            entry.attempt = entry.attempt.max(attempt);
            return Recorded::default();
        }
        let mut entry = Entry {
            spec: Some(spec.clone()),
            live: HashSet::from([index]),
            args: args.to_vec(),
            attempt,
            max_retries,
            cost,
        };
        let mut recorded = Recorded::default();
        if cost > self.max_bytes {
            // Too big to keep at all.
            entry.spec = None;
            entry.args.clear();
            self.evicted += 1;
        } else {
            recorded.hold = args.to_vec();
            self.bytes += cost;
            self.order.push_back(task);
        }
        self.entries.insert(task, entry);
        while self.bytes > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            recorded.release.extend(self.evict(oldest));
        }
        recorded
    }

    fn evict(&mut self, task: TaskId) -> Vec<ObjectId> {
        let Some(entry) = self.entries.get_mut(&task) else {
            return Vec::new();
        };
        if entry.spec.take().is_none() {
            return Vec::new();
        }
        self.bytes -= entry.cost;
        self.evicted += 1;
        std::mem::take(&mut entry.args)
    }

    /// Result `id` was freed: it needs no rebuilding. Returns the
    /// references to drop when it was its task's last.
    pub fn freed(&mut self, id: ObjectId) -> Vec<ObjectId> {
        let task = id.task();
        let Some(entry) = self.entries.get_mut(&task) else {
            return Vec::new();
        };
        entry.live.remove(&id.index());
        if !entry.live.is_empty() {
            return Vec::new();
        }
        let Some(entry) = self.entries.remove(&task) else {
            return Vec::new();
        };
        if entry.spec.is_some() {
            self.bytes -= entry.cost;
            self.order.retain(|t| *t != task);
        }
        entry.args
    }

    /// A result of `task` was lost: whether and how to make it again. A
    /// run counts against the task's retries.
    pub fn rebuild(&mut self, task: TaskId) -> Rebuild<S> {
        let Some(entry) = self.entries.get_mut(&task) else {
            return Rebuild::Unknown;
        };
        let Some(spec) = &entry.spec else {
            return Rebuild::Evicted;
        };
        let retries_left =
            entry.max_retries < 0 || i64::from(entry.attempt) < i64::from(entry.max_retries);
        if !retries_left {
            return Rebuild::MaxAttempts;
        }
        entry.attempt += 1;
        Rebuild::Run {
            spec: spec.clone(),
            attempt: entry.attempt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn task(n: u8) -> TaskId {
        TaskId([n; 16])
    }

    fn obj(n: u8) -> ObjectId {
        ObjectId([n; 20])
    }

    #[test]
    fn a_task_is_rebuilt_within_its_retries_then_refused() {
        let mut l: Lineage<&str> = Lineage::new(1000);
        let rec = l.record(task(1), &"f", 10, &[obj(9)], 2, 0, 1);
        assert_eq!(rec.hold, vec![obj(9)]);
        assert_eq!(
            l.rebuild(task(1)),
            Rebuild::Run {
                spec: "f",
                attempt: 1
            }
        );
        // The second run's result is recorded again: nothing more is held.
        assert_eq!(
            l.record(task(1), &"f", 10, &[obj(9)], 2, 1, 1),
            Recorded::default()
        );
        assert_eq!(
            l.rebuild(task(1)),
            Rebuild::Run {
                spec: "f",
                attempt: 2
            }
        );
        assert_eq!(l.rebuild(task(1)), Rebuild::MaxAttempts);
        assert_eq!(l.rebuild(task(2)), Rebuild::Unknown);
    }

    #[test]
    fn the_last_result_freed_releases_the_arguments() {
        let mut l: Lineage<()> = Lineage::new(1000);
        l.record(task(1), &(), 10, &[obj(7), obj(8)], 3, 0, 1);
        l.record(task(1), &(), 10, &[obj(7), obj(8)], 3, 0, 2);
        let first = ObjectId::for_return(task(1), 1);
        let second = ObjectId::for_return(task(1), 2);
        assert!(l.freed(first).is_empty());
        assert_eq!(l.freed(second), vec![obj(7), obj(8)]);
        assert!(l.is_empty());
        assert_eq!(l.bytes(), 0);
    }

    #[test]
    fn the_oldest_specs_go_past_the_bound() {
        let mut l: Lineage<()> = Lineage::new(25);
        l.record(task(1), &(), 10, &[obj(1)], 3, 0, 1);
        l.record(task(2), &(), 10, &[obj(2)], 3, 0, 1);
        let rec = l.record(task(3), &(), 10, &[obj(3)], 3, 0, 1);
        assert_eq!(rec.release, vec![obj(1)]);
        assert_eq!(l.rebuild(task(1)), Rebuild::Evicted);
        assert!(matches!(l.rebuild(task(3)), Rebuild::Run { .. }));
        // The stub goes with its last result, releasing nothing twice.
        assert!(l.freed(ObjectId::for_return(task(1), 1)).is_empty());
        assert_eq!(l.len(), 2);
        // A spec larger than the bound is never kept.
        let rec = l.record(task(4), &(), 100, &[obj(4)], 3, 0, 1);
        assert_eq!(rec, Recorded::default());
        assert_eq!(l.rebuild(task(4)), Rebuild::Evicted);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Record { task: u8, index: u32, cost: usize },
        Free { task: u8, index: u32 },
        Rebuild { task: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..8, 1u32..4, 1usize..40).prop_map(|(task, index, cost)| Op::Record {
                task,
                index,
                cost
            }),
            (0u8..8, 1u32..4).prop_map(|(task, index)| Op::Free { task, index }),
            (0u8..8).prop_map(|task| Op::Rebuild { task }),
        ]
    }

    proptest! {
        /// Over any sequence: the bytes kept stay within the bound; every
        /// hold is released exactly once, by the time every result is
        /// freed; a task never runs more often than its retries allow.
        #[test]
        fn holds_balance_and_the_bound_holds(ops in prop::collection::vec(op(), 1..200)) {
            let max_bytes = 60;
            let max_retries = 2;
            let mut l: Lineage<u8> = Lineage::new(max_bytes);
            let mut held: HashMap<ObjectId, i64> = HashMap::new();
            let mut live: HashSet<ObjectId> = HashSet::new();
            let mut runs: HashMap<u8, u32> = HashMap::new();
            for op in ops {
                match op {
                    Op::Record { task: t, index, cost } => {
                        let args = [obj(100 + t), obj(200 + t)];
                        let rec = l.record(task(t), &t, cost, &args, max_retries, 0, index);
                        for a in rec.hold { *held.entry(a).or_default() += 1; }
                        for a in rec.release { *held.entry(a).or_default() -= 1; }
                        live.insert(ObjectId::for_return(task(t), index));
                    }
                    Op::Free { task: t, index } => {
                        let id = ObjectId::for_return(task(t), index);
                        if live.remove(&id) {
                            for a in l.freed(id) { *held.entry(a).or_default() -= 1; }
                        }
                    }
                    Op::Rebuild { task: t } => {
                        if let Rebuild::Run { spec, attempt } = l.rebuild(task(t)) {
                            prop_assert_eq!(spec, t);
                            prop_assert!(attempt as i32 <= max_retries);
                            *runs.entry(t).or_default() += 1;
                        }
                    }
                }
                prop_assert!(l.bytes() <= max_bytes);
                prop_assert!(held.values().all(|n| *n == 0 || *n == 1));
            }
            for id in live.drain() {
                for a in l.freed(id) { *held.entry(a).or_default() -= 1; }
            }
            prop_assert!(held.values().all(|n| *n == 0), "unbalanced: {held:?}");
            prop_assert!(l.is_empty());
            prop_assert_eq!(l.bytes(), 0);
        }
    }
}
