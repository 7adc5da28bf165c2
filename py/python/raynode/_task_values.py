"""A call's values as its worker handles them.

The arguments of a task or actor call decoded (its runtime_env first, so
that the others may import from it), its return values split and counted,
a generator task's items numbered, and what a call that raised reports:
its traceback without raynode's frames, its text for the task table, and
the address of the machine it ran on.
"""

from __future__ import annotations

import os
import socket
import traceback
from typing import Any

from . import _core, _runtime_env, _serialization
from ._remote import TASK_ENV

#: A call's num_returns: a count, or a generator's mode ("streaming", "dynamic").
Returns = int | str

#: Longest error description the task table keeps.
MAX_ERROR_TEXT = 4096

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_traceback(exc: BaseException) -> str:
    """The traceback of `exc` as the user's code sees it: without raynode's
    own frames (this loop, `get` inside a task, deserialization)."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    seen: set[int] = set()
    stack = [te]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list(
            [f for f in t.stack if not f.filename.startswith(_PACKAGE_DIR)]
        )
        stack.extend(c for c in (t.__cause__, t.__context__) if c is not None)
    return "".join(te.format())


_node_ip: str | None = None


def node_ip() -> str:
    """This machine's address as other machines see it (the one its
    default route leaves from), for error texts."""
    global _node_ip
    if _node_ip is None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            _node_ip = s.getsockname()[0]
        except OSError:
            _node_ip = "127.0.0.1"
        finally:
            s.close()
    return _node_ip


def take_env(
    values: list[_core.GotValue], kwnames: list[str]
) -> tuple[_runtime_env.Resolved | None, list[_core.GotValue], list[str]]:
    """(the task's runtime_env or None, the other values, their keyword
    names): the runtime_env decoded, before anything that may need it."""
    if TASK_ENV not in kwnames:
        return None, values, kwnames
    kwnames = list(kwnames)
    values = list(values)
    at = len(values) - len(kwnames) + kwnames.index(TASK_ENV)
    env: _runtime_env.Resolved | None = _serialization.deserialize(values.pop(at))
    kwnames.remove(TASK_ENV)
    return env, values, kwnames


def unpack_arg(value: _core.GotValue) -> Any:
    """An argument's value. A stored one whose file changed after the node
    named it (spilled, or a copy evicted under memory pressure) is asked
    for again by id: the node restores or fetches it."""
    try:
        return _serialization.deserialize(value)
    except _serialization.StalePath:
        from . import _api

        return _api.get(_core.ObjectRef(bytes(value[2])))


def unpack_args(values: list[_core.GotValue], kwnames: list[str]) -> tuple[list[Any], dict[str, Any]]:
    decoded = [unpack_arg(v) for v in values]
    if not kwnames:
        return decoded, {}
    split = len(decoded) - len(kwnames)
    return decoded[:split], dict(zip(kwnames, decoded[split:]))


class Items:
    """The items a generator task made so far."""

    def __init__(self, task_id: bytes) -> None:
        self.task_id = task_id
        self.ids: list[bytes] = []

    def next(self) -> tuple[int, bytes]:
        """The next item's index (from 1) and object id."""
        index = len(self.ids) + 1
        object_id = self.task_id + index.to_bytes(4, "big")
        self.ids.append(object_id)
        return index, object_id


def returns_count(num_returns: Returns) -> int:
    """How many return values a call has: a generator has one, its end."""
    return 1 if isinstance(num_returns, str) else num_returns


def split_returns(result: Any, num_returns: int, name: str) -> list[Any]:
    if num_returns == 1:
        return [result]
    if num_returns == 0:
        return []
    try:
        values = list(result)
    except TypeError:
        raise ValueError(f"{name} declared num_returns={num_returns} but returned a {type(result).__name__}") from None
    if len(values) != num_returns:
        raise ValueError(f"{name} declared num_returns={num_returns} but returned {len(values)} values")
    return values


def describe_error(exc: BaseException) -> str:
    """An exception as the task table shows it: its type and message."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."
