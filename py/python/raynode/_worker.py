"""The worker process: `python -m raynode._worker`, started by a node.

It runs what its node sends: tasks one at a time, or, once an actor's
constructor ran here, that actor's method calls (in order, on a thread
pool, or on an asyncio loop, by the actor's `max_concurrency`).
"""

import asyncio
import concurrent.futures
import os
import pickle
import sys
import threading
import traceback

from . import _core, _runtime, _serialization, exceptions

WORK_POLL_S = 1.0


class Worker:
    def __init__(self, client):
        self.client = client
        self.functions = {}
        self.actor = None  # the instance, once a constructor ran here
        self.actor_id = None
        self.actor_error = None  # the constructor's traceback, if it raised
        self.pool = None
        self.loop = None
        self.async_slots = None

    def run(self):
        while True:
            try:
                work = self.client.next_work(WORK_POLL_S)
            except ConnectionError:
                return
            if work is None or work[0] != b"run":
                continue
            _, task_id, fid, body, name, args, kwnames, num_returns, kind, job, attempt = work
            if body is not None:
                self.functions[fid] = pickle.loads(body)
            target = self.functions.get(fid)
            if kind is None:
                self.run_task(task_id, target, name, args, kwnames, num_returns, job, attempt)
            elif kind[0] == "create":
                self.create_actor(task_id, kind, target, name, args, kwnames, job, attempt)
            else:
                self.call_method(task_id, kind[2], name, args, kwnames, num_returns, job, attempt)

    # -- tasks --------------------------------------------------------------

    def run_task(self, task_id, function, name, args, kwnames, num_returns, job, attempt):
        self.set_current(task_id, job, attempt)
        try:
            pos, kw = unpack_args(args, kwnames)
            result = function(*pos, **kw)
        except BaseException as e:  # noqa: BLE001 - everything a task raises goes to its caller
            self.report_error(task_id, name, num_returns, e)
        else:
            self.report(task_id, name, num_returns, result)
        finally:
            self.set_current(None, job, 0)

    def report(self, task_id, name, num_returns, result):
        try:
            values = split_returns(result, num_returns, name)
            results = [self.return_value(task_id, i, v) for i, v in enumerate(values)]
        except BaseException as e:  # noqa: BLE001
            return self.report_error(task_id, name, num_returns, e)
        self.client.task_done(task_id, results, False)

    def report_error(self, task_id, name, num_returns, exc):
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if isinstance(exc, KeyboardInterrupt):
            err = _serialization.serialize(exceptions.TaskCancelledError(f"{name} was cancelled"), _serialization.META_TASK_ERROR)
        else:
            if isinstance(exc, exceptions.RayTaskError):
                exc = exc.cause if exc.cause is not None else exc
            err = _serialization.task_error(name, tb, exc)
        value = err.inline()
        self.client.task_done(task_id, [(value, err.nested)] * num_returns, True)

    def return_value(self, task_id, index, value):
        s = _serialization.serialize(value)
        if s.size <= self.client.inline_limit:
            return (s.inline(), s.nested)
        object_id = task_id + index.to_bytes(4, "big")
        path = self.client.create_return(object_id, s.planned_size())
        s.write_to(path)
        return (None, s.nested)

    def set_current(self, task_id, job, attempt):
        cur = _runtime._current
        cur.task_id = task_id
        cur.job_id = job
        cur.actor_id = self.actor_id
        cur.attempt = attempt

    # -- actors -------------------------------------------------------------

    def create_actor(self, task_id, kind, cls, name, args, kwnames, job, attempt):
        _, actor_id, max_concurrency, is_async = kind
        self.actor_id = actor_id
        self.set_current(task_id, job, attempt)
        try:
            pos, kw = unpack_args(args, kwnames)
            self.actor = cls(*pos, **kw)
        except BaseException as e:  # noqa: BLE001
            self.actor_error = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            self.client.actor_ready(actor_id, self.actor_error)
            return
        if is_async:
            self.loop = asyncio.new_event_loop()
            self.async_slots = max_concurrency
            threading.Thread(target=self.loop.run_forever, name="actor-loop", daemon=True).start()
            self.loop.call_soon_threadsafe(self._make_semaphore, max_concurrency)
        elif max_concurrency > 1:
            self.pool = concurrent.futures.ThreadPoolExecutor(max_concurrency, thread_name_prefix="actor")
        self.client.actor_ready(actor_id, None)

    def _make_semaphore(self, n):
        self.async_slots = asyncio.Semaphore(n)

    def call_method(self, task_id, method, name, args, kwnames, num_returns, job, attempt):
        if self.actor_error is not None:
            err = exceptions.ActorDiedError(f"The actor died because its constructor raised:\n{self.actor_error}")
            s = _serialization.serialize(err, _serialization.META_TASK_ERROR)
            self.client.task_done(task_id, [(s.inline(), [])] * num_returns, True)
            return
        if self.loop is not None:
            asyncio.run_coroutine_threadsafe(self.run_async(task_id, method, name, args, kwnames, num_returns, job, attempt), self.loop)
        elif self.pool is not None:
            self.pool.submit(self.run_method, task_id, method, name, args, kwnames, num_returns, job, attempt)
        else:
            self.run_method(task_id, method, name, args, kwnames, num_returns, job, attempt)

    def run_method(self, task_id, method, name, args, kwnames, num_returns, job, attempt):
        self.set_current(task_id, job, attempt)
        try:
            pos, kw = unpack_args(args, kwnames)
            result = getattr(self.actor, method)(*pos, **kw)
        except BaseException as e:  # noqa: BLE001
            self.report_error(task_id, name, num_returns, e)
        else:
            self.report(task_id, name, num_returns, result)

    async def run_async(self, task_id, method, name, args, kwnames, num_returns, job, attempt):
        async with self.async_slots:
            self.set_current(task_id, job, attempt)
            try:
                pos, kw = unpack_args(args, kwnames)
                result = getattr(self.actor, method)(*pos, **kw)
                if asyncio.iscoroutine(result):
                    result = await result
            except BaseException as e:  # noqa: BLE001
                self.report_error(task_id, name, num_returns, e)
            else:
                self.report(task_id, name, num_returns, result)


def unpack_args(values, kwnames):
    decoded = [_serialization.deserialize(v) for v in values]
    if not kwnames:
        return decoded, {}
    split = len(decoded) - len(kwnames)
    return decoded[:split], dict(zip(kwnames, decoded[split:]))


def split_returns(result, num_returns, name):
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


def main():
    socket = os.environ["RAYNODE_SOCKET"]
    worker_id = int(os.environ["RAYNODE_WORKER_ID"])
    try:
        client = _core.Client.connect(socket, worker_id=worker_id)
    except ConnectionError as e:
        print(f"raynode worker {worker_id}: {e}", file=sys.stderr)
        sys.exit(1)
    _runtime.set_client(client, worker=True)
    Worker(client).run()
    os._exit(0)


if __name__ == "__main__":
    main()
