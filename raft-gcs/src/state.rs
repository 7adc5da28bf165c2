//! The replicated tables and how commands change them.
//!
//! [`State`] is pure data; [`State::apply`] is deterministic and does no I/O,
//! so every replica that applies the same log reaches the same tables. It
//! reports each row it touched as a [`Change`] for subscribers.

use std::collections::{BTreeMap, VecDeque};

use openraft::{BasicNode, Membership};
use serde::{Deserialize, Serialize};

use crate::types::{
    ActorId, ActorInfo, Batch, Change, Command, Event, FunctionId, JobId, JobInfo, NodeId,
    NodeInfo, ObjectId, ObjectInfo, PlacementGroupId, PlacementGroupInfo, RaftRole, Response,
    Table, COMMAND_VERSION,
};

/// The control state: every table of the store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Cluster nodes, registered or Raft members.
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Function id to pickled definition; immutable once written.
    pub functions: BTreeMap<FunctionId, Vec<u8>>,
    /// Actors by id.
    pub actors: BTreeMap<ActorId, ActorInfo>,
    /// Actor names to ids (only named, not-dead actors).
    pub actor_names: BTreeMap<String, ActorId>,
    /// Jobs by id.
    pub jobs: BTreeMap<JobId, JobInfo>,
    /// Locations of large objects.
    pub objects: BTreeMap<ObjectId, ObjectInfo>,
    /// The newest events, oldest first, bounded by the writer's capacity.
    pub events: VecDeque<Event>,
    /// Sequence number the next event gets.
    pub next_event_seq: u64,
    /// Placement groups by id: pending, created, and the newest removed
    /// ones (at most [`crate::groups::REMOVED_KEPT`]).
    pub placement_groups: BTreeMap<PlacementGroupId, PlacementGroupInfo>,
}

/// Key of a node row in change notifications.
pub fn node_key(id: NodeId) -> Vec<u8> {
    id.0.to_be_bytes().to_vec()
}

impl State {
    /// Apply one log entry's batch at log `index`. An entry of an unknown
    /// version, or one that does not decode, is rejected as a whole: every
    /// command gets [`Response::Rejected`] and nothing changes.
    pub fn apply_batch(
        &mut self,
        batch: &Batch,
        index: u64,
        changes: &mut Vec<Change>,
    ) -> Vec<Response> {
        if batch.version != COMMAND_VERSION {
            let why = format!(
                "command version {} is not supported (this store speaks {})",
                batch.version, COMMAND_VERSION
            );
            tracing::warn!(index, version = batch.version, "rejecting log entry");
            return vec![Response::Rejected(why)];
        }
        let commands: Vec<Command> = match postcard::from_bytes(&batch.commands) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(index, error = %e, "rejecting undecodable log entry");
                return vec![Response::Rejected(format!("undecodable commands: {e}"))];
            }
        };
        let capacity = batch.event_capacity as usize;
        commands
            .into_iter()
            .map(|c| self.apply(c, index, capacity, changes))
            .collect()
    }

    /// Apply one command.
    pub fn apply(
        &mut self,
        cmd: Command,
        index: u64,
        event_capacity: usize,
        changes: &mut Vec<Change>,
    ) -> Response {
        match cmd {
            Command::RegisterNode {
                id,
                addrs,
                resources,
            } => {
                let row = self.nodes.entry(id).or_insert_with(|| NodeInfo {
                    since: index,
                    ..NodeInfo::default()
                });
                row.addrs = addrs;
                row.resources = resources;
                row.alive = true;
                changes.push(Change::upsert(Table::Nodes, node_key(id)));
                Response::Ok
            }
            Command::SetNodeAlive { id, alive } => match self.nodes.get_mut(&id) {
                None => Response::NotFound,
                Some(row) if row.alive == alive => Response::Unchanged,
                Some(row) => {
                    row.alive = alive;
                    changes.push(Change::upsert(Table::Nodes, node_key(id)));
                    Response::Ok
                }
            },
            Command::RemoveNode { id } => {
                if self.nodes.remove(&id).is_none() {
                    return Response::NotFound;
                }
                changes.push(Change::remove(Table::Nodes, node_key(id)));
                let mut gone = Vec::new();
                for (oid, obj) in self.objects.iter_mut() {
                    if obj.locations.remove(&id) {
                        changes.push(Change::upsert(Table::Objects, oid.0.clone()));
                        if obj.locations.is_empty() {
                            gone.push(oid.clone());
                        }
                    }
                }
                for oid in gone {
                    self.objects.remove(&oid);
                    changes.push(Change::remove(Table::Objects, oid.0));
                }
                Response::Ok
            }
            Command::RegisterFunction { id, body } => match self.functions.get(&id) {
                Some(old) if *old == body => Response::Unchanged,
                Some(_) => Response::Conflict(format!("function {id} exists with other bytes")),
                None => {
                    changes.push(Change::upsert(Table::Functions, id.0.clone()));
                    self.functions.insert(id, body);
                    Response::Ok
                }
            },
            Command::CreateActor { id, info } => {
                if self.actors.contains_key(&id) {
                    return Response::Conflict(format!("actor {id} exists"));
                }
                if let Some(name) = &info.name {
                    if let Some(holder) = self.actor_names.get(name) {
                        return Response::Conflict(format!(
                            "actor name {name:?} is taken by {holder}"
                        ));
                    }
                    self.actor_names.insert(name.clone(), id.clone());
                }
                changes.push(Change::upsert(Table::Actors, id.0.clone()));
                self.actors.insert(id, info);
                Response::Ok
            }
            Command::UpdateActor {
                id,
                node,
                state,
                restarts,
            } => {
                let Some(row) = self.actors.get_mut(&id) else {
                    return Response::NotFound;
                };
                row.node = node;
                row.state = state;
                row.restarts = restarts;
                if state == crate::types::ActorState::Dead {
                    if let Some(name) = &row.name {
                        if self.actor_names.get(name) == Some(&id) {
                            self.actor_names.remove(name);
                        }
                    }
                }
                changes.push(Change::upsert(Table::Actors, id.0));
                Response::Ok
            }
            Command::RemoveActor { id } => {
                let Some(row) = self.actors.remove(&id) else {
                    return Response::NotFound;
                };
                if let Some(name) = row.name {
                    if self.actor_names.get(&name) == Some(&id) {
                        self.actor_names.remove(&name);
                    }
                }
                changes.push(Change::remove(Table::Actors, id.0));
                Response::Ok
            }
            Command::PutJob { id, info } => {
                changes.push(Change::upsert(Table::Jobs, id.0.clone()));
                self.jobs.insert(id, info);
                Response::Ok
            }
            Command::AddObjectLocation {
                id,
                node,
                size,
                owner,
            } => {
                let row = self
                    .objects
                    .entry(id.clone())
                    .or_insert_with(|| ObjectInfo {
                        size,
                        owner,
                        ..ObjectInfo::default()
                    });
                if !row.locations.insert(node) {
                    return Response::Unchanged;
                }
                changes.push(Change::upsert(Table::Objects, id.0));
                Response::Ok
            }
            Command::RemoveObjectLocation { id, node } => {
                let Some(row) = self.objects.get_mut(&id) else {
                    return Response::NotFound;
                };
                if !row.locations.remove(&node) {
                    return Response::Unchanged;
                }
                if row.locations.is_empty() {
                    self.objects.remove(&id);
                    changes.push(Change::remove(Table::Objects, id.0));
                } else {
                    changes.push(Change::upsert(Table::Objects, id.0));
                }
                Response::Ok
            }
            Command::RemoveObject { id } => {
                if self.objects.remove(&id).is_none() {
                    return Response::NotFound;
                }
                changes.push(Change::remove(Table::Objects, id.0));
                Response::Ok
            }
            Command::AppendEvent {
                time_ms,
                source,
                kind,
                message,
            } => {
                self.next_event_seq = self.next_event_seq.max(1);
                let seq = self.next_event_seq;
                self.next_event_seq += 1;
                self.events.push_back(Event {
                    seq,
                    time_ms,
                    source,
                    kind,
                    message,
                });
                changes.push(Change::upsert(Table::Events, seq.to_be_bytes().to_vec()));
                while self.events.len() > event_capacity.max(1) {
                    if let Some(old) = self.events.pop_front() {
                        changes.push(Change::remove(
                            Table::Events,
                            old.seq.to_be_bytes().to_vec(),
                        ));
                    }
                }
                Response::Ok
            }
            Command::CreatePlacementGroup { id, info } => {
                self.create_group(id, info, index, changes)
            }
            Command::PlacePlacementGroup { id, nodes } => self.place_group(id, nodes, changes),
            Command::RemovePlacementGroup { id } => self.remove_group(id, index, changes),
        }
    }

    /// Record the Raft roles of a membership applied at log `index`: members
    /// missing from the nodes table are added with their Raft address.
    pub fn apply_membership(
        &mut self,
        membership: &Membership<NodeId, BasicNode>,
        index: u64,
        changes: &mut Vec<Change>,
    ) {
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        for (id, node) in membership.nodes() {
            let role = if voters.contains(id) {
                RaftRole::Voter
            } else {
                RaftRole::Learner
            };
            let row = self.nodes.entry(*id).or_insert_with(|| NodeInfo {
                addrs: vec![node.addr.clone()],
                alive: true,
                since: index,
                ..NodeInfo::default()
            });
            if row.role != role || row.since == index {
                row.role = role;
                changes.push(Change::upsert(Table::Nodes, node_key(*id)));
            }
        }
        for (id, row) in self.nodes.iter_mut() {
            if row.role != RaftRole::None && membership.get_node(id).is_none() {
                row.role = RaftRole::None;
                changes.push(Change::upsert(Table::Nodes, node_key(*id)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: u8, body: &[u8]) -> Command {
        Command::RegisterFunction {
            id: FunctionId(vec![id]),
            body: body.to_vec(),
        }
    }

    #[test]
    fn functions_are_immutable() {
        let mut s = State::default();
        let mut ch = Vec::new();
        assert_eq!(s.apply(f(1, b"a"), 1, 10, &mut ch), Response::Ok);
        assert_eq!(s.apply(f(1, b"a"), 2, 10, &mut ch), Response::Unchanged);
        assert!(matches!(
            s.apply(f(1, b"b"), 3, 10, &mut ch),
            Response::Conflict(_)
        ));
        assert_eq!(s.functions[&FunctionId(vec![1])], b"a".to_vec());
        assert_eq!(ch.len(), 1);
    }

    #[test]
    fn event_log_is_bounded() {
        let mut s = State::default();
        let mut ch = Vec::new();
        for i in 0..10 {
            let cmd = Command::AppendEvent {
                time_ms: i,
                source: None,
                kind: "k".into(),
                message: format!("{i}"),
            };
            s.apply(cmd, i + 1, 3, &mut ch);
        }
        let seqs: Vec<u64> = s.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![8, 9, 10]);
    }

    #[test]
    fn actor_names_are_unique_and_freed() {
        let mut s = State::default();
        let mut ch = Vec::new();
        let info = ActorInfo {
            name: Some("a".into()),
            ..ActorInfo::default()
        };
        let create = |id: u8| Command::CreateActor {
            id: ActorId(vec![id]),
            info: info.clone(),
        };
        assert_eq!(s.apply(create(1), 1, 1, &mut ch), Response::Ok);
        assert!(matches!(
            s.apply(create(2), 2, 1, &mut ch),
            Response::Conflict(_)
        ));
        let rm = Command::RemoveActor {
            id: ActorId(vec![1]),
        };
        assert_eq!(s.apply(rm, 3, 1, &mut ch), Response::Ok);
        assert_eq!(s.apply(create(2), 4, 1, &mut ch), Response::Ok);
    }

    #[test]
    fn unknown_version_is_rejected_not_applied() {
        let mut s = State::default();
        let mut ch = Vec::new();
        let mut batch = Batch::encode(&[f(1, b"a")], 10);
        batch.version = COMMAND_VERSION + 1;
        let out = s.apply_batch(&batch, 1, &mut ch);
        assert!(matches!(out.as_slice(), [Response::Rejected(_)]));
        assert!(s.functions.is_empty() && ch.is_empty());

        let garbage = Batch {
            version: COMMAND_VERSION,
            event_capacity: 1,
            commands: vec![0xff, 0xff, 0xff],
        };
        let out = s.apply_batch(&garbage, 2, &mut ch);
        assert!(matches!(out.as_slice(), [Response::Rejected(_)]));
        assert_eq!(s, State::default());
    }

    #[test]
    fn removing_a_node_drops_its_object_locations() {
        let mut s = State::default();
        let mut ch = Vec::new();
        let reg = |id| Command::RegisterNode {
            id: NodeId(id),
            addrs: vec![],
            resources: BTreeMap::new(),
        };
        s.apply(reg(1), 1, 1, &mut ch);
        for node in [1, 2] {
            let add = Command::AddObjectLocation {
                id: ObjectId(vec![9]),
                node: NodeId(node),
                size: 5,
                owner: vec![],
            };
            s.apply(add, 2, 1, &mut ch);
        }
        s.apply(Command::RemoveNode { id: NodeId(1) }, 3, 1, &mut ch);
        let loc: Vec<_> = s.objects[&ObjectId(vec![9])].locations.iter().collect();
        assert_eq!(loc, vec![&NodeId(2)]);
    }
}
