"""raynode.util: the helpers Ray programs import from ``ray.util``.

`ActorPool` (actor_pool.py), `get_node_ip_address` and
`list_named_actors` (node.py), `inspect_serializability`
(serializability.py), `as_completed` and `map_unordered` (helpers.py)
and the placement-group functions live here;
`queue`, `multiprocessing`, `joblib`, `metrics`, `state`, `placement_group`
and `scheduling_strategies` are submodules, as in Ray.
"""

from . import joblib, metrics, multiprocessing, queue, scheduling_strategies, state
from .actor_pool import ActorPool
from .helpers import as_completed, map_unordered
from .node import get_node_ip_address, list_named_actors
# The function shadows its module here, as in Ray; `from
# raynode.util.placement_group import ...` still finds the module.
from .placement_group import (  # noqa: F811
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from .serializability import inspect_serializability

__all__ = [
    "ActorPool",
    "as_completed",
    "get_current_placement_group",
    "get_node_ip_address",
    "get_placement_group",
    "list_named_actors",
    "map_unordered",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
    "scheduling_strategies",
    "inspect_serializability",
    "joblib",
    "multiprocessing",
    "queue",
]
