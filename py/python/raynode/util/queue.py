"""Queue: a FIFO queue held by an actor, shared by every task and actor given it.

The actor is an async actor holding an `asyncio.Queue`. A blocking `get` or
`put` waits inside the actor (`asyncio.wait_for` on the queue), so a waiter
costs the actor no thread and other callers go on being served meanwhile;
the caller just waits for the call's result. The actor answers a call that
cannot be served with a status instead of raising, and the caller raises
`Empty` or `Full` itself, so callers see those classes unwrapped.
"""

import asyncio
import functools
import queue
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import raynode as ray

if TYPE_CHECKING:
    from raynode import ObjectRef
    from raynode.actor import ActorHandle

#: What the queue actor answers: (status, payload).
_Reply = Tuple[str, Any]

# What the queue actor answers: the call was served, or it found the queue
# empty or full (the payload then is the queue's size, for the message).
_OK, _EMPTY, _FULL = "ok", "empty", "full"


class Empty(queue.Empty):
    """Raised by a non-blocking or timed-out get on an empty queue."""


class Full(queue.Full):
    """Raised by a non-blocking or timed-out put on a full queue."""


class Queue:
    """A first-in, first-out queue that tasks and actors on any node can share.

    `maxsize` <= 0 means unbounded. `actor_options` are passed to the
    `.options()` of the actor that holds the queue (e.g. `{"num_cpus": 1}`).
    Pass the Queue itself to tasks and actors; copies talk to the same actor.
    """

    def __init__(self, maxsize: int = 0, actor_options: Optional[Dict[str, Any]] = None) -> None:
        self.maxsize = maxsize
        self.actor: Optional["ActorHandle"] = _queue_actor().options(**(actor_options or {})).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue."""
        size: int = ray.get(self._handle().qsize.remote())
        return size

    def qsize(self) -> int:
        """The number of items in the queue."""
        return self.size()

    def empty(self) -> bool:
        """Whether the queue holds no item."""
        empty: bool = ray.get(self._handle().empty.remote())
        return empty

    def full(self) -> bool:
        """Whether the queue holds `maxsize` items."""
        full: bool = ray.get(self._handle().full.remote())
        return full

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Adds `item` at the end.

        If the queue is full: with `block=False` raises Full at once; else
        waits for room, at most `timeout` seconds (forever if None), then
        raises Full.
        """
        _answer(ray.get(self._put_call(item, block, timeout)), self)

    async def put_async(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """`put` for asyncio code: awaits instead of blocking the event loop."""
        _answer(await _awaited(self._put_call(item, block, timeout)), self)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Removes and returns the first item.

        If the queue is empty: with `block=False` raises Empty at once; else
        waits for an item, at most `timeout` seconds (forever if None), then
        raises Empty.
        """
        return _answer(ray.get(self._get_call(block, timeout)), self)

    async def get_async(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """`get` for asyncio code: awaits instead of blocking the event loop."""
        return _answer(await _awaited(self._get_call(block, timeout)), self)

    def put_nowait(self, item: Any) -> None:
        """`put(item, block=False)`: raises Full if the queue is full."""
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        """`get(block=False)`: raises Empty if the queue is empty."""
        return self.get(block=False)

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Adds every item of `items` in order, all or none: raises Full if they do not all fit."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        batch = list(items)
        status, size = ray.get(self._handle().put_nowait_batch.remote(batch))
        if status == _FULL:
            raise Full(f"Cannot add {len(batch)} items to queue of size {size} and maxsize {self.maxsize}.")

    def get_nowait_batch(self, num_items: int) -> List[Any]:
        """Removes and returns the first `num_items` items, all or none: raises Empty if fewer are queued."""
        if not isinstance(num_items, int) or isinstance(num_items, bool):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        status, value = ray.get(self._handle().get_nowait_batch.remote(num_items))
        if status == _EMPTY:
            raise Empty(f"Cannot get {num_items} items from queue of size {value}.")
        got: List[Any] = value
        return got

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """Ends the queue's actor; the Queue (and its copies) cannot be used after.

        Unless `force`, the calls sent to the actor before are let finish
        for up to `grace_period_s` seconds; then (or at once with `force`)
        the actor is killed, and getters and putters still blocked see it die.
        """
        if self.actor is None:
            return
        if not force:
            ray.wait([self.actor.__ray_terminate__.remote()], timeout=grace_period_s)
        ray.kill(self.actor, no_restart=True)
        self.actor = None

    def _handle(self) -> "ActorHandle":
        if self.actor is None:
            raise RuntimeError("This Queue was shut down")
        return self.actor

    def _put_call(self, item: Any, block: bool, timeout: Optional[float]) -> "ObjectRef":
        ref: ObjectRef
        if not block:
            ref = self._handle().put.remote(item, 0)
        else:
            ref = self._handle().put.remote(item, _checked(timeout))
        return ref

    def _get_call(self, block: bool, timeout: Optional[float]) -> "ObjectRef":
        ref: ObjectRef
        if not block:
            ref = self._handle().get.remote(0)
        else:
            ref = self._handle().get.remote(_checked(timeout))
        return ref


def _checked(timeout: Optional[float]) -> Optional[float]:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return timeout


def _answer(reply: _Reply, q: Queue) -> Any:
    status, value = reply
    if status == _EMPTY:
        raise Empty("The queue is empty")
    if status == _FULL:
        raise Full(f"The queue is full (maxsize {q.maxsize})")
    return value


async def _awaited(ref: "ObjectRef") -> Any:
    """The value of `ref`, waited for on a thread so the event loop keeps running."""
    return await asyncio.get_running_loop().run_in_executor(None, ray.get, ref)


class _QueueActor:
    """Holds the items. Every method is served on the actor's event loop."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._queue: Optional["asyncio.Queue[Any]"] = None

    @property
    def queue(self) -> "asyncio.Queue[Any]":
        """Made on first use, on the actor's event loop (the constructor runs off it)."""
        if self._queue is None:
            self._queue = asyncio.Queue(self.maxsize)
        return self._queue

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: Optional[float]) -> _Reply:
        """timeout 0: only if there is room now; None: wait as long as it takes."""
        if timeout == 0:
            if self.queue.full():
                return (_FULL, None)
            self.queue.put_nowait(item)
            return (_OK, None)
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            return (_FULL, None)
        return (_OK, None)

    async def get(self, timeout: Optional[float]) -> _Reply:
        """timeout 0: only if an item is there now; None: wait as long as it takes."""
        if timeout == 0:
            if self.queue.empty():
                return (_EMPTY, None)
            return (_OK, self.queue.get_nowait())
        try:
            return (_OK, await asyncio.wait_for(self.queue.get(), timeout))
        except asyncio.TimeoutError:
            return (_EMPTY, None)

    def put_nowait_batch(self, items: List[Any]) -> _Reply:
        if self.queue.maxsize > 0 and len(items) + self.queue.qsize() > self.queue.maxsize:
            return (_FULL, self.queue.qsize())
        for item in items:
            self.queue.put_nowait(item)
        return (_OK, None)

    def get_nowait_batch(self, num_items: int) -> _Reply:
        if num_items > self.queue.qsize():
            return (_EMPTY, self.queue.qsize())
        return (_OK, [self.queue.get_nowait() for _ in range(num_items)])


@functools.lru_cache(maxsize=None)
def _queue_actor() -> "ray.ActorClass":
    """The remote class, made on first use (raynode is still importing when this module loads)."""
    return ray.remote(_QueueActor)
