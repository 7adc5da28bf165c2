"""raynode: Ray Core's API on a cluster with no head node.

    import raynode as ray
    ray.init()
"""

from typing import TYPE_CHECKING

import cloudpickle

from . import _core, actor, exceptions
from ._actor import ActorClass, ActorHandle
from ._api import (
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_actor,
    get_gpu_ids,
    get_runtime_context,
    init,
    is_initialized,
    kill,
    nodes,
    put,
    shutdown,
    timeline,
    wait,
)
from ._core import ObjectRef
from ._generators import DynamicObjectRefGenerator, ObjectRefGenerator
from ._remote import method, remote

# One version for the package and its native half (the workspace's).
__version__ = _core.__version__

__all__ = [
    "ActorClass",
    "ActorHandle",
    "DynamicObjectRefGenerator",
    "ObjectRef",
    "ObjectRefGenerator",
    "actor",
    "available_resources",
    "cancel",
    "cloudpickle",
    "cluster_resources",
    "dag",
    "exceptions",
    "experimental",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "timeline",
    "util",
    "wait",
]


# `ray.util`, `ray.dag` and `ray.experimental` load on first use: a worker
# process imports this package at start and rarely needs them, and they
# cost about a third of its start-up.
_LAZY = ("dag", "experimental", "util")

if TYPE_CHECKING:
    from . import dag, experimental, util


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
