"""Refs as futures: `ref.future()`, `ref.as_future()` and `await ref`.

A future asks the node for the value with a get whose reply the connection
files apart from the others (`Client.watch`), and returns at once. One
thread per process ("raynode-futures") takes those replies for every
future, decodes the values and completes the futures; asyncio code gets
them through `asyncio.wrap_future`, which hands the result to its event
loop. So an `await` never blocks the loop and a waiting one costs no
thread. The thread runs only while some future is pending.

Futures of the same object share one request. Cancelling a future does not
cancel the task (as in Ray); its reply is then dropped.

A generator's next item (`async for` over an `ObjectRefGenerator`) comes
the same way: `next_item` watches the node's answer to that request.
"""

import asyncio
import concurrent.futures
import threading
from collections.abc import Generator
from typing import Any

from . import _core, _runtime, _serialization

_Future = concurrent.futures.Future[Any]

# How long the thread waits for replies before it checks whether any
# future is still pending (it ends when none is).
IDLE_CHECK_S = 5.0


class _Watcher:
    """The pending futures of one connection and the thread that completes them."""

    def __init__(self, client: _core.Client) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.pending: dict[int, tuple[_core.ObjectRef | None, list[_Future]]] = {}  # request number -> (ref, [futures])
        self.by_id: dict[bytes, int] = {}  # object id -> request number
        self.thread: threading.Thread | None = None

    def future(self, ref: _core.ObjectRef) -> _Future:
        fut: _Future = concurrent.futures.Future()
        key = ref.binary()
        with self.lock:
            req = self.by_id.get(key)
            if req is not None:
                self.pending[req][1].append(fut)
                return fut
            # Under the lock: the thread files the reply only after this.
            self._watch(ref, [fut])
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="raynode-futures", daemon=True)
                self.thread.start()
        return fut

    def item(self, end: _core.ObjectRef, index: int, max_items: int) -> _Future:
        """A future of item `index` of the generator whose end is `end`
        (and up to `max_items - 1` ready after it), as `Client.next_item`
        answers."""
        fut: _Future = concurrent.futures.Future()
        with self.lock:
            req = self.client.watch_item(end, index, max_items)
            self.pending[req] = (None, [fut])
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="raynode-futures", daemon=True)
                self.thread.start()
        return fut

    def _watch(self, ref: _core.ObjectRef, futures: list[_Future]) -> None:
        req = self.client.watch([ref])
        self.pending[req] = (ref, futures)
        self.by_id[ref.binary()] = req

    def _run(self) -> None:
        while True:
            try:
                replies = self.client.next_watched(IDLE_CHECK_S)
            except ConnectionError as e:
                return self._fail_all(e)
            if not replies:
                with self.lock:
                    if not self.pending:
                        self.thread = None
                        return
                continue
            for req, values, error in replies:
                self._complete(req, values, error)

    def _complete(self, req: int, values: list[Any] | None, error: str | None) -> None:
        with self.lock:
            entry = self.pending.pop(req, None)
            if entry is None:
                return
            ref, futures = entry
            if ref is not None:
                self.by_id.pop(ref.binary(), None)
        if error is not None:
            return _settle(futures, exc=_core.NodeError(error))
        assert values is not None  # a reply is values or an error
        if ref is None:
            return _settle(futures, value=values[0])
        try:
            value = _serialization.deserialize(values[0])
        except _serialization.StalePath:
            # The object moved (spilled or evicted) since the node named its
            # file: ask again, as a blocking get does.
            with self.lock:
                try:
                    self._watch(ref, futures)
                except ConnectionError as e:
                    _settle(futures, exc=e)
            return
        except BaseException as e:  # noqa: BLE001 - the error the value holds goes to its futures
            return _settle(futures, exc=e)
        _settle(futures, value=value)

    def _fail_all(self, error: ConnectionError) -> None:
        with self.lock:
            entries = list(self.pending.values())
            self.pending.clear()
            self.by_id.clear()
            self.thread = None
        for _, futures in entries:
            _settle(futures, exc=ConnectionError(f"lost the connection to the node: {error}"))


def _settle(futures: list[_Future], value: Any = None, exc: BaseException | None = None) -> None:
    for fut in futures:
        if not fut.set_running_or_notify_cancel():
            continue  # cancelled by its holder
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


_watcher: _Watcher | None = None
_watcher_lock = threading.Lock()


def future(ref: _core.ObjectRef) -> _Future:
    """A concurrent.futures.Future of `ref`'s value."""
    return _watcher_of(_runtime.client()).future(ref)


def next_item(end: _core.ObjectRef, index: int, max_items: int) -> _Future:
    """A concurrent.futures.Future of a generator's items from `index`."""
    return _watcher_of(_runtime.client()).item(end, index, max_items)


def _watcher_of(client: _core.Client) -> _Watcher:
    global _watcher
    with _watcher_lock:
        w = _watcher
        if w is None or w.client is not client:
            w = _watcher = _Watcher(client)
    return w


def awaiter(ref: _core.ObjectRef) -> Generator[Any, None, Any]:
    """What `await ref` iterates: an asyncio future on the running loop."""
    loop = asyncio.get_running_loop()
    return asyncio.wrap_future(future(ref), loop=loop).__await__()


def counted(object_id: bytes) -> _core.ObjectRef | None:
    """A ref to `object_id` counted by this process's connection, if it has one."""
    c = _runtime._client
    return None if c is None else c.make_ref(object_id)


_core.set_ref_hooks(counted, future, awaiter)
