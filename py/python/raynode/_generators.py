"""Generator tasks, as Ray 2.x has them.

A remote function or actor method that `yield`s runs as a generator task.
Its worker reports each item as soon as it is made; each item is an object
of its own, owned by the caller like any return value. The task's one
return, its *end*, is set when it ends.

- By default (`num_returns="streaming"`) the call gives an
  `ObjectRefGenerator`: `next(gen)` gives the next item's ref as soon as
  that item exists, before the task has finished. The caller's node holds
  the items not taken yet; dropping the generator drops them.
- With `num_returns="dynamic"` the call gives one ref, ready when the task
  ends, whose value is a `DynamicObjectRefGenerator` over every item.

An exception raised by the generator is the value of the item where it
happened, and the stream ends after it. A task that fails as a whole (its
worker died and it has no retries left, or it was cancelled before it
ran) ends its stream with one more item that holds that error.
"""

import asyncio
import collections
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, cast

from . import _core, _runtime

# How long `ray.wait` on generators sleeps between looks, at most.
WAIT_POLL_MAX_S = 0.02

# Items taken from the node at once when more than one is ready.
TAKE_AT_ONCE = 64


class ObjectRefGenerator:
    """The refs of a streaming generator task's items, in order, as they
    are made. Iterate it with `for` / `next()`, or `async for`."""

    def __init__(self, end: _core.ObjectRef, client: _core.Client) -> None:
        self._end = end
        self._client = client
        self._index = 1  # the next index to ask the node for
        self._ahead: collections.deque[_core.ObjectRef] = collections.deque()  # items taken and not given yet
        self._finished = False
        self._lock = threading.Lock()

    def __iter__(self) -> "ObjectRefGenerator":
        return self

    def __next__(self) -> _core.ObjectRef:
        ref = self._next(None)
        assert ref is not None  # with no timeout the node answers items or the end
        return ref

    def _next_sync(self, timeout_s: float | None = None) -> _core.ObjectRef:
        """The next item's ref, waiting up to `timeout_s` seconds (None or
        -1: for ever). A nil ref if it is not made in time; raises
        `StopIteration` once the task ended with no more items."""
        if timeout_s is not None and timeout_s < 0:
            timeout_s = None
        ref = self._next(timeout_s)
        return _core.ObjectRef.nil() if ref is None else ref

    def _next(self, timeout: float | None) -> _core.ObjectRef | None:
        with self._lock:
            if not self._ahead:
                if self._finished:
                    raise StopIteration
                self._settle(self._client.next_item(self._end, self._index, TAKE_AT_ONCE, timeout))
            return self._ahead.popleft() if self._ahead else None

    def _settle(self, got: list[_core.ObjectRef] | None | Literal[False]) -> None:
        """Files what the node answered for the next items: refs (they are
        taken), None (no more: StopIteration) or False (not made yet)."""
        if got is None:
            self._finished = True
            raise StopIteration
        if got is False:
            return
        self._ahead.extend(got)
        self._index += sum(1 for r in got if r != self._end)

    def _poll(self) -> bool:
        """Takes ahead what the node has ready now; returns whether an item
        is waiting to be given (False once the stream has ended)."""
        with self._lock:
            if not self._ahead and not self._finished:
                try:
                    self._settle(self._client.next_item(self._end, self._index, TAKE_AT_ONCE, 0))
                except StopIteration:
                    pass
            return bool(self._ahead)

    def next_ready(self) -> bool:
        """Whether `next()` gives a ref at once (False when it would raise
        StopIteration: see `is_finished`)."""
        return self._poll()

    def is_finished(self) -> bool:
        """Whether the task ended and every item was taken."""
        return not self._poll() and self._finished

    def completed(self) -> _core.ObjectRef:
        """A ref that is ready when the task has ended (its `get` raises if
        the task failed as a whole)."""
        return self._end

    def __aiter__(self) -> "ObjectRefGenerator":
        return self

    async def __anext__(self) -> _core.ObjectRef:
        from . import _futures

        while True:
            with self._lock:
                if self._ahead:
                    return self._ahead.popleft()
                if self._finished:
                    raise StopAsyncIteration
                index = self._index
            got = await asyncio.wrap_future(_futures.next_item(self._end, index, TAKE_AT_ONCE))
            with self._lock:
                if index != self._index:
                    continue  # another consumer took these items first
                try:
                    self._settle(got)
                except StopIteration:
                    raise StopAsyncIteration from None

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            "an ObjectRefGenerator cannot be passed to another task or actor: "
            "pass the refs it yields, or use num_returns='dynamic'"
        )

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._end.task_id()})"


class DynamicObjectRefGenerator:
    """The value of a `num_returns="dynamic"` task's ref: the refs of every
    item it yielded, in order."""

    def __init__(self, refs: Iterable[_core.ObjectRef]) -> None:
        self._refs = list(refs)

    def __iter__(self) -> Iterator[_core.ObjectRef]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (DynamicObjectRefGenerator, (self._refs,))

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} items)"


def dynamic_end(item_ids: list[bytes]) -> "_DynamicIds":
    """The end value of a dynamic generator task made of `item_ids`,
    pickled without counting refs in the worker: the refs are made where
    the value is read."""
    return _DynamicIds(item_ids)


class _DynamicIds:
    def __init__(self, ids: list[bytes]) -> None:
        self.ids = ids

    def __reduce__(self) -> tuple[Any, ...]:
        return (_dynamic_refs, (self.ids,))


def _dynamic_refs(ids: list[bytes]) -> DynamicObjectRefGenerator:
    from . import _futures

    # Read from a value `get` gave, so through a connection: every ref is counted.
    return DynamicObjectRefGenerator(cast(_core.ObjectRef, _futures.counted(i)) for i in ids)


def wait(
    items: Sequence[_core.ObjectRef | ObjectRefGenerator], num_returns: int, timeout: float | None
) -> list[int]:
    """`ray.wait` over refs and generators: indexes of the ready ones. A
    generator is ready when its next item is (one with no more items never
    is, as in Ray)."""
    client = _runtime.client()
    deadline = None if timeout is None else time.monotonic() + timeout
    refs = [(i, x) for i, x in enumerate(items) if not isinstance(x, ObjectRefGenerator)]
    pause = 0.0005
    while True:
        ready = {i for i, g in enumerate(items) if isinstance(g, ObjectRefGenerator) and g._poll()}
        if refs:
            pending = [r for _, r in refs]
            for j in client.wait(pending, len(pending), 0):
                ready.add(refs[j][0])
        if len(ready) >= num_returns:
            break
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        time.sleep(pause if left is None else min(pause, left))
        pause = min(pause * 2, WAIT_POLL_MAX_S)
    return sorted(ready)[:num_returns] if len(ready) > num_returns else sorted(ready)
