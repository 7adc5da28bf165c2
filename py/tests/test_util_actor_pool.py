"""raynode.util.ActorPool with Ray's semantics."""

import pytest

from raynode.util import ActorPool


@pytest.fixture(scope="module")
def classes(ray):
    @ray.remote
    class Worker:
        def __init__(self, name):
            self.name = name

        def double(self, v):
            return 2 * v

        def whoami(self, _):
            return self.name

        def after(self, gate, v):
            """Returns `v` once `gate` is opened."""
            ray.get(gate.wait.remote())
            return v

        def fail(self, v):
            raise KeyError(v)

    @ray.remote
    class Gate:
        def __init__(self):
            import asyncio

            self.event = asyncio.Event()

        async def wait(self):
            await self.event.wait()

        async def open(self):
            self.event.set()

    return Worker, Gate


def double(a, v):
    return a.double.remote(v)


def test_map_keeps_the_order_of_values(classes):
    Worker, _ = classes
    pool = ActorPool([Worker.remote("a"), Worker.remote("b")])
    assert list(pool.map(double, range(10))) == [2 * v for v in range(10)]
    assert not pool.has_next()


def test_map_unordered_yields_what_finishes_first(classes):
    Worker, Gate = classes
    gate = Gate.remote()
    pool = ActorPool([Worker.remote("a"), Worker.remote("b")])
    results = pool.map_unordered(lambda a, v: a.after.remote(gate, v) if v == "slow" else a.double.remote(v), ["slow", 5])
    assert next(results) == 10
    gate.open.remote()
    assert next(results) == "slow"
    assert list(results) == []


def test_values_go_to_idle_actors_and_wait_when_all_are_busy(classes):
    Worker, _ = classes
    pool = ActorPool([Worker.remote("a"), Worker.remote("b")])
    assert pool.has_free()
    for v in range(5):
        pool.submit(lambda a, v: a.whoami.remote(v), v)
    assert not pool.has_free()
    names = [pool.get_next() for _ in range(5)]
    assert set(names) == {"a", "b"}
    assert not pool.has_next()
    assert pool.has_free()


def test_get_next_timeout_keeps_the_result_in_line(classes):
    Worker, Gate = classes
    gate = Gate.remote()
    pool = ActorPool([Worker.remote("a")])
    pool.submit(lambda a, v: a.after.remote(gate, v), "first")
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1)
    assert pool.has_next()
    gate.open.remote()
    assert pool.get_next(timeout=30) == "first"


def test_get_next_ignore_if_timedout_drops_the_result(classes):
    Worker, Gate = classes
    gate = Gate.remote()
    pool = ActorPool([Worker.remote("a"), Worker.remote("b")])
    pool.submit(lambda a, v: a.after.remote(gate, v), "dropped")
    pool.submit(double, 21)
    with pytest.raises(TimeoutError, match="ignored"):
        pool.get_next(timeout=0.1, ignore_if_timedout=True)
    assert pool.get_next() == 42
    assert not pool.has_next()
    gate.open.remote()


def test_get_next_unordered_timeout(classes):
    Worker, Gate = classes
    gate = Gate.remote()
    pool = ActorPool([Worker.remote("a")])
    pool.submit(lambda a, v: a.after.remote(gate, v), 7)
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.1)
    gate.open.remote()
    assert pool.get_next_unordered(timeout=30) == 7


def test_nothing_to_get_raises_stop_iteration(classes):
    Worker, _ = classes
    pool = ActorPool([Worker.remote("a")])
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_get_next_after_get_next_unordered_is_refused(classes):
    Worker, Gate = classes
    gate = Gate.remote()
    pool = ActorPool([Worker.remote("a"), Worker.remote("b")])
    pool.submit(lambda a, v: a.after.remote(gate, v), "slow")
    pool.submit(double, 2)
    assert pool.get_next_unordered() == 4
    with pytest.raises(ValueError, match="get_next_unordered"):
        pool.get_next()
    gate.open.remote()
    assert pool.get_next_unordered() == "slow"


def test_a_call_that_raises_gives_its_actor_back(classes):
    Worker, _ = classes
    pool = ActorPool([Worker.remote("a")])
    pool.submit(lambda a, v: a.fail.remote(v), "boom")
    with pytest.raises(KeyError):
        pool.get_next()
    assert pool.has_free()
    assert list(pool.map(double, [4])) == [8]


def test_pool_without_actors(classes):
    Worker, _ = classes
    pool = ActorPool([])
    assert not pool.has_free()
    assert pool.pop_idle() is None
    with pytest.raises(ValueError, match="no actors"):
        pool.map(double, [1])
    pool.submit(double, 5)  # waits for an actor
    assert not pool.has_next()
    pool.push(Worker.remote("late"))
    assert pool.get_next() == 10


def test_push_and_pop_idle(classes):
    Worker, _ = classes
    a = Worker.remote("a")
    pool = ActorPool([a])
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(a)
    pool.submit(double, 1)
    assert pool.pop_idle() is None
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(a)
    assert pool.get_next() == 2
    assert pool.pop_idle() == a
    assert not pool.has_free()
    pool.push(a)
    assert pool.has_free()


def test_map_drops_results_not_fetched_before(classes):
    Worker, _ = classes
    pool = ActorPool([Worker.remote("a")])
    pool.submit(double, 100)
    pool.submit(double, 200)
    assert list(pool.map(double, [1, 2])) == [2, 4]
