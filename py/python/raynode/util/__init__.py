"""raynode.util: the helpers Ray programs import from ``ray.util``.

`ActorPool` (actor_pool.py), `get_node_ip_address` (node.py) and
`inspect_serializability` (serializability.py) live here; `queue`,
`multiprocessing` and `joblib` are submodules, as in Ray.
"""

from . import joblib, multiprocessing, queue
from .actor_pool import ActorPool
from .node import get_node_ip_address
from .serializability import inspect_serializability

__all__ = [
    "ActorPool",
    "get_node_ip_address",
    "inspect_serializability",
    "joblib",
    "multiprocessing",
    "queue",
]
