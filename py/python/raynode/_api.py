"""Ray Core's module-level API: init, get, put, wait and friends."""

from __future__ import annotations

import atexit
import json
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import _core, _futures, _runtime, _runtime_env, _serialization, exceptions  # noqa: F401 - _futures sets the ref hooks
from ._core import ObjectRef
from ._remote import check_runtime_env, is_amount

if TYPE_CHECKING:
    from ._actor import ActorHandle
    from ._generators import ObjectRefGenerator

#: What `wait` splits: refs, or generators (ready when their next item is).
_Waitable = TypeVar("_Waitable", bound="ObjectRef | ObjectRefGenerator")


class RayContext(dict[str, Any]):
    """What `init` returns: the address connected to, and this node's id."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __enter__(self) -> RayContext:
        return self

    def __exit__(self, *exc: object) -> None:
        shutdown()


def init(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    namespace: str | None = None,
    ignore_reinit_error: bool = False,
    runtime_env: dict[str, Any] | None = None,
    log_to_driver: bool = True,
    **_ignored: Any,
) -> RayContext:
    """Connects this process to a cluster.

    With no address (and no RAYNODE_ADDRESS or RAY_ADDRESS), connects to
    the node `raynode start` left running on this machine if there is one,
    else starts a private node as a child process and stops it at exit or
    `shutdown()`. `address="auto"` is the node `raynode start` left running
    (an error if none is); `address="local"` always a private node. With an
    address (a node's client host:port or Unix socket path), connects to
    that node and starts nothing. `runtime_env` applies to all the job's tasks and actors;
    what their workers print comes to this process, prefixed with the task or
    actor's name, pid and ip, unless `log_to_driver=False`.
    """
    global _job_runtime_env
    with _runtime._lock:
        if _runtime.connected():
            if ignore_reinit_error:
                return _context()
            raise RuntimeError("Maybe you called ray.init twice by accident? Call ray.shutdown() first.")
        env_spec = check_runtime_env(runtime_env)
        if resources is not None and not isinstance(resources, dict):
            raise TypeError("resources must be a dict of resource name to amount")
        for name in ("CPU", "GPU"):
            if resources and name in resources:
                raise ValueError(f"Use the num_{name.lower()}s argument instead of resources['{name}']")
        for name, amount in [("num_cpus", num_cpus), ("num_gpus", num_gpus), *(resources or {}).items()]:
            if amount is not None and not is_amount(amount):
                raise ValueError(f"{name} must be a finite non-negative number, got {amount!r}")
        address = _resolve_address(address)
        if address is None:
            from . import _node_process

            node, client = _node_process.start(num_cpus, num_gpus, resources, object_store_memory)
            address = node.socket
        else:
            # As in Ray: these describe a node, and the node exists already.
            for name, value in [("num_cpus", num_cpus), ("num_gpus", num_gpus), ("resources", resources),
                                ("object_store_memory", object_store_memory)]:
                if value is not None:
                    raise ValueError(
                        f"When connecting to an existing cluster, {name} must not be provided "
                        f"(connecting to {address}; give the node its {name} when starting it, "
                        "or pass address='local' for a private node)"
                    )
            node = None
            key = None if "/" in address else _cluster_key()
            client = _core.Client.connect(address, cluster_key=key)
        # What workers running this job's work print comes here, prefixed.
        client.set_log_to_driver(bool(log_to_driver))
        _runtime.set_client(client, node, namespace or "default")
        _job_runtime_env = None
        try:
            # Packs and puts the working_dir and py_modules, once for the job.
            _job_runtime_env = _runtime_env.resolve(env_spec, None)
        except BaseException:
            shutdown()
            raise
        return _context(address)


_job_runtime_env: _runtime_env.Resolved | None = None  # what init(runtime_env=...) gave, checked


def _resolve_address(address: str | None) -> str | None:
    """The node `init(address)` connects to, or None for a new private node.

    As in Ray: an explicit address wins, then RAYNODE_ADDRESS or RAY_ADDRESS;
    "auto" is the node `raynode start` left running on this machine (an
    error if there is none); no address at all is that node too if there is
    one, else a private node; "local" is always a private node."""
    from_env = os.environ.get("RAYNODE_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address or (address == "auto" and from_env not in (None, "local")):
        # As Ray does, "auto" takes the address the environment names.
        address = from_env or address or None
    if address == "local":
        return None
    if address is None or address == "auto":
        started = _core.started_nodes()
        if started:
            socket: str = started[0]["socket"]
            return socket
        if address is None:
            return None
        raise ConnectionError(
            "address='auto': no raynode node started with `raynode start` is running on this machine "
            f"(none is recorded in {_core.sessions_dir()}). Start one with `raynode start`, or pass the "
            "address of a node (host:port of its client address, or its Unix socket)."
        )
    if address.startswith("raynode://"):
        address = address[len("raynode://") :]
    return address


def connects_to_existing(address: str | None = None) -> bool:
    """Whether `init(address)` would connect to a running node (rather than start one)."""
    return _resolve_address(address) is not None


def job_runtime_env() -> _runtime_env.Resolved | None:
    """The job's runtime_env as tasks carry it (`_runtime_env.resolve`), or None."""
    return _job_runtime_env


def _cluster_key() -> bytes:
    """The cluster key a driver connecting over TCP proves it holds: the file
    ~/.raynode/cluster.key, or the one RAYNODE_CLUSTER_KEY names (read, never
    created, by the native module: one reader for the node and its clients)."""
    return _core.load_cluster_key()


def _context(address: str | None = None) -> RayContext:
    c = _runtime.client()
    return RayContext(address=address, node_id=c.node_id, job_id=c.job_id, namespace=_runtime.namespace())


def shutdown() -> None:
    """Disconnects; stops the private node if `init` started one."""
    global _job_runtime_env
    with _runtime._lock:
        _job_runtime_env = None
        client, node = _runtime.clear()
        if client is not None:
            client.close()
        if node is not None:
            node.stop()


atexit.register(shutdown)


def is_initialized() -> bool:
    return _runtime.connected()


def _refs_of(object_refs: object, what: str) -> tuple[list[ObjectRef], bool]:
    if isinstance(object_refs, ObjectRef):
        return [object_refs], True
    if isinstance(object_refs, (list, tuple)):
        for r in object_refs:
            if not isinstance(r, ObjectRef):
                raise TypeError(f"{what} expected a list of ObjectRefs, but the list holds a {type(r).__name__}")
        return list(object_refs), False
    raise TypeError(f"{what} expected an ObjectRef or a list of ObjectRefs, got {type(object_refs).__name__}")


def get(object_refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """The values of one ref or a list of refs; raises the error a value holds."""
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be None or >= 0")
    refs, single = _refs_of(object_refs, "ray.get()")
    if not refs:
        return []
    client = _runtime.client()
    values = client.get(refs, timeout)
    if values is None:
        raise exceptions.GetTimeoutError(f"Get timed out: some object(s) not ready after {timeout} s")
    decoded = _decode(client, refs, values, timeout)
    return decoded[0] if single else decoded


# Times a get asks the node again when a value's file changed after the node
# named it (spilled or evicted under memory pressure): the node restores or
# fetches the object and names its new file.
_STALE_RETRIES = 3


def _decode(
    client: _core.Client, refs: list[ObjectRef], values: list[_core.GotValue], timeout: float | None
) -> list[Any]:
    attempt = 0
    while True:
        try:
            return [_serialization.deserialize(v) for v in values]
        except _serialization.StalePath:
            if attempt == _STALE_RETRIES:
                raise
        attempt += 1
        again = client.get(refs, timeout)
        if again is None:
            raise exceptions.GetTimeoutError(f"Get timed out: some object(s) not ready after {timeout} s")
        values = again


def put(value: Any, *, _owner: ActorHandle | None = None) -> ObjectRef:
    """Stores a value in the cluster; returns a ref to it."""
    if isinstance(value, ObjectRef):
        raise TypeError("Calling 'put' on an ObjectRef is not allowed. If you really want to do this, you can wrap it in a list.")
    client = _runtime.client()
    try:
        s = _serialization.serialize(value)
    except Exception as e:
        raise TypeError(f"Could not serialize the put value {value!r} of type {type(value).__name__}: {e}") from e
    return _put_serialized(client, s)


# Largest value a client without the node's shared memory can put: one frame.
_MAX_STREAMED_BYTES = (256 << 20) - (1 << 20)


def _put_serialized(client: _core.Client, s: _serialization.Serialized) -> ObjectRef:
    if s.size <= client.inline_limit:
        return client.put_parts(s.meta, s.data, s.buffers, s.nested)
    if not client.shares_memory:
        if s.planned_size() > _MAX_STREAMED_BYTES:
            raise ValueError(
                f"an object of {s.planned_size()} bytes is too large to put from a driver without "
                f"the node's shared memory (at most {_MAX_STREAMED_BYTES} bytes)"
            )
        return client.put_parts(s.meta, s.data, s.buffers, s.nested)
    ref, path = client.create_put(s.planned_size())
    s.write_to(path)
    client.seal(ref.binary(), s.nested)
    return ref


def wait(
    object_refs: list[_Waitable],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[_Waitable], list[_Waitable]]:
    """Splits refs (and ObjectRefGenerators, ready when their next item is)
    into (ready, not ready) once `num_returns` are ready or at `timeout`."""
    from . import _generators

    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expected a list of ObjectRefs, got {type(object_refs).__name__}")
    items = list(object_refs)
    if not items:
        return [], []
    if 0 < num_returns <= len(items) and (timeout is None or timeout >= 0):
        try:
            # Plain refs: checked and split in one native call (TypeError
            # for anything else, so here `_Waitable` is ObjectRef).
            split = _runtime.client().wait_split(cast(list[ObjectRef], items), num_returns, timeout)
            return cast(tuple[list[_Waitable], list[_Waitable]], split)
        except TypeError:
            pass  # a generator (or a mistake): the general path says which
    keys: set[object] = set()
    for x in items:
        if not isinstance(x, (ObjectRef, _generators.ObjectRefGenerator)):
            raise TypeError(f"wait() expected a list of ObjectRefs, but the list holds a {type(x).__name__}")
        keys.add(x if isinstance(x, ObjectRef) else id(x))
    if len(keys) != len(items):
        raise ValueError("Wait requires a list of unique object refs.")
    if num_returns <= 0:
        raise ValueError(f"Invalid number of objects to return {num_returns}.")
    if num_returns > len(items):
        raise ValueError("num_returns cannot be greater than the number of objects provided to ray.wait.")
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be None or >= 0")
    if any(isinstance(x, _generators.ObjectRefGenerator) for x in items):
        ready_idx = set(_generators.wait(items, num_returns, timeout))
    else:
        ready_idx = set(_runtime.client().wait(cast(list[ObjectRef], items), num_returns, timeout))
    ready = [x for i, x in enumerate(items) if i in ready_idx]
    rest = [x for i, x in enumerate(items) if i not in ready_idx]
    return ready, rest


def cancel(object_ref: ObjectRef | ObjectRefGenerator, *, force: bool = False, recursive: bool = True) -> None:
    """Cancels the task that makes `object_ref` (or runs a generator); `get`
    on it raises TaskCancelledError."""
    from ._generators import ObjectRefGenerator

    if isinstance(object_ref, ObjectRefGenerator):
        object_ref = object_ref.completed()
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"ray.cancel() only supports an ObjectRef, got {type(object_ref).__name__}")
    _runtime.client().cancel(object_ref, force)


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Kills an actor; its pending and later calls raise RayActorError."""
    from ._actor import ActorHandle

    if not isinstance(actor, ActorHandle):
        raise ValueError(f"ray.kill() only supports actors, got {type(actor).__name__}")
    _runtime.client().kill_actor(actor._actor_id, no_restart)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """The handle of the live actor named `name`."""
    from ._actor import ActorHandle

    if not isinstance(name, str) or not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    ns = namespace or _runtime.namespace()
    found = _runtime.client().get_actor(name, ns)
    if found is None:
        raise ValueError(f"Failed to look up actor with name '{name}'. This could because 1. You are trying to look up a named actor you didn't create. 2. The named actor died. 3. You did not use a namespace matching the namespace of the actor.")
    actor_id, meta = found
    return ActorHandle._from_meta(actor_id, meta)


def _info(what: _core.InfoName) -> Any:
    return json.loads(_runtime.client().info(what))


def nodes() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = _info("nodes")
    return found


def cluster_resources() -> dict[str, float]:
    total: dict[str, float] = _info("cluster_resources")
    return total


def available_resources() -> dict[str, float]:
    free: dict[str, float] = _info("available_resources")
    return free


def timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """Tasks run so far, as Chrome trace events; written to `filename` if given."""
    events: list[dict[str, Any]] = _info("timeline")
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None


class RuntimeContext:
    """What the calling code runs as: node, job, task, actor."""

    def get_node_id(self) -> str:
        return _runtime.client().node_id

    def get_job_id(self) -> str:
        job: str | None = getattr(_runtime._current, "job_id", None)
        return job or _runtime.client().job_id

    def get_task_id(self) -> str | None:
        t: bytes | None = getattr(_runtime._current, "task_id", None)
        return t.hex() if t else None

    def get_actor_id(self) -> str | None:
        a: bytes | None = getattr(_runtime._current, "actor_id", None)
        return a.hex() if a else None

    def get_worker_id(self) -> str | None:
        return os.environ.get("RAYNODE_WORKER_ID")

    @property
    def namespace(self) -> str:
        return _runtime.namespace()

    @property
    def runtime_env(self) -> dict[str, Any]:
        """The runtime_env the calling code runs with (packages as raynode:// URIs)."""
        env: _runtime_env.Resolved | None
        if _runtime.is_worker():
            env = getattr(_runtime._current, "runtime_env", None)
        else:
            env = _job_runtime_env
        return _runtime_env.describe(env)

    def get_assigned_resources(self) -> dict[str, float]:
        """The resources the running task or actor holds, by name
        (fractions included; in a placement group, Ray's plain names)."""
        if not _runtime.is_worker():
            raise AssertionError("get_assigned_resources is only available when the process is a worker")
        return dict(getattr(_runtime._current, "resources", None) or {})

    def get_task_name(self) -> str | None:
        """The running task's name (an actor method's `Class.method`), None in a driver."""
        name: str | None = getattr(_runtime._current, "task_name", None) if _runtime.is_worker() else None
        return name

    def get_actor_name(self) -> str | None:
        """The actor's name ("" if it has none), None outside an actor."""
        if not _runtime.is_worker() or getattr(_runtime._current, "actor_id", None) is None:
            return None
        name: str | None = getattr(_runtime._current, "actor_name", None)
        return name or ""

    def get_placement_group_id(self) -> str | None:
        """The hex id of the placement group the task or actor runs in, else None."""
        group: tuple[bytes, int, bool] | None = None
        if _runtime.is_worker():
            group = getattr(_runtime._current, "placement_group", None)
        return None if group is None else group[0].hex()

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        return {"GPU": [str(g) for g in get_gpu_ids()]}

    @property
    def was_current_actor_reconstructed(self) -> bool:
        attempt: int = getattr(_runtime._current, "attempt", 0)
        return attempt > 0

    def is_canceled(self) -> bool:
        """Whether `ray.cancel` was called on the running task; raises
        RuntimeError in a driver or an async actor."""
        from . import _worker

        return _worker.is_canceled()

    def get(self) -> dict[str, Any]:
        return {"node_id": self.get_node_id(), "job_id": self.get_job_id(), "task_id": self.get_task_id(), "actor_id": self.get_actor_id()}


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext()


def get_gpu_ids() -> list[int]:
    """The GPU indexes the running task or actor holds (its
    CUDA_VISIBLE_DEVICES); [] in a driver or without GPUs."""
    if not _runtime.is_worker():
        return []
    return list(getattr(_runtime._current, "gpu_ids", None) or [])


