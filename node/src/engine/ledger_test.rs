//! The ledger's books under random sequences of what workers and tasks do.
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use raynode_proto::{ActorId, PlacementGroupId, Resources, TaskId, WorkerId};

fn cpus(n: f64) -> Resources {
    Resources(vec![("CPU".into(), n)])
}

fn key(i: u8) -> BundleKey {
    (PlacementGroupId([i; 16]), 0)
}

/// What a bundle of one CPU and half a GPU provides.
fn provides(i: u8) -> Resources {
    Resources(vec![
        (format!("CPU_group_0_{i}"), 1.0),
        (format!("GPU_group_0_{i}"), 0.5),
    ])
}

fn task(n: u32) -> TaskId {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    TaskId(id)
}

/// Something that happens to the node's workers and tasks.
#[derive(Clone, Debug)]
enum Step {
    StartWorker,
    WorkerReady(usize),
    Submit {
        cpus: u8,
        /// In halves of a GPU.
        gpus: u8,
    },
    /// A task in bundle i (if it is reserved).
    SubmitInBundle(u8),
    Reserve(u8),
    Unreserve(u8),
    Dispatch,
    /// The running task of the i-th busy worker finishes (or cannot start).
    TaskEnds(usize),
    Block(usize),
    Unblock(usize),
    BecomeActor(usize),
    /// The i-th worker exits, whatever it was doing.
    WorkerDies(usize),
    Retire(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::StartWorker),
        (0..8usize).prop_map(Step::WorkerReady),
        (0..3u8, 0..3u8).prop_map(|(cpus, gpus)| Step::Submit { cpus, gpus }),
        (0..2u8).prop_map(Step::SubmitInBundle),
        (0..2u8).prop_map(Step::Reserve),
        (0..2u8).prop_map(Step::Unreserve),
        Just(Step::Dispatch),
        (0..8usize).prop_map(Step::TaskEnds),
        (0..8usize).prop_map(Step::Block),
        (0..8usize).prop_map(Step::Unblock),
        (0..8usize).prop_map(Step::BecomeActor),
        (0..8usize).prop_map(Step::WorkerDies),
        (0..8usize).prop_map(Step::Retire),
    ]
}

struct Run {
    ledger: Ledger,
    workers: Vec<WorkerId>,
    next_worker: u64,
    next_task: u32,
    submitted: Vec<TaskId>,
    /// Tasks that ran to an end (finished, or their worker died).
    ended: Vec<TaskId>,
    /// Tasks placed in a bundle, by bundle.
    in_bundle: Vec<(u8, TaskId)>,
}

impl Run {
    fn new(total: f64) -> Run {
        Run {
            ledger: Ledger::new(Resources(vec![("CPU".into(), total), ("GPU".into(), 2.0)])),
            workers: Vec::new(),
            next_worker: 1,
            next_task: 1,
            submitted: Vec::new(),
            ended: Vec::new(),
            in_bundle: Vec::new(),
        }
    }

    fn pick(&self, i: usize, want: impl Fn(&Slot) -> bool) -> Option<WorkerId> {
        let matching: Vec<WorkerId> = self
            .workers
            .iter()
            .copied()
            .filter(|w| self.ledger.slot(*w).is_some_and(&want))
            .collect();
        (!matching.is_empty()).then(|| matching[i % matching.len()])
    }

    fn apply(&mut self, step: &Step) {
        match *step {
            Step::StartWorker => {
                let w = WorkerId(self.next_worker);
                self.next_worker += 1;
                self.ledger.add_worker(w);
                self.workers.push(w);
            }
            Step::WorkerReady(i) => {
                if let Some(w) = self.pick(i, |s| *s == Slot::Starting) {
                    self.ledger.worker_ready(w);
                }
            }
            Step::Submit { cpus: n, gpus } => {
                let t = task(self.next_task);
                self.next_task += 1;
                let mut demand = cpus(f64::from(n));
                if gpus > 0 {
                    demand.set("GPU", f64::from(gpus) / 2.0);
                }
                let _ = self.ledger.queue().enqueue(t, &demand);
                self.submitted.push(t);
            }
            Step::SubmitInBundle(i) => {
                if self.ledger.reserved().any(|k| *k == key(i)) {
                    let t = task(self.next_task);
                    self.next_task += 1;
                    let demand = Resources(vec![
                        (format!("CPU_group_0_{i}"), 1.0),
                        (format!("GPU_group_0_{i}"), 0.5),
                    ]);
                    let _ = self.ledger.queue().enqueue(t, &demand);
                    self.submitted.push(t);
                    self.in_bundle.push((i, t));
                }
            }
            Step::Reserve(i) => {
                let holds = Resources(vec![("CPU".into(), 1.0), ("GPU".into(), 0.5)]);
                self.ledger.reserve(key(i), holds, provides(i));
            }
            Step::Unreserve(i) => {
                for w in self.ledger.unreserve(&key(i)) {
                    assert_eq!(self.ledger.slot(w), Some(&Slot::Retiring));
                }
                // What was queued in the bundle fails (the core does it).
                for (b, t) in self.in_bundle.clone() {
                    if b == i {
                        self.ledger.queue().remove(t);
                        self.ended.push(t);
                    }
                }
                self.in_bundle.retain(|(b, _)| *b != i);
            }
            Step::Dispatch => {
                let free_before = self.ledger.sched().available().get("CPU");
                if let Some((_, _, demand)) = self.ledger.dispatch_next() {
                    assert!(
                        demand.get("CPU") <= 0.0 || demand.get("CPU") <= free_before + 1e-9,
                        "dispatched {demand:?} with {free_before} free"
                    );
                }
            }
            Step::TaskEnds(i) => {
                if let Some(w) = self.pick(i, |s| matches!(s, Slot::Task { .. })) {
                    let t = self.ledger.task_ended(w).unwrap();
                    self.ended.push(t);
                }
            }
            Step::Block(i) => {
                if let Some(w) = self.pick(i, |s| matches!(s, Slot::Task { .. })) {
                    self.ledger.block(w);
                }
            }
            Step::Unblock(i) => {
                if let Some(w) = self.pick(i, |s| matches!(s, Slot::Task { .. })) {
                    self.ledger.unblock(w);
                }
            }
            Step::BecomeActor(i) => {
                if let Some(w) = self.pick(i, |s| matches!(s, Slot::Task { .. })) {
                    let Some(Slot::Task { task, .. }) = self.ledger.slot(w).cloned() else {
                        unreachable!()
                    };
                    assert!(self.ledger.keep_for_actor(w, task, ActorId([7; 16])));
                    self.ended.push(task);
                }
            }
            Step::WorkerDies(i) => {
                if let Some(w) = self.pick(i, |_| true) {
                    if let Some(Slot::Task { task, .. }) = self.ledger.remove_worker(w) {
                        self.ended.push(task);
                    }
                    self.workers.retain(|x| *x != w);
                }
            }
            Step::Retire(i) => {
                if let Some(w) = self.pick(i, |s| matches!(s, Slot::Idle | Slot::Actor { .. })) {
                    self.ledger.retire(w);
                }
            }
        }
    }

    /// Lets everything finish: workers connect, queued tasks run and end,
    /// actors' workers exit.
    fn drain(&mut self) {
        for w in self.workers.clone() {
            if let Some(Slot::Actor { .. } | Slot::Retiring) = self.ledger.slot(w) {
                self.ledger.remove_worker(w);
                self.workers.retain(|x| *x != w);
            }
        }
        for _ in 0..4 {
            self.apply(&Step::StartWorker);
        }
        for w in self.workers.clone() {
            self.ledger.worker_ready(w);
        }
        for _ in 0..10_000 {
            for w in self.workers.clone() {
                self.ledger.unblock(w);
                if let Some(t) = self.ledger.task_ended(w) {
                    self.ended.push(t);
                }
            }
            if self.ledger.dispatch_next().is_none() && self.ledger.sched().queued() == 0 {
                break;
            }
            while self.ledger.dispatch_next().is_some() {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// After every step the books balance; nothing is dispatched beyond
    /// the free resources.
    #[test]
    fn the_books_balance_after_every_step(steps in proptest::collection::vec(step(), 0..80)) {
        let mut run = Run::new(2.0);
        for s in &steps {
            run.apply(s);
            prop_assert!(run.ledger.check().is_ok(), "after {:?}: {:?}", s, run.ledger.check());
        }
    }

    /// Once the work is done and only idle workers are left, every
    /// resource is free again and every submitted task came to an end.
    #[test]
    fn idle_means_every_resource_is_back(steps in proptest::collection::vec(step(), 0..80)) {
        let mut run = Run::new(2.0);
        for s in &steps {
            run.apply(s);
        }
        for i in 0..2 {
            run.apply(&Step::Unreserve(i));
        }
        run.drain();
        prop_assert!(run.ledger.check().is_ok(), "{:?}", run.ledger.check());
        prop_assert_eq!(run.ledger.sched().available().get("CPU"), 2.0);
        prop_assert_eq!(run.ledger.sched().available().get("GPU"), 2.0);
        prop_assert!(run.ledger.sched().available().0.iter().all(|(n, _)| !n.contains("_group_")),
            "a bundle's resources leave with it");
        prop_assert_eq!(run.ledger.busy(), 0);
        let mut ended = run.ended.clone();
        ended.sort();
        ended.dedup();
        let mut submitted = run.submitted.clone();
        submitted.sort();
        prop_assert_eq!(ended, submitted, "every submitted task ends");
    }
}

#[test]
fn a_task_that_cannot_start_gives_its_worker_and_cpu_back() {
    let mut ledger = Ledger::new(cpus(2.0));
    for w in 1..=2 {
        ledger.add_worker(WorkerId(w));
        ledger.worker_ready(WorkerId(w));
    }
    for t in 1..=4 {
        ledger.queue().enqueue(task(t), &cpus(1.0)).unwrap();
    }
    for _ in 0..2 {
        // Dispatched, then refused before it ran (e.g. an unknown function).
        let (_, w, _) = ledger.dispatch_next().unwrap();
        ledger.task_ended(w).unwrap();
    }
    assert_eq!(ledger.sched().available().get("CPU"), 2.0);
    assert_eq!(ledger.idle().len(), 2);
    assert!(
        ledger.dispatch_next().is_some(),
        "the node still runs tasks"
    );
}

#[test]
fn a_blocked_worker_lends_its_cpu_and_takes_it_back() {
    let mut ledger = Ledger::new(cpus(1.0));
    for w in 1..=2 {
        ledger.add_worker(WorkerId(w));
        ledger.worker_ready(WorkerId(w));
    }
    ledger.queue().enqueue(task(1), &cpus(1.0)).unwrap();
    ledger.queue().enqueue(task(2), &cpus(1.0)).unwrap();
    let (_, outer, _) = ledger.dispatch_next().unwrap();
    assert!(ledger.dispatch_next().is_none(), "one CPU");
    assert!(ledger.block(outer));
    let (_, inner, _) = ledger.dispatch_next().unwrap();
    ledger.task_ended(inner).unwrap();
    ledger.unblock(outer);
    ledger.task_ended(outer).unwrap();
    assert_eq!(ledger.sched().available().get("CPU"), 1.0);
    ledger.check().unwrap();
}

#[test]
fn gpus_are_handed_out_by_index_and_come_back() {
    let mut ledger = Ledger::new(Resources(vec![("CPU".into(), 4.0), ("GPU".into(), 2.0)]));
    for w in 1..=4 {
        ledger.add_worker(WorkerId(w));
        ledger.worker_ready(WorkerId(w));
    }
    let gpu = |n: f64| Resources(vec![("GPU".into(), n)]);
    ledger.queue().enqueue(task(1), &gpu(1.0)).unwrap();
    ledger.queue().enqueue(task(2), &gpu(0.5)).unwrap();
    ledger.queue().enqueue(task(3), &gpu(0.5)).unwrap();
    let (_, a, _) = ledger.dispatch_next().unwrap();
    let (_, b, _) = ledger.dispatch_next().unwrap();
    let (_, c, _) = ledger.dispatch_next().unwrap();
    assert_eq!(ledger.gpu_ids(a), vec![0]);
    assert_eq!(ledger.gpu_ids(b), vec![1]);
    assert_eq!(ledger.gpu_ids(c), vec![1], "two halves share one GPU");
    ledger.check().unwrap();
    ledger.task_ended(a).unwrap();
    assert!(ledger.gpu_ids(a).is_empty());
    ledger.queue().enqueue(task(4), &gpu(1.0)).unwrap();
    let (_, d, _) = ledger.dispatch_next().unwrap();
    assert_eq!(ledger.gpu_ids(d), vec![0]);
    ledger.check().unwrap();
}

#[test]
fn a_bundle_holds_its_resources_until_it_is_freed() {
    let mut ledger = Ledger::new(cpus(2.0));
    ledger.add_worker(WorkerId(1));
    ledger.worker_ready(WorkerId(1));
    let holds = cpus(1.0);
    assert!(ledger.reserve(key(1), holds.clone(), provides(1)));
    assert!(!ledger.reserve(key(1), holds, provides(1)), "reserved once");
    assert_eq!(ledger.sched().available().get("CPU"), 1.0);
    let demand = Resources(vec![("CPU_group_0_1".into(), 1.0)]);
    ledger.queue().enqueue(task(1), &demand).unwrap();
    let (_, w, _) = ledger.dispatch_next().unwrap();
    ledger.check().unwrap();
    assert_eq!(ledger.unreserve(&key(1)), vec![w], "its task ends with it");
    assert_eq!(ledger.sched().available().get("CPU"), 2.0);
    assert!(!ledger.sched().feasible(&demand));
    ledger.check().unwrap();
}
