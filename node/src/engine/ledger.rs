//! The ledger: what each worker process is doing, and the resources it
//! holds for it.
//!
//! Resources leave the scheduler only with a worker: a task popped from the
//! queue is handed to an idle worker in the same step, and every way a
//! worker's work can end (the task finishes or cannot start, its actor dies,
//! the worker exits) gives back exactly what that worker held. A worker
//! blocked in `get` lends its task's resources out until it resumes. So the
//! resources handed out never exceed the totals, and they return to the
//! totals once every worker is idle; `check` states it and the property
//! tests below drive random event sequences against it.
//!
//! GPUs are also counted by index: a worker given a task or actor that asks
//! for GPUs holds those indexes (whole GPUs, or a share of one for a
//! fraction) until its work ends, and the worker is told which
//! (`CUDA_VISIBLE_DEVICES`). A placement group's bundle reserved here holds
//! its resources out of the free ones and provides resources of its own
//! (`CPU_group_0_<id>`, ...) that only tasks placed in the bundle take.

use crate::scheduler::Scheduler;
use raynode_proto::{ActorId, PlacementGroupId, Resources, TaskId, WorkerId};
use std::collections::HashMap;

const EPSILON: f64 = 1e-9;

/// A bundle of a placement group: the group and the bundle's index.
pub type BundleKey = (PlacementGroupId, u32);

/// What a bundle reserved here holds, and what it provides instead.
#[derive(Clone, Debug)]
struct Reservation {
    holds: Resources,
    provides: Resources,
}

/// How much GPU a demand asks for: `GPU`, or a bundle's GPUs.
pub fn gpu_amount(demand: &Resources) -> f64 {
    demand
        .0
        .iter()
        .filter(|(name, _)| name == "GPU" || name.starts_with("GPU_group_"))
        .map(|(_, v)| *v)
        .sum()
}

/// What a worker is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    /// Started, not connected yet.
    Starting,
    /// Connected and waiting for work.
    Idle,
    /// Running `task`, holding `demand` unless `blocked` (waiting inside
    /// `get`, its resources lent out).
    Task {
        task: TaskId,
        demand: Resources,
        blocked: bool,
    },
    /// Kept for `actor`, holding the actor's `demand`.
    Actor { actor: ActorId, demand: Resources },
    /// Told to stop; holds nothing and takes no work.
    Retiring,
}

/// Workers, their slots, and the scheduler whose resources they hold.
pub struct Ledger {
    sched: Scheduler,
    slots: HashMap<WorkerId, Slot>,
    /// Idle workers, the most recently freed last.
    idle: Vec<WorkerId>,
    /// The free share of each GPU, by index.
    gpu_free: Vec<f64>,
    /// The GPUs (index, share) each worker holds.
    gpus: HashMap<WorkerId, Vec<(u32, f64)>>,
    /// Placement-group bundles reserved on this node.
    reserved: HashMap<BundleKey, Reservation>,
}

impl Ledger {
    pub fn new(total: Resources) -> Ledger {
        let gpus = total.get("GPU").floor().max(0.0) as usize;
        Ledger {
            sched: Scheduler::new(total),
            slots: HashMap::new(),
            idle: Vec::new(),
            gpu_free: vec![1.0; gpus],
            gpus: HashMap::new(),
            reserved: HashMap::new(),
        }
    }

    /// The GPU indexes a worker holds, in order.
    pub fn gpu_ids(&self, worker: WorkerId) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .gpus
            .get(&worker)
            .map(|held| held.iter().map(|(i, _)| *i).collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// Gives `worker` GPU indexes for `amount`: that many whole GPUs, or
    /// for a fraction a share of the fullest GPU it fits on. Best effort:
    /// the amounts are already accounted; indexes only say which.
    fn take_gpus(&mut self, worker: WorkerId, amount: f64) {
        if amount <= EPSILON {
            return;
        }
        let mut held = Vec::new();
        if amount >= 1.0 - EPSILON {
            let whole = amount.round() as usize;
            for (i, free) in self.gpu_free.iter_mut().enumerate() {
                if held.len() == whole {
                    break;
                }
                if *free >= 1.0 - EPSILON {
                    *free = 0.0;
                    held.push((i as u32, 1.0));
                }
            }
        } else {
            let best = self
                .gpu_free
                .iter()
                .enumerate()
                .filter(|(_, free)| **free + EPSILON >= amount)
                .min_by(|a, b| a.1.total_cmp(b.1));
            if let Some((i, _)) = best {
                self.gpu_free[i] -= amount;
                held.push((i as u32, amount));
            }
        }
        if !held.is_empty() {
            self.gpus.insert(worker, held);
        }
    }

    fn give_gpus_back(&mut self, worker: WorkerId) {
        for (i, share) in self.gpus.remove(&worker).unwrap_or_default() {
            if let Some(free) = self.gpu_free.get_mut(i as usize) {
                *free = (*free + share).min(1.0);
            }
        }
    }

    /// Reserves a bundle here: `holds` leaves the free resources (which
    /// may dip below zero until running work ends) and `provides` becomes
    /// free for the bundle's tasks. False if it was reserved already.
    pub fn reserve(&mut self, key: BundleKey, holds: Resources, provides: Resources) -> bool {
        if self.reserved.contains_key(&key) {
            return false;
        }
        self.sched.acquire(&holds);
        self.sched.add_total(&provides);
        self.reserved.insert(key, Reservation { holds, provides });
        true
    }

    /// Frees a bundle reserved here. The workers that held its resources
    /// are retired (their work ends with the bundle); returned so that the
    /// caller stops them.
    pub fn unreserve(&mut self, key: &BundleKey) -> Vec<WorkerId> {
        let Some(r) = self.reserved.remove(key) else {
            return Vec::new();
        };
        let names: Vec<&String> = r.provides.0.iter().map(|(n, _)| n).collect();
        let holders: Vec<WorkerId> = self
            .slots
            .iter()
            .filter(|(_, slot)| match slot {
                Slot::Task { demand, .. } | Slot::Actor { demand, .. } => {
                    demand.0.iter().any(|(n, v)| *v > 0.0 && names.contains(&n))
                }
                _ => false,
            })
            .map(|(w, _)| *w)
            .collect();
        for w in &holders {
            self.retire(*w);
        }
        self.sched.remove_total(&r.provides);
        self.sched.release(&r.holds);
        holders
    }

    /// The bundles reserved here.
    pub fn reserved(&self) -> impl Iterator<Item = &BundleKey> {
        self.reserved.keys()
    }

    /// The queue of ready tasks and the free resources, to read.
    pub fn sched(&self) -> &Scheduler {
        &self.sched
    }

    /// The queue, to add, steal or remove tasks. Resources are taken and
    /// given back only through the ledger's own methods.
    pub fn queue(&mut self) -> &mut Scheduler {
        &mut self.sched
    }

    pub fn slot(&self, worker: WorkerId) -> Option<&Slot> {
        self.slots.get(&worker)
    }

    pub fn is_blocked(&self, worker: WorkerId) -> bool {
        matches!(
            self.slots.get(&worker),
            Some(Slot::Task { blocked: true, .. })
        )
    }

    /// Idle workers, the longest idle first.
    pub fn idle(&self) -> &[WorkerId] {
        &self.idle
    }

    /// Workers that are starting.
    pub fn starting(&self) -> usize {
        self.slots
            .values()
            .filter(|s| **s == Slot::Starting)
            .count()
    }

    /// Workers running a task or kept for an actor.
    pub fn busy(&self) -> usize {
        self.slots
            .values()
            .filter(|s| matches!(s, Slot::Task { .. } | Slot::Actor { .. }))
            .count()
    }

    /// Workers that are not kept for an actor (nor retiring).
    pub fn pooled(&self) -> usize {
        self.slots
            .values()
            .filter(|s| matches!(s, Slot::Starting | Slot::Idle | Slot::Task { .. }))
            .count()
    }

    pub fn add_worker(&mut self, worker: WorkerId) {
        self.slots.insert(worker, Slot::Starting);
    }

    /// A starting worker connected: it takes work from now on.
    pub fn worker_ready(&mut self, worker: WorkerId) {
        if let Some(slot @ Slot::Starting) = self.slots.get_mut(&worker) {
            *slot = Slot::Idle;
            self.idle.push(worker);
        }
    }

    /// The next queued task that fits the free resources, given to an idle
    /// worker with its resources: `(task, worker, demand)`.
    pub fn dispatch_next(&mut self) -> Option<(TaskId, WorkerId, Resources)> {
        if self.idle.is_empty() {
            return None;
        }
        let (task, demand) = self.sched.pop_fitting()?;
        let worker = self.idle.pop()?;
        self.take_gpus(worker, gpu_amount(&demand));
        let slot = Slot::Task {
            task,
            demand: demand.clone(),
            blocked: false,
        };
        self.slots.insert(worker, slot);
        Some((task, worker, demand))
    }

    /// The task's worker becomes its actor's for the actor's life, keeping
    /// the resources. False if the worker does not run `task`.
    pub fn keep_for_actor(&mut self, worker: WorkerId, task: TaskId, actor: ActorId) -> bool {
        let Some(Slot::Task {
            task: running,
            demand,
            blocked,
        }) = self.slots.get(&worker).cloned()
        else {
            return false;
        };
        if running != task {
            return false;
        }
        if blocked {
            self.sched.acquire(&demand);
        }
        self.slots.insert(worker, Slot::Actor { actor, demand });
        true
    }

    /// The worker's task ended (or could not start): what it held goes
    /// back and the worker is idle again. Returns the task it ran.
    pub fn task_ended(&mut self, worker: WorkerId) -> Option<TaskId> {
        let Some(Slot::Task {
            task,
            demand,
            blocked,
        }) = self.slots.get(&worker).cloned()
        else {
            return None;
        };
        if !blocked {
            self.sched.release(&demand);
        }
        self.give_gpus_back(worker);
        self.slots.insert(worker, Slot::Idle);
        self.idle.push(worker);
        Some(task)
    }

    /// The worker waits inside `get`: its task's resources are lent out.
    /// Returns whether it was running a task and was not blocked already.
    pub fn block(&mut self, worker: WorkerId) -> bool {
        match self.slots.get_mut(&worker) {
            Some(Slot::Task {
                demand, blocked, ..
            }) if !*blocked => {
                *blocked = true;
                self.sched.release(demand);
                true
            }
            _ => false,
        }
    }

    /// The worker's wait is over: its task holds its resources again (the
    /// free count may dip below zero until others finish).
    pub fn unblock(&mut self, worker: WorkerId) {
        if let Some(Slot::Task {
            demand, blocked, ..
        }) = self.slots.get_mut(&worker)
        {
            if *blocked {
                *blocked = false;
                self.sched.acquire(demand);
            }
        }
    }

    /// The worker is being stopped: what it held goes back; it takes no
    /// more work. Returns the slot it had.
    pub fn retire(&mut self, worker: WorkerId) -> Option<Slot> {
        let previous = self.slots.get(&worker).cloned()?;
        self.give_back(&previous);
        self.give_gpus_back(worker);
        self.idle.retain(|w| *w != worker);
        self.slots.insert(worker, Slot::Retiring);
        Some(previous)
    }

    /// The worker is gone: what it held goes back. Returns the slot it had.
    pub fn remove_worker(&mut self, worker: WorkerId) -> Option<Slot> {
        let previous = self.slots.remove(&worker)?;
        self.give_back(&previous);
        self.give_gpus_back(worker);
        self.idle.retain(|w| *w != worker);
        Some(previous)
    }

    fn give_back(&mut self, slot: &Slot) {
        match slot {
            Slot::Task {
                demand,
                blocked: false,
                ..
            }
            | Slot::Actor { demand, .. } => self.sched.release(demand),
            _ => {}
        }
    }

    /// The books balance: free resources plus what workers and reserved
    /// bundles hold equal the totals, the idle list is exactly the idle
    /// workers, and no GPU is shared beyond its whole.
    pub fn check(&self) -> Result<(), String> {
        let total = self.sched.total();
        let available = self.sched.available();
        let mut names: Vec<&String> = total.0.iter().map(|(n, _)| n).collect();
        names.extend(available.0.iter().map(|(n, _)| n));
        for name in names {
            let held: f64 = self
                .slots
                .values()
                .map(|slot| match slot {
                    Slot::Task {
                        demand,
                        blocked: false,
                        ..
                    }
                    | Slot::Actor { demand, .. } => demand.get(name),
                    _ => 0.0,
                })
                .sum::<f64>()
                + self
                    .reserved
                    .values()
                    .map(|r| r.holds.get(name))
                    .sum::<f64>();
            let sum = available.get(name) + held;
            if (sum - total.get(name)).abs() > 1e-6 {
                return Err(format!(
                    "{name}: {} free + {held} held != {} total",
                    available.get(name),
                    total.get(name)
                ));
            }
        }
        let mut idle: Vec<WorkerId> = self.idle.clone();
        idle.sort();
        let mut want: Vec<WorkerId> = self
            .slots
            .iter()
            .filter(|(_, s)| **s == Slot::Idle)
            .map(|(w, _)| *w)
            .collect();
        want.sort();
        if idle != want {
            return Err(format!("idle list {idle:?} != idle workers {want:?}"));
        }
        for (i, free) in self.gpu_free.iter().enumerate() {
            let held: f64 = self
                .gpus
                .values()
                .flatten()
                .filter(|(g, _)| *g as usize == i)
                .map(|(_, share)| share)
                .sum();
            if *free < -EPSILON || (free + held - 1.0).abs() > 1e-6 {
                return Err(format!("GPU {i}: {free} free + {held} held != 1"));
            }
        }
        if let Some(w) = self.gpus.keys().find(|w| {
            !matches!(
                self.slots.get(w),
                Some(Slot::Task { .. } | Slot::Actor { .. })
            )
        }) {
            return Err(format!("{w} holds GPUs but no work"));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "ledger_test.rs"]
mod ledger_test;
