"""MultiOutputNode: several nodes as one graph; execute gives a list."""

from .dag_node import DAGNode


class MultiOutputNode(DAGNode):
    """`MultiOutputNode([a, b])`: executing it gives `[value of a, value of b]`."""

    def __init__(self, outputs, *args, **kwargs):
        if not isinstance(outputs, (list, tuple)):
            raise TypeError(f"MultiOutputNode takes a list of DAG nodes, got {type(outputs).__name__}")
        super().__init__((list(outputs),))

    def _run(self, execution):
        return execution.resolve(self._bound_args[0])
