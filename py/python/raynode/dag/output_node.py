"""MultiOutputNode: several nodes as one graph; execute gives a list."""

from typing import Any

from .dag_node import DAGNode, Execution


class MultiOutputNode(DAGNode):
    """`MultiOutputNode([a, b])`: executing it gives `[value of a, value of b]`."""

    def __init__(self, outputs: list[DAGNode] | tuple[DAGNode, ...], *args: Any, **kwargs: Any) -> None:
        if not isinstance(outputs, (list, tuple)):
            raise TypeError(f"MultiOutputNode takes a list of DAG nodes, got {type(outputs).__name__}")
        super().__init__((list(outputs),))

    def _run(self, execution: Execution) -> Any:
        return execution.resolve(self._bound_args[0])
