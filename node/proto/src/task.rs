//! Task specifications: what a caller submits and what a worker runs.

use crate::ids::{ActorId, FunctionId, NodeId, ObjectId, PlacementGroupId, TaskId};
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
/// The most bundles one placement group may have.
pub const MAX_BUNDLES: usize = 1024;
/// How much of a bundle's marker resource (`bundle_group_...`) a node
/// holds per bundle; every task placed in a bundle takes
/// [`BUNDLE_MARKER_DEMAND`] of it, so even a task that asks for nothing
/// runs on the bundle's node.
pub const BUNDLE_MARKER_TOTAL: f64 = 1000.0;
pub const BUNDLE_MARKER_DEMAND: f64 = 0.001;

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
    #[error("a placement group needs 1 to {MAX_BUNDLES} bundles, got {0}")]
    BundleCount(usize),
    #[error("bundle {0} asks for no resources")]
    EmptyBundle(usize),
    #[error("placement group bundle index {index} is invalid")]
    BundleIndex { index: u32 },
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

/// Where a task or actor may run: Ray's `scheduling_strategy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SchedulingStrategy {
    /// Where it fits, preferring the node it was submitted to.
    #[default]
    Default,
    /// Over the nodes that can run it, the least loaded first.
    Spread,
    /// On `node`; when that node is gone or can never run it, elsewhere
    /// if `soft`, else the task fails (`TaskUnschedulableError`).
    NodeAffinity { node: NodeId, soft: bool },
    /// In a bundle of a placement group (`bundle` none: any of its
    /// bundles), on the resources the bundle reserved.
    PlacementGroup {
        group: PlacementGroupId,
        bundle: Option<u32>,
        capture_child_tasks: bool,
    },
}

/// How a placement group's bundles are spread over nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum GroupStrategy {
    /// As few nodes as possible (best effort).
    Pack,
    /// As many nodes as possible (best effort).
    Spread,
    /// All bundles on one node.
    StrictPack,
    /// Every bundle on a different node.
    StrictSpread,
}

impl GroupStrategy {
    pub fn name(self) -> &'static str {
        match self {
            GroupStrategy::Pack => "PACK",
            GroupStrategy::Spread => "SPREAD",
            GroupStrategy::StrictPack => "STRICT_PACK",
            GroupStrategy::StrictSpread => "STRICT_SPREAD",
        }
    }

    pub fn from_name(name: &str) -> Option<GroupStrategy> {
        [
            GroupStrategy::Pack,
            GroupStrategy::Spread,
            GroupStrategy::StrictPack,
            GroupStrategy::StrictSpread,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// A placement group's bundles: the resources each reserves.
pub type Bundles = Vec<Resources>;

/// A placement group as its creator asks for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PlacementGroupSpec {
    pub id: PlacementGroupId,
    pub name: Option<String>,
    pub namespace: String,
    pub bundles: Bundles,
    pub strategy: GroupStrategy,
    /// Outlives the job that made it (`lifetime="detached"`).
    pub detached: bool,
}

impl PlacementGroupSpec {
    /// Between 1 and [`MAX_BUNDLES`] bundles, each asking for something,
    /// every amount finite and non-negative, names of sane length.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.bundles.is_empty() || self.bundles.len() > MAX_BUNDLES {
            return Err(SpecError::BundleCount(self.bundles.len()));
        }
        for (i, bundle) in self.bundles.iter().enumerate() {
            bundle.validate()?;
            if bundle.0.iter().all(|(_, v)| *v <= 0.0) {
                return Err(SpecError::EmptyBundle(i));
            }
        }
        if let Some(name) = &self.name {
            check_name(name)?;
        }
        check_name(&self.namespace)
    }
}

/// The name of the resource a placement group's bundle provides in place
/// of `name` (Ray's: `CPU_group_0_<id>` for bundle 0, `CPU_group_<id>`
/// for any bundle of the group).
pub fn group_resource(name: &str, bundle: Option<u32>, group: &PlacementGroupId) -> String {
    match bundle {
        Some(i) => format!("{name}_group_{i}_{group}"),
        None => format!("{name}_group_{group}"),
    }
}

/// Whether a resource name is one a placement group's bundle provides.
pub fn is_group_resource(name: &str) -> bool {
    name.contains("_group_")
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
    /// Where it may run.
    pub strategy: SchedulingStrategy,
    /// Whether its function yields its results one by one.
    pub generator: Generator,
}

/// How a generator task's items reach its caller. Either way the task has
/// one return, its *end* (return 0), set when it ends, and each item `i`
/// (from 1) is an object of its own, id [`ObjectId::for_return`]`(task, i)`,
/// held by the owner's node until the caller takes it or drops the
/// generator (see the node's `core/streams.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Generator {
    /// A plain task: its returns are set when it ends.
    #[default]
    No,
    /// `ObjectRefGenerator`: the caller takes items as they are made.
    Streaming,
    /// `num_returns="dynamic"`: the end's value lists every item.
    Dynamic,
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
        if let SchedulingStrategy::PlacementGroup {
            bundle: Some(index),
            ..
        } = &self.strategy
        {
            if *index as usize >= MAX_BUNDLES {
                return Err(SpecError::BundleIndex { index: *index });
            }
        }
        self.kwargs.iter().try_for_each(|k| check_name(k))
    }

    /// The resources the task takes where it runs: its own, or, in a
    /// placement group, the same amounts of the resources its bundle
    /// reserved (plus a little of the bundle's marker).
    pub fn demand(&self) -> std::borrow::Cow<'_, Resources> {
        let SchedulingStrategy::PlacementGroup { group, bundle, .. } = &self.strategy else {
            return std::borrow::Cow::Borrowed(&self.resources);
        };
        let mut out = Vec::with_capacity(self.resources.0.len() * 2 + 1);
        for (name, amount) in &self.resources.0 {
            if *amount > 0.0 {
                out.push((group_resource(name, *bundle, group), *amount));
            }
        }
        out.push((
            group_resource("bundle", *bundle, group),
            BUNDLE_MARKER_DEMAND,
        ));
        std::borrow::Cow::Owned(Resources(out))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resources: Vec<(&str, f64)>, strategy: SchedulingStrategy) -> TaskSpec {
        TaskSpec {
            task_id: TaskId([1; 16]),
            function: FunctionId([2; 16]),
            name: "f".into(),
            args: vec![],
            kwargs: vec![],
            num_returns: 1,
            resources: Resources(resources.into_iter().map(|(n, v)| (n.into(), v)).collect()),
            max_retries: 0,
            retry_exceptions: false,
            nested_refs: vec![],
            kind: TaskKind::Normal,
            strategy,
            generator: Generator::No,
        }
    }

    #[test]
    fn a_task_in_a_bundle_takes_the_bundles_resources() {
        let group = PlacementGroupId([0xab; 16]);
        let pg = SchedulingStrategy::PlacementGroup {
            group,
            bundle: Some(1),
            capture_child_tasks: false,
        };
        let s = spec(vec![("CPU", 1.0), ("GPU", 0.0)], pg);
        let demand = s.demand();
        assert_eq!(demand.get(&format!("CPU_group_1_{group}")), 1.0);
        assert_eq!(
            demand.get(&format!("bundle_group_1_{group}")),
            BUNDLE_MARKER_DEMAND
        );
        assert_eq!(demand.0.len(), 2, "nothing asked for nothing");
        let any = SchedulingStrategy::PlacementGroup {
            group,
            bundle: None,
            capture_child_tasks: false,
        };
        let s = spec(vec![], any);
        assert_eq!(
            s.demand().get(&format!("bundle_group_{group}")),
            BUNDLE_MARKER_DEMAND
        );
        let plain = spec(vec![("CPU", 1.0)], SchedulingStrategy::Spread);
        assert_eq!(*plain.demand(), plain.resources);
    }

    #[test]
    fn group_specs_are_checked() {
        let mut g = PlacementGroupSpec {
            id: PlacementGroupId([1; 16]),
            name: None,
            namespace: "default".into(),
            bundles: vec![],
            strategy: GroupStrategy::Pack,
            detached: false,
        };
        assert_eq!(g.validate(), Err(SpecError::BundleCount(0)));
        g.bundles = vec![Resources(vec![("CPU".into(), 0.0)])];
        assert_eq!(g.validate(), Err(SpecError::EmptyBundle(0)));
        g.bundles = vec![Resources(vec![("CPU".into(), -1.0)])];
        assert!(g.validate().is_err());
        g.bundles = vec![Resources(vec![("CPU".into(), 1.0)])];
        assert_eq!(g.validate(), Ok(()));
        assert_eq!(
            GroupStrategy::from_name("STRICT_SPREAD"),
            Some(GroupStrategy::StrictSpread)
        );
        assert_eq!(GroupStrategy::from_name("spread"), None);
    }
}
