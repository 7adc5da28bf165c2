//! Task specifications: what a caller submits and what a worker runs.

use crate::ids::{ActorId, FunctionId, ObjectId, TaskId};
use serde::{Deserialize, Serialize};

/// Resource demands or capacities by name (`CPU`, `GPU`, custom names).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Resources(
    #[cfg_attr(test, proptest(strategy = "crate::tests::resource_list()"))] pub Vec<(String, f64)>,
);

/// The most return values one task may declare.
pub const MAX_RETURNS: u32 = 1 << 16;
/// The longest task, method or resource name accepted.
pub const MAX_NAME_BYTES: usize = 4096;
/// The most distinct resources one task or node may name.
pub const MAX_RESOURCE_KINDS: usize = 256;

/// Why a task specification from a client or a peer is refused.
#[derive(Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error("resource {name:?} must be a finite number >= 0, got {value}")]
    Resource { name: String, value: f64 },
    #[error("{count} resources named; at most {MAX_RESOURCE_KINDS}")]
    TooManyResources { count: usize },
    #[error("num_returns {0} is above the limit of {MAX_RETURNS}")]
    TooManyReturns(u32),
    #[error("a name of {0} bytes is above the limit of {MAX_NAME_BYTES}")]
    NameTooLong(usize),
    #[error("{kwargs} keyword names for {args} arguments")]
    Kwargs { kwargs: usize, args: usize },
}

impl Resources {
    /// Every amount finite and non-negative, every name of sane length.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.0.len() > MAX_RESOURCE_KINDS {
            return Err(SpecError::TooManyResources {
                count: self.0.len(),
            });
        }
        for (name, value) in &self.0 {
            check_name(name)?;
            if !value.is_finite() || *value < 0.0 {
                return Err(SpecError::Resource {
                    name: name.clone(),
                    value: *value,
                });
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> f64 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or(0.0)
    }

    pub fn set(&mut self, name: &str, value: f64) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }
}

/// One positional or keyword argument of a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Arg {
    /// A serialized value (object layout bytes), small enough to travel inline.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A reference whose value the worker receives in its place.
    Ref(ObjectId),
}

/// What kind of call a task is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum TaskKind {
    Normal,
    /// Creates an actor: runs the class's constructor in a worker the actor keeps.
    ActorCreate(ActorOptions),
    /// Calls a method of a live actor.
    ActorMethod {
        actor: ActorId,
        method: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ActorOptions {
    pub actor: ActorId,
    pub name: Option<String>,
    pub namespace: String,
    pub detached: bool,
    pub max_restarts: i32,
    pub max_task_retries: i32,
    pub max_concurrency: u32,
    pub is_async: bool,
    /// Opaque bytes the caller needs to rebuild a handle (`ray.get_actor`).
    #[serde(with = "serde_bytes")]
    pub handle_meta: Vec<u8>,
}

/// A submitted task. The function body travels separately, once per client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TaskSpec {
    pub task_id: TaskId,
    pub function: FunctionId,
    /// The function's or method's name, for errors and the timeline.
    pub name: String,
    pub args: Vec<Arg>,
    /// Names of the trailing `kwargs.len()` arguments that are keywords.
    pub kwargs: Vec<String>,
    pub num_returns: u32,
    pub resources: Resources,
    /// Times to re-run the task if its worker dies (-1: forever).
    pub max_retries: i32,
    pub retry_exceptions: bool,
    /// References nested inside inline arguments, kept alive while the task lives.
    pub nested_refs: Vec<ObjectId>,
    pub kind: TaskKind,
}

fn check_name(name: &str) -> Result<(), SpecError> {
    match name.len() {
        n if n > MAX_NAME_BYTES => Err(SpecError::NameTooLong(n)),
        _ => Ok(()),
    }
}

impl TaskSpec {
    /// What a node checks of every task it is given, by a client or a peer.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.resources.validate()?;
        if self.num_returns > MAX_RETURNS {
            return Err(SpecError::TooManyReturns(self.num_returns));
        }
        check_name(&self.name)?;
        if let TaskKind::ActorMethod { method, .. } = &self.kind {
            check_name(method)?;
        }
        if self.kwargs.len() > self.args.len() {
            return Err(SpecError::Kwargs {
                kwargs: self.kwargs.len(),
                args: self.args.len(),
            });
        }
        self.kwargs.iter().try_for_each(|k| check_name(k))
    }

    pub fn return_ids(&self) -> impl Iterator<Item = ObjectId> + '_ {
        (0..self.num_returns).map(|i| ObjectId::for_return(self.task_id, i))
    }

    /// Ids this task must wait for before it can run.
    pub fn dependencies(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.args.iter().filter_map(|a| match a {
            Arg::Ref(id) => Some(*id),
            Arg::Value(_) => None,
        })
    }

    pub fn actor(&self) -> Option<ActorId> {
        match &self.kind {
            TaskKind::Normal => None,
            TaskKind::ActorCreate(o) => Some(o.actor),
            TaskKind::ActorMethod { actor, .. } => Some(*actor),
        }
    }
}
