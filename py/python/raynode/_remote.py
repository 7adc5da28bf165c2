"""`@remote` functions: options, argument packing, submission."""

import hashlib
import inspect

import cloudpickle

from . import _runtime, _serialization
from ._core import ObjectRef

TASK_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "num_returns", "max_retries", "retry_exceptions", "name",
    "memory", "scheduling_strategy", "runtime_env", "accelerator_type", "placement_group",
    "placement_group_bundle_index", "placement_group_capture_child_tasks", "max_calls", "label_selector",
}
ACTOR_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "name", "namespace", "lifetime", "max_restarts",
    "max_task_retries", "max_concurrency", "memory", "scheduling_strategy", "runtime_env",
    "accelerator_type", "placement_group", "placement_group_bundle_index",
    "placement_group_capture_child_tasks", "get_if_exists", "max_pending_calls", "concurrency_groups",
    "label_selector",
}


def check_options(options, allowed, what):
    for key in options:
        if key not in allowed:
            raise ValueError(f"Invalid option keyword {key} for {what}. Valid ones are {sorted(allowed)}.")
    for key in ("num_cpus", "num_gpus"):
        v = options.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
            raise ValueError(f"The keyword '{key}' only accepts a non-negative number, got {v!r}")
    res = options.get("resources")
    if res is not None:
        if not isinstance(res, dict):
            raise TypeError("resources must be a dict of resource name to amount")
        for k, v in res.items():
            if k in ("CPU", "GPU"):
                raise ValueError(f"Use the 'num_{k.lower()}s' keyword instead of resources['{k}']")
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"Resource quantities must be non-negative numbers, got {k}={v!r}")
    n = options.get("num_returns")
    if n is not None and (not isinstance(n, int) or n < 0):
        raise ValueError(f"num_returns must be a non-negative integer, got {n!r}")


def resource_list(options, default_cpus):
    cpus = options.get("num_cpus")
    out = [("CPU", float(default_cpus if cpus is None else cpus))]
    gpus = options.get("num_gpus")
    if gpus:
        out.append(("GPU", float(gpus)))
    for k, v in (options.get("resources") or {}).items():
        out.append((k, float(v)))
    return [(k, v) for k, v in out if v > 0]


class Registration:
    """A pickled definition, registered once per client connection."""

    __slots__ = ("obj", "body", "fid", "client")

    def __init__(self, obj):
        self.obj = obj
        self.body = None
        self.fid = None
        self.client = None

    def __reduce__(self):
        # The connection is this process's own; a copy registers anew.
        return (Registration, (self.obj,))

    def function_id(self, client):
        if self.client is not client:
            if self.body is None:
                self.body = cloudpickle.dumps(self.obj)
                self.fid = hashlib.blake2b(self.body, digest_size=16).digest()
            client.register_function(self.fid, self.body)
            self.client = client
        return self.fid


def pack_args(client, what, args, kwargs):
    """Arguments as the node takes them: refs as refs, small values inline,
    large values put in the store first. Returns (args, kw names, nested
    refs, puts to keep alive until the submit is sent)."""
    out = []
    nested = []
    keep = []
    limit = client.inline_limit
    values = list(args)
    names = list(kwargs)
    values.extend(kwargs.values())
    for v in values:
        if type(v) is ObjectRef:
            out.append(v)
            continue
        try:
            s = _serialization.serialize(v)
        except Exception as e:
            raise TypeError(
                f"Could not serialize the argument {v!r} of type {type(v).__name__} for {what}: {e}"
            ) from e
        if s.size <= limit:
            out.append(s.inline())
            nested.extend(s.nested)
        else:
            from ._api import _put_serialized

            ref = _put_serialized(client, s)
            keep.append(ref)
            out.append(ref)
    return out, names, nested, keep


class RemoteFunction:
    """A function made remote: call `.remote(...)` to run it as a task."""

    def __init__(self, function, options):
        check_options(options, TASK_OPTIONS, "a remote function")
        self._function = function
        self._options = options
        self._signature = inspect.signature(function)
        self._registration = Registration(function)
        self._name = options.get("name") or getattr(function, "__qualname__", function.__name__)
        self._resources = resource_list(options, 1)
        self._num_returns = options.get("num_returns", 1)
        self._max_retries = options.get("max_retries", 3)
        self._retry_exceptions = bool(options.get("retry_exceptions", False))
        self.__doc__ = function.__doc__
        self.__name__ = function.__name__
        self.__wrapped__ = function

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Remote functions cannot be called directly. Instead of running '{self.__name__}()', "
            f"try '{self.__name__}.remote()'."
        )

    def options(self, **options):
        merged = dict(self._options)
        merged.update(options)
        variant = RemoteFunction(self._function, merged)
        variant._registration = self._registration
        return variant

    def remote(self, *args, **kwargs):
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.__name__}() {e}") from None
        client = _runtime.client()
        fid = self._registration.function_id(client)
        packed, names, nested, keep = pack_args(client, f"task {self._name}", args, kwargs)
        refs = client.submit(
            fid, self._name, packed, names, self._num_returns, self._resources,
            self._max_retries, self._retry_exceptions, nested,
        )
        del keep
        if self._num_returns == 1:
            return refs[0]
        if self._num_returns == 0:
            return None
        return refs

    def bind(self, *args, **kwargs):
        raise NotImplementedError("DAG building with .bind() is not supported by raynode")


def remote(*args, **kwargs):
    """`@remote` or `@remote(**options)` on a function or a class."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make(args[0], {})
    if args:
        raise TypeError("The @ray.remote decorator must be applied either with no arguments or only keyword arguments")

    def decorator(target):
        return _make(target, kwargs)

    return decorator


def _make(target, options):
    if inspect.isclass(target):
        from ._actor import ActorClass

        return ActorClass(target, options)
    if inspect.isfunction(target) or inspect.isbuiltin(target) or callable(target):
        return RemoteFunction(target, options)
    raise TypeError("The @ray.remote decorator must be applied to either a function or a class.")


def method(*args, **kwargs):
    """`@method(num_returns=N)` on an actor method."""
    if args:
        raise TypeError("@ray.method takes keyword arguments only, e.g. @ray.method(num_returns=2)")
    for key in kwargs:
        if key not in ("num_returns", "concurrency_group", "max_task_retries", "retry_exceptions"):
            raise ValueError(f"Invalid option keyword {key} for @ray.method")

    def decorator(fn):
        fn.__raynode_method_options__ = dict(kwargs)
        return fn

    return decorator
