"""Actors: `@remote` classes, their handles and method calls."""

import inspect
import pickle

from . import _runtime
from ._remote import ACTOR_OPTIONS, Registration, check_options, pack_args, resource_list

# Ray's default concurrency for actors with async methods.
ASYNC_DEFAULT_CONCURRENCY = 1000


def _method_table(cls):
    """{method name: num_returns} of the public methods of `cls`."""
    table = {}
    for name, fn in inspect.getmembers(cls, predicate=lambda m: inspect.isfunction(m) or inspect.ismethod(m)):
        if name.startswith("__") and name != "__call__":
            continue
        opts = getattr(fn, "__raynode_method_options__", {})
        table[name] = opts.get("num_returns", 1)
    return table


def _is_async(cls):
    return any(inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn) for _, fn in inspect.getmembers(cls, inspect.isfunction))


class ActorClass:
    """A class made remote: `.remote(...)` creates an actor and returns its handle."""

    def __init__(self, cls, options):
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
        self._methods = _method_table(cls)
        self._is_async = _is_async(cls)
        try:
            self._init_signature = inspect.signature(cls.__init__)
        except (TypeError, ValueError):
            self._init_signature = None
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', use '{self.__name__}.remote()'."
        )

    def options(self, **options):
        merged = dict(self._options)
        merged.update(options)
        variant = ActorClass(self._cls, merged)
        variant._registration = self._registration
        return variant

    def remote(self, *args, **kwargs):
        if self._init_signature is not None and self._cls.__init__ is not object.__init__:
            try:
                self._init_signature.bind(None, *args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{self.__name__}.__init__() {e}") from None
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
        meta = pickle.dumps((self.__name__, fid, self._methods))
        kind = (
            "create", actor_id, name, namespace, opts.get("lifetime") == "detached",
            int(opts.get("max_restarts", 0)), int(opts.get("max_task_retries", 0)),
            int(concurrency), self._is_async, meta,
        )
        packed, names, nested, keep = pack_args(client, f"actor {self.__name__}", args, kwargs)
        client.submit(fid, f"{self.__name__}.__init__", packed, names, 0, resource_list(opts, 0), 0, False, nested, kind)
        del keep
        return ActorHandle(actor_id, self.__name__, fid, self._methods)


class ActorHandle:
    """A reference to an actor. Can be passed to tasks and other actors."""

    def __init__(self, actor_id, class_name, fid, methods):
        self._actor_id = actor_id
        self._class_name = class_name
        self._fid = fid
        self._methods = methods

    @classmethod
    def _from_meta(cls, actor_id, meta):
        class_name, fid, methods = pickle.loads(meta)
        return cls(actor_id, class_name, fid, methods)

    def __getattr__(self, name):
        methods = self.__dict__.get("_methods", {})
        if name not in methods:
            raise AttributeError(f"'{self.__dict__.get('_class_name', 'Actor')}' object has no attribute '{name}'")
        m = ActorMethod(self, name, methods[name])
        self.__dict__[name] = m
        return m

    def __reduce__(self):
        return (_rebuild_handle, (self._actor_id, self._class_name, self._fid, self._methods))

    def __repr__(self):
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __hash__(self):
        return hash(self._actor_id)

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id


def _rebuild_handle(actor_id, class_name, fid, methods):
    return ActorHandle(actor_id, class_name, fid, methods)


class ActorMethod:
    """`handle.method`: call `.remote(...)` to run it in the actor."""

    def __init__(self, handle, name, num_returns):
        self._handle = handle
        self._name = name
        self._num_returns = num_returns
        self._kind = ("method", handle._actor_id, name)
        self._label = f"{handle._class_name}.{name}"

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Actor methods cannot be called directly. Instead of running 'object.{self._name}()', "
            f"try 'object.{self._name}.remote()'."
        )

    def options(self, num_returns=None, **_ignored):
        m = ActorMethod(self._handle, self._name, self._num_returns if num_returns is None else num_returns)
        return m

    def remote(self, *args, **kwargs):
        client = _runtime.client()
        packed, names, nested, keep = pack_args(client, f"actor method {self._label}", args, kwargs)
        refs = client.submit(
            self._handle._fid, self._label, packed, names, self._num_returns, [], 0, False, nested, self._kind
        )
        del keep
        if self._num_returns == 1:
            return refs[0]
        if self._num_returns == 0:
            return None
        return refs
