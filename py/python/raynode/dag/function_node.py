"""FunctionNode: a remote function bound to arguments; runs as a task."""

from typing import TYPE_CHECKING, Any

from .dag_node import DAGNode, Execution

if TYPE_CHECKING:
    from .._remote import RemoteFunction


class FunctionNode(DAGNode):
    """`f.bind(...)`: at execute, `f.remote(...)` with the values of its arguments."""

    def __init__(self, remote_function: "RemoteFunction", args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__(args, kwargs, remote_function._options)
        self._body = remote_function

    def _run(self, execution: Execution) -> Any:
        args, kwargs = self._resolved_args(execution)
        return self._body.remote(*args, **kwargs)

    def _describe(self) -> str:
        return self._body.__name__
