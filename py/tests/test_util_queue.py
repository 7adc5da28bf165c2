"""raynode.util.queue.Queue: an actor-backed queue shared by tasks and actors."""

import asyncio
import queue as stdlib_queue
import time

import pytest

from raynode.exceptions import RayActorError
from raynode.util.queue import Empty, Full, Queue


def test_fifo_and_sizes(ray):
    q = Queue(maxsize=3)
    assert q.empty() and not q.full() and q.size() == 0
    for v in ("a", "b", "c"):
        q.put(v)
    assert q.full() and q.qsize() == 3 and len(q) == 3
    assert [q.get(), q.get(), q.get()] == ["a", "b", "c"]
    assert q.empty()
    q.shutdown()


def test_nowait_raises_empty_and_full(ray):
    q = Queue(maxsize=1)
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    q.put_nowait(1)
    with pytest.raises(Full):
        q.put_nowait(2)
    with pytest.raises(Full):
        q.put(2, block=False)
    assert q.get_nowait() == 1
    # The stdlib's classes catch them too.
    with pytest.raises(stdlib_queue.Empty):
        q.get_nowait()
    q.shutdown()


def test_timed_get_and_put_give_up_after_the_timeout(ray):
    q = Queue(maxsize=1)
    start = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 10
    q.put(1)
    start = time.monotonic()
    with pytest.raises(Full):
        q.put(2, timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 10
    assert q.get() == 1
    q.shutdown()


def test_negative_timeout_is_refused(ray):
    q = Queue()
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    with pytest.raises(ValueError):
        q.put(1, timeout=-1)
    q.shutdown()


def test_blocking_get_waits_for_a_put_from_elsewhere(ray):
    @ray.remote
    def consume(q):
        return q.get(timeout=60)

    q = Queue()
    result = consume.remote(q)
    ready, _ = ray.wait([result], timeout=0.2)
    assert not ready
    q.put("hello")
    assert ray.get(result, timeout=60) == "hello"
    q.shutdown()


def test_blocking_put_waits_for_room(ray):
    @ray.remote
    def produce(q, v):
        q.put(v)
        return "put"

    q = Queue(maxsize=1)
    q.put(1)
    result = produce.remote(q, 2)
    ready, _ = ray.wait([result], timeout=0.2)
    assert not ready
    assert q.get() == 1
    assert ray.get(result, timeout=60) == "put"
    assert q.get(timeout=60) == 2
    q.shutdown()


def test_tasks_and_actors_share_one_queue(ray):
    @ray.remote
    def produce(q, who):
        for i in range(10):
            q.put((who, i))

    @ray.remote
    class Consumer:
        def take(self, q, n):
            return [q.get(timeout=60) for _ in range(n)]

    q = Queue()
    producers = [produce.remote(q, w) for w in range(3)]
    taken = ray.get(Consumer.remote().take.remote(q, 30), timeout=60)
    ray.get(producers)
    assert sorted(taken) == sorted((w, i) for w in range(3) for i in range(10))
    for w in range(3):
        assert [i for who, i in taken if who == w] == list(range(10))
    q.shutdown()


def test_batches_are_all_or_none(ray):
    q = Queue(maxsize=3)
    q.put_nowait_batch([1, 2])
    with pytest.raises(Full, match="Cannot add 2 items to queue of size 2 and maxsize 3"):
        q.put_nowait_batch([3, 4])
    assert q.qsize() == 2
    with pytest.raises(Empty, match="Cannot get 3 items from queue of size 2"):
        q.get_nowait_batch(3)
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get_nowait_batch(0) == []
    q.shutdown()


def test_batch_arguments_are_checked(ray):
    q = Queue()
    with pytest.raises(TypeError):
        q.put_nowait_batch(5)
    with pytest.raises(TypeError):
        q.get_nowait_batch(1.5)
    with pytest.raises(ValueError):
        q.get_nowait_batch(-1)
    q.shutdown()


def test_async_variants(ray):
    q = Queue(maxsize=1)

    async def main():
        await q.put_async("x")
        with pytest.raises(Full):
            await q.put_async("y", timeout=0.1)
        got = await q.get_async()
        with pytest.raises(Empty):
            await q.get_async(block=False)
        return got

    assert asyncio.run(main()) == "x"
    q.shutdown()


def test_async_actor_awaits_a_queue(ray):
    @ray.remote
    class Reader:
        async def read(self, q):
            return await q.get_async(timeout=60)

    q = Queue()
    result = Reader.remote().read.remote(q)
    q.put(5)
    assert ray.get(result, timeout=60) == 5
    q.shutdown()


def test_actor_options_reach_the_queue_actor(ray):
    q = Queue(actor_options={"name": "util-queue-named"})
    q.put(1)
    assert ray.get(ray.get_actor("util-queue-named").qsize.remote()) == 1
    q.shutdown()


def test_shutdown_lets_calls_finish_then_ends_the_queue(ray):
    @ray.remote
    def consume(q):
        return q.get()

    q = Queue()
    q.put_nowait_batch(range(100))
    q.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        q.put(1)
    q.shutdown()  # a second shutdown does nothing

    q = Queue()
    blocked = consume.remote(q)
    ready, _ = ray.wait([blocked], timeout=0.2)
    assert not ready
    start = time.monotonic()
    q.shutdown(grace_period_s=0.5)
    assert time.monotonic() - start < 30
    with pytest.raises(RayActorError):
        ray.get(blocked, timeout=60)


def test_forced_shutdown_fails_blocked_callers(ray):
    @ray.remote
    def consume(q):
        return q.get()

    q = Queue()
    blocked = consume.remote(q)
    ready, _ = ray.wait([blocked], timeout=0.2)
    assert not ready
    q.shutdown(force=True)
    with pytest.raises(RayActorError):
        ray.get(blocked, timeout=60)
