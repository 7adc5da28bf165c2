"""FunctionNode: a remote function bound to arguments; runs as a task."""

from .dag_node import DAGNode


class FunctionNode(DAGNode):
    """`f.bind(...)`: at execute, `f.remote(...)` with the values of its arguments."""

    def __init__(self, remote_function, args, kwargs):
        super().__init__(args, kwargs, remote_function._options)
        self._body = remote_function

    def _run(self, execution):
        args, kwargs = self._resolved_args(execution)
        return self._body.remote(*args, **kwargs)

    def _describe(self):
        return self._body.__name__
