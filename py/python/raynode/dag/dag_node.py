"""DAGNode, the base of every node, and what one `execute` does.

`execute(*args, **kwargs)` walks the graph from the node it is called on,
dependencies first, and submits each node once: a function node as a task,
a class node as a new actor, a method node as a call on its actor. A node's
value replaces it wherever it is an argument (also inside lists, tuples and
dicts), so tasks get refs exactly as with `.remote`. A node reached twice
runs once per execute.

As in Ray, every execute creates the graph's actors anew. An actor whose
handle stays inside the graph (only its methods were bound) is ended, by
`__ray_terminate__`, once the calls this execute made on it are done;
one whose handle was returned or passed to another node lives on.
"""

from collections.abc import Iterable, Sequence
from typing import Any, NoReturn


class DAGNode:
    """A step of a lazy graph, made by `.bind(...)`: run by `execute`."""

    def __init__(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None
    ) -> None:
        self._bound_args = tuple(args)
        self._bound_kwargs = dict(kwargs or {})
        self._bound_options = dict(options or {})

    def get_args(self) -> tuple[Any, ...]:
        return self._bound_args

    def get_kwargs(self) -> dict[str, Any]:
        return self._bound_kwargs

    def get_options(self) -> dict[str, Any]:
        return self._bound_options

    def _upstream(self) -> list["DAGNode"]:
        """The nodes this one needs run first: those in its arguments and any
        others a subclass names."""
        return nodes_in((self._bound_args, self._bound_kwargs)) + list(self._ordering_upstream())

    def _ordering_upstream(self) -> Sequence["DAGNode"]:
        """Nodes that must run first though they are not arguments."""
        return ()

    def _run(self, execution: "Execution") -> Any:
        """Submits this node; returns its value (refs, a handle, ...)."""
        raise NotImplementedError

    def _resolved_args(self, execution: "Execution") -> tuple[Any, Any]:
        return execution.resolve(list(self._bound_args)), execution.resolve(self._bound_kwargs)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the graph ending at this node with this input; returns this
        node's value: a ref (a list of refs for MultiOutputNode or
        num_returns > 1), or an actor handle for a class node."""
        return Execution(args, kwargs).run(self)

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            f"A DAG node ({type(self).__name__}) cannot be passed as a value or pickled: "
            "call .execute() on it to run the graph, and pass the refs it returns"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()})"

    def _describe(self) -> str:
        return ""


def nodes_in(value: Any) -> list[DAGNode]:
    """The DAG nodes in `value`: itself, or inside lists, tuples and dicts."""
    found: list[DAGNode] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, DAGNode):
            found.append(v)
        elif type(v) in (list, tuple):
            stack.extend(reversed(v))
        elif type(v) is dict:
            stack.extend(reversed(list(v.values())))
    return found


class Execution:
    """One `execute`: the input, and each node's value once it ran."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args = args
        self.kwargs = kwargs
        self.values: dict[int, Any] = {}  # id(node) -> value

    def run(self, root: DAGNode) -> Any:
        from .class_node import ClassNode
        from .input_node import InputNode

        order = topological_order(root)
        inputs = [n for n in order if isinstance(n, InputNode)]
        if len(inputs) > 1:
            raise ValueError("Each DAG may have only one InputNode; this one has several")
        if not inputs and (self.args or self.kwargs):
            raise TypeError("This DAG has no InputNode, so execute() takes no arguments")
        try:
            for node in order:
                self.values[id(node)] = node._run(self)
        except BaseException:
            # The caller gets nothing back: the actors made so far are no one's.
            for node in order:
                if isinstance(node, ClassNode) and id(node) in self.values:
                    self.values[id(node)].__ray_terminate__.remote()
            raise
        # Actors whose handles stay inside the graph end after this execute's calls.
        escaped = {id(root)}
        for node in order:
            escaped.update(id(n) for n in nodes_in((node._bound_args, node._bound_kwargs)))
        for node in order:
            if isinstance(node, ClassNode) and id(node) not in escaped:
                self.values[id(node)].__ray_terminate__.remote()
        return self.value(root)

    def value(self, node: DAGNode) -> Any:
        """A node's value where it is an argument or the result."""
        from .input_node import InputNode

        v = self.values[id(node)]
        if isinstance(node, InputNode):
            return v.whole()
        return v

    def resolve(self, value: Any) -> Any:
        """`value` with every node in it replaced by that node's value."""
        if isinstance(value, DAGNode):
            return self.value(value)
        if type(value) in (list, tuple):
            if not nodes_in(value):
                return value
            return type(value)(self.resolve(v) for v in value)
        if type(value) is dict:
            if not nodes_in(value):
                return value
            return {k: self.resolve(v) for k, v in value.items()}
        return value


def topological_order(root: DAGNode) -> list[DAGNode]:
    """Every node `root` needs, each once, each after the nodes it needs.
    Iterative, so long chains do not hit the recursion limit."""
    order: list[DAGNode] = []
    done: set[int] = set()
    entered: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if expanded:
            if key not in done:
                done.add(key)
                order.append(node)
            continue
        if key in done or key in entered:
            continue
        entered.add(key)
        stack.append((node, True))
        for up in reversed(node._upstream()):
            if id(up) not in done:
                stack.append((up, False))
    return order
