"""Scheduling strategies, as Ray's `ray.util.scheduling_strategies`.

Pass one as `scheduling_strategy=` to `.options(...)` or `@remote(...)`,
or the strings "DEFAULT" and "SPREAD":

- "DEFAULT": where the task fits, preferring the node it was submitted to;
- "SPREAD": over the nodes with room, the least loaded first;
- `NodeAffinitySchedulingStrategy(node_id, soft)`: on that node (a hex id
  from `get_runtime_context().get_node_id()` or `nodes()`). With
  `soft=False` a task whose node is gone or too small fails with
  `TaskUnschedulableError` (an actor with `ActorUnschedulableError`); with
  `soft=True` it runs elsewhere;
- `PlacementGroupSchedulingStrategy(placement_group, bundle_index,
  capture_child_tasks)`: in a bundle of a placement group, on the
  resources it reserved (index -1: any bundle). With
  `capture_child_tasks=True` the tasks and actors it starts with no
  strategy of their own go in the group too.
"""

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .placement_group import PlacementGroup


class NodeAffinitySchedulingStrategy:
    """Run on the node `node_id` (hex); `soft`: elsewhere if it cannot."""

    def __init__(
        self, node_id: str, soft: bool, _spill_on_unavailable: bool = False, _fail_on_unavailable: bool = False
    ) -> None:
        if not isinstance(node_id, str):
            raise TypeError(f"node_id must be a hex string, got {type(node_id).__name__}")
        self.node_id = node_id
        self.soft = bool(soft)
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Run in bundle `placement_group_bundle_index` (-1: any) of a placement group."""

    def __init__(
        self,
        placement_group: Optional["PlacementGroup"],
        placement_group_bundle_index: int = -1,
        placement_group_capture_child_tasks: Optional[bool] = None,
    ) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        return (
            f"PlacementGroupSchedulingStrategy(placement_group={self.placement_group!r}, "
            f"placement_group_bundle_index={self.placement_group_bundle_index}, "
            f"placement_group_capture_child_tasks={self.placement_group_capture_child_tasks})"
        )


__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
