//! The task table a node keeps of the tasks it owns or runs: each attempt
//! of a task or actor call, the states it went through with their times,
//! where it ran and how it ended. Bounded: past [`TaskTable::capacity`]
//! attempts, the oldest one recorded is dropped, whatever its state.
//!
//! The owner's node and the node that runs a task each keep their own
//! rows; a cluster-wide query merges them ([`merge`]): the owner knows
//! when the task was submitted and where it was sent, the runner which
//! worker ran it.

use raynode_proto::{ActorId, NodeId, TaskId};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Attempts a node keeps by default (each a few hundred bytes).
pub const DEFAULT_CAPACITY: usize = 10_000;

/// State changes kept per attempt; later ones replace the last kept.
const MAX_EVENTS: usize = 8;

/// Ray's task states, in the order a task goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskStatus {
    /// Waiting for its arguments.
    PendingArgsAvail,
    /// Ready, waiting for a node and a worker with room.
    PendingNodeAssignment,
    /// Sent to the node (another one) that runs it.
    SubmittedToWorker,
    Running,
    Finished,
    Failed,
}

impl TaskStatus {
    pub fn name(self) -> &'static str {
        match self {
            TaskStatus::PendingArgsAvail => "PENDING_ARGS_AVAIL",
            TaskStatus::PendingNodeAssignment => "PENDING_NODE_ASSIGNMENT",
            TaskStatus::SubmittedToWorker => "SUBMITTED_TO_WORKER",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Finished => "FINISHED",
            TaskStatus::Failed => "FAILED",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Finished | TaskStatus::Failed)
    }
}

/// Ray's task types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskType {
    Normal,
    ActorCreation,
    ActorTask,
}

impl TaskType {
    pub fn name(self) -> &'static str {
        match self {
            TaskType::Normal => "NORMAL_TASK",
            TaskType::ActorCreation => "ACTOR_CREATION_TASK",
            TaskType::ActorTask => "ACTOR_TASK",
        }
    }
}

/// What a new row says of its task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskFacts {
    pub name: String,
    pub kind: TaskType,
    pub job: String,
    pub actor: Option<ActorId>,
}

/// One attempt of a task as one node saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    pub task: TaskId,
    pub attempt: u32,
    pub facts: TaskFacts,
    pub status: TaskStatus,
    /// Where it runs: this node, or the node it was sent to.
    pub node: Option<NodeId>,
    pub worker_pid: Option<u32>,
    /// Ray's error type (`TASK_EXECUTION_EXCEPTION`, `WORKER_DIED`, ...) and message.
    pub error: Option<(String, String)>,
    /// State changes, oldest first, each with its time (ms since the epoch).
    pub events: Vec<(TaskStatus, u64)>,
}

impl TaskRow {
    pub fn created_ms(&self) -> u64 {
        self.events.first().map_or(0, |e| e.1)
    }

    /// When it started running, if it did.
    pub fn start_ms(&self) -> Option<u64> {
        self.time_of(TaskStatus::Running)
    }

    pub fn end_ms(&self) -> Option<u64> {
        self.status
            .is_final()
            .then(|| self.events.last().map(|e| e.1))?
    }

    fn time_of(&self, status: TaskStatus) -> Option<u64> {
        self.events.iter().find(|e| e.0 == status).map(|e| e.1)
    }

    fn push_event(&mut self, status: TaskStatus, now_ms: u64) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop();
        }
        self.events.push((status, now_ms));
    }
}

pub struct TaskTable {
    capacity: usize,
    rows: HashMap<(TaskId, u32), TaskRow>,
    /// Attempts in the order they were recorded, oldest first.
    order: VecDeque<(TaskId, u32)>,
    /// Rows dropped to stay within the capacity.
    dropped: u64,
}

impl TaskTable {
    /// A table of at most `capacity` attempts; 0 keeps none (it is off).
    pub fn new(capacity: usize) -> TaskTable {
        TaskTable {
            capacity,
            rows: HashMap::new(),
            order: VecDeque::new(),
            dropped: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_on(&self) -> bool {
        self.capacity > 0
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// A new attempt of a task: recorded with `status` (a known attempt
    /// keeps its row and only moves on).
    pub fn record(
        &mut self,
        task: TaskId,
        attempt: u32,
        facts: impl FnOnce() -> TaskFacts,
        status: TaskStatus,
        now_ms: u64,
    ) {
        if !self.is_on() {
            return;
        }
        if self.rows.contains_key(&(task, attempt)) {
            return self.advance(task, attempt, status, now_ms);
        }
        if self.rows.len() == self.capacity {
            while let Some(old) = self.order.pop_front() {
                if self.rows.remove(&old).is_some() {
                    self.dropped += 1;
                    break;
                }
            }
        }
        let row = TaskRow {
            task,
            attempt,
            facts: facts(),
            status,
            node: None,
            worker_pid: None,
            error: None,
            events: vec![(status, now_ms)],
        };
        self.rows.insert((task, attempt), row);
        self.order.push_back((task, attempt));
    }

    /// An attempt moved on to `status` (not a final one: see [`Self::ended`]).
    /// A final state is never left, and an attempt does not move back.
    pub fn advance(&mut self, task: TaskId, attempt: u32, status: TaskStatus, now_ms: u64) {
        let Some(row) = self.rows.get_mut(&(task, attempt)) else {
            return;
        };
        if status.is_final() || row.status.is_final() || status <= row.status {
            return;
        }
        row.status = status;
        row.push_event(status, now_ms);
    }

    /// It was sent to `node` (another node) to run.
    pub fn sent(&mut self, task: TaskId, attempt: u32, node: NodeId, now_ms: u64) {
        if let Some(row) = self.rows.get_mut(&(task, attempt)) {
            row.node = Some(node);
        }
        self.advance(task, attempt, TaskStatus::SubmittedToWorker, now_ms);
    }

    /// It started on a worker of `node` (this one).
    pub fn running(&mut self, task: TaskId, attempt: u32, node: NodeId, pid: u32, now_ms: u64) {
        if let Some(row) = self.rows.get_mut(&(task, attempt)) {
            if !row.status.is_final() {
                row.node = Some(node);
                row.worker_pid = Some(pid);
            }
        }
        self.advance(task, attempt, TaskStatus::Running, now_ms);
    }

    /// It ended: `error` is Ray's error type and message when it failed.
    /// The first error recorded for an attempt is the one kept.
    pub fn ended(
        &mut self,
        task: TaskId,
        attempt: u32,
        error: Option<(String, String)>,
        now_ms: u64,
    ) {
        let Some(row) = self.rows.get_mut(&(task, attempt)) else {
            return;
        };
        if row.status.is_final() {
            return;
        }
        let status = if error.is_some() {
            TaskStatus::Failed
        } else {
            TaskStatus::Finished
        };
        row.error = error;
        row.status = status;
        row.push_event(status, now_ms);
    }

    /// Every attempt of every task this node may still end, in no order.
    pub fn unended(&self) -> impl Iterator<Item = (TaskId, u32)> + '_ {
        self.rows
            .values()
            .filter(|r| !r.status.is_final())
            .map(|r| (r.task, r.attempt))
    }

    pub fn get(&self, task: TaskId, attempt: u32) -> Option<&TaskRow> {
        self.rows.get(&(task, attempt))
    }

    /// Rows, oldest recorded first.
    pub fn rows(&self) -> impl Iterator<Item = &TaskRow> + '_ {
        self.order.iter().filter_map(|k| self.rows.get(k))
    }
}

/// Merges the rows different nodes keep of one attempt: how it ended and
/// which worker ran it come from the node that ran it; otherwise the
/// furthest state wins; the events of both, each state once, in time order.
pub fn merge(a: TaskRow, b: TaskRow) -> TaskRow {
    // The node that ran it (it knows the worker) knows best how it ended.
    let (mut a, b) = if b.worker_pid.is_some() && a.worker_pid.is_none() {
        (b, a)
    } else {
        (a, b)
    };
    if !a.status.is_final() && b.status > a.status {
        a.status = b.status;
        a.error = b.error;
    }
    if a.node.is_none() {
        a.node = b.node;
    }
    // Each state once, at the earliest time either node saw it.
    a.events.extend(b.events);
    a.events.sort_by_key(|e| (e.0, e.1));
    a.events.dedup_by_key(|e| e.0);
    a.events.sort_by_key(|e| (e.1, e.0));
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts() -> TaskFacts {
        TaskFacts {
            name: "f".into(),
            kind: TaskType::Normal,
            job: "01000000".into(),
            actor: None,
        }
    }

    fn id(n: u8) -> TaskId {
        let mut bytes = [0u8; TaskId::LEN];
        bytes[0] = n;
        TaskId(bytes)
    }

    #[test]
    fn a_task_goes_through_its_states_and_ends_once() {
        let mut t = TaskTable::new(4);
        let node = NodeId([7; 16]);
        t.record(id(1), 0, facts, TaskStatus::PendingArgsAvail, 10);
        t.advance(id(1), 0, TaskStatus::PendingNodeAssignment, 11);
        t.running(id(1), 0, node, 42, 12);
        t.ended(id(1), 0, Some(("WORKER_DIED".into(), "gone".into())), 13);
        t.ended(id(1), 0, None, 14);
        t.advance(id(1), 0, TaskStatus::Running, 15);
        let row = t.get(id(1), 0).expect("kept");
        assert_eq!(row.status, TaskStatus::Failed);
        assert_eq!(row.worker_pid, Some(42));
        assert_eq!(row.start_ms(), Some(12));
        assert_eq!(row.end_ms(), Some(13));
        assert_eq!(
            row.error.as_ref().map(|e| e.0.as_str()),
            Some("WORKER_DIED")
        );
        assert_eq!(row.events.len(), 4);
    }

    #[test]
    fn owner_and_runner_rows_merge() {
        let runner_node = NodeId([2; 16]);
        let mut owner = TaskTable::new(4);
        owner.record(id(1), 0, facts, TaskStatus::PendingNodeAssignment, 10);
        owner.sent(id(1), 0, runner_node, 11);
        owner.ended(id(1), 0, None, 20);
        let mut runner = TaskTable::new(4);
        runner.record(id(1), 0, facts, TaskStatus::PendingNodeAssignment, 12);
        runner.running(id(1), 0, runner_node, 99, 13);
        let merged = merge(
            owner.get(id(1), 0).cloned().expect("owner row"),
            runner.get(id(1), 0).cloned().expect("runner row"),
        );
        assert_eq!(merged.status, TaskStatus::Finished);
        assert_eq!(merged.worker_pid, Some(99));
        assert_eq!(merged.node, Some(runner_node));
        let states: Vec<TaskStatus> = merged.events.iter().map(|e| e.0).collect();
        assert_eq!(
            states,
            [
                TaskStatus::PendingNodeAssignment,
                TaskStatus::SubmittedToWorker,
                TaskStatus::Running,
                TaskStatus::Finished
            ]
        );
    }

    #[derive(Clone, Debug)]
    enum Step {
        Record(u8, u8),
        Advance(u8, u8, u8),
        Running(u8, u8),
        Ended(u8, u8, bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..24, 0u8..3).prop_map(|(t, a)| Step::Record(t, a)),
            (0u8..24, 0u8..3, 0u8..6).prop_map(|(t, a, s)| Step::Advance(t, a, s)),
            (0u8..24, 0u8..3).prop_map(|(t, a)| Step::Running(t, a)),
            (0u8..24, 0u8..3, any::<bool>()).prop_map(|(t, a, f)| Step::Ended(t, a, f)),
        ]
    }

    const STATES: [TaskStatus; 6] = [
        TaskStatus::PendingArgsAvail,
        TaskStatus::PendingNodeAssignment,
        TaskStatus::SubmittedToWorker,
        TaskStatus::Running,
        TaskStatus::Finished,
        TaskStatus::Failed,
    ];

    proptest! {
        /// Over any sequence of events: the table stays within its capacity,
        /// keeps the newest attempts, states only move forward, a final
        /// state is never left, and event times never go backwards.
        #[test]
        fn the_table_is_bounded_and_states_move_forward(
            capacity in 0usize..12,
            steps in proptest::collection::vec(step(), 0..300),
        ) {
            let mut t = TaskTable::new(capacity);
            let mut recorded: Vec<(TaskId, u32)> = Vec::new();
            let node = NodeId([1; 16]);
            for (now, s) in steps.into_iter().enumerate() {
                let now = now as u64;
                let before: HashMap<(TaskId, u32), TaskStatus> =
                    t.rows().map(|r| ((r.task, r.attempt), r.status)).collect();
                match s {
                    Step::Record(task, a) => {
                        let key = (id(task), u32::from(a));
                        if !before.contains_key(&key) {
                            recorded.retain(|k| *k != key);
                            recorded.push(key);
                        }
                        t.record(key.0, key.1, facts, TaskStatus::PendingArgsAvail, now);
                    }
                    Step::Advance(task, a, s) => {
                        t.advance(id(task), u32::from(a), STATES[s as usize], now)
                    }
                    Step::Running(task, a) => t.running(id(task), u32::from(a), node, 5, now),
                    Step::Ended(task, a, failed) => {
                        let error = failed.then(|| ("E".to_string(), "m".to_string()));
                        t.ended(id(task), u32::from(a), error, now)
                    }
                }
                prop_assert!(t.len() <= capacity);
                let newest: Vec<(TaskId, u32)> =
                    recorded.iter().rev().take(capacity).copied().collect();
                for key in &newest {
                    prop_assert!(t.get(key.0, key.1).is_some(), "a newest attempt was dropped");
                }
                for row in t.rows() {
                    if let Some(old) = before.get(&(row.task, row.attempt)) {
                        prop_assert!(row.status >= *old || (old.is_final() && row.status == *old));
                        if old.is_final() {
                            prop_assert_eq!(row.status, *old);
                        }
                    }
                    prop_assert!(row.events.windows(2).all(|w| w[0].1 <= w[1].1));
                    prop_assert!(row.events.len() <= MAX_EVENTS);
                    prop_assert_eq!(row.error.is_some(), row.status == TaskStatus::Failed);
                }
            }
        }
    }
}
