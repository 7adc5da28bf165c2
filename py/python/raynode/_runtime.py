"""The process's connection to its node, and what is running in it."""

import threading
from typing import TYPE_CHECKING

from . import _core

if TYPE_CHECKING:
    from ._node_process import NodeProcess

_lock = threading.RLock()
_client: _core.Client | None = None
_node: "NodeProcess | None" = None  # the private node process started by init(), if any
_namespace = "default"
_worker_mode = False
_current = threading.local()  # task_id / actor_id of the running task, in a worker


def client() -> _core.Client:
    """The connected client, starting a private node first if need be (as Ray does)."""
    c = _client
    if c is None:
        from . import _api

        _api.init()
        c = _client
        if c is None:
            raise ConnectionError("not connected to a raynode node")
    return c


def connected() -> bool:
    return _client is not None


def set_client(
    c: _core.Client, node: "NodeProcess | None" = None, namespace: str = "default", worker: bool = False
) -> None:
    global _client, _node, _namespace, _worker_mode
    _client, _node, _namespace, _worker_mode = c, node, namespace, worker


def clear() -> tuple[_core.Client | None, "NodeProcess | None"]:
    global _client, _node
    c, n = _client, _node
    _client, _node = None, None
    return c, n


def namespace() -> str:
    return _namespace


def node_process() -> "NodeProcess | None":
    return _node


def is_worker() -> bool:
    return _worker_mode


def rebuild_ref(object_id: bytes) -> _core.ObjectRef:
    """Unpickles an ObjectRef: a new reference counted by this process."""
    return client().make_ref(object_id)


_core.set_ref_rebuilder(rebuild_ref)
