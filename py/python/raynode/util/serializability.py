"""inspect_serializability: finds which part of an object cloudpickle cannot pickle."""

import inspect
import sys
from types import MappingProxyType
from typing import Any, List, Optional, Set, Tuple

import cloudpickle


class FailureTuple:
    """One object that cannot be pickled: the object, its name, and what holds it."""

    __slots__ = ("obj", "name", "parent")

    def __init__(self, obj: Any, name: str, parent: Any) -> None:
        self.obj = obj
        self.name = name
        self.parent = parent

    def __repr__(self) -> str:
        return f"FailTuple({self.name} [obj={self.obj!r}, parent={self.parent!r}])"


def inspect_serializability(
    base_obj: Any, name: Optional[str] = None, depth: int = 3, print_file: Optional[Any] = None
) -> Tuple[bool, Set[FailureTuple]]:
    """Whether `base_obj` pickles, and if not, the innermost parts that do not.

    Looks into what fails: a function's globals and closure variables, an
    object's or class's attributes, down to `depth` levels. A failing part
    none of whose own parts fail is reported as a cause. Prints what it
    finds to `print_file` (default stdout). Returns `(serializable, causes)`.
    """
    name = name or getattr(base_obj, "__name__", None) or repr(base_obj)
    out = print_file or sys.stdout
    print(f"Checking serializability of {name}", file=out)
    failures: set[FailureTuple] = set()
    ok = _check(base_obj, name, None, depth, failures, set(), out, 1)
    if ok:
        print(f"{name} is serializable", file=out)
    else:
        causes = ", ".join(sorted(f.name for f in failures))
        print(f"{name} is not serializable; the cause{'s' if len(failures) > 1 else ''}: {causes}", file=out)
    return ok, failures


def _check(
    obj: Any, name: str, parent: Any, depth: int, failures: Set[FailureTuple], seen: Set[int], out: Any, level: int
) -> bool:
    try:
        cloudpickle.dumps(obj)
        return True
    except Exception as e:  # noqa: BLE001 - any pickling error is the answer
        print(f"{'  ' * level}{name}: {type(e).__name__}: {e}", file=out)
    if id(obj) in seen:
        return False
    seen.add(id(obj))
    found_deeper = False
    if depth > 1:
        for child_name, child in _parts(obj):
            if not _check(child, child_name, obj, depth - 1, failures, seen, out, level + 1):
                found_deeper = True
    if not found_deeper:
        failures.add(FailureTuple(obj, name, parent))
    return False


def _parts(obj: Any) -> List[Tuple[str, Any]]:
    """(name, value) of what `obj` holds that pickling it pickles too."""
    if inspect.isfunction(obj):
        closure = inspect.getclosurevars(obj)
        return list(closure.globals.items()) + list(closure.nonlocals.items())
    attrs = getattr(obj, "__dict__", None)
    if not isinstance(attrs, (dict, MappingProxyType)):
        return []
    return [(k, v) for k, v in attrs.items() if not (k.startswith("__") and k.endswith("__"))]
