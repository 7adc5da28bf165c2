//! What follows when an actor loses its worker or its node: one decision for
//! every place an actor can live, so it has one restart budget.
//!
//! An actor with restarts left (`max_restarts` of -1 has no limit) starts
//! again and waits, like any pending task, until resources free up; the
//! calls that were running on it go first again if they have retries left
//! (`max_task_retries`), and fail otherwise. An actor past its budget is
//! dead and every call it had fails.

use raynode_proto::TaskId;

/// An actor's limits, from its options.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_restarts: i32,
    pub max_task_retries: i32,
}

/// A call that was running on the actor, with the runs it has had.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Call {
    pub task: TaskId,
    pub attempt: u32,
}

/// The decision after a loss.
#[derive(Debug, PartialEq)]
pub enum AfterLoss {
    /// Start again; `restarts` is the budget used counting this restart.
    /// `again` go first in the actor's queue, in order; `failed` fail.
    Restart {
        restarts: u32,
        again: Vec<TaskId>,
        failed: Vec<TaskId>,
    },
    /// Past its budget: dead, with every call it had.
    Dead { failed: Vec<TaskId> },
}

/// Whether a run may follow `used` earlier ones under `max` (-1: no limit).
pub fn within(max: i32, used: u32) -> bool {
    max < 0 || i64::from(used) < i64::from(max)
}

/// What follows when an actor that used `restarts` restarts loses its
/// worker or its node while `running` calls (in submission order) ran.
pub fn after_loss(limits: Limits, restarts: u32, running: &[Call]) -> AfterLoss {
    if !within(limits.max_restarts, restarts) {
        return AfterLoss::Dead {
            failed: running.iter().map(|c| c.task).collect(),
        };
    }
    let (again, failed): (Vec<&Call>, Vec<&Call>) = running
        .iter()
        .partition(|c| within(limits.max_task_retries, c.attempt));
    AfterLoss::Restart {
        restarts: restarts + 1,
        again: again.into_iter().map(|c| c.task).collect(),
        failed: failed.into_iter().map(|c| c.task).collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn call(n: u8, attempt: u32) -> Call {
        Call {
            task: TaskId([n; 16]),
            attempt,
        }
    }

    #[test]
    fn unlimited_restarts_always_restart_and_retry_calls_that_may_be() {
        let limits = Limits {
            max_restarts: -1,
            max_task_retries: 1,
        };
        let got = after_loss(limits, 1000, &[call(1, 0), call(2, 1), call(3, 0)]);
        assert_eq!(
            got,
            AfterLoss::Restart {
                restarts: 1001,
                again: vec![TaskId([1; 16]), TaskId([3; 16])],
                failed: vec![TaskId([2; 16])],
            }
        );
    }

    #[test]
    fn a_used_up_budget_is_death_with_every_call_failed() {
        let limits = Limits {
            max_restarts: 1,
            max_task_retries: -1,
        };
        let got = after_loss(limits, 1, &[call(1, 0)]);
        assert_eq!(
            got,
            AfterLoss::Dead {
                failed: vec![TaskId([1; 16])]
            }
        );
        assert_eq!(
            after_loss(limits, 0, &[]),
            AfterLoss::Restart {
                restarts: 1,
                again: vec![],
                failed: vec![]
            }
        );
    }

    proptest! {
        /// Over any run of losses: an actor restarts exactly `max_restarts`
        /// times (forever when unlimited) and is never dropped while it has
        /// restarts left; every running call is either run again or failed,
        /// never both, never forgotten, in its order.
        #[test]
        fn the_budget_holds_over_any_run_of_losses(
            max_restarts in -1i32..6,
            max_task_retries in -1i32..4,
            losses in proptest::collection::vec(proptest::collection::vec(0u32..5, 0..5), 1..12),
        ) {
            let limits = Limits { max_restarts, max_task_retries };
            let mut restarts = 0u32;
            let mut dead = false;
            for (n, attempts) in losses.iter().enumerate() {
                let running: Vec<Call> = attempts
                    .iter()
                    .enumerate()
                    .map(|(i, a)| call(i as u8, *a))
                    .collect();
                match after_loss(limits, restarts, &running) {
                    AfterLoss::Restart { restarts: next, again, failed } => {
                        prop_assert!(max_restarts < 0 || (n as i32) < max_restarts);
                        prop_assert_eq!(next, restarts + 1);
                        restarts = next;
                        let mut all: Vec<TaskId> = again.iter().chain(&failed).copied().collect();
                        all.sort();
                        let mut want: Vec<TaskId> = running.iter().map(|c| c.task).collect();
                        want.sort();
                        prop_assert_eq!(all, want);
                        let order: Vec<TaskId> = running.iter().map(|c| c.task).filter(|t| again.contains(t)).collect();
                        prop_assert_eq!(order, again);
                    }
                    AfterLoss::Dead { failed } => {
                        prop_assert!(max_restarts >= 0 && n as i32 >= max_restarts,
                            "dead after {} losses with max_restarts={}", n, max_restarts);
                        prop_assert_eq!(failed.len(), running.len());
                        dead = true;
                        break;
                    }
                }
            }
            if max_restarts < 0 || (losses.len() as i32) <= max_restarts {
                prop_assert!(!dead);
            }
        }
    }
}
