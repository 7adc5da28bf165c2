"""The worker process: `python -m raynode._worker`, started by a node.

It runs what its node sends: tasks one at a time, or, once an actor's
constructor ran here, that actor's method calls (in order, on a thread
pool, or on an asyncio loop, by the actor's `max_concurrency`).

A task's runtime_env (`_remote.TASK_ENV`) and extras (`_remote.TASK_EXTRAS`:
the exception types its retries are for) come as keyword arguments the
function never sees. The runtime_env is decoded and applied first (see
`_runtime_env.Applied`), then the function and the other arguments are
unpickled, so they may come from its working_dir or py_modules. It applies
around a task, and for an actor's whole life.

Ending an actor from inside (`exit_actor()`, `sys.exit()` or `sys.exit(0)`,
`__ray_terminate__`) answers the call with ActorDiedError, asks the node to
kill the actor without restart, as `ray.kill` does, and waits for the
node to end this process. `sys.exit(n)` with another status ends the
process at once: the node takes that for a crash and restarts the actor if
it may. In a task, `sys.exit` ends the worker, as in Ray.

How a call's arguments are decoded, its returns split and its errors
described is in `_task_values`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import AsyncIterable, Iterable
from types import FrameType
from typing import Any, NoReturn

from . import _core, _generators, _runtime, _runtime_env, _serialization, exceptions
from ._remote import TASK_EXTRAS
from ._task_values import (
    Items,
    Returns,
    describe_error,
    node_ip,
    returns_count,
    split_returns,
    take_env,
    unpack_args,
    user_traceback,
)

WORK_POLL_S = 1.0
# How long the cancel listener waits before it checks that the node is still there.
CANCEL_POLL_S = 60.0
# How long an actor that ended itself waits for its node to stop it.
EXIT_GRACE_S = 10.0

_worker: Worker | None = None  # this process's Worker

#: Where a task in a placement group runs: (group id, bundle index, capture child tasks).
Group = tuple[bytes, int, bool]


def mark_output(task_id: bytes) -> None:
    """Tells the node, through the pipes it reads, that what this process
    prints from here on belongs to `task_id`."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.write(f"{_core.OUTPUT_MARK}{task_id.hex()}\n")
            stream.flush()
        except (OSError, ValueError):
            pass

class ActorExit(BaseException):
    """Raised by `exit_actor()` to leave the running method. A BaseException
    so that user code catching Exception does not stop it; it never leaves
    the worker."""


def current_actor_id() -> bytes | None:
    """The id of the actor this process holds (set from its constructor on), else None."""
    return None if _worker is None else _worker.actor_id


class Worker:
    def __init__(self, client: _core.Client) -> None:
        self.client = client
        self.functions: dict[bytes, Any] = {}
        self.bodies: dict[bytes, bytes] = {}  # function id -> pickled definition, until first unpickled
        self.actor: Any = None  # the instance, once a constructor ran here
        self.actor_id: bytes | None = None
        self.actor_error: str | None = None  # the constructor's traceback, if it raised
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.async_slots: asyncio.Semaphore | None = None
        self.class_name: str | None = None
        self.runtime_env: _runtime_env.Resolved | None = None  # the actor's, applied for its life
        self.running = 0  # method calls started and not yet answered
        # task id -> future of an async actor's call in progress
        self.coroutines: dict[bytes, concurrent.futures.Future[None]] = {}
        self.actor_name: str | None = None  # "" for an unnamed actor
        self.actor_resources: dict[str, float] = {}  # what the actor holds, for its methods
        self.actor_gpus: list[int] = []
        self.actor_group: Group | None = None
        # The running task's name, resources, GPUs, group.
        self.placed: tuple[str | None, dict[str, float], list[int], Group | None] = (None, {}, [], None)
        self.interruptible: bytes | None = None  # the task whose function runs now, which a cancel interrupts
        self.idle = threading.Condition()
        self.ending = threading.Event()  # the actor ended itself

    def run(self) -> None:
        while not self.ending.is_set():
            try:
                work = self.client.next_work(WORK_POLL_S)
            except ConnectionError:
                return
            if work is None or self.ending.is_set():
                continue
            if work[0] == b"cancel":
                self.cancel(work[1])
                continue
            _, task_id, fid, body, name, args, kwnames, num_returns, kind, job, attempt, gpus, resources, group = work
            mark_output(task_id)
            if body is not None and fid not in self.functions:
                self.bodies[fid] = body
            if kind is None:
                self.placed = (name, resources, gpus, group)
                self.run_task(task_id, fid, name, args, kwnames, num_returns, job, attempt)
            elif kind[0] == "create":
                self.actor_name = kind[4]
                self.actor_resources, self.actor_gpus, self.actor_group = resources, gpus, group
                if gpus:
                    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
                self.placed = (name, resources, gpus, group)
                self.create_actor(task_id, kind, fid, name, args, kwnames, job, attempt)
            else:
                self.call_method(task_id, kind[2], name, args, kwnames, num_returns, job, attempt)
        # The actor asked its node to end it; the node stops this process.
        time.sleep(EXIT_GRACE_S)

    # -- tasks --------------------------------------------------------------

    def function(self, fid: bytes) -> Any:
        """The function or class of id `fid`, unpickled on first use (after
        the runtime_env it may import from is applied)."""
        f = self.functions.get(fid)
        if f is None:
            body = self.bodies.get(fid)
            if body is None:
                raise RuntimeError(f"the node sent no definition for function {fid.hex()}")
            f = self.functions[fid] = pickle.loads(body)
            del self.bodies[fid]
        return f

    def run_task(
        self, task_id: bytes, fid: bytes, name: str, args: list[_core.GotValue], kwnames: list[str],
        num_returns: Returns, job: str, attempt: int,
    ) -> None:
        self.set_current(task_id, job, attempt)
        retry_on: tuple[type[BaseException], ...] | None = None
        applied: _runtime_env.Applied | None = None
        gpus = self.placed[2]
        saved_gpus = set_visible_gpus(gpus) if gpus else None
        try:
            env, args, kwnames = take_env(args, kwnames)
            if env:
                _runtime._current.runtime_env = env
            applied = _runtime_env.Applied(env, job)
            applied.enter()
            function = self.function(fid)
            pos, kw = unpack_args(args, kwnames)
            extras = kw.pop(TASK_EXTRAS, None) or {}
            retry_on = extras.get("retry_on")
            if self.client.is_cancelled(task_id):
                raise KeyboardInterrupt
            self.interruptible = task_id
            try:
                result = function(*pos, **kw)
                if isinstance(num_returns, str):
                    # A generator's body runs as it is iterated: still interruptible.
                    return self.stream(task_id, name, num_returns, result)
            finally:
                self.interruptible = None
            if self.client.is_cancelled(task_id):
                # The task went on after the interrupt: as in Ray, it was cancelled.
                raise KeyboardInterrupt
        except SystemExit as e:
            end_process(e)
        except BaseException as e:  # noqa: BLE001 - everything a task raises goes to its caller
            self.report_error(task_id, name, num_returns, e, retry_on)
        else:
            self.report(task_id, name, num_returns, result)
        finally:
            if applied is not None:
                applied.leave()
            if saved_gpus is not None:
                restore_visible_gpus(saved_gpus)
            self.set_current(None, job, 0)

    def report(self, task_id: bytes, name: str, num_returns: Returns, result: Any) -> None:
        if isinstance(num_returns, str):
            return self.stream(task_id, name, num_returns, result)
        try:
            values = split_returns(result, num_returns, name)
            results = [self.return_value(task_id, i, v) for i, v in enumerate(values)]
        except BaseException as e:  # noqa: BLE001
            return self.report_error(task_id, name, num_returns, e)
        self.client.task_done(task_id, results, False)

    def report_error(
        self,
        task_id: bytes,
        name: str,
        num_returns: Returns,
        exc: BaseException,
        retry_on: tuple[type[BaseException], ...] | None = None,
    ) -> None:
        """Answers a call that raised. `retry_on`: the exception types the
        task may be retried for (None: any, if its retry_exceptions is set)."""
        err = self.error_value(name, exc)
        if isinstance(exc, exceptions.RayTaskError) and exc.cause is not None:
            exc = exc.cause
        # The node retries a task that raised when it was submitted with
        # retry_exceptions; a cause not in the listed types is no reason to.
        retryable = retry_on is None or isinstance(exc, retry_on)
        results = [(err.inline(), err.nested)] * returns_count(num_returns)
        self.client.task_done(task_id, results, retryable, describe_error(exc))

    def error_value(self, name: str, exc: BaseException) -> _serialization.Serialized:
        """What a call that raised `exc` gives its caller: a pickled
        TaskCancelledError or RayTaskError."""
        if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
            cancelled = exceptions.TaskCancelledError(f"{name} was cancelled")
            return _serialization.serialize(cancelled, _serialization.META_TASK_ERROR)
        tb = user_traceback(exc)
        if isinstance(exc, exceptions.RayTaskError):
            exc = exc.cause if exc.cause is not None else exc
        return self.task_error(name, tb, exc)

    # -- generators ---------------------------------------------------------

    def stream(self, task_id: bytes, name: str, mode: str, result: Iterable[Any]) -> None:
        """Runs a generator task's body: each item goes to the node as it
        is made, an exception becomes the last item, then the end."""
        items = Items(task_id)
        try:
            for value in result:
                self.yield_item(items, value)
        except SystemExit:
            raise
        except BaseException as e:  # noqa: BLE001 - the error is the item where it happened
            self.yield_error(items, name, e)
        self.end_stream(items, name, mode)

    async def stream_async(self, task_id: bytes, name: str, mode: str, result: AsyncIterable[Any]) -> None:
        """`stream` for an async generator (an async actor's method)."""
        items = Items(task_id)
        try:
            async for value in result:
                self.yield_item(items, value)
        except SystemExit:
            raise
        except BaseException as e:  # noqa: BLE001
            self.yield_error(items, name, e)
        self.end_stream(items, name, mode)

    def yield_item(self, items: Items, value: Any) -> None:
        index, object_id = items.next()
        s = _serialization.serialize(value)
        if s.size <= self.client.inline_limit:
            self.client.yield_item(items.task_id, index, s.inline(), s.nested)
        else:
            path = self.client.create_return(object_id, s.planned_size())
            s.write_to(path)
            self.client.yield_item(items.task_id, index, None, s.nested)
        if self.client.is_cancelled(items.task_id):
            raise KeyboardInterrupt

    def yield_error(self, items: Items, name: str, exc: BaseException) -> None:
        index, _ = items.next()
        err = self.error_value(name, exc)
        self.client.yield_item(items.task_id, index, err.inline(), err.nested)

    def end_stream(self, items: Items, name: str, mode: str) -> None:
        """Sets a generator task's end: its item count, or for a dynamic
        one the list of its items (which the end then holds)."""
        if mode == "dynamic":
            s = _serialization.serialize(_generators.dynamic_end(items.ids))
            s.nested = list(s.nested) + items.ids
        else:
            s = _serialization.serialize(len(items.ids))
        self.client.task_done(items.task_id, [(s.inline(), s.nested)], False)

    def task_error(self, name: str, tb: str, exc: BaseException) -> _serialization.Serialized:
        """A pickled RayTaskError for `exc` (its cause travels as its text
        if it will not pickle)."""
        actor_id = self.actor_id.hex() if self.actor_id is not None else None
        err = exceptions.RayTaskError(name, tb, exc, pid=os.getpid(), ip=node_ip(), actor_id=actor_id)
        try:
            return _serialization.serialize(err, _serialization.META_TASK_ERROR)
        except Exception:  # noqa: BLE001 - e.g. refs inside the cause that cannot be counted
            plain = exceptions.RayTaskError(name, tb, None, pid=os.getpid(), ip=node_ip(), actor_id=actor_id)
            return _serialization.serialize(plain, _serialization.META_TASK_ERROR)

    def return_value(self, task_id: bytes, index: int, value: Any) -> tuple[bytes | None, list[bytes]]:
        s = _serialization.serialize(value)
        if s.size <= self.client.inline_limit:
            return (s.inline(), s.nested)
        object_id = task_id + index.to_bytes(4, "big")
        path = self.client.create_return(object_id, s.planned_size())
        s.write_to(path)
        return (None, s.nested)

    def set_current(self, task_id: bytes | None, job: str, attempt: int, name: str | None = None) -> None:
        cur = _runtime._current
        cur.task_id = task_id
        cur.job_id = job
        cur.actor_id = self.actor_id
        cur.attempt = attempt
        cur.runtime_env = self.runtime_env
        cur.actor_name = self.actor_name
        if self.actor_id is not None and self.actor is not None:
            cur.task_name = name
            cur.resources, cur.gpu_ids, cur.placement_group = self.actor_resources, self.actor_gpus, self.actor_group
        else:
            cur.task_name = self.placed[0] if task_id is not None else None
            cur.resources, cur.gpu_ids, cur.placement_group = self.placed[1], self.placed[2], self.placed[3]

    # -- actors -------------------------------------------------------------

    def create_actor(
        self,
        task_id: bytes,
        kind: tuple[Any, ...],
        fid: bytes,
        name: str,
        args: list[_core.GotValue],
        kwnames: list[str],
        job: str,
        attempt: int,
    ) -> None:
        _, actor_id, max_concurrency, is_async = kind[:4]
        self.actor_id = actor_id
        self.class_name = name.rsplit(".", 1)[0]
        self.set_current(task_id, job, attempt)
        try:
            env, args, kwnames = take_env(args, kwnames)
            if env:
                self.runtime_env = env
                _runtime._current.runtime_env = env
            # For the actor's life.
            _runtime_env.Applied(env, job).enter()
            cls = self.function(fid)
            self.class_name = getattr(cls, "__name__", self.class_name)
            pos, kw = unpack_args(args, kwnames)
            kw.pop(TASK_EXTRAS, None)
            self.actor = cls(*pos, **kw)
        except (ActorExit, SystemExit) as e:
            return self.end_actor(None, name, 0, e)
        except BaseException as e:  # noqa: BLE001
            self.actor_error = user_traceback(e)
            self.client.actor_ready(actor_id, self.actor_error)
            return
        if is_async:
            self.loop = asyncio.new_event_loop()
            threading.Thread(target=self.loop.run_forever, name="actor-loop", daemon=True).start()
            self.loop.call_soon_threadsafe(self._make_semaphore, max_concurrency)
        elif max_concurrency > 1:
            self.pool = concurrent.futures.ThreadPoolExecutor(max_concurrency, thread_name_prefix="actor")
        self.client.actor_ready(actor_id, None)

    def _make_semaphore(self, n: int) -> None:
        self.async_slots = asyncio.Semaphore(n)

    def call_method(
        self, task_id: bytes, method: str, name: str, args: list[_core.GotValue], kwnames: list[str],
        num_returns: Returns, job: str, attempt: int,
    ) -> None:
        if self.actor_error is not None:
            err = exceptions.ActorDiedError(f"The actor died because its constructor raised:\n{self.actor_error}")
            s = _serialization.serialize(err, _serialization.META_TASK_ERROR)
            self.client.task_done(task_id, [(s.inline(), [])] * returns_count(num_returns), True)
            return
        if method == "__ray_ready__":
            return self.report(task_id, name, num_returns, True)
        if method == "__ray_terminate__":
            # After the calls before it, as Ray's graceful end.
            with self.idle:
                self.idle.wait_for(lambda: self.running == 0)
            return self.end_actor(task_id, name, num_returns, "__ray_terminate__ was called")
        with self.idle:
            self.running += 1
        if self.loop is not None:
            coroutine = self.run_async(task_id, method, name, args, kwnames, num_returns, job, attempt)
            fut = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
            self.coroutines[task_id] = fut
            fut.add_done_callback(lambda _: self.coroutines.pop(task_id, None))
        elif self.pool is not None:
            self.pool.submit(self.run_method, task_id, method, name, args, kwnames, num_returns, job, attempt)
        else:
            self.run_method(task_id, method, name, args, kwnames, num_returns, job, attempt)

    def cancel(self, task_id: bytes) -> None:
        """A `ray.cancel` of an actor call: a coroutine is cancelled (as
        asyncio cancels); a call not started yet is never run; a running
        call of another actor goes on, and may check `is_canceled()`."""
        fut = self.coroutines.get(task_id)
        if fut is not None:
            fut.cancel()

    def run_method(
        self, task_id: bytes, method: str, name: str, args: list[_core.GotValue], kwnames: list[str],
        num_returns: Returns, job: str, attempt: int,
    ) -> None:
        self.set_current(task_id, job, attempt, name)
        try:
            if self.client.is_cancelled(task_id):
                raise KeyboardInterrupt
            pos, kw = unpack_args(args, kwnames)
            result = getattr(self.actor, method)(*pos, **kw)
            if self.client.is_cancelled(task_id):
                # As in Ray: a call cancelled while it ran answers TaskCancelledError.
                raise KeyboardInterrupt
        except (ActorExit, SystemExit) as e:
            self.end_actor(task_id, name, num_returns, e)
        except BaseException as e:  # noqa: BLE001
            self.report_error(task_id, name, num_returns, e)
        else:
            self.report(task_id, name, num_returns, result)
        finally:
            self.call_ended()

    async def run_async(
        self, task_id: bytes, method: str, name: str, args: list[_core.GotValue], kwnames: list[str],
        num_returns: Returns, job: str, attempt: int,
    ) -> None:
        try:
            slots = self.async_slots
            assert slots is not None  # made on the loop before any call reaches it
            async with slots:
                self.set_current(task_id, job, attempt, name)
                try:
                    if self.client.is_cancelled(task_id):
                        raise asyncio.CancelledError
                    pos, kw = unpack_args(args, kwnames)
                    result = getattr(self.actor, method)(*pos, **kw)
                    if asyncio.iscoroutine(result) and not inspect.isgenerator(result):
                        result = await result
                    if isinstance(num_returns, str) and inspect.isasyncgen(result):
                        await self.stream_async(task_id, name, num_returns, result)
                        return
                except (ActorExit, SystemExit) as e:
                    self.end_actor(task_id, name, num_returns, e)
                except BaseException as e:  # noqa: BLE001
                    self.report_error(task_id, name, num_returns, e)
                else:
                    self.report(task_id, name, num_returns, result)
        except asyncio.CancelledError as e:
            # Cancelled while waiting for a slot.
            self.report_error(task_id, name, num_returns, e)
        finally:
            self.call_ended()

    def call_ended(self) -> None:
        with self.idle:
            self.running -= 1
            self.idle.notify_all()

    def end_actor(self, task_id: bytes | None, name: str, num_returns: Returns, why: BaseException | str) -> None:
        """The actor ends itself. `why` is the ActorExit or SystemExit that
        ended the method, or a sentence. A SystemExit with a status other
        than 0 is a crash: the process ends with it, and the node may
        restart the actor."""
        if isinstance(why, SystemExit):
            if why.code not in (None, 0):
                end_process(why)
            why = f"sys.exit({'' if why.code is None else why.code}) was called in {name}"
        elif isinstance(why, ActorExit):
            why = f"exit_actor() was called in {name}"
        if self.ending.is_set():
            return
        self.ending.set()
        if task_id is not None:
            err = exceptions.ActorDiedError(f"The actor {self.class_name} exited intentionally: {why}")
            s = _serialization.serialize(err, _serialization.META_TASK_ERROR)
            self.client.task_done(task_id, [(s.inline(), [])] * returns_count(num_returns), True)
        # As `ray.kill(actor, no_restart=True)`: later calls raise
        # RayActorError; the node stops this process.
        assert self.actor_id is not None  # only an actor ends itself
        self.client.kill_actor(self.actor_id, True)
        self.client.flush()


def is_canceled() -> bool:
    """Whether a `ray.cancel` reached the running task or actor call (not
    for async actors, whose cancelled calls raise CancelledError)."""
    if _worker is None:
        raise RuntimeError("This method is only available when the process is a worker.")
    if _worker.loop is not None:
        raise RuntimeError("This method is not supported in an async actor.")
    task_id = getattr(_runtime._current, "task_id", None)
    return task_id is not None and _worker.client.is_cancelled(task_id)


def set_visible_gpus(gpus: list[int]) -> list[str | None]:
    """Sets CUDA_VISIBLE_DEVICES to the GPUs a task holds; returns what it
    replaced (a list, so that an unset variable is told from an empty one)."""
    saved = [os.environ.get("CUDA_VISIBLE_DEVICES")]
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    return saved


def restore_visible_gpus(saved: list[str | None]) -> None:
    if saved[0] is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = saved[0]


def on_sigint(signum: int, frame: FrameType | None) -> None:
    """SIGINT comes from `listen_for_cancels`: it stops the running task if
    a `ray.cancel` reached it. Any other is ignored: the node stops its
    workers itself."""
    w = _worker
    if w is None:
        return
    task = w.interruptible
    if task is not None and task == getattr(_runtime._current, "task_id", None) and w.client.is_cancelled(task):
        w.interruptible = None
        raise KeyboardInterrupt


def listen_for_cancels(worker: Worker, main_thread: int) -> None:
    """Interrupts the main thread (SIGINT, which also ends a blocking sleep
    or read) when a `ray.cancel` reaches the task it runs."""
    while True:
        try:
            task = worker.client.next_cancel(CANCEL_POLL_S)
        except ConnectionError:
            return
        if task is not None and task == worker.interruptible:
            signal.pthread_kill(main_thread, signal.SIGINT)


def end_process(exit: SystemExit) -> NoReturn:
    """Ends this worker as `sys.exit` would, with the status it asked for."""
    code = exit.code
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if _worker is not None:
        try:
            _worker.client.flush()
        except ConnectionError:
            pass
    os._exit(status)


def main() -> None:
    socket = os.environ["RAYNODE_SOCKET"]
    worker_id = int(os.environ["RAYNODE_WORKER_ID"])
    try:
        client = _core.Client.connect(socket, worker_id=worker_id)
    except ConnectionError as e:
        print(f"raynode worker {worker_id}: {e}", file=sys.stderr)
        sys.exit(1)
    _runtime.set_client(client, worker=True)
    global _worker
    _worker = Worker(client)
    signal.signal(signal.SIGINT, on_sigint)
    threading.Thread(
        target=listen_for_cancels, args=(_worker, threading.get_ident()), name="raynode-cancels", daemon=True
    ).start()
    _worker.run()
    os._exit(0)


if __name__ == "__main__":
    # Run as the module `raynode._worker`, not as `__main__`: the worker's
    # state and ActorExit are then the ones `raynode.actor` sees.
    from raynode import _worker as this

    this.main()
