//! The local scheduler: resource accounting and the queue of ready tasks.
//!
//! A pure state machine with no I/O. Ready tasks wait in one FIFO per
//! resource shape, so a task that does not fit now never blocks a task of
//! another shape behind it; shapes are served round-robin. The core asks for
//! the next task that fits, and gives resources back when a task ends or its
//! worker blocks in `get`.

use raynode_proto::{Resources, TaskId};
use std::collections::{HashMap, VecDeque};

const EPSILON: f64 = 1e-9;

struct Shape {
    demand: Resources,
    queue: VecDeque<TaskId>,
    warned: bool,
}

pub struct Scheduler {
    total: Resources,
    available: HashMap<String, f64>,
    shapes: Vec<Shape>,
    cursor: usize,
}

/// A task that can never run here: no amount of waiting frees enough.
#[derive(Debug, PartialEq)]
pub struct Infeasible {
    pub demand: Resources,
}

impl Scheduler {
    pub fn new(total: Resources) -> Scheduler {
        let available = total.0.iter().cloned().collect();
        Scheduler {
            total,
            available,
            shapes: Vec::new(),
            cursor: 0,
        }
    }

    pub fn total(&self) -> &Resources {
        &self.total
    }

    pub fn available(&self) -> Resources {
        let mut out: Vec<(String, f64)> = self
            .available
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Resources(out)
    }

    pub fn feasible(&self, demand: &Resources) -> bool {
        demand
            .0
            .iter()
            .all(|(name, amount)| *amount <= self.total.get(name) + EPSILON)
    }

    pub fn fits(&self, demand: &Resources) -> bool {
        demand.0.iter().all(|(name, amount)| {
            *amount <= EPSILON
                || *amount <= self.available.get(name).copied().unwrap_or(0.0) + EPSILON
        })
    }

    pub fn acquire(&mut self, demand: &Resources) {
        for (name, amount) in &demand.0 {
            *self.available.entry(name.clone()).or_insert(0.0) -= amount;
        }
    }

    pub fn release(&mut self, demand: &Resources) {
        for (name, amount) in &demand.0 {
            *self.available.entry(name.clone()).or_insert(0.0) += amount;
        }
    }

    /// Adds resources to the node's totals (a placement group's bundle
    /// reserved here provides its own), free at once.
    pub fn add_total(&mut self, extra: &Resources) {
        for (name, amount) in &extra.0 {
            self.total.set(name, self.total.get(name) + amount);
            *self.available.entry(name.clone()).or_insert(0.0) += amount;
        }
    }

    /// Takes resources added by [`Scheduler::add_total`] away again; a
    /// name left with nothing is forgotten.
    pub fn remove_total(&mut self, extra: &Resources) {
        for (name, amount) in &extra.0 {
            let left = self.total.get(name) - amount;
            if left <= EPSILON {
                self.total.0.retain(|(n, _)| n != name);
            } else {
                self.total.set(name, left);
            }
            let free = self.available.get(name).copied().unwrap_or(0.0) - amount;
            if free.abs() <= EPSILON && left <= EPSILON {
                self.available.remove(name);
            } else {
                self.available.insert(name.clone(), free);
            }
        }
    }

    /// Queues a ready task. Returns `Err` (once per shape) if it can never
    /// fit this node; it stays queued all the same.
    pub fn enqueue(&mut self, task: TaskId, demand: &Resources) -> Result<(), Infeasible> {
        let feasible = self.feasible(demand);
        let shape = match self.shapes.iter_mut().position(|s| s.demand == *demand) {
            Some(i) => &mut self.shapes[i],
            None => {
                self.shapes.push(Shape {
                    demand: demand.clone(),
                    queue: VecDeque::new(),
                    warned: false,
                });
                let last = self.shapes.len() - 1;
                &mut self.shapes[last]
            }
        };
        shape.queue.push_back(task);
        if !feasible && !shape.warned {
            shape.warned = true;
            return Err(Infeasible {
                demand: demand.clone(),
            });
        }
        Ok(())
    }

    /// Whether some queued task fits the free resources now.
    pub fn has_fitting(&self) -> bool {
        self.shapes
            .iter()
            .any(|s| !s.queue.is_empty() && self.fits(&s.demand))
    }

    /// How many queued tasks could start at once in the free resources,
    /// counted up to `limit`: each one counted takes its demand from what
    /// is left, so ten 1-CPU tasks with two CPUs free count two (the
    /// workers worth starting for them).
    pub fn fitting_len(&self, limit: usize) -> usize {
        if self.shapes.iter().all(|s| s.queue.is_empty()) {
            return 0;
        }
        let mut left = self.available.clone();
        let fits = |left: &HashMap<String, f64>, demand: &Resources| {
            demand.0.iter().all(|(name, amount)| {
                *amount <= EPSILON || *amount <= left.get(name).copied().unwrap_or(0.0) + EPSILON
            })
        };
        let mut n = 0;
        for shape in &self.shapes {
            for _ in 0..shape.queue.len() {
                if n >= limit || !fits(&left, &shape.demand) {
                    break;
                }
                for (name, amount) in &shape.demand.0 {
                    *left.entry(name.clone()).or_insert(0.0) -= amount;
                }
                n += 1;
            }
        }
        n
    }

    /// Takes the next task that fits and acquires its resources.
    pub fn pop_fitting(&mut self) -> Option<(TaskId, Resources)> {
        let n = self.shapes.len();
        for step in 0..n {
            let i = (self.cursor + step) % n;
            if self.shapes[i].queue.is_empty() || !self.fits(&self.shapes[i].demand) {
                continue;
            }
            let Some(task) = self.shapes[i].queue.pop_front() else {
                continue;
            };
            let demand = self.shapes[i].demand.clone();
            self.acquire(&demand);
            self.cursor = (i + 1) % n;
            return Some((task, demand));
        }
        None
    }

    /// Takes the most recently queued task that `take` accepts, without
    /// acquiring anything: it is to run elsewhere.
    pub fn steal(&mut self, mut take: impl FnMut(TaskId, &Resources) -> bool) -> Option<TaskId> {
        for shape in &mut self.shapes {
            let found = shape.queue.iter().rposition(|t| take(*t, &shape.demand));
            if let Some(pos) = found {
                return shape.queue.remove(pos);
            }
        }
        None
    }

    /// Removes a queued task (cancelled). Returns whether it was queued.
    pub fn remove(&mut self, task: TaskId) -> bool {
        for shape in &mut self.shapes {
            if let Some(pos) = shape.queue.iter().position(|t| *t == task) {
                shape.queue.remove(pos);
                return true;
            }
        }
        false
    }

    pub fn queued(&self) -> usize {
        self.shapes.iter().map(|s| s.queue.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cpu(n: f64) -> Resources {
        Resources(vec![("CPU".into(), n)])
    }

    fn task(n: u8) -> TaskId {
        TaskId([n; 16])
    }

    #[test]
    fn tasks_run_in_order_within_resources() {
        let mut s = Scheduler::new(cpu(2.0));
        for i in 0..3 {
            s.enqueue(task(i), &cpu(1.0)).expect("feasible");
        }
        assert_eq!(s.pop_fitting().map(|t| t.0), Some(task(0)));
        assert_eq!(s.pop_fitting().map(|t| t.0), Some(task(1)));
        assert_eq!(s.pop_fitting(), None);
        s.release(&cpu(1.0));
        assert_eq!(s.pop_fitting().map(|t| t.0), Some(task(2)));
    }

    #[test]
    fn a_big_task_does_not_block_a_small_one() {
        let mut s = Scheduler::new(cpu(2.0));
        s.acquire(&cpu(1.0));
        s.enqueue(task(1), &cpu(2.0)).expect("feasible");
        s.enqueue(task(2), &cpu(1.0)).expect("feasible");
        assert_eq!(s.pop_fitting().map(|t| t.0), Some(task(2)));
    }

    #[test]
    fn infeasible_is_reported_once_and_kept() {
        let mut s = Scheduler::new(cpu(1.0));
        let special = Resources(vec![("special".into(), 1.0)]);
        assert!(s.enqueue(task(1), &special).is_err());
        assert!(s.enqueue(task(2), &special).is_ok());
        assert_eq!(s.queued(), 2);
        assert_eq!(s.pop_fitting(), None);
    }

    #[test]
    fn workers_are_counted_for_what_can_run_at_once() {
        let mut s = Scheduler::new(cpu(2.0));
        for i in 0..10 {
            s.enqueue(task(i), &cpu(1.0)).expect("feasible");
        }
        // Ten 1-CPU tasks on two free CPUs need two workers, not ten.
        assert_eq!(s.fitting_len(8), 2);
        s.acquire(&cpu(1.0));
        assert_eq!(s.fitting_len(8), 1);
        s.enqueue(task(20), &cpu(0.5)).expect("feasible");
        assert_eq!(
            s.fitting_len(8),
            1,
            "the first shape's task takes the last CPU"
        );
        s.enqueue(task(21), &Resources::default())
            .expect("feasible");
        assert_eq!(s.fitting_len(8), 2, "a task that needs nothing always fits");
        assert_eq!(s.fitting_len(1), 1);
    }

    #[test]
    fn zero_demand_always_fits() {
        let mut s = Scheduler::new(cpu(1.0));
        s.acquire(&cpu(1.0));
        s.enqueue(task(1), &Resources::default()).expect("feasible");
        assert!(s.pop_fitting().is_some());
    }

    proptest! {
        /// Resources handed out never exceed the total, and all come back.
        #[test]
        fn accounting_balances(demands in proptest::collection::vec(0u8..4, 1..40)) {
            let total = 3.0;
            let mut s = Scheduler::new(cpu(total));
            for (i, d) in demands.iter().enumerate() {
                let _ = s.enqueue(TaskId([i as u8; 16]), &cpu(*d as f64));
            }
            let mut running = Vec::new();
            for _ in 0..200 {
                match s.pop_fitting() {
                    Some((_, demand)) => running.push(demand),
                    None => match running.pop() {
                        Some(d) => s.release(&d),
                        None => break,
                    },
                }
                let used: f64 = running.iter().map(|d| d.get("CPU")).sum();
                prop_assert!(used <= total + EPSILON);
            }
            for d in running.drain(..) {
                s.release(&d);
            }
            prop_assert!((s.available().get("CPU") - total).abs() < EPSILON);
        }
    }
}
