"""ClassNode and ClassMethodNode: actors and their calls in a graph.

Methods bound on one ClassNode run in the order they were bound: each
method node runs after the one bound before it on that node, whether or
not that one is otherwise part of the graph (as in Ray's documented
example, where `a.inc.bind(2)` alone, then `a.get.bind()`, counts the inc).
"""

from typing import TYPE_CHECKING, Any

from .dag_node import DAGNode, Execution

if TYPE_CHECKING:
    from .._actor import ActorClass, ActorHandle, NumReturns


class ClassNode(DAGNode):
    """`Cls.bind(...)`: at execute, `Cls.remote(...)`; `node.method.bind(...)` calls it."""

    def __init__(self, actor_class: "ActorClass", args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__(args, kwargs, actor_class._options)
        self._body = actor_class
        self._last_call: ClassMethodNode | None = None

    def __getattr__(self, name: str) -> "_UnboundMethod":
        if name.startswith("_"):
            raise AttributeError(name)
        body: ActorClass = self.__dict__["_body"]
        if name not in body._methods:
            raise AttributeError(f"'{body.__name__}' has no method '{name}'")
        return _UnboundMethod(self, name, body._methods[name])

    def _run(self, execution: Execution) -> "ActorHandle":
        args, kwargs = self._resolved_args(execution)
        return self._body.remote(*args, **kwargs)

    def _describe(self) -> str:
        return self._body.__name__


class _UnboundMethod:
    """`class_node.method`: `.bind(...)` makes a ClassMethodNode."""

    def __init__(self, class_node: ClassNode, name: str, num_returns: "NumReturns") -> None:
        self._node = class_node
        self._name = name
        self._num_returns = num_returns

    def options(self, num_returns: "NumReturns | None" = None, **_ignored: Any) -> "_UnboundMethod":
        n = self._num_returns if num_returns is None else num_returns
        return _UnboundMethod(self._node, self._name, n)

    def bind(self, *args: Any, **kwargs: Any) -> "ClassMethodNode":
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

    def __init__(
        self,
        target: "ClassNode | ActorHandle",
        method: str,
        num_returns: "NumReturns",
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        after: "ClassMethodNode | None" = None,
    ) -> None:
        super().__init__(args, kwargs, {"num_returns": num_returns})
        self._target = target
        self._method = method
        self._num_returns = num_returns
        self._after = after

    def _ordering_upstream(self) -> list[DAGNode]:
        first: list[DAGNode] = []
        if isinstance(self._target, DAGNode):
            first.append(self._target)
        if self._after is not None:
            first.append(self._after)
        return first

    def _run(self, execution: Execution) -> Any:
        handle = execution.values[id(self._target)] if isinstance(self._target, DAGNode) else self._target
        args, kwargs = self._resolved_args(execution)
        method = getattr(handle, self._method).options(num_returns=self._num_returns)
        return method.remote(*args, **kwargs)

    def _describe(self) -> str:
        return self._method
