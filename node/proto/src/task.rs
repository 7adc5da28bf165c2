//! Task specifications: what a caller submits and what a worker runs.

use crate::ids::{ActorId, FunctionId, ObjectId, TaskId};
use serde::{Deserialize, Serialize};

/// Resource demands or capacities by name (`CPU`, `GPU`, custom names).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources(pub Vec<(String, f64)>);

impl Resources {
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
pub enum Arg {
    /// A serialized value (object layout bytes), small enough to travel inline.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A reference whose value the worker receives in its place.
    Ref(ObjectId),
}

/// What kind of call a task is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

impl TaskSpec {
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
