"""Placement groups, as Ray's `ray.util.placement_group`.

A placement group reserves bundles of resources across the cluster, all or
nothing: `placement_group(bundles, strategy)` records it in the cluster's
control store at once and returns; the node it was made through decides
which node holds each bundle (PACK, SPREAD, STRICT_PACK, STRICT_SPREAD)
as soon as nodes have room, and the store takes that placement only if it
still fits. `pg.ready()` is an ObjectRef that resolves once the bundles are
reserved; a group no set of nodes can hold stays pending. Tasks and actors
run in a bundle with `PlacementGroupSchedulingStrategy`, on the resources
the bundle reserved. `remove_placement_group` frees the bundles and ends
the actors and tasks in them; a group that is not detached is removed when
its driver exits.
"""

import json
import os
from typing import Any, Dict, List, Optional, Union

from .. import _runtime
from .._core import ObjectRef
from .._remote import is_amount, remote

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroupID:
    """A placement group's id: `.hex()`, `.binary()`."""

    __slots__ = ("_bytes",)

    def __init__(self, raw: bytes) -> None:
        self._bytes = bytes(raw)

    def hex(self) -> str:
        return self._bytes.hex()

    def binary(self) -> bytes:
        return self._bytes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupID) and other._bytes == self._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)

    def __repr__(self) -> str:
        return f"PlacementGroupID({self.hex()})"


@remote(num_cpus=0)
def _bundle_reservation_check(pg: "PlacementGroup") -> "PlacementGroup":
    return pg


class PlacementGroup:
    """A handle to a placement group (it pickles, so tasks may use it)."""

    def __init__(
        self, id: Union[PlacementGroupID, bytes], bundle_specs: Optional[List[Dict[str, float]]] = None
    ) -> None:
        self.id = id if isinstance(id, PlacementGroupID) else PlacementGroupID(id)
        self._bundles = None if bundle_specs is None else [dict(b) for b in bundle_specs]

    @staticmethod
    def empty() -> "PlacementGroup":
        return PlacementGroup(PlacementGroupID(b"\0" * 16), [])

    def is_empty(self) -> bool:
        return self.id.binary() == b"\0" * 16

    @property
    def bundle_specs(self) -> List[Dict[str, float]]:
        if self._bundles is None:
            row = placement_group_table(self)
            self._bundles = [row["bundles"][i] for i in sorted(row["bundles"], key=int)] if row else []
        return [dict(b) for b in self._bundles]

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> ObjectRef:
        """An ObjectRef that resolves (to this group) once its bundles are reserved."""
        from .scheduling_strategies import PlacementGroupSchedulingStrategy

        strategy = PlacementGroupSchedulingStrategy(self, -1)
        ref: ObjectRef = _bundle_reservation_check.options(scheduling_strategy=strategy).remote(self)
        return ref

    def wait(self, timeout_seconds: Union[float, int] = 30) -> bool:
        """Whether the group is ready within `timeout_seconds`."""
        from .. import _api

        ready, _ = _api.wait([self.ready()], timeout=timeout_seconds)
        return bool(ready)

    def __reduce__(self) -> Any:
        return (PlacementGroup, (self.id, self._bundles))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup(id={self.id.hex()})"


def _check_bundles(bundles: object) -> List[Dict[str, float]]:
    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if not bundles:
        raise ValueError(
            "Bundles must be a non-empty list of resource dictionaries. For example: "
            '`[{"CPU": 1.0}, {"GPU": 1.0}]`. Got empty list instead.'
        )
    out = []
    for bundle in bundles:
        if not isinstance(bundle, dict):
            raise ValueError(f"Each bundle must be a dict of resource name to amount, got {bundle!r}")
        for k, v in bundle.items():
            if not isinstance(k, str) or not is_amount(v):
                raise ValueError(f"Bundle resources must be finite non-negative numbers, got {k!r}: {v!r} in {bundles}")
        if not any(v > 0 for v in bundle.values()):
            raise ValueError(f"Bundles cannot be an empty dictionary or resources with only 0 values. Bundles: {bundles}")
        out.append({k: float(v) for k, v in bundle.items() if v > 0})
    return out


def placement_group(
    bundles: List[Dict[str, float]],
    strategy: str = "PACK",
    name: str = "",
    lifetime: Optional[str] = None,
    _soft_target_node_id: Optional[str] = None,
    bundle_label_selector: Optional[List[Dict[str, str]]] = None,
) -> PlacementGroup:
    """Reserves `bundles` (a list of resource dicts) by `strategy`; returns
    the group at once (see `ready()` and `wait()`)."""
    specs = _check_bundles(bundles)
    if strategy not in STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy}. Supported strategies are: {set(STRATEGIES)}.")
    if lifetime not in (None, "detached"):
        raise ValueError(f"Placement group `lifetime` argument must be either `None` or 'detached'. Got {lifetime}.")
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    client = _runtime.client()
    group_id = os.urandom(16)
    client.create_placement_group(
        group_id,
        [sorted(b.items()) for b in specs],
        strategy,
        name or None,
        _runtime.namespace(),
        lifetime == "detached",
    )
    return PlacementGroup(PlacementGroupID(group_id), specs)


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Removes the group: its bundles are freed and the actors and tasks in them end."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group takes a PlacementGroup, got {type(placement_group).__name__}")
    _runtime.client().remove_placement_group(placement_group.id.binary())


def _table() -> Dict[str, Dict[str, Any]]:
    table: Dict[str, Dict[str, Any]] = json.loads(_runtime.client().info("placement_groups"))
    return table


def _row(raw: Dict[str, Any]) -> Dict[str, Any]:
    row = dict(raw)
    row["bundles"] = {int(k): v for k, v in raw["bundles"].items()}
    row["bundles_to_node_id"] = {int(k): v for k, v in raw["bundles_to_node_id"].items()}
    return row


def placement_group_table(placement_group: Optional[PlacementGroup] = None) -> Dict[str, Any]:
    """Every placement group by hex id (or one group's row): name, bundles,
    the node of each bundle, strategy and state (PENDING, CREATED, REMOVED)."""
    table = _table()
    if placement_group is None:
        return {k: _row(v) for k, v in table.items()}
    row = table.get(placement_group.id.hex())
    return _row(row) if row is not None else {}


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live group of that name in this namespace."""
    ns = _runtime.namespace()
    for gid, row in _table().items():
        if row["name"] == placement_group_name and row.get("namespace") == ns and row["state"] != "REMOVED":
            bundles = [row["bundles"][k] for k in sorted(row["bundles"], key=int)]
            return PlacementGroup(PlacementGroupID(bytes.fromhex(gid)), bundles)
    raise ValueError(f"Failed to look up placement group with name: {placement_group_name}")


def get_current_placement_group() -> Optional[PlacementGroup]:
    """The group the calling task or actor runs in, else None (always None in a driver)."""
    group = getattr(_runtime._current, "placement_group", None)
    return None if group is None else PlacementGroup(PlacementGroupID(group[0]))


__all__ = [
    "PlacementGroup",
    "get_current_placement_group",
    "get_placement_group",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]
