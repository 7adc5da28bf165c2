"""Generator tasks, as Ray 2.x has them: `ObjectRefGenerator` (streaming,
the default for a function that yields) and `num_returns="dynamic"`."""

import asyncio
import gc
import os
import pickle
import time

import numpy as np
import pytest

import raynode

# Bounds for the loops below (never a pass/fail timing).
GATE_WAIT_S = 30.0
FREE_WAIT_S = 10.0


def wait_for_file(path):
    """In a task: waits (bounded) until the test creates `path`."""
    deadline = time.monotonic() + GATE_WAIT_S
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture
def gate(tmp_path):
    return str(tmp_path / "open")


def node_objects(ray):
    (node,) = [n for n in ray.nodes() if n["Alive"]][:1]
    return node["Objects"]


def test_a_generator_function_gives_an_object_ref_generator(ray):
    @ray.remote
    def count(n):
        for i in range(n):
            yield i * 10

    gen = count.remote(5)
    assert isinstance(gen, ray.ObjectRefGenerator)
    refs = list(gen)
    assert all(isinstance(r, ray.ObjectRef) for r in refs)
    assert ray.get(refs) == [0, 10, 20, 30, 40]
    with pytest.raises(StopIteration):
        next(gen)
    assert gen.is_finished()


def test_an_item_is_given_before_the_task_has_finished(ray, gate):
    @ray.remote
    def slow(gate):
        yield "first"
        wait_for_file(gate)
        yield "second"

    gen = slow.remote(gate)
    first = next(gen)
    # The task cannot end before the gate opens, so this item came first.
    assert ray.get(first) == "first"
    assert not gen.is_finished()
    assert not gen.next_ready()
    assert ray.wait([gen.completed()], timeout=0)[0] == []
    open(gate, "w").close()
    assert ray.get(next(gen)) == "second"
    with pytest.raises(StopIteration):
        next(gen)
    assert ray.get(gen.completed()) is not None


def test_next_sync_gives_a_nil_ref_when_the_item_is_not_made_in_time(ray, gate):
    @ray.remote
    def held(gate):
        wait_for_file(gate)
        yield 1

    gen = held.remote(gate)
    assert gen._next_sync(timeout_s=0.05).is_nil()
    open(gate, "w").close()
    assert ray.get(gen._next_sync(timeout_s=-1)) == 1


def test_an_exception_surfaces_at_the_item_where_it_happened(ray):
    @ray.remote
    def breaks():
        yield 1
        yield 2
        raise ValueError("broke at the third")

    gen = breaks.remote()
    assert ray.get(next(gen)) == 1
    assert ray.get(next(gen)) == 2
    with pytest.raises(ValueError, match="broke at the third"):
        ray.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)


def test_streaming_on_a_function_that_does_not_yield_fails_at_the_first_item(ray):
    @ray.remote(num_returns="streaming")
    def plain():
        return 5

    gen = plain.remote()
    with pytest.raises(TypeError, match="not iterable"):
        ray.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)


def test_dynamic_returns_a_ref_to_every_item(ray):
    @ray.remote(num_returns="dynamic")
    def split(n):
        for i in range(n):
            yield np.full(200_000, i, dtype=np.int64)  # stored, not inline

    ref = split.remote(4)
    assert isinstance(ref, ray.ObjectRef)
    items = ray.get(ref)
    assert isinstance(items, ray.DynamicObjectRefGenerator)
    assert len(items) == 4
    assert [int(a[0]) for a in ray.get(list(items))] == [0, 1, 2, 3]
    # The items live as long as a ref to them does.
    refs = list(items)
    del items, ref
    gc.collect()
    assert int(ray.get(refs[3])[-1]) == 3


def test_dynamic_set_with_options(ray):
    @ray.remote
    def letters():
        yield from "abc"

    assert ray.get(list(ray.get(letters.options(num_returns="dynamic").remote()))) == ["a", "b", "c"]


def test_large_items_travel_through_the_store(ray):
    @ray.remote
    def arrays(n):
        for i in range(n):
            yield np.full(1_000_000, i, dtype=np.int64)

    got = [ray.get(r) for r in arrays.remote(3)]
    assert [int(a[0]) + int(a[-1]) for a in got] == [0, 2, 4]


def test_items_not_taken_are_freed_with_the_generator(ray, gate):
    @ray.remote
    def many(n):
        for i in range(n):
            yield np.zeros(100_000)

    gc.collect()
    before = node_objects(ray)
    gen = many.remote(20)
    first = next(gen)
    ray.get(gen.completed())
    assert node_objects(ray) >= before + 20
    del gen
    gc.collect()
    deadline = time.monotonic() + FREE_WAIT_S
    while node_objects(ray) > before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Only the item still referenced is left.
    assert node_objects(ray) == before + 1
    assert ray.get(first).shape == (100_000,)


def test_actor_methods_that_yield_stream(ray):
    @ray.remote
    class Source:
        def __init__(self):
            self.base = 100

        def numbers(self, n):
            for i in range(n):
                yield self.base + i

    s = Source.remote()
    gen = s.numbers.remote(3)
    assert isinstance(gen, ray.ObjectRefGenerator)
    assert ray.get(list(gen)) == [100, 101, 102]


def test_async_actor_methods_that_yield_stream(ray):
    @ray.remote
    class Ticker:
        async def ticks(self, n):
            for i in range(n):
                await asyncio.sleep(0.001)
                yield -i

        def plain(self, n):
            yield from range(n)

    t = Ticker.remote()
    assert ray.get(list(t.ticks.remote(3))) == [0, -1, -2]
    assert ray.get(list(t.plain.remote(2))) == [0, 1]


def test_async_iteration_in_an_asyncio_driver(ray):
    @ray.remote
    def count(n):
        yield from range(n)

    async def main():
        seen = []
        async for ref in count.remote(4):
            seen.append(await ref)
        return seen

    assert asyncio.run(main()) == [0, 1, 2, 3]


def test_ray_wait_on_a_generator(ray, gate):
    @ray.remote
    def later(gate):
        wait_for_file(gate)
        yield "now"

    @ray.remote
    def quick():
        return 1

    gen = later.remote(gate)
    ref = quick.remote()
    ray.get(ref)
    ready, rest = ray.wait([gen, ref], num_returns=2, timeout=0.2)
    assert ready == [ref] and rest == [gen]
    open(gate, "w").close()
    ready, rest = ray.wait([gen], timeout=GATE_WAIT_S)
    assert ready == [gen] and rest == []
    assert ray.get(next(gen)) == "now"
    # As in Ray, a generator with no more items is not ready.
    assert ray.wait([gen], timeout=0.1) == ([], [gen])
    with pytest.raises(StopIteration):
        next(gen)


def test_cancelling_a_generator_ends_it_with_task_cancelled_error(ray, gate):
    @ray.remote
    def endless():
        i = 0
        while True:
            yield i
            i += 1
            time.sleep(0.01)

    gen = endless.remote()
    assert ray.get(next(gen)) == 0
    ray.cancel(gen)
    deadline = time.monotonic() + GATE_WAIT_S
    with pytest.raises(ray.exceptions.TaskCancelledError):
        for ref in gen:
            ray.get(ref)
            assert time.monotonic() < deadline
    with pytest.raises(StopIteration):
        next(gen)


def test_bad_uses_raise_clear_errors(ray):
    def gen():
        yield 1

    with pytest.raises(ValueError, match="num_returns"):
        ray.remote(num_returns="lots")(gen)
    g = ray.remote(gen).remote()
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        ray.get(g)
    with pytest.raises(TypeError, match="cannot be passed"):
        pickle.dumps(g)
    assert ray.get(next(g)) == 1


def test_the_module_exports_ray_names():
    assert raynode.ObjectRefGenerator.__name__ == "ObjectRefGenerator"
    assert raynode.DynamicObjectRefGenerator.__name__ == "DynamicObjectRefGenerator"
