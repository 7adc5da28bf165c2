"""What Pool's asynchronous calls return: AsyncResult, and the iterator of imap."""

import multiprocessing
import threading
from typing import Any, Callable, List, Optional

import raynode as ray


def _values(refs: List["ray.ObjectRef"], single: bool) -> Any:
    """The results the refs hold, in order: one value, or the chunks' lists joined."""
    if single:
        return ray.get(refs[0])
    out: List[Any] = []
    for ref in refs:
        out.extend(ray.get(ref))
    return out


class AsyncResult:
    """The result of `apply_async` or `map_async`, collected in the background.

    `callback` gets the result, or `error_callback` the exception, on a
    background thread once it arrives (before `ready()` turns true).
    """

    def __init__(
        self,
        refs: List["ray.ObjectRef"],
        single: bool,
        callback: Optional[Callable[[Any], None]] = None,
        error_callback: Optional[Callable[[Exception], None]] = None,
    ) -> None:
        self._done = threading.Event()
        self._value: Any = None
        self._error: Optional[Exception] = None
        thread = threading.Thread(
            target=self._collect, args=(refs, single, callback, error_callback), name="pool-result", daemon=True
        )
        thread.start()

    def _collect(
        self,
        refs: List["ray.ObjectRef"],
        single: bool,
        callback: Optional[Callable[[Any], None]],
        error_callback: Optional[Callable[[Exception], None]],
    ) -> None:
        try:
            try:
                self._value = _values(refs, single)
            except Exception as e:  # noqa: BLE001 - the call's error is the result
                self._error = e
                if error_callback is not None:
                    error_callback(e)
            else:
                if callback is not None:
                    callback(self._value)
        finally:
            self._done.set()

    def ready(self) -> bool:
        """Whether the call finished."""
        return self._done.is_set()

    def successful(self) -> bool:
        """Whether the call finished without raising; ValueError if it has not finished."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: Optional[float] = None) -> None:
        """Waits until the call finishes, at most `timeout` seconds."""
        self._done.wait(timeout)

    def get(self, timeout: Optional[float] = None) -> Any:
        """The result; raises what the call raised, or multiprocessing.TimeoutError after `timeout` seconds."""
        if not self._done.wait(timeout):
            raise multiprocessing.TimeoutError
        if self._error is not None:
            raise self._error
        return self._value


class IMapIterator:
    """Iterates over the results of `imap` (in order) or `imap_unordered` (as they finish).

    Every chunk is submitted when the iterator is made; `next(timeout)`
    raises multiprocessing.TimeoutError if no result comes in time.
    """

    def __init__(self, refs: List["ray.ObjectRef"], ordered: bool) -> None:
        self._refs = list(refs)
        self._ordered = ordered
        self._ready: List[Any] = []

    def __iter__(self) -> "IMapIterator":
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: Optional[float] = None) -> Any:
        """The next result."""
        if not self._ready:
            if not self._refs:
                raise StopIteration
            candidates = self._refs[:1] if self._ordered else self._refs
            done, _ = ray.wait(candidates, num_returns=1, timeout=timeout)
            if not done:
                raise multiprocessing.TimeoutError
            self._refs.remove(done[0])
            self._ready = list(reversed(ray.get(done[0])))
        return self._ready.pop()
