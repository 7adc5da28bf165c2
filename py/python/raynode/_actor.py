"""Actors: `@remote` classes, their handles and method calls.

A handle knows its methods' parameters (names and kinds, not defaults), so
a call with the wrong arguments raises TypeError at `.remote()`, wherever
the handle went. Every actor also answers `__ray_ready__` (True once its
constructor ran) and `__ray_terminate__` (ends it after the calls before).
"""

import inspect
import pickle
from typing import TYPE_CHECKING, Any, NoReturn

from . import _runtime
from ._remote import (
    ACTOR_OPTIONS, Registration, call_result, check_options, check_runtime_env, pack_args, resource_list,
    returns_of, scheduling_strategy, task_extras,
)

if TYPE_CHECKING:
    from .dag.class_node import ClassMethodNode, ClassNode

#: A method's parameters after `self`: (name, kind, has a default) each.
Params = tuple[tuple[str, int, bool], ...]
#: A method's num_returns: a count, "streaming" or "dynamic".
NumReturns = int | str

# Ray's default concurrency for actors with async methods.
ASYNC_DEFAULT_CONCURRENCY = 1000

# Methods every actor has: name -> parameters (none).
BUILTIN_METHODS: dict[str, Params] = {"__ray_ready__": (), "__ray_terminate__": ()}

_NO_DEFAULT = inspect.Parameter.empty


class _Default:
    """Stands for a parameter's default value, which stays with the class."""

    def __repr__(self) -> str:
        return "<default>"


_DEFAULT = _Default()


def _method_table(cls: type) -> tuple[dict[str, NumReturns], dict[str, Params | None]]:
    """{method name: num_returns} and {method name: parameters or None} of
    the public methods of `cls` (num_returns "streaming" for a method that
    yields, unless it says otherwise, as in Ray). Parameters are (name, kind, has default)
    after `self`: what checking a call's arguments needs, and picklable."""
    table: dict[str, NumReturns] = {}
    params: dict[str, Params | None] = {}
    for name, fn in inspect.getmembers(cls, predicate=lambda m: inspect.isfunction(m) or inspect.ismethod(m)):
        if name.startswith("__") and name != "__call__":
            continue
        opts = getattr(fn, "__raynode_method_options__", {})
        n: NumReturns | None = opts.get("num_returns")
        if n is None:
            yields = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
            n = "streaming" if yields else 1
        table[name] = n
        params[name] = _parameters(cls, name, fn)
    return table, params


def _parameters(cls: type, name: str, fn: Any) -> Params | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    ps = list(sig.parameters.values())
    bound = isinstance(inspect.getattr_static(cls, name, None), (staticmethod, classmethod)) or inspect.ismethod(fn)
    if not bound:
        if not ps or ps[0].kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            return None  # `self` comes in *args: nothing to check
        ps = ps[1:]
    return tuple((p.name, int(p.kind), p.default is not _NO_DEFAULT) for p in ps)


_KINDS = {int(k): k for k in (
    inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL,
    inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD,
)}


def _signature(params: Params) -> inspect.Signature:
    return inspect.Signature(
        [inspect.Parameter(n, _KINDS[k], default=_DEFAULT if d else _NO_DEFAULT) for n, k, d in params]
    )


def _is_async(cls: type) -> bool:
    return any(inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn) for _, fn in inspect.getmembers(cls, inspect.isfunction))


class ActorClass:
    """A class made remote: `.remote(...)` creates an actor and returns its handle."""

    def __init__(self, cls: type[Any], options: dict[str, Any]) -> None:
        check_options(options, ACTOR_OPTIONS, "an actor")
        lifetime = options.get("lifetime")
        if lifetime not in (None, "detached", "non_detached"):
            raise ValueError("lifetime must be either `None`, 'detached' or 'non_detached'")
        name = options.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError("The actor name must be a non-empty string")
        self._cls = cls
        self._options = options
        self._registration = Registration(cls)
        self._methods, self._params = _method_table(cls)
        self._is_async = _is_async(cls)
        self._runtime_env = check_runtime_env(options.get("runtime_env"))
        self._init_signature: inspect.Signature | None
        try:
            self._init_signature = inspect.signature(cls.__init__)
        except (TypeError, ValueError):
            self._init_signature = None
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', use '{self.__name__}.remote()'."
        )

    def options(self, **options: Any) -> "ActorClass":
        merged = dict(self._options)
        merged.update(options)
        variant = ActorClass(self._cls, merged)
        variant._registration = self._registration
        return variant

    def _check_init_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._init_signature is not None and self._cls.__init__ is not object.__init__:
            try:
                self._init_signature.bind(None, *args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{self.__name__}.__init__() {e}") from None

    def bind(self, *args: Any, **kwargs: Any) -> "ClassNode":
        """A DAG node that creates this actor when the DAG is executed."""
        from .dag.class_node import ClassNode

        self._check_init_args(args, kwargs)
        return ClassNode(self, args, kwargs)

    def remote(self, *args: Any, **kwargs: Any) -> "ActorHandle":
        self._check_init_args(args, kwargs)
        opts = self._options
        client = _runtime.client()
        name = opts.get("name")
        namespace = opts.get("namespace") or _runtime.namespace()
        if name is not None and opts.get("get_if_exists"):
            found = client.get_actor(name, namespace)
            if found is not None:
                return ActorHandle._from_meta(*found)
        fid = self._registration.function_id(client)
        actor_id = client.new_id()
        concurrency = opts.get("max_concurrency") or (ASYNC_DEFAULT_CONCURRENCY if self._is_async else 1)
        meta = pickle.dumps((self.__name__, fid, self._methods, self._params))
        kind = (
            "create", actor_id, name, namespace, opts.get("lifetime") == "detached",
            int(opts.get("max_restarts", 0)), int(opts.get("max_task_retries", 0)),
            int(concurrency), self._is_async, meta,
        )
        hidden = task_extras(self._runtime_env)
        if hidden:
            kwargs = {**kwargs, **hidden}
        resources = resource_list(opts, 0)
        strategy = scheduling_strategy(opts, resources, self.__name__)
        packed, names, nested, keep = pack_args(client, f"actor {self.__name__}", args, kwargs)
        client.submit(fid, f"{self.__name__}.__init__", packed, names, 0, resources, 0, False, nested, kind, strategy)
        del keep
        return ActorHandle(actor_id, self.__name__, fid, self._methods, self._params)


class ActorHandle:
    """A reference to an actor. Can be passed to tasks and other actors."""

    def __init__(
        self,
        actor_id: bytes,
        class_name: str,
        fid: bytes,
        methods: dict[str, NumReturns],
        params: dict[str, Params | None] | None = None,
    ) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._fid = fid
        self._methods = methods
        self._params = params or {}

    @classmethod
    def _from_meta(cls, actor_id: bytes, meta: bytes) -> "ActorHandle":
        return cls(actor_id, *pickle.loads(meta))

    def __getattr__(self, name: str) -> "ActorMethod":
        methods = self.__dict__.get("_methods", {})
        if name in methods:
            m = ActorMethod(self, name, methods[name], self.__dict__["_params"].get(name))
        elif name in BUILTIN_METHODS:
            m = ActorMethod(self, name, 1, BUILTIN_METHODS[name])
        else:
            raise AttributeError(f"'{self.__dict__.get('_class_name', 'Actor')}' object has no attribute '{name}'")
        self.__dict__[name] = m
        return m

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_handle, (self._actor_id, self._class_name, self._fid, self._methods, self._params))

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id


def _rebuild_handle(
    actor_id: bytes,
    class_name: str,
    fid: bytes,
    methods: dict[str, NumReturns],
    params: dict[str, Params | None] | None = None,
) -> ActorHandle:
    return ActorHandle(actor_id, class_name, fid, methods, params)


class ActorMethod:
    """`handle.method`: call `.remote(...)` to run it in the actor."""

    def __init__(self, handle: ActorHandle, name: str, num_returns: NumReturns, params: Params | None = None) -> None:
        self._handle = handle
        self._name = name
        self._num_returns = num_returns
        self._params = params
        self._signature = None if params is None else _signature(params)
        self._kind = ("method", handle._actor_id, name)
        self._label = f"{handle._class_name}.{name}"

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            f"Actor methods cannot be called directly. Instead of running 'object.{self._name}()', "
            f"try 'object.{self._name}.remote()'."
        )

    def options(self, num_returns: NumReturns | None = None, **_ignored: Any) -> "ActorMethod":
        n = self._num_returns if num_returns is None else num_returns
        return ActorMethod(self._handle, self._name, n, self._params)

    def _check_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._signature is not None:
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{self._label}() {e}") from None

    def bind(self, *args: Any, **kwargs: Any) -> "ClassMethodNode":
        """A DAG node that calls this method of this actor when the DAG is executed."""
        from .dag.class_node import ClassMethodNode

        self._check_args(args, kwargs)
        return ClassMethodNode(self._handle, self._name, self._num_returns, args, kwargs)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        self._check_args(args, kwargs)
        client = _runtime.client()
        packed, names, nested, keep = pack_args(client, f"actor method {self._label}", args, kwargs)
        n, generator = returns_of(self._num_returns, None)
        refs = client.submit(
            self._handle._fid, self._label, packed, names, n, [], 0, False, nested, self._kind, None, generator
        )
        del keep
        return call_result(client, refs, n, generator)
