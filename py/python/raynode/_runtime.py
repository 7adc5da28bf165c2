"""The process's connection to its node, and what is running in it."""

import threading

from . import _core

_lock = threading.RLock()
_client = None
_node = None  # the private node process started by init(), if any
_namespace = "default"
_worker_mode = False
_current = threading.local()  # task_id / actor_id of the running task, in a worker


def client():
    """The connected client, starting a private node first if need be (as Ray does)."""
    c = _client
    if c is None:
        from . import _api

        _api.init()
        c = _client
    return c


def connected():
    return _client is not None


def set_client(c, node=None, namespace="default", worker=False):
    global _client, _node, _namespace, _worker_mode
    _client, _node, _namespace, _worker_mode = c, node, namespace, worker


def clear():
    global _client, _node
    c, n = _client, _node
    _client, _node = None, None
    return c, n


def namespace():
    return _namespace


def node_process():
    return _node


def is_worker():
    return _worker_mode


def rebuild_ref(object_id):
    """Unpickles an ObjectRef: a new reference counted by this process."""
    return client().make_ref(object_id)


_core.set_ref_rebuilder(rebuild_ref)
