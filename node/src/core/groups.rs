//! Placement groups: bundles of resources reserved together across nodes.
//!
//! - Creating: the node a driver asks records the group in the control
//!   store as pending ([`Core::on_create_group`]), then decides where its
//!   bundles go ([`crate::engine::bundles`]) over the live nodes' room (what
//!   they registered less the bundles of created groups, and no more than
//!   they have free now) and proposes that
//!   placement ([`raft_gcs::Command::PlacePlacementGroup`]). The store takes
//!   it only if it still fits, so a reservation is all or nothing even when
//!   two nodes decide at once; a group no set of nodes can hold stays
//!   pending and is tried again every tick, by its creating node.
//! - Reserving: every node follows the store's table
//!   ([`Core::sync_groups`], on each change and each tick): a bundle placed
//!   here takes its resources out of the free ones and provides its own
//!   (`CPU_group_0_<id>`, `CPU_group_<id>`, `bundle_group_...`), which only
//!   tasks placed in the bundle ask for (`TaskSpec::demand`), so they run
//!   on the bundle's node, on what it reserved.
//! - Removing: the group is marked removed in the store; each node that
//!   held a bundle frees it, and the actors and tasks using it end.
//!   A group that is not detached is removed when its driver leaves.

use super::{ConnId, Core};
use crate::cluster::keys::{group_key, group_of};
use crate::engine::bundles;
use raynode_proto::{
    group_resource, AckError, FromNode, GroupStrategy, JobId, NodeId, PlacementGroupId,
    PlacementGroupSpec, Resources, BUNDLE_MARKER_TOTAL,
};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// Placement groups this node created and is placing.
#[derive(Default)]
pub(super) struct Groups {
    /// Placements proposed and not answered yet.
    placing: HashSet<PlacementGroupId>,
}

/// Who made a group: the node and the job (in the store's opaque field).
fn creator(node: NodeId, job: JobId) -> Vec<u8> {
    let mut out = node.0.to_vec();
    out.extend_from_slice(&job.0.to_be_bytes());
    out
}

/// What bundle `index` of `group` provides on the node holding it.
pub(super) fn provided(group: PlacementGroupId, index: u32, bundle: &Resources) -> Resources {
    let mut out = Resources::default();
    for (name, amount) in &bundle.0 {
        out.set(&group_resource(name, Some(index), &group), *amount);
        out.set(&group_resource(name, None, &group), *amount);
    }
    out.set(
        &group_resource("bundle", Some(index), &group),
        BUNDLE_MARKER_TOTAL,
    );
    out.set(&group_resource("bundle", None, &group), BUNDLE_MARKER_TOTAL);
    out
}

fn to_resources(map: &std::collections::BTreeMap<String, f64>) -> Resources {
    Resources(map.iter().map(|(k, v)| (k.clone(), *v)).collect())
}

impl Core {
    /// `placement_group(...)`: records the group, answers once it is
    /// recorded, and starts placing it.
    pub(super) fn on_create_group(&mut self, conn: ConnId, req: u64, group: PlacementGroupSpec) {
        if let Err(e) = group.validate() {
            let error = Some(AckError::Refused(format!(
                "the placement group was refused: {e}"
            )));
            return self.send(conn, FromNode::Acked { req, error });
        }
        let job = self.job_of_conn(conn);
        let info = raft_gcs::PlacementGroupInfo {
            name: group.name.clone(),
            namespace: group.namespace.clone(),
            bundles: group
                .bundles
                .iter()
                .map(|b| b.0.iter().filter(|(_, v)| *v > 0.0).cloned().collect())
                .collect(),
            strategy: group.strategy.name().to_string(),
            detached: group.detached,
            creator: creator(self.node_id, job),
            ..raft_gcs::PlacementGroupInfo::default()
        };
        let event = (
            "placement_group_created",
            format!(
                "placement group {} ({:?}, {} bundles, {}) was created",
                group.id,
                group.name,
                group.bundles.len(),
                group.strategy.name()
            ),
        );
        let command = raft_gcs::Command::CreatePlacementGroup {
            id: group_key(group.id),
            info,
        };
        self.write_group(conn, req, command, event, |written| match written {
            Ok(responses) => match responses.into_iter().next() {
                Some(raft_gcs::Response::Ok) => None,
                Some(raft_gcs::Response::Conflict(why)) => Some(AckError::NameTaken(why)),
                other => Some(AckError::Refused(format!(
                    "recording the placement group failed: {other:?}"
                ))),
            },
            Err(e) => Some(AckError::NoQuorum(format!(
                "recording the placement group failed: {e}"
            ))),
        });
    }

    /// Writes a group's creation or removal in the background; `answer`
    /// turns the outcome into the client's answer, which comes back to the
    /// core as `GroupRecorded` (with the event to log if it took).
    fn write_group(
        &self,
        conn: ConnId,
        req: u64,
        command: raft_gcs::Command,
        event: (&'static str, String),
        answer: fn(Result<Vec<raft_gcs::Response>, String>) -> Option<AckError>,
    ) {
        let (cluster, events) = (self.cluster.clone(), self.events.clone());
        tokio::spawn(async move {
            let written = cluster.write(vec![command]).await;
            let error = answer(written.map_err(|e| e.to_string()));
            let recorded = super::Event::GroupRecorded {
                conn,
                req,
                error,
                event,
            };
            let _ = events.send(recorded).await;
        });
    }

    /// The job a client works for: a driver's own, or, for a worker, the
    /// job of the work it runs.
    fn job_of_conn(&self, conn: ConnId) -> JobId {
        match self.clients.get(&conn) {
            Some(c) => match c.role {
                Some(raynode_proto::Role::Worker { worker }) => {
                    self.workers.get(&worker).map_or(c.job, |w| w.job)
                }
                _ => c.job,
            },
            None => JobId(0),
        }
    }

    pub(super) fn on_group_recorded(
        &mut self,
        conn: ConnId,
        req: u64,
        error: Option<AckError>,
        (kind, message): (&'static str, String),
    ) {
        if error.is_none() {
            self.record_event(kind, message);
        }
        self.send(conn, FromNode::Acked { req, error });
        self.place_groups();
    }

    /// `remove_placement_group`: marks it removed; the nodes holding its
    /// bundles free them as they see it.
    pub(super) fn on_remove_group(&mut self, conn: ConnId, req: u64, id: PlacementGroupId) {
        let event = (
            "placement_group_removed",
            format!("placement group {id} was removed"),
        );
        let command = raft_gcs::Command::RemovePlacementGroup { id: group_key(id) };
        self.write_group(conn, req, command, event, |written| match written {
            Ok(_) => None,
            Err(e) => Some(AckError::NoQuorum(format!(
                "removing the placement group failed: {e}"
            ))),
        });
    }

    /// A driver left: the groups it made that are not detached go.
    pub(super) fn end_job_groups(&mut self, job: JobId) {
        let me = creator(self.node_id, job);
        let doomed: Vec<raft_gcs::PlacementGroupId> = self.gcs.read_local(|s| {
            s.placement_groups
                .iter()
                .filter(|(_, g)| {
                    g.creator == me
                        && !g.detached
                        && g.state != raft_gcs::PlacementGroupState::Removed
                })
                .map(|(id, _)| id.clone())
                .collect()
        });
        if doomed.is_empty() {
            return;
        }
        let commands = doomed
            .into_iter()
            .map(|id| raft_gcs::Command::RemovePlacementGroup { id })
            .collect();
        self.cluster
            .write_in_background(commands, "removing a finished job's placement groups");
    }

    /// Decides where the pending groups this node made go, and proposes it.
    pub(super) fn place_groups(&mut self) {
        let mine = self.node_id.0.to_vec();
        let (pending, nodes, created) = self.gcs.read_local(|s| {
            let pending: Vec<(raft_gcs::PlacementGroupId, raft_gcs::PlacementGroupInfo)> = s
                .placement_groups
                .iter()
                .filter(|(_, g)| {
                    g.state == raft_gcs::PlacementGroupState::Pending
                        && g.creator.starts_with(&mine)
                })
                .map(|(id, g)| (id.clone(), g.clone()))
                .collect();
            let nodes: Vec<(raft_gcs::NodeId, Resources)> = s
                .nodes
                .iter()
                .filter(|(_, n)| n.alive)
                .map(|(id, n)| (*id, to_resources(&n.resources)))
                .collect();
            let created: Vec<(raft_gcs::NodeId, Resources)> = s
                .placement_groups
                .values()
                .filter(|g| g.state == raft_gcs::PlacementGroupState::Created)
                .flat_map(|g| {
                    g.nodes
                        .iter()
                        .copied()
                        .zip(g.bundles.iter().map(to_resources))
                        .collect::<Vec<_>>()
                })
                .collect();
            (pending, nodes, created)
        });
        if pending.is_empty() {
            return;
        }
        // Live by gossip: this node and the peers heard from lately.
        let live: HashSet<raft_gcs::NodeId> = std::iter::once(self.node_id)
            .chain(self.remote.peers.keys().copied())
            .map(crate::cluster::keys::raft_id)
            .collect();
        let me = crate::cluster::keys::raft_id(self.node_id);
        let mut rooms: Vec<(raft_gcs::NodeId, bundles::Room)> = nodes
            .into_iter()
            .filter(|(id, _)| live.contains(id))
            .filter_map(|(id, total)| {
                let node = self.node_of_raft(id)?;
                let mut room = total;
                for (_, bundle) in created.iter().filter(|(n, _)| *n == id) {
                    for (name, v) in &bundle.0 {
                        room.set(name, room.get(name) - v);
                    }
                }
                // Only what is free now: work running there is not moved.
                let free = if node == self.node_id {
                    self.ledger.sched().available()
                } else {
                    self.remote.peers.get(&node)?.load.available.clone()
                };
                for (name, v) in room.0.iter_mut() {
                    *v = v.min(free.get(name));
                }
                Some((id, bundles::Room { node, room }))
            })
            .collect();
        // This node first, then by id: ties go to the creator's node.
        rooms.sort_by_key(|(id, _)| (*id != me, *id));
        let rooms: Vec<bundles::Room> = rooms.into_iter().map(|(_, r)| r).collect();
        for (id, group) in pending {
            let Some(pg) = group_of(&id) else { continue };
            if self.groups.placing.contains(&pg) {
                continue;
            }
            let Some(strategy) = GroupStrategy::from_name(&group.strategy) else {
                continue;
            };
            let wanted: Vec<Resources> = group.bundles.iter().map(to_resources).collect();
            let Some(chosen) = bundles::assign(&wanted, strategy, &rooms) else {
                continue;
            };
            let nodes: Vec<raft_gcs::NodeId> = chosen
                .into_iter()
                .map(crate::cluster::keys::raft_id)
                .collect();
            self.groups.placing.insert(pg);
            let command = raft_gcs::Command::PlacePlacementGroup { id, nodes };
            let (cluster, events) = (self.cluster.clone(), self.events.clone());
            tokio::spawn(async move {
                match cluster.write(vec![command]).await {
                    Ok(r) => tracing::debug!(group = %pg, "placing a placement group: {r:?}"),
                    Err(e) => tracing::debug!(group = %pg, "placing a placement group failed: {e}"),
                }
                let _ = events.send(super::Event::GroupPlaced { id: pg }).await;
            });
            // One proposal at a time: the next sees this one's reservation.
            break;
        }
    }

    /// A proposed placement was answered (taken, or refused because the
    /// room was gone): reserve what is ours and place the rest.
    pub(super) fn on_group_placed(&mut self, id: PlacementGroupId) {
        self.groups.placing.remove(&id);
        self.sync_groups();
        self.place_groups();
    }

    /// Brings this node's reservations in line with the store's table.
    pub(super) fn sync_groups(&mut self) {
        let me = crate::cluster::keys::raft_id(self.node_id);
        let (wanted, live): (
            Vec<(PlacementGroupId, u32, Resources)>,
            HashSet<PlacementGroupId>,
        ) = self.gcs.read_local(|s| {
            let mut wanted = Vec::new();
            let mut live = HashSet::new();
            for (id, g) in &s.placement_groups {
                let Some(pg) = group_of(id) else { continue };
                if g.state != raft_gcs::PlacementGroupState::Created {
                    continue;
                }
                live.insert(pg);
                for (i, (bundle, node)) in g.bundles.iter().zip(&g.nodes).enumerate() {
                    if *node == me {
                        wanted.push((pg, i as u32, to_resources(bundle)));
                    }
                }
            }
            (wanted, live)
        });
        let mut changed = false;
        for (pg, index, bundle) in wanted {
            let provides = provided(pg, index, &bundle);
            if self.ledger.reserve((pg, index), bundle, provides) {
                tracing::info!(group = %pg, bundle = index, "reserved a placement group's bundle");
                changed = true;
            }
        }
        let gone: Vec<(PlacementGroupId, u32)> = self
            .ledger
            .reserved()
            .filter(|(pg, _)| !live.contains(pg))
            .copied()
            .collect();
        for key in gone {
            self.free_bundle(key);
            changed = true;
        }
        if changed {
            self.dispatch();
            if !self.remote.unplaced.is_empty() {
                self.place_unplaced();
            }
        }
    }

    /// Frees a bundle of a removed group: its actors die (without
    /// restart), its running tasks' workers stop.
    fn free_bundle(&mut self, key: (PlacementGroupId, u32)) {
        tracing::info!(group = %key.0, bundle = key.1, "freeing a removed placement group's bundle");
        let marker = group_resource("bundle", Some(key.1), &key.0);
        let marker_any = group_resource("bundle", None, &key.0);
        let doomed: Vec<raynode_proto::ActorId> = self
            .actors
            .iter()
            .filter(|(_, a)| !matches!(a.state, super::actors::ActorState::Dead { .. }))
            .filter(|(_, a)| {
                self.tasks.get(&a.creation).is_some_and(|t| {
                    let d = t.spec.demand();
                    d.get(&marker) > 0.0 || d.get(&marker_any) > 0.0
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for actor in doomed {
            self.declare_dead(actor, "its placement group was removed".into());
        }
        for worker in self.ledger.unreserve(&key) {
            if let Some(w) = self.workers.get_mut(&worker) {
                w.process.kill();
            }
        }
    }

    /// The nodes holding a task's bundle (any bundle when `bundle` is
    /// none); empty while the group is not placed, or once it is removed.
    pub(super) fn bundle_nodes(&self, group: PlacementGroupId, bundle: Option<u32>) -> Vec<NodeId> {
        let nodes: Vec<raft_gcs::NodeId> =
            self.gcs
                .read_local(|s| match s.placement_groups.get(&group_key(group)) {
                    Some(g) if g.state == raft_gcs::PlacementGroupState::Created => match bundle {
                        Some(i) => g.nodes.get(i as usize).copied().into_iter().collect(),
                        None => g.nodes.clone(),
                    },
                    _ => Vec::new(),
                });
        let mut out: Vec<NodeId> = nodes
            .into_iter()
            .filter_map(|n| self.node_of_raft(n))
            .collect();
        out.dedup();
        out
    }

    /// The node id of a member of the control store.
    pub(super) fn node_of_raft(&self, raft: raft_gcs::NodeId) -> Option<NodeId> {
        if raft == crate::cluster::keys::raft_id(self.node_id) {
            return Some(self.node_id);
        }
        if let Some(node) = self
            .remote
            .peers
            .keys()
            .find(|n| crate::cluster::keys::raft_id(**n) == raft)
        {
            return Some(*node);
        }
        self.gcs.read_local(|s| {
            s.nodes.get(&raft).and_then(|n| {
                n.addrs
                    .iter()
                    .find_map(|a| crate::cluster::peer_of(a))
                    .map(|p| crate::cluster::node_id_of(&p))
            })
        })
    }

    /// `placement_group_table()`: every group the store holds, by id.
    pub(super) fn groups_json(&self) -> Value {
        let groups: Vec<(raft_gcs::PlacementGroupId, raft_gcs::PlacementGroupInfo)> =
            self.gcs.read_local(|s| {
                s.placement_groups
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            });
        let mut out = Map::new();
        for (id, g) in groups {
            let bundles: Map<String, Value> = g
                .bundles
                .iter()
                .enumerate()
                .map(|(i, b)| (i.to_string(), json!(b)))
                .collect();
            let placed: Map<String, Value> = g
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let node = self.node_of_raft(*n).map(|n| n.to_string());
                    (i.to_string(), json!(node))
                })
                .collect();
            let state = match g.state {
                raft_gcs::PlacementGroupState::Pending => "PENDING",
                raft_gcs::PlacementGroupState::Created => "CREATED",
                raft_gcs::PlacementGroupState::Removed => "REMOVED",
            };
            out.insert(
                id.to_string(),
                json!({
                    "placement_group_id": id.to_string(),
                    "name": g.name.clone().unwrap_or_default(),
                    "namespace": g.namespace,
                    "bundles": bundles,
                    "bundles_to_node_id": placed,
                    "strategy": g.strategy,
                    "state": state,
                    "is_detached": g.detached,
                }),
            );
        }
        Value::Object(out)
    }

    /// Live named actors of every namespace, from the store's name table.
    pub(super) fn named_actors_json(&self) -> Value {
        let names: Vec<String> = self
            .gcs
            .read_local(|s| s.actor_names.keys().cloned().collect());
        let list: Vec<Value> = names
            .iter()
            .filter_map(|key| key.split_once('\u{0}'))
            .map(|(namespace, name)| json!({"name": name, "namespace": namespace}))
            .collect();
        Value::Array(list)
    }
}
