"""ActorPool: spreads calls over a fixed set of actors, one call per actor at a time."""

from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple, TypeVar

import raynode as ray

if TYPE_CHECKING:
    from raynode import ObjectRef
    from raynode.actor import ActorHandle

V = TypeVar("V")


class ActorPool:
    """Runs `fn(actor, value)` calls on whichever actor of the pool is idle.

    `fn` must return the ObjectRef of one call on the actor it is given, e.g.
    `lambda a, v: a.double.remote(v)`. A value submitted while every actor is
    busy waits in the pool until one becomes idle.

        pool = ActorPool([Worker.remote(), Worker.remote()])
        print(list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3])))
    """

    def __init__(self, actors: List["ActorHandle"]):
        self._idle = list(actors)
        self._busy: Dict["ObjectRef", Tuple[int, "ActorHandle"]] = {}  # ObjectRef -> (submission index, actor)
        self._refs: Dict[int, "ObjectRef"] = {}  # submission index -> ObjectRef, for the ordered getters
        # (fn, value) submitted while no actor was idle
        self._waiting: Deque[Tuple[Callable[["ActorHandle", Any], Any], Any]] = deque()
        self._next_task_index = 0
        self._next_return_index = 0

    def map(self, fn: Callable[["ray.actor.ActorHandle", V], Any], values: List[V]) -> Iterator[Any]:
        """Submits `fn` over every value at once; yields the results in the order of `values`.

        Results of earlier submissions not yet fetched are dropped first.
        """
        self._start_map(fn, values)
        return self._drain(self.get_next)

    def map_unordered(self, fn: Callable[["ray.actor.ActorHandle", V], Any], values: List[V]) -> Iterator[Any]:
        """Like `map`, but yields each result as soon as it is ready."""
        self._start_map(fn, values)
        return self._drain(self.get_next_unordered)

    def submit(self, fn: Callable[["ray.actor.ActorHandle", V], Any], value: V) -> None:
        """Schedules `fn(actor, value)` on an idle actor, or as soon as one is idle."""
        if self._idle:
            self._run(self._idle.pop(), fn, value)
        else:
            self._waiting.append((fn, value))

    def has_next(self) -> bool:
        """Whether a submitted call has a result left to fetch."""
        return bool(self._busy)

    def has_free(self) -> bool:
        """Whether an actor is idle and no submitted value waits for one."""
        return bool(self._idle) and not self._waiting

    def get_next(self, timeout: Optional[float] = None, ignore_if_timedout: bool = False) -> Any:
        """The result of the oldest submission not yet fetched, in submission order.

        With a `timeout`, raises TimeoutError if that result is not ready in
        time; the result stays next in line unless `ignore_if_timedout`, in
        which case it is dropped and the next call moves on to the one after.
        Raises StopIteration when nothing is left to fetch.
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        ref = self._refs[self._next_return_index]
        if timeout is not None and not ray.wait([ref], timeout=timeout)[0]:
            if not ignore_if_timedout:
                raise TimeoutError("Timed out waiting for result")
            self._finish(ref)
            raise TimeoutError(f"Timed out waiting for result. The task {ref} has been ignored.")
        self._finish(ref)
        return ray.get(ref)

    def get_next_unordered(self, timeout: Optional[float] = None, ignore_if_timedout: bool = False) -> Any:
        """The result of whichever submission finishes first.

        Raises TimeoutError if none is ready within `timeout` (nothing is
        dropped: no one submission is the one timed out, so
        `ignore_if_timedout` changes nothing), StopIteration when nothing is
        left to fetch.
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        ready, _ = ray.wait(list(self._busy), num_returns=1, timeout=timeout)
        if not ready:
            raise TimeoutError("Timed out waiting for result")
        ref = ready[0]
        self._finish(ref)
        return ray.get(ref)

    def push(self, actor: "ray.actor.ActorHandle") -> None:
        """Adds an actor to the pool; it takes a waiting value at once if there is one."""
        if actor in self._idle or any(a == actor for _, a in self._busy.values()):
            raise ValueError("Actor already belongs to current ActorPool")
        self._release(actor)

    def pop_idle(self) -> Optional["ray.actor.ActorHandle"]:
        """Removes an idle actor from the pool and returns it, or None if none is free."""
        return self._idle.pop() if self.has_free() else None

    def _run(self, actor: "ActorHandle", fn: Callable[["ActorHandle", Any], Any], value: Any) -> None:
        ref = fn(actor, value)
        self._busy[ref] = (self._next_task_index, actor)
        self._refs[self._next_task_index] = ref
        self._next_task_index += 1

    def _finish(self, ref: "ObjectRef") -> None:
        """Forgets a submission and gives its actor back (its later calls queue behind it)."""
        index, actor = self._busy.pop(ref)
        del self._refs[index]
        self._next_return_index = max(self._next_return_index, index + 1)
        self._release(actor)

    def _release(self, actor: "ActorHandle") -> None:
        if self._waiting:
            fn, value = self._waiting.popleft()
            self._run(actor, fn, value)
        else:
            self._idle.append(actor)

    def _start_map(self, fn: Callable[["ActorHandle", V], Any], values: List[V]) -> None:
        """Drops unfetched results (values still waiting run all the same), then submits `values`."""
        if not self._idle and not self._busy:
            raise ValueError("The ActorPool has no actors, so a map would never yield: push() an actor first.")
        while self._busy:
            self._finish(next(iter(self._busy)))
        self._next_return_index = self._next_task_index
        for v in values:
            self.submit(fn, v)

    def _drain(self, get: Callable[[], Any]) -> Iterator[Any]:
        while self.has_next():
            yield get()
