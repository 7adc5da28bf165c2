"""Ray Core's introductory programs and the task API, unchanged but for the import."""

import pickle
import time

import numpy as np
import pytest

from raynode.exceptions import GetTimeoutError, RayTaskError, TaskCancelledError, WorkerCrashedError


def test_f_remote(ray):
    @ray.remote
    def f(x):
        return x * x

    assert ray.get(f.remote(2)) == 4


def test_add2_with_values_and_puts(ray):
    @ray.remote
    def add2(a, b):
        return a + b

    assert ray.get(add2.remote(1, 2)) == 3
    assert ray.get(add2.remote(1, ray.put(2))) == 3
    assert ray.get(add2.remote(ray.put(1), ray.put(2))) == 3


def test_chain(ray):
    @ray.remote
    def f(x):
        return x + 1

    x = f.remote(0)
    y = f.remote(x)
    z = f.remote(y)
    assert ray.get(z) == 3


def test_tree_reduce_over_numpy_arrays(ray):
    @ray.remote
    def make(i):
        return np.full(50_000, i, dtype=np.int64)

    @ray.remote
    def add(a, b):
        return a + b

    refs = [make.remote(i) for i in range(100)]
    while len(refs) > 1:
        refs = [add.remote(refs[i], refs[i + 1]) for i in range(0, len(refs) - 1, 2)] + refs[len(refs) - len(refs) % 2:]
    total = ray.get(refs[0])
    assert total.shape == (50_000,)
    assert int(total[0]) == sum(range(100))


def test_nested_experiments(ray):
    @ray.remote
    def sub_experiment(i, j):
        return i + j

    @ray.remote
    def run_experiment(i):
        return sum(ray.get([sub_experiment.remote(i, j) for j in range(10)]))

    results = ray.get([run_experiment.remote(i) for i in range(5)])
    assert results == [45, 55, 65, 75, 85]


def test_num_returns(ray):
    @ray.remote(num_returns=3)
    def three():
        return 1, 2, 3

    a, b, c = three.remote()
    assert ray.get([a, b, c]) == [1, 2, 3]


def test_sleeping_tasks_run_in_parallel():
    """Ten 1 s sleeps on a 10-CPU node all run at once (their spans overlap)."""
    import raynode

    from standalone_node import StandaloneNode

    node = StandaloneNode(num_cpus=10)
    try:
        out = node.run_driver(
            "import raynode as ray, time\n"
            "ray.init()\n"
            "@ray.remote\n"
            "def s():\n"
            "    t = time.time(); time.sleep(1); return (t, time.time())\n"
            "spans = ray.get([s.remote() for _ in range(10)])\n"
            "print(max(a for a, _ in spans) < min(b for _, b in spans))\n"
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "True"
    finally:
        node.stop()
    assert raynode is not None


def test_large_values_come_back_zero_copy_and_read_only(ray):
    arr = np.arange(1_000_000, dtype=np.float64)
    back = ray.get(ray.put(arr))
    assert np.array_equal(back, arr)
    assert not back.flags.writeable

    @ray.remote
    def double(a):
        return a * 2

    assert float(ray.get(double.remote(arr))[10]) == 20.0


def test_a_stale_store_path_is_refused_not_read_as_another_object(ray):
    # The store reuses a freed object's file in place for the next object of
    # its size; a reader holding the old (path, size, id) must get an error.
    from raynode import _runtime, _serialization, exceptions

    client = _runtime.client()
    ref = ray.put(np.full(500_000, 1.0))
    old = client.get([ref], None)[0]
    assert isinstance(old, tuple) and len(old) == 3
    assert float(_serialization.deserialize(old)[7]) == 1.0
    del ref
    deadline = time.monotonic() + 20
    for _ in range(200):
        fresh = ray.put(np.full(500_000, 2.0))
        value = client.get([fresh], None)[0]
        if value[0] == old[0] or time.monotonic() > deadline:
            break
        del fresh, value
        time.sleep(0.1)
    assert value[0] == old[0], "the freed file was not reused"
    with pytest.raises(exceptions.ObjectLostError):
        _serialization.deserialize(old)
    assert float(ray.get(fresh)[7]) == 2.0


def test_refs_are_hashable_picklable_and_travel_in_containers(ray):
    @ray.remote
    def f(x):
        return x

    r = ray.put(41)
    assert r in {r: 1}
    assert pickle.loads(pickle.dumps(r)) == r

    @ray.remote
    def deref(box):
        return ray.get(box["ref"]) + 1

    assert ray.get(deref.remote({"ref": r})) == 42
    refs = ray.get(f.remote([r]))
    assert ray.get(refs[0]) == 41


def test_wait(ray):
    @ray.remote
    def sleepy(t):
        time.sleep(t)
        return t

    fast = sleepy.remote(0)
    slow = sleepy.remote(30)
    ready, pending = ray.wait([slow, fast], num_returns=1, timeout=10)
    assert ready == [fast] and pending == [slow]
    ready, pending = ray.wait([slow], timeout=0)
    assert ready == [] and pending == [slow]
    ray.cancel(slow, force=True)
    with pytest.raises(ValueError):
        ray.wait([fast, fast])
    with pytest.raises(ValueError):
        ray.wait([fast], num_returns=2)


def test_wrong_arity_is_a_type_error_at_the_call(ray):
    @ray.remote
    def one(x):
        return x

    with pytest.raises(TypeError):
        one.remote(1, 2)
    with pytest.raises(TypeError):
        one(1)


def test_unpicklable_argument_names_its_type(ray):
    import threading

    @ray.remote
    def f(x):
        return 1

    with pytest.raises(TypeError, match="lock"):
        f.remote(threading.Lock())


def test_task_error_is_ray_task_error_and_the_original_class(ray):
    class MyError(Exception):
        pass

    @ray.remote
    def boom():
        raise MyError("bad thing")

    with pytest.raises(MyError) as info:
        ray.get(boom.remote())
    assert isinstance(info.value, RayTaskError)
    assert "bad thing" in str(info.value)
    assert "Traceback" in str(info.value)


def test_errors_propagate_through_dependent_tasks(ray):
    @ray.remote
    def boom():
        raise ValueError("root cause")

    @ray.remote
    def use(x):
        return x

    with pytest.raises(ValueError, match="root cause"):
        ray.get(use.remote(boom.remote()))


def test_killed_worker_is_retried_then_raises(ray, tmp_path):
    marker = tmp_path / "attempts"

    @ray.remote(max_retries=2)
    def die(path):
        with open(path, "a") as f:
            f.write("x")
        import os

        os._exit(1)

    with pytest.raises(WorkerCrashedError):
        ray.get(die.remote(str(marker)), timeout=60)
    assert marker.read_text() == "xxx"

    @ray.remote(max_retries=3)
    def die_once(path):
        import os

        with open(path, "a") as f:
            f.write("y")
        if open(path).read().count("y") == 1:
            os._exit(1)
        return "survived"

    marker2 = tmp_path / "once"
    assert ray.get(die_once.remote(str(marker2)), timeout=60) == "survived"


def test_get_timeout(ray):
    @ray.remote
    def slow():
        time.sleep(30)

    ref = slow.remote()
    with pytest.raises(GetTimeoutError):
        ray.get(ref, timeout=0.2)
    ray.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=30)


def test_cancel_queued_task(ray):
    @ray.remote(num_cpus=4)
    def hog():
        time.sleep(30)

    @ray.remote(num_cpus=4)
    def queued():
        return 1

    running = hog.remote()
    waiting = queued.remote()
    ray.cancel(waiting)
    with pytest.raises(TaskCancelledError):
        ray.get(waiting, timeout=10)
    ray.cancel(running, force=True)


def test_cluster_information(ray):
    nodes = ray.nodes()
    assert len(nodes) == 1 and nodes[0]["Alive"]
    assert ray.cluster_resources()["CPU"] == 4
    assert ray.available_resources()["CPU"] <= 4
    ctx = ray.get_runtime_context()
    assert ctx.get_node_id() == nodes[0]["NodeID"]

    @ray.remote
    def where():
        return ray.get_runtime_context().get_node_id()

    assert ray.get(where.remote()) == nodes[0]["NodeID"]


def test_dropped_refs_free_their_objects(ray):
    def objects():
        return ray.nodes()[0]["Objects"]

    @ray.remote
    def f(i):
        return i

    before = objects()
    for i in range(300):
        ray.get(f.remote(i))
        ray.put(b"x" * 200_000)
    # The node hears of dropped refs within the flush interval.
    deadline = time.monotonic() + 10
    while objects() > before + 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert objects() <= before + 5


def test_custom_resources_and_infeasible_tasks_stay_pending(ray):
    @ray.remote(resources={"special": 1})
    def needs_special():
        return 1

    ref = needs_special.remote()
    ready, _ = ray.wait([ref], timeout=0.5)
    assert ready == []
    with pytest.raises(ValueError):
        needs_special.options(num_cpus=-1)
