"""asyncio: `await ref`, `asyncio.gather` of refs, `ref.future()` and
`await actor.method.remote()`, in asyncio drivers and async actors; and
refs made from their id bytes."""

import asyncio
import concurrent.futures
import os
import threading

import numpy as np
import pytest

from raynode.exceptions import RayTaskError

# Bound on every wait in these tests; reaching it is a failure, never a pass.
WAIT_S = 60


def _gate(ray):
    """An async actor other work can wait on until it is opened."""

    @ray.remote
    class Gate:
        def __init__(self):
            self.opened = asyncio.Event()

        async def wait(self):
            await asyncio.wait_for(self.opened.wait(), WAIT_S)
            return "opened"

        async def open(self):
            self.opened.set()

    return Gate.remote()


def test_await_refs_in_an_asyncio_driver(ray):
    @ray.remote
    def square(x):
        return x * x

    async def main():
        one = await square.remote(3)
        many = await asyncio.gather(*[square.remote(i) for i in range(10)])
        put = await ray.put("value")
        return one, many, put

    assert asyncio.run(main()) == (9, [i * i for i in range(10)], "value")


def test_await_an_actor_method_call(ray):
    @ray.remote
    class Counter:
        def __init__(self):
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n

    async def main():
        c = Counter.remote()
        first = await c.incr.remote()
        rest = await asyncio.gather(*[c.incr.remote() for _ in range(5)])
        return first, rest

    assert asyncio.run(main()) == (1, [2, 3, 4, 5, 6])


def test_await_raises_the_task_error(ray):
    @ray.remote
    def boom():
        raise ValueError("bad value")

    async def main():
        await boom.remote()

    with pytest.raises(ValueError, match="bad value") as info:
        asyncio.run(main())
    assert isinstance(info.value, RayTaskError)


def test_await_a_large_array(ray):
    array = np.arange(1_000_000, dtype=np.int64)

    async def main():
        return await ray.put(array)

    got = asyncio.run(main())
    assert np.array_equal(got, array)


def test_future_is_a_concurrent_future(ray):
    @ray.remote
    def add(a, b):
        return a + b

    fut = add.remote(1, 2).future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=WAIT_S) == 3

    @ray.remote
    def boom():
        raise KeyError("missing")

    err = boom.remote().future().exception(timeout=WAIT_S)
    assert isinstance(err, KeyError) and isinstance(err, RayTaskError)

    done, _ = concurrent.futures.wait([add.remote(i, i).future() for i in range(5)], timeout=WAIT_S)
    assert sorted(f.result() for f in done) == [0, 2, 4, 6, 8]


def test_wrap_future_and_as_future(ray):
    ref = ray.put(41)

    async def main():
        a = await asyncio.wrap_future(ref.future())
        b = await ref.as_future()
        return a, b

    assert asyncio.run(main()) == (41, 41)


def test_awaiting_does_not_block_the_event_loop(ray):
    """The awaited task finishes only once another coroutine on the same
    loop has run: a blocked loop would never get there."""
    gate = _gate(ray)

    async def main():
        waiting = asyncio.ensure_future(gate.wait.remote())
        await asyncio.sleep(0)
        assert not waiting.done()
        await gate.open.remote()
        return await asyncio.wait_for(waiting, WAIT_S)

    assert asyncio.run(main()) == "opened"


def test_waiting_awaits_cost_no_thread(ray):
    gate = _gate(ray)
    before = threading.active_count()

    async def main():
        waiting = [asyncio.ensure_future(gate.wait.remote()) for _ in range(50)]
        await asyncio.sleep(0.2)
        during = threading.active_count()
        await gate.open.remote()
        results = await asyncio.wait_for(asyncio.gather(*waiting), WAIT_S)
        return during, results

    during, results = asyncio.run(main())
    assert results == ["opened"] * 50
    # At most the one thread that completes every future.
    assert during <= before + 1


def test_a_cancelled_future_leaves_the_others_working(ray):
    gate = _gate(ray)
    ref = gate.wait.remote()
    dropped = ref.future()
    assert dropped.cancel()
    kept = ref.future()
    ray.get(gate.open.remote(), timeout=WAIT_S)
    assert kept.result(timeout=WAIT_S) == "opened"
    assert dropped.cancelled()


def test_await_inside_an_async_actor(ray):
    @ray.remote
    def double(x):
        return 2 * x

    @ray.remote
    class Other:
        def name(self):
            return "other"

    @ray.remote
    class Awaiter:
        async def total(self, refs):
            values = await asyncio.gather(*refs)
            return sum(values)

        async def one(self, boxed):
            return await boxed[0]

        async def call(self, other):
            return await other.name.remote()

        async def ping(self):
            return "pong"

    a = Awaiter.remote()
    refs = [double.remote(i) for i in range(10)]
    assert ray.get(a.total.remote(refs), timeout=WAIT_S) == 90
    assert ray.get(a.one.remote([ray.put("x")]), timeout=WAIT_S) == "x"
    assert ray.get(a.call.remote(Other.remote()), timeout=WAIT_S) == "other"


def test_an_async_actor_awaiting_a_ref_keeps_serving(ray):
    gate = _gate(ray)

    @ray.remote
    class Awaiter:
        async def hold(self, boxed):
            return await boxed[0]

        async def ping(self):
            return "pong"

    a = Awaiter.remote()
    held = a.hold.remote([gate.wait.remote()])
    assert ray.get(a.ping.remote(), timeout=WAIT_S) == "pong"
    ready, _ = ray.wait([held], timeout=0)
    assert ready == []
    ray.get(gate.open.remote(), timeout=WAIT_S)
    assert ray.get(held, timeout=WAIT_S) == "opened"


def test_await_in_a_task_running_its_own_loop(ray):
    @ray.remote
    def inner(x):
        return x + 1

    @ray.remote
    def outer():
        async def main():
            return await asyncio.gather(*[inner.remote(i) for i in range(4)])

        return asyncio.run(main())

    assert ray.get(outer.remote(), timeout=WAIT_S) == [1, 2, 3, 4]


# -- refs from their ids --------------------------------------------------------


def test_object_ref_from_bytes_and_hex(ray):
    ref = ray.put({"k": 1})
    again = ray.ObjectRef(bytes.fromhex(ref.hex()))
    assert again == ref and hash(again) == hash(ref)
    assert ray.get(again) == {"k": 1}
    assert ray.get(ray.ObjectRef.from_binary(ref.binary())) == {"k": 1}
    assert ray.get(ray.ObjectRef.from_hex(ref.hex())) == {"k": 1}
    # A ref made from the id while the first lives keeps the object.
    del ref
    assert ray.get(again, timeout=WAIT_S) == {"k": 1}


def test_object_ref_from_bad_input(ray):
    with pytest.raises(ValueError, match="length"):
        ray.ObjectRef(b"short")
    with pytest.raises(TypeError, match="expected bytes"):
        ray.ObjectRef("00" * 20)
    with pytest.raises(ValueError):
        ray.ObjectRef.from_hex("zz" * 20)
    with pytest.raises(ValueError):
        ray.ObjectRef.from_hex("00")
    nil = ray.ObjectRef.nil()
    assert nil.is_nil() and not ray.put(1).is_nil()


def test_object_ref_of_an_unknown_id_is_an_error_not_a_hang(ray):
    from raynode.exceptions import ObjectLostError

    unknown = ray.ObjectRef(bytes(range(20)))
    with pytest.raises((ObjectLostError, ray.exceptions.GetTimeoutError)):
        ray.get(unknown, timeout=5)


# -- cancelling actor calls -------------------------------------------------------


def test_cancel_an_async_actor_call_cancels_its_coroutine(ray):
    from raynode.exceptions import TaskCancelledError

    @ray.remote
    class Sleeper:
        def __init__(self):
            self.started = asyncio.Event()
            self.cancelled = 0

        async def sleep(self):
            self.started.set()
            try:
                await asyncio.sleep(WAIT_S)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            return "slept"

        async def wait_started(self):
            await asyncio.wait_for(self.started.wait(), WAIT_S)

        async def cancelled_count(self):
            return self.cancelled

    s = Sleeper.remote()
    ref = s.sleep.remote()
    ray.get(s.wait_started.remote(), timeout=WAIT_S)
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=WAIT_S)
    # The actor lives on, and saw the cancellation in its coroutine.
    assert ray.get(s.cancelled_count.remote(), timeout=WAIT_S) == 1


def test_cancel_an_async_actor_call_waiting_for_a_slot(ray):
    from raynode.exceptions import TaskCancelledError

    gate = _gate(ray)

    @ray.remote(max_concurrency=1)
    class One:
        async def hold(self, boxed):
            return await boxed[0]

        async def quick(self):
            return "ran"

    one = One.remote()
    held = one.hold.remote([gate.wait.remote()])
    queued = one.quick.remote()
    ray.cancel(queued)
    ray.get(gate.open.remote(), timeout=WAIT_S)
    assert ray.get(held, timeout=WAIT_S) == "opened"
    with pytest.raises(TaskCancelledError):
        ray.get(queued, timeout=WAIT_S)
    assert ray.get(one.quick.remote(), timeout=WAIT_S) == "ran"


def test_is_canceled_in_a_sync_actor_call(ray):
    from raynode.exceptions import TaskCancelledError

    gate = _gate(ray)

    @ray.remote
    class Polite:
        def work(self, gate):
            ray.get(gate.open.remote())
            for _ in range(WAIT_S * 20):
                if ray.get_runtime_context().is_canceled():
                    return "saw the cancel"
                threading.Event().wait(0.05)
            return "never cancelled"

        def flag(self):
            return ray.get_runtime_context().is_canceled()

    p = Polite.remote()
    assert ray.get(p.flag.remote(), timeout=WAIT_S) is False
    ref = p.work.remote(gate)
    ray.get(gate.wait.remote(), timeout=WAIT_S)
    ray.cancel(ref)
    # As in Ray: the call ends when it sees the flag, and answers TaskCancelledError.
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=WAIT_S)
    assert ray.get(p.flag.remote(), timeout=WAIT_S) is False


def test_is_canceled_outside_a_task(ray):
    with pytest.raises(RuntimeError, match="only available when the process is a worker"):
        ray.get_runtime_context().is_canceled()

    @ray.remote
    def task():
        return ray.get_runtime_context().is_canceled()

    @ray.remote
    class Async:
        async def check(self):
            try:
                ray.get_runtime_context().is_canceled()
            except RuntimeError as e:
                return str(e)

    assert ray.get(task.remote(), timeout=WAIT_S) is False
    assert "async actor" in ray.get(Async.remote().check.remote(), timeout=WAIT_S)


# -- cancelling tasks --------------------------------------------------------------


def test_cancel_interrupts_a_running_task_which_sees_is_canceled(ray):
    from raynode.exceptions import TaskCancelledError

    gate = _gate(ray)

    @ray.remote
    class Notes:
        def __init__(self):
            self.notes = []

        def add(self, note):
            self.notes.append(note)

        def all(self):
            return self.notes

    notes = Notes.remote()

    @ray.remote(max_retries=3)
    def slow(gate, notes):
        ray.get(notes.add.remote(("before", ray.get_runtime_context().is_canceled(), os.getpid())))
        try:
            # The cancel may land before the gate's answer does: both are covered.
            ray.get(gate.open.remote())
            threading.Event().wait(WAIT_S)
        except KeyboardInterrupt:
            ray.get(notes.add.remote(("interrupted", ray.get_runtime_context().is_canceled(), os.getpid())))
            raise
        return "finished"

    ref = slow.remote(gate, notes)
    ray.get(gate.wait.remote(), timeout=WAIT_S)
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=WAIT_S)
    got = ray.get(notes.all.remote(), timeout=WAIT_S)
    assert [(what, seen) for what, seen, _ in got] == [("before", False), ("interrupted", True)]
    pid = got[0][2]

    # Not retried, and the worker lives on to run more tasks.
    @ray.remote
    def pid_of():
        return os.getpid()

    ray.get([pid_of.remote() for _ in range(8)], timeout=WAIT_S)
    assert os.path.exists(f"/proc/{pid}")
    assert len(ray.get(notes.all.remote(), timeout=WAIT_S)) == 2


def test_a_task_that_swallows_the_interrupt_is_still_cancelled(ray):
    from raynode.exceptions import TaskCancelledError

    gate = _gate(ray)

    @ray.remote
    def stubborn(gate):
        ray.get(gate.open.remote())
        try:
            threading.Event().wait(WAIT_S)
        except KeyboardInterrupt:
            pass
        return "finished anyway"

    ref = stubborn.remote(gate)
    ray.get(gate.wait.remote(), timeout=WAIT_S)
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=WAIT_S)
