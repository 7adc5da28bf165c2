"""InputNode: what `execute(...)` is given, and access into it.

One positional argument and no keywords: the node stands for that value,
and `inp[k]` / `inp.name` are `value[k]` / `value.name`. Otherwise the node
stands for the arguments as a whole: `inp[i]` is the i-th positional one,
`inp["name"]` and `inp.name` the keyword one.
"""

from typing import Any, Literal

from .dag_node import DAGNode, Execution

#: How a part is taken: `value[key]` or `value.key`.
How = Literal["item", "attr"]


class _Parts(DAGNode):
    """`node.name` and `node[key]`: a part of what the node gives."""

    def __getattr__(self, name: str) -> "InputAttributeNode":
        if name.startswith("_"):
            raise AttributeError(name)
        return InputAttributeNode(self, name, "attr")

    def __getitem__(self, key: Any) -> "InputAttributeNode":
        return InputAttributeNode(self, key, "item")


class InputNode(_Parts, DAGNode):
    """The DAG's input. Build the graph inside `with InputNode() as inp:`.

    A graph has at most one InputNode.
    """

    def __init__(self, *args: Any, input_type: Any = None, **kwargs: Any) -> None:
        if args or kwargs:
            raise TypeError("InputNode() takes no arguments; pass the input to execute()")
        super().__init__()
        self.input_type = input_type

    def __enter__(self) -> "InputNode":
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        return False

    def _run(self, execution: Execution) -> "_Input":
        return _Input(execution.args, execution.kwargs)


class InputAttributeNode(_Parts, DAGNode):
    """`inp[key]` or `inp.name`: part of the input, resolved at execute."""

    def __init__(self, parent: _Parts, key: Any, how: How) -> None:
        super().__init__()
        self._parent = parent
        self._key = key
        self._how = how

    def _ordering_upstream(self) -> tuple[DAGNode, ...]:
        return (self._parent,)

    def _run(self, execution: Execution) -> Any:
        parent = execution.values[id(self._parent)]
        if isinstance(parent, _Input):
            return parent.part(self._key, self._how)
        return parent[self._key] if self._how == "item" else getattr(parent, self._key)

    def _describe(self) -> str:
        return f"[{self._key!r}]" if self._how == "item" else f".{self._key}"


class _Input:
    """The arguments of one execute."""

    __slots__ = ("args", "kwargs")

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args = args
        self.kwargs = kwargs

    def _single(self) -> bool:
        return len(self.args) == 1 and not self.kwargs

    def whole(self) -> Any:
        if not self._single():
            raise TypeError(
                "The DAG's InputNode stands for one value, but execute() got "
                f"{len(self.args)} positional and {len(self.kwargs)} keyword arguments; "
                "pass one value, or bind parts of the input: inp[0], inp['name'], inp.name"
            )
        return self.args[0]

    def part(self, key: Any, how: How) -> Any:
        if self._single():
            value = self.args[0]
            return value[key] if how == "item" else getattr(value, key)
        if how == "item" and isinstance(key, int):
            return self.args[key]
        if key not in self.kwargs:
            raise KeyError(f"execute() got no keyword argument {key!r} for the DAG's input")
        return self.kwargs[key]
