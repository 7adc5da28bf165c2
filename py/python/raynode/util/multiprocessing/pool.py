"""Pool: Python's multiprocessing.Pool, with actors on the cluster as its processes.

Each "process" is an actor that runs the initializer once, then the chunks
of work sent to it, one at a time in the order sent. Chunks go to the actors
in turn. Like Ray's pool, the actors reserve no CPU (`num_cpus=0`, which
`ray_remote_args` can change), and `processes` may not exceed the cluster's
CPUs.
"""

import functools
import itertools
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple

import raynode as ray

from .results import AsyncResult, IMapIterator

if TYPE_CHECKING:
    from raynode.actor import ActorHandle

_RUN, _CLOSE, _TERMINATE = "run", "close", "terminate"


class _PoolActor:
    """One process of the pool."""

    def __init__(self, initializer: Optional[Callable[..., Any]], initargs: Tuple[Any, ...]) -> None:
        if initializer is not None:
            initializer(*initargs)

    def run_chunk(self, func: Callable[..., Any], chunk: List[Any], star: bool) -> List[Any]:
        return [func(*args) if star else func(args) for args in chunk]

    def apply(self, func: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        return func(*args, **kwargs)


@functools.lru_cache(maxsize=None)
def _pool_actor() -> "ray.ActorClass":
    """The remote class, made on first use (raynode is still importing when this module loads)."""
    return ray.remote(num_cpus=0)(_PoolActor)


class Pool:
    """A pool of `processes` workers (default: the cluster's CPU count) on the cluster.

    If this process is not connected, connects first with
    `ray.init(address=ray_address)`, which with no address starts a local
    node with `processes` CPUs. `initializer(*initargs)` runs once in each worker.
    A worker is replaced by a fresh one after `maxtasksperchild` chunks.
    `context` is accepted for compatibility and unused.

        with Pool() as pool:
            print(pool.map(square, range(10)))
    """

    def __init__(
        self,
        processes: Optional[int] = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Optional[Iterable[Any]] = None,
        maxtasksperchild: Optional[int] = None,
        context: Any = None,
        ray_address: Optional[str] = None,
        ray_remote_args: Optional[Dict[str, Any]] = None,
    ) -> None:
        if not ray.is_initialized():
            from ..._api import connects_to_existing

            # num_cpus describes a new local node; a running one has its own.
            existing = connects_to_existing(ray_address)
            ray.init(address=ray_address, num_cpus=None if existing else processes)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = cpus
        if processes <= 0:
            raise ValueError("Processes in the pool must be >0.")
        if processes > cpus:
            raise ValueError(
                f"Tried to start a pool with {processes} processes on a cluster with only {cpus} CPUs."
            )
        if maxtasksperchild is not None and maxtasksperchild <= 0:
            raise ValueError("maxtasksperchild must be a positive int or None")
        self._processes = processes
        self._maxtasks = maxtasksperchild
        self._new_actor: Callable[[], "ActorHandle"] = functools.partial(
            _pool_actor().options(**(ray_remote_args or {})).remote, initializer, tuple(initargs or ())
        )
        self._actors: List[List[Any]] = [[self._new_actor(), 0] for _ in range(processes)]  # [actor, chunks sent]
        # (actor, its __ray_terminate__ ref): ending once its chunks ran
        self._retired: List[Tuple["ActorHandle", "ray.ObjectRef"]] = []
        self._unfinished: List[AsyncResult] = []  # AsyncResults not ready when last looked at, for join
        self._turn = itertools.cycle(range(processes))
        self._state = _RUN
        try:
            ray.get([a.__ray_ready__.remote() for a, _ in self._actors])
        except BaseException:
            self.terminate()
            raise

    def __enter__(self) -> "Pool":
        self._check_running()
        return self

    def __exit__(self, exc_type: object, exc_val: object, exc_tb: object) -> None:
        self.terminate()

    def apply(
        self, func: Callable[..., Any], args: Optional[Tuple[Any, ...]] = None, kwargs: Optional[Dict[str, Any]] = None
    ) -> Any:
        """`func(*args, **kwargs)` run in a worker; waits for and returns its result."""
        return self.apply_async(func, args, kwargs).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Optional[Tuple[Any, ...]] = None,
        kwargs: Optional[Dict[str, Any]] = None,
        callback: Optional[Callable[[Any], None]] = None,
        error_callback: Optional[Callable[[Exception], None]] = None,
    ) -> AsyncResult:
        """Like `apply`, but returns an AsyncResult at once."""
        self._check_running()
        actor = self._next_actor()
        ref = actor.apply.remote(func, tuple(args or ()), dict(kwargs or {}))
        return self._track(AsyncResult([ref], True, callback, error_callback))

    def map(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: Optional[int] = None) -> List[Any]:
        """`[func(x) for x in iterable]` computed in the workers; re-raises the first error."""
        results: List[Any] = self.map_async(func, iterable, chunksize).get()
        return results

    def map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[List[Any]], None]] = None,
        error_callback: Optional[Callable[[Exception], None]] = None,
    ) -> AsyncResult:
        """Like `map`, but returns an AsyncResult at once."""
        refs = self._submit(func, iterable, chunksize, False)
        return self._track(AsyncResult(refs, False, callback, error_callback))

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: Optional[int] = None) -> List[Any]:
        """`[func(*args) for args in iterable]` computed in the workers."""
        results: List[Any] = self.starmap_async(func, iterable, chunksize=chunksize).get()
        return results

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        callback: Optional[Callable[[List[Any]], None]] = None,
        error_callback: Optional[Callable[[Exception], None]] = None,
        chunksize: Optional[int] = None,
    ) -> AsyncResult:
        """Like `starmap`, but returns an AsyncResult at once."""
        refs = self._submit(func, iterable, chunksize, True)
        return self._track(AsyncResult(refs, False, callback, error_callback))

    def imap(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: Optional[int] = 1) -> IMapIterator:
        """An iterator over `func(x)` for x in `iterable`, in order; all of it is submitted at once."""
        return IMapIterator(self._submit(func, iterable, chunksize, False), ordered=True)

    def imap_unordered(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: Optional[int] = 1
    ) -> IMapIterator:
        """Like `imap`, but yields each chunk's results as soon as it finishes."""
        return IMapIterator(self._submit(func, iterable, chunksize, False), ordered=False)

    def close(self) -> None:
        """Accepts no more work; what was submitted still runs."""
        if self._state == _RUN:
            self._state = _CLOSE

    def terminate(self) -> None:
        """Stops the workers at once; unfinished work fails."""
        self._state = _TERMINATE
        for actor, _ in self._actors:
            ray.kill(actor)
        for actor, _ in self._retired:
            ray.kill(actor)
        self._actors = []
        self._retired = []

    def join(self) -> None:
        """Waits for the submitted work to finish and its AsyncResults to be ready,
        then stops the workers (after `close` or `terminate`)."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        ends = [a.__ray_terminate__.remote() for a, _ in self._actors] + [end for _, end in self._retired]
        if ends:
            ray.wait(ends, num_returns=len(ends))
        for result in self._unfinished:
            result.wait()
        self._unfinished = []
        self._actors = []
        self._retired = []

    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _track(self, result: AsyncResult) -> AsyncResult:
        self._unfinished = [r for r in self._unfinished if not r.ready()]
        self._unfinished.append(result)
        return result

    def _submit(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: Optional[int], star: bool
    ) -> List["ray.ObjectRef"]:
        """Sends the chunks of `iterable` to the workers in turn; returns their refs."""
        self._check_running()
        items = list(iterable)
        if chunksize is None:
            chunksize = -(-len(items) // (self._processes * 4)) or 1
        elif chunksize <= 0:
            raise ValueError(f"Chunksize must be 1+, not {chunksize}")
        func_ref = ray.put(func)
        return [
            self._next_actor().run_chunk.remote(func_ref, items[i : i + chunksize], star)
            for i in range(0, len(items), chunksize)
        ]

    def _next_actor(self) -> "ActorHandle":
        """The actor whose turn it is; one that reached `maxtasksperchild` is retired and replaced."""
        entry = self._actors[next(self._turn)]
        if self._maxtasks is not None and entry[1] >= self._maxtasks:
            self._retire(entry[0])
            entry[0], entry[1] = self._new_actor(), 0
        entry[1] += 1
        actor: ActorHandle = entry[0]
        return actor

    def _retire(self, actor: "ActorHandle") -> None:
        """Ends `actor` once the chunks sent to it ran; forgets retired actors that ended."""
        if self._retired:
            ends = [end for _, end in self._retired]
            ended = set(ray.wait(ends, num_returns=len(ends), timeout=0)[0])
            self._retired = [(a, end) for a, end in self._retired if end not in ended]
        self._retired.append((actor, actor.__ray_terminate__.remote()))
