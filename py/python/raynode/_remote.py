"""`@remote` functions: options, argument packing, submission.

A task may carry what the node does not look at, as keyword arguments
whose names are not identifiers (so no function's own), which the worker
takes out before the call: `TASK_ENV`, its runtime_env (its own over the
one it inherits: the job's, or that of the task or actor submitting it;
see `_runtime_env`), decoded and applied before anything else of the task
is unpickled; and `TASK_EXTRAS`, the exception types `retry_exceptions`
lists.
"""

import hashlib
import inspect
import io
import math
import types
from collections import ChainMap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar, cast, overload

import cloudpickle

from . import _core, _runtime, _runtime_env, _serialization
from ._core import ObjectRef

if TYPE_CHECKING:
    from ._actor import ActorClass
    from .dag.function_node import FunctionNode

TASK_EXTRAS = "raynode:task"
TASK_ENV = "raynode:env"

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


def is_amount(v: object) -> bool:
    """A resource amount: a finite number >= 0 (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def check_options(options: dict[str, Any], allowed: set[str], what: str) -> None:
    for key in options:
        if key not in allowed:
            raise ValueError(f"Invalid option keyword {key} for {what}. Valid ones are {sorted(allowed)}.")
    for key in ("num_cpus", "num_gpus"):
        v = options.get(key)
        if v is not None and not is_amount(v):
            raise ValueError(f"The keyword '{key}' only accepts a finite non-negative number, got {v!r}")
    res = options.get("resources")
    if res is not None:
        if not isinstance(res, dict):
            raise TypeError("resources must be a dict of resource name to amount")
        for k, v in res.items():
            if k in ("CPU", "GPU"):
                raise ValueError(f"Use the 'num_{k.lower()}s' keyword instead of resources['{k}']")
            if not is_amount(v):
                raise ValueError(f"Resource quantities must be finite non-negative numbers, got {k}={v!r}")
    n = options.get("num_returns")
    if n is not None and n not in GENERATOR_MODES and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
        raise ValueError(f"num_returns must be a non-negative integer, 'streaming' or 'dynamic', got {n!r}")
    if "retry_exceptions" in options:
        retry_types(options["retry_exceptions"])
    if "runtime_env" in options:
        check_runtime_env(options["runtime_env"])


GENERATOR_MODES = ("streaming", "dynamic")


def returns_of(num_returns: int | str | None, function: Callable[..., Any] | None) -> tuple[int, str | None]:
    """(returns the node makes, generator mode or None) for a call of
    `function` asking for `num_returns` (None: the default, which for a
    function that yields is "streaming", as in Ray)."""
    if num_returns is None:
        yields = inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function)
        num_returns = "streaming" if yields else 1
    if isinstance(num_returns, str) and num_returns in GENERATOR_MODES:
        return 1, num_returns
    # An int, as `check_options` made sure (or what `submit` refuses).
    return cast(int, num_returns), None


def call_result(client: _core.Client, refs: list[ObjectRef], num_returns: int, generator: str | None) -> Any:
    """What `.remote()` gives for the refs of a call."""
    if generator == "streaming":
        from ._generators import ObjectRefGenerator

        return ObjectRefGenerator(refs[0], client)
    if num_returns == 1:
        return refs[0]
    if num_returns == 0:
        return None
    return refs


def retry_types(value: object) -> tuple[bool, tuple[type[BaseException], ...] | None]:
    """`retry_exceptions` as (retry at all, the types to retry for or None for any)."""
    if value is None or isinstance(value, bool):
        return bool(value), None
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"The type of keyword 'retry_exceptions' must be a bool, list or tuple, but received {type(value).__name__}"
        )
    for t in value:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise ValueError(f"retry_exceptions must be either a boolean or a list of exceptions, got {t!r} in it")
    return bool(value), tuple(value)


def check_runtime_env(env: dict[str, Any] | None) -> _runtime_env.Spec:
    """A runtime_env checked (a `_runtime_env.Spec`), refusing what raynode does not apply."""
    return _runtime_env.check(env)


def inherited_runtime_env() -> _runtime_env.Resolved | None:
    """The runtime_env work submitted from here inherits: the running
    task's or actor's in a worker, else the job's (`init(runtime_env=...)`)."""
    if _runtime.is_worker():
        env: _runtime_env.Resolved | None = getattr(_runtime._current, "runtime_env", None)
        return env
    from . import _api

    return _api.job_runtime_env()


def task_extras(
    spec: _runtime_env.Spec, retry_on: tuple[type[BaseException], ...] | None = None
) -> dict[str, Any]:
    """The hidden keyword arguments of a task: {name: value}, maybe empty."""
    hidden: dict[str, Any] = {}
    env = _runtime_env.resolve(spec, inherited_runtime_env())
    if env:
        hidden[TASK_ENV] = env
    if retry_on is not None:
        hidden[TASK_EXTRAS] = {"retry_on": retry_on}
    return hidden


def scheduling_strategy(
    options: dict[str, Any], resources: list[tuple[str, float]], what: str
) -> tuple[Any, ...] | None:
    """The strategy a task or actor asks for, as `client.submit` takes it:
    None for the default, ("spread",), ("affinity", node_hex, soft) or
    ("group", group_id, bundle_index, capture_child_tasks). Checked here,
    so that a bad one raises at the call (as Ray's). A task with no
    strategy of its own, started inside a placement group that captures
    child tasks, runs in that group."""
    from .util.placement_group import PlacementGroup
    from .util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

    s = options.get("scheduling_strategy")
    if s is None and options.get("placement_group") not in (None, "default"):
        s = PlacementGroupSchedulingStrategy(
            options["placement_group"],
            options.get("placement_group_bundle_index", -1),
            options.get("placement_group_capture_child_tasks"),
        )
    if s is None:
        current = getattr(_runtime._current, "placement_group", None)
        if current is not None and current[2]:
            return ("group", current[0], -1, True)
        return None
    if s == "DEFAULT":
        return None
    if s == "SPREAD":
        return ("spread",)
    if isinstance(s, NodeAffinitySchedulingStrategy):
        try:
            raw = bytes.fromhex(s.node_id)
        except ValueError:
            raw = b""
        if len(raw) != 16:
            raise ValueError(f"NodeAffinitySchedulingStrategy: {s.node_id!r} is not a node id (32 hex digits)")
        return ("affinity", s.node_id, s.soft)
    if isinstance(s, PlacementGroupSchedulingStrategy):
        pg = s.placement_group
        if pg is None or pg == "default":
            return None
        if not isinstance(pg, PlacementGroup):
            raise TypeError(f"placement_group must be a PlacementGroup, got {type(pg).__name__}")
        index = s.placement_group_bundle_index
        if index is None:
            index = -1
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"placement_group_bundle_index must be an int, got {index!r}")
        specs = pg.bundle_specs
        if index < -1 or index >= len(specs):
            raise ValueError(
                f"placement group bundle index {index} is invalid. Valid placement group indexes: 0-{len(specs) - 1}"
            )
        demand = {k: v for k, v in resources if v > 0}
        candidates = specs if index == -1 else [specs[index]]

        def fits(bundle: dict[str, float]) -> bool:
            return all(bundle.get(k, 0) + 1e-9 >= v for k, v in demand.items())

        if demand and not any(fits(b) for b in candidates):
            raise ValueError(
                f"Cannot schedule {what} with the placement group because the resource request {demand} "
                f"cannot fit into any bundles for the placement group, {specs}."
            )
        return ("group", pg.id.binary(), index, bool(s.placement_group_capture_child_tasks))
    raise ValueError(
        f"scheduling_strategy must be None, 'DEFAULT', 'SPREAD', a NodeAffinitySchedulingStrategy or a "
        f"PlacementGroupSchedulingStrategy, got {s!r}"
    )


def resource_list(options: dict[str, Any], default_cpus: float) -> list[tuple[str, float]]:
    cpus = options.get("num_cpus")
    out = [("CPU", float(default_cpus if cpus is None else cpus))]
    gpus = options.get("num_gpus")
    if gpus:
        out.append(("GPU", float(gpus)))
    for k, v in (options.get("resources") or {}).items():
        out.append((k, float(v)))
    return [(k, v) for k, v in out if v > 0]


_Reduced = tuple[Any, tuple[Any, ...]]
_cloudpickle_code_reduce: Callable[[types.CodeType], _Reduced] = cloudpickle.Pickler.dispatch_table[types.CodeType]


def _code_reduce_keeping_filename(code: types.CodeType) -> _Reduced:
    make, args = _cloudpickle_code_reduce(code)
    return make, tuple(code.co_filename if type(a) is str and a == "<dynamic-code>" else a for a in args)


class _DefinitionPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle is untyped
    """cloudpickle, but code keeps the file it was defined in (cloudpickle
    puts "<dynamic-code>"), so remote tracebacks name the user's file and,
    where it exists, show its lines."""

    dispatch_table = ChainMap({types.CodeType: _code_reduce_keeping_filename}, cloudpickle.Pickler.dispatch_table)


def pickle_definition(obj: Any) -> bytes:
    with io.BytesIO() as f:
        _DefinitionPickler(f, protocol=5).dump(obj)
        return f.getvalue()


class Registration:
    """A pickled definition, registered once per client connection."""

    __slots__ = ("obj", "body", "fid", "client")

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.body: bytes | None = None
        self.fid: bytes | None = None
        self.client: _core.Client | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # The connection is this process's own; a copy registers anew.
        return (Registration, (self.obj,))

    def _pickled(self) -> tuple[bytes, bytes]:
        """(function id, pickled definition), made on first use."""
        if self.body is None or self.fid is None:
            self.body = pickle_definition(self.obj)
            self.fid = hashlib.blake2b(self.body, digest_size=16).digest()
        return self.fid, self.body

    def function_id(self, client: _core.Client) -> bytes:
        fid, body = self._pickled()
        if self.client is not client:
            client.register_function(fid, body)
            self.client = client
        return fid


def pack_args(
    client: _core.Client, what: str, args: Sequence[Any], kwargs: dict[str, Any]
) -> tuple[list[Any], list[str], list[bytes], list[ObjectRef]]:
    """Arguments as the node takes them: refs as refs, small values inline,
    large values put in the store first. Returns (args, kw names, nested
    refs, puts to keep alive until the submit is sent)."""
    out: list[Any] = []
    nested: list[bytes] = []
    keep: list[ObjectRef] = []
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

    def __init__(self, function: Callable[..., Any], options: dict[str, Any]) -> None:
        check_options(options, TASK_OPTIONS, "a remote function")
        self._function = function
        self._options = options
        self._signature = inspect.signature(function)
        self._registration = Registration(function)
        qualname: str = getattr(function, "__qualname__", function.__name__)
        self._name: str = options.get("name") or qualname
        self._resources = resource_list(options, 1)
        self._num_returns, self._generator = returns_of(options.get("num_returns"), function)
        self._max_retries = options.get("max_retries", 3)
        self._retry_exceptions, self._retry_on = retry_types(options.get("retry_exceptions", False))
        self._runtime_env = check_runtime_env(options.get("runtime_env"))
        self.__doc__ = function.__doc__
        self.__name__ = function.__name__
        self.__wrapped__ = function

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            f"Remote functions cannot be called directly. Instead of running '{self.__name__}()', "
            f"try '{self.__name__}.remote()'."
        )

    def options(self, **options: Any) -> "RemoteFunction":
        merged = dict(self._options)
        merged.update(options)
        variant = RemoteFunction(self._function, merged)
        variant._registration = self._registration
        return variant

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.__name__}() {e}") from None
        client = _runtime.client()
        fid = self._registration.function_id(client)
        hidden = task_extras(self._runtime_env, self._retry_on)
        if hidden:
            kwargs = {**kwargs, **hidden}
        packed, names, nested, keep = pack_args(client, f"task {self._name}", args, kwargs)
        strategy = scheduling_strategy(self._options, self._resources, self._name)
        refs = client.submit(
            fid, self._name, packed, names, self._num_returns, self._resources,
            self._max_retries, self._retry_exceptions, nested, None, strategy, self._generator,
        )
        del keep
        return call_result(client, refs, self._num_returns, self._generator)

    def bind(self, *args: Any, **kwargs: Any) -> "FunctionNode":
        """A DAG node that runs this function when the DAG is executed."""
        from .dag.function_node import FunctionNode

        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.__name__}() {e}") from None
        return FunctionNode(self, args, kwargs)


class _Decorator(Protocol):
    """What `@remote(**options)` gives: the decorator itself."""

    # A class is callable too: the first overload that matches wins.
    @overload
    def __call__(self, target: type, /) -> "ActorClass": ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, target: Callable[..., Any], /) -> RemoteFunction: ...


@overload
def remote(function_or_class: type, /) -> "ActorClass": ...  # type: ignore[overload-overlap]
@overload
def remote(function_or_class: Callable[..., Any], /) -> RemoteFunction: ...
@overload
def remote(**options: Any) -> _Decorator: ...


def remote(*args: Any, **kwargs: Any) -> Any:
    """`@remote` or `@remote(**options)` on a function or a class."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make(args[0], {})
    if args:
        raise TypeError("The @ray.remote decorator must be applied either with no arguments or only keyword arguments")

    def decorator(target: Any) -> "RemoteFunction | ActorClass":
        return _make(target, kwargs)

    return decorator


def _make(target: Any, options: dict[str, Any]) -> "RemoteFunction | ActorClass":
    if inspect.isclass(target):
        from ._actor import ActorClass

        return ActorClass(target, options)
    if inspect.isfunction(target) or inspect.isbuiltin(target) or callable(target):
        return RemoteFunction(target, options)
    raise TypeError("The @ray.remote decorator must be applied to either a function or a class.")


_F = TypeVar("_F", bound=Callable[..., Any])


def method(*args: Any, **kwargs: Any) -> Callable[[_F], _F]:
    """`@method(num_returns=N)` on an actor method."""
    if args:
        raise TypeError("@ray.method takes keyword arguments only, e.g. @ray.method(num_returns=2)")
    for key in kwargs:
        if key not in ("num_returns", "concurrency_group", "max_task_retries", "retry_exceptions"):
            raise ValueError(f"Invalid option keyword {key} for @ray.method")

    def decorator(fn: _F) -> _F:
        fn.__raynode_method_options__ = dict(kwargs)  # type: ignore[attr-defined]
        return fn

    return decorator
