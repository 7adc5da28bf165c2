"""ClassNode and ClassMethodNode: actors and their calls in a graph.

Methods bound on one ClassNode run in the order they were bound: each
method node runs after the one bound before it on that node, whether or
not that one is otherwise part of the graph (as in Ray's documented
example, where `a.inc.bind(2)` alone, then `a.get.bind()`, counts the inc).
"""

from .dag_node import DAGNode


class ClassNode(DAGNode):
    """`Cls.bind(...)`: at execute, `Cls.remote(...)`; `node.method.bind(...)` calls it."""

    def __init__(self, actor_class, args, kwargs):
        super().__init__(args, kwargs, actor_class._options)
        self._body = actor_class
        self._last_call = None

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        body = self.__dict__["_body"]
        if name not in body._methods:
            raise AttributeError(f"'{body.__name__}' has no method '{name}'")
        return _UnboundMethod(self, name, body._methods[name])

    def _run(self, execution):
        args, kwargs = self._resolved_args(execution)
        return self._body.remote(*args, **kwargs)

    def _describe(self):
        return self._body.__name__


class _UnboundMethod:
    """`class_node.method`: `.bind(...)` makes a ClassMethodNode."""

    def __init__(self, class_node, name, num_returns):
        self._node = class_node
        self._name = name
        self._num_returns = num_returns

    def options(self, num_returns=None, **_ignored):
        n = self._num_returns if num_returns is None else num_returns
        return _UnboundMethod(self._node, self._name, n)

    def bind(self, *args, **kwargs):
        from .._actor import _signature

        node = self._node
        params = node._body._params.get(self._name)
        if params is not None:
            try:
                _signature(params).bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{node._body.__name__}.{self._name}() {e}") from None
        call = ClassMethodNode(node, self._name, self._num_returns, args, kwargs, after=node._last_call)
        node._last_call = call
        return call


class ClassMethodNode(DAGNode):
    """A method call bound on a ClassNode or on a live actor's handle."""

    def __init__(self, target, method, num_returns, args, kwargs, after=None):
        super().__init__(args, kwargs, {"num_returns": num_returns})
        self._target = target
        self._method = method
        self._num_returns = num_returns
        self._after = after

    def _ordering_upstream(self):
        first = []
        if isinstance(self._target, DAGNode):
            first.append(self._target)
        if self._after is not None:
            first.append(self._after)
        return first

    def _run(self, execution):
        handle = execution.values[id(self._target)] if isinstance(self._target, DAGNode) else self._target
        args, kwargs = self._resolved_args(execution)
        method = getattr(handle, self._method).options(num_returns=self._num_returns)
        return method.remote(*args, **kwargs)

    def _describe(self):
        return self._method
