//! Placement groups in the control state: records, names, and the check
//! that keeps reservations atomic.
//!
//! A node decides where a group's bundles go and proposes it
//! ([`crate::Command::PlacePlacementGroup`]); the state machine accepts the
//! placement only if every node named is alive and its registered
//! resources hold the bundles placed there on top of those of the groups
//! created before. Applied in log order, two groups decided at once on two
//! nodes can never both take the same resources: the second is refused and
//! its node decides again.

use std::collections::BTreeMap;

use crate::state::State;
use crate::types::{
    Change, NodeId, PlacementGroupId, PlacementGroupInfo, PlacementGroupState, Response, Table,
};

/// Removed groups kept (the newest), so that nodes that held their bundles
/// see the removal and free them.
pub const REMOVED_KEPT: usize = 1024;

const EPSILON: f64 = 1e-9;

impl State {
    pub(crate) fn create_group(
        &mut self,
        id: PlacementGroupId,
        mut info: PlacementGroupInfo,
        index: u64,
        changes: &mut Vec<Change>,
    ) -> Response {
        if self.placement_groups.contains_key(&id) {
            return Response::Conflict(format!("placement group {id} exists"));
        }
        if let Some(name) = &info.name {
            let taken = self.placement_groups.values().any(|g| {
                g.state != PlacementGroupState::Removed
                    && g.name.as_ref() == Some(name)
                    && g.namespace == info.namespace
            });
            if taken {
                return Response::Conflict(format!(
                    "Failed to create placement group '{id}' because name '{name}' already exists."
                ));
            }
        }
        info.state = PlacementGroupState::Pending;
        info.nodes.clear();
        info.since = index;
        changes.push(Change::upsert(Table::PlacementGroups, id.0.clone()));
        self.placement_groups.insert(id, info);
        Response::Ok
    }

    pub(crate) fn place_group(
        &mut self,
        id: PlacementGroupId,
        nodes: Vec<NodeId>,
        changes: &mut Vec<Change>,
    ) -> Response {
        let Some(group) = self.placement_groups.get(&id) else {
            return Response::NotFound;
        };
        if group.state != PlacementGroupState::Pending {
            return Response::Unchanged;
        }
        if nodes.len() != group.bundles.len() {
            return Response::Conflict(format!(
                "{} nodes for {} bundles",
                nodes.len(),
                group.bundles.len()
            ));
        }
        if let Err(why) = self.room_for(&group.bundles, &nodes) {
            return Response::Conflict(why);
        }
        if let Some(group) = self.placement_groups.get_mut(&id) {
            group.state = PlacementGroupState::Created;
            group.nodes = nodes;
        }
        changes.push(Change::upsert(Table::PlacementGroups, id.0));
        Response::Ok
    }

    pub(crate) fn remove_group(
        &mut self,
        id: PlacementGroupId,
        index: u64,
        changes: &mut Vec<Change>,
    ) -> Response {
        let Some(group) = self.placement_groups.get_mut(&id) else {
            return Response::NotFound;
        };
        if group.state == PlacementGroupState::Removed {
            return Response::Unchanged;
        }
        group.state = PlacementGroupState::Removed;
        group.since = index;
        changes.push(Change::upsert(Table::PlacementGroups, id.0));
        let mut removed: Vec<(u64, PlacementGroupId)> = self
            .placement_groups
            .iter()
            .filter(|(_, g)| g.state == PlacementGroupState::Removed)
            .map(|(id, g)| (g.since, id.clone()))
            .collect();
        if removed.len() > REMOVED_KEPT {
            removed.sort();
            let excess = removed.len() - REMOVED_KEPT;
            for (_, old) in removed.into_iter().take(excess) {
                self.placement_groups.remove(&old);
                changes.push(Change::remove(Table::PlacementGroups, old.0));
            }
        }
        Response::Ok
    }

    /// Whether `bundles` placed on `nodes` fit the nodes' registered
    /// resources on top of the created groups' bundles.
    fn room_for(&self, bundles: &[BTreeMap<String, f64>], nodes: &[NodeId]) -> Result<(), String> {
        let mut used: BTreeMap<(NodeId, &str), f64> = BTreeMap::new();
        let created = self
            .placement_groups
            .values()
            .filter(|g| g.state == PlacementGroupState::Created);
        for group in created {
            for (bundle, node) in group.bundles.iter().zip(&group.nodes) {
                for (name, amount) in bundle {
                    *used.entry((*node, name.as_str())).or_default() += amount;
                }
            }
        }
        for (bundle, node) in bundles.iter().zip(nodes) {
            let Some(info) = self.nodes.get(node).filter(|n| n.alive) else {
                return Err(format!("node {node} is not alive"));
            };
            for (name, amount) in bundle {
                let total = info.resources.get(name).copied().unwrap_or(0.0);
                let slot = used.entry((*node, name.as_str())).or_default();
                *slot += amount;
                if *slot > total + EPSILON {
                    return Err(format!("node {node} has no room for {name}={amount}"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Command, NodeInfo};

    fn cpus(n: f64) -> BTreeMap<String, f64> {
        BTreeMap::from([("CPU".to_string(), n)])
    }

    fn state_with_nodes(n: u64, each: f64) -> State {
        let mut s = State::default();
        for id in 1..=n {
            s.nodes.insert(
                NodeId(id),
                NodeInfo {
                    resources: cpus(each),
                    alive: true,
                    ..NodeInfo::default()
                },
            );
        }
        s
    }

    fn group(name: Option<&str>, bundles: Vec<f64>) -> PlacementGroupInfo {
        PlacementGroupInfo {
            name: name.map(str::to_string),
            namespace: "ns".into(),
            bundles: bundles.into_iter().map(cpus).collect(),
            ..PlacementGroupInfo::default()
        }
    }

    fn apply(s: &mut State, cmd: Command) -> Response {
        s.apply(cmd, 1, 10, &mut Vec::new())
    }

    fn pg(n: u8) -> PlacementGroupId {
        PlacementGroupId(vec![n])
    }

    #[test]
    fn names_are_unique_until_removed() {
        let mut s = state_with_nodes(1, 2.0);
        let create = |n, name| Command::CreatePlacementGroup {
            id: pg(n),
            info: group(Some(name), vec![1.0]),
        };
        assert_eq!(apply(&mut s, create(1, "a")), Response::Ok);
        assert!(matches!(
            apply(&mut s, create(2, "a")),
            Response::Conflict(_)
        ));
        assert_eq!(
            apply(&mut s, Command::RemovePlacementGroup { id: pg(1) }),
            Response::Ok
        );
        assert_eq!(apply(&mut s, create(2, "a")), Response::Ok);
    }

    #[test]
    fn placements_never_overcommit_a_node() {
        let mut s = state_with_nodes(2, 2.0);
        for n in 1..=3 {
            let cmd = Command::CreatePlacementGroup {
                id: pg(n),
                info: group(None, vec![1.5]),
            };
            assert_eq!(apply(&mut s, cmd), Response::Ok);
        }
        let place = |n, node| Command::PlacePlacementGroup {
            id: pg(n),
            nodes: vec![NodeId(node)],
        };
        assert_eq!(apply(&mut s, place(1, 1)), Response::Ok);
        assert!(matches!(apply(&mut s, place(2, 1)), Response::Conflict(_)));
        assert_eq!(
            s.placement_groups[&pg(2)].state,
            PlacementGroupState::Pending
        );
        assert!(matches!(apply(&mut s, place(2, 9)), Response::Conflict(_)));
        assert_eq!(apply(&mut s, place(2, 2)), Response::Ok);
        assert_eq!(apply(&mut s, place(2, 2)), Response::Unchanged);
        // Removing a group frees its node for the next.
        assert!(matches!(apply(&mut s, place(3, 1)), Response::Conflict(_)));
        apply(&mut s, Command::RemovePlacementGroup { id: pg(1) });
        assert_eq!(apply(&mut s, place(3, 1)), Response::Ok);
    }

    #[test]
    fn removed_groups_are_bounded() {
        let mut s = state_with_nodes(1, 1.0);
        for i in 0..(REMOVED_KEPT as u32 + 5) {
            let id = PlacementGroupId(i.to_be_bytes().to_vec());
            let info = group(None, vec![1.0]);
            s.apply(
                Command::CreatePlacementGroup {
                    id: id.clone(),
                    info,
                },
                u64::from(i) * 2 + 1,
                1,
                &mut Vec::new(),
            );
            s.apply(
                Command::RemovePlacementGroup { id },
                u64::from(i) * 2 + 2,
                1,
                &mut Vec::new(),
            );
        }
        assert_eq!(s.placement_groups.len(), REMOVED_KEPT);
        let newest = PlacementGroupId((REMOVED_KEPT as u32 + 4).to_be_bytes().to_vec());
        assert!(s.placement_groups.contains_key(&newest));
    }
}
