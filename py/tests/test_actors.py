"""Actors with Ray's semantics."""

import os
import threading
import time

import pytest

from raynode.exceptions import RayActorError


def test_counter(ray):
    @ray.remote
    class Counter:
        def __init__(self):
            self.value = 0

        def increment(self):
            self.value += 1
            return self.value

    c = Counter.remote()
    assert ray.get([c.increment.remote() for _ in range(10)]) == list(range(1, 11))


def test_calls_from_many_callers_each_run_in_order(ray):
    @ray.remote
    class Log:
        def __init__(self):
            self.seen = []

        def add(self, who, i):
            self.seen.append((who, i))

        def get(self):
            return self.seen

    @ray.remote
    def caller(log, who):
        ray.get([log.add.remote(who, i) for i in range(50)])
        return who

    log = Log.remote()
    ray.get([caller.remote(log, w) for w in range(4)])
    seen = ray.get(log.get.remote())
    assert len(seen) == 200
    for w in range(4):
        assert [i for who, i in seen if who == w] == list(range(50))


def test_handles_pass_through_tasks_and_actors(ray):
    @ray.remote
    class Box:
        def __init__(self, v):
            self.v = v

        def get(self):
            return self.v

        def set(self, v):
            self.v = v

    @ray.remote
    def read(box):
        return ray.get(box.get.remote())

    @ray.remote
    class Forwarder:
        def fwd(self, boxes):
            return ray.get(boxes[0].get.remote())

    @ray.remote
    def make_box():
        return Box.remote("made in a task")

    b = Box.remote(1)
    b.set.remote(5)
    assert ray.get(read.remote(b)) == 5
    assert ray.get(Forwarder.remote().fwd.remote([b])) == 5
    inner = ray.get(make_box.remote())
    assert ray.get(inner.get.remote()) == "made in a task"


def test_method_num_returns(ray):
    @ray.remote
    class Pair:
        @ray.method(num_returns=2)
        def two(self):
            return 1, 2

    a, b = Pair.remote().two.remote()
    assert ray.get([a, b]) == [1, 2]


def test_named_actors_and_the_name_race(ray):
    @ray.remote
    class Named:
        def ping(self):
            return "pong"

    a = Named.options(name="unique-name").remote()
    assert ray.get(ray.get_actor("unique-name").ping.remote()) == "pong"
    with pytest.raises(ValueError, match="already taken"):
        Named.options(name="unique-name").remote()
    with pytest.raises(ValueError):
        ray.get_actor("no-such-actor")

    results = []

    def create():
        try:
            Named.options(name="raced").remote()
            results.append("ok")
        except ValueError:
            results.append("taken")

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["ok", "taken", "taken", "taken"]
    ray.kill(a)


def test_kill_then_calls_raise(ray):
    @ray.remote
    class A:
        def ping(self):
            return 1

    a = A.remote()
    assert ray.get(a.ping.remote()) == 1
    ray.kill(a)
    with pytest.raises(RayActorError):
        ray.get(a.ping.remote(), timeout=30)


def test_constructor_error_makes_every_call_raise_with_the_cause(ray):
    @ray.remote
    class Broken:
        def __init__(self):
            raise RuntimeError("cannot build")

        def ping(self):
            return 1

    b = Broken.remote()
    for _ in range(2):
        with pytest.raises(RayActorError, match="cannot build"):
            ray.get(b.ping.remote(), timeout=30)


def test_restarts_up_to_max_restarts(ray):
    @ray.remote(max_restarts=1)
    class Fragile:
        def __init__(self):
            self.calls = 0

        def pid(self):
            return os.getpid()

        def count(self):
            self.calls += 1
            return self.calls

        def die(self):
            os._exit(1)

    f = Fragile.remote()
    first = ray.get(f.pid.remote())
    assert ray.get(f.count.remote()) == 1
    with pytest.raises(RayActorError):
        ray.get(f.die.remote(), timeout=30)
    # Restarted: constructor ran again in a new process.
    assert ray.get(f.count.remote(), timeout=30) == 1
    assert ray.get(f.pid.remote()) != first
    with pytest.raises(RayActorError):
        ray.get(f.die.remote(), timeout=30)
    with pytest.raises(RayActorError):
        ray.get(f.count.remote(), timeout=30)


def test_max_task_retries_reruns_calls_in_flight(ray, tmp_path):
    marker = tmp_path / "died"

    @ray.remote(max_restarts=1, max_task_retries=1)
    class Once:
        def maybe_die(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            return "retried"

    assert ray.get(Once.remote().maybe_die.remote(str(marker)), timeout=60) == "retried"


def test_threaded_actor_runs_calls_concurrently(ray):
    @ray.remote(max_concurrency=4)
    class Gate:
        def __init__(self):
            self.barrier = threading.Barrier(4, timeout=20)

        def meet(self):
            self.barrier.wait()
            return True

    g = Gate.remote()
    assert ray.get([g.meet.remote() for _ in range(4)], timeout=60) == [True] * 4


def test_async_actor_runs_calls_concurrently(ray):
    import asyncio

    @ray.remote
    class AsyncGate:
        def __init__(self):
            self.arrived = 0

        async def meet(self, n):
            self.arrived += 1
            for _ in range(400):
                if self.arrived >= n:
                    return True
                await asyncio.sleep(0.05)
            return False

    g = AsyncGate.remote()
    assert ray.get([g.meet.remote(20) for _ in range(20)], timeout=60) == [True] * 20


def test_detached_actor_outlives_its_driver_and_others_die(standalone_node):
    out = standalone_node.run_driver(
        "import raynode as ray\n"
        "ray.init()\n"
        "@ray.remote\n"
        "class A:\n"
        "    def ping(self): return 'alive'\n"
        "a = A.options(name='keeper', lifetime='detached').remote()\n"
        "b = A.options(name='mortal').remote()\n"
        "print(ray.get([a.ping.remote(), b.ping.remote()]))\n"
    )
    assert "alive" in out.stdout, out.stderr
    out = standalone_node.run_driver(
        "import raynode as ray\n"
        "ray.init()\n"
        "print(ray.get(ray.get_actor('keeper').ping.remote()))\n"
        "try:\n"
        "    ray.get_actor('mortal')\n"
        "    print('mortal found')\n"
        "except ValueError:\n"
        "    print('mortal gone')\n"
    )
    assert out.stdout.split() == ["alive", "mortal", "gone"], out.stderr


def test_actor_resources_route_to_a_node_that_has_them(ray):
    @ray.remote(resources={"nowhere": 1})
    class Impossible:
        def ping(self):
            return 1

    a = Impossible.remote()
    ready, _ = ray.wait([a.ping.remote()], timeout=0.5)
    assert ready == []
    time.sleep(0)


def test_an_actor_dies_with_the_worker_that_created_it(ray):
    """As in Ray, a non-detached actor fate-shares with its owner: here the
    worker of the actor whose method created it. A detached one lives on."""

    @ray.remote(num_cpus=0)
    class Child:
        def ping(self):
            return "pong"

    @ray.remote(num_cpus=0)
    class Parent:
        def make(self):
            self.child = Child.remote()
            self.free = Child.options(lifetime="detached", name="free-child").remote()
            return [self.child, self.free]

    parent = Parent.remote()
    child, free = ray.get(parent.make.remote())
    assert ray.get([child.ping.remote(), free.ping.remote()]) == ["pong", "pong"]
    ray.kill(parent)
    deadline = time.monotonic() + 30
    with pytest.raises(RayActorError, match="owner"):
        while time.monotonic() < deadline:
            ray.get(child.ping.remote(), timeout=30)
            time.sleep(0.05)
    assert ray.get(free.ping.remote()) == "pong"
    ray.kill(free)
