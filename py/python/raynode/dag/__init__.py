"""raynode.dag: lazy task graphs built with ``.bind()``, run with ``execute``.

    with InputNode() as inp:
        dag = combine.bind(f.bind(inp[0]), Model.bind(2).forward.bind(inp.x))
    ray.get(dag.execute(1, x=2))

Nodes: FunctionNode (`f.bind`), ClassNode (`Cls.bind`), ClassMethodNode
(`node.method.bind`, or `handle.method.bind` on a live actor), InputNode and
its parts, MultiOutputNode. `dag_node` says what an execute does.
"""

from .class_node import ClassMethodNode, ClassNode
from .dag_node import DAGNode
from .function_node import FunctionNode
from .input_node import InputAttributeNode, InputNode
from .output_node import MultiOutputNode

__all__ = [
    "ClassMethodNode",
    "ClassNode",
    "DAGNode",
    "FunctionNode",
    "InputAttributeNode",
    "InputNode",
    "MultiOutputNode",
]
