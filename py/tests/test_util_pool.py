"""raynode.util.multiprocessing.Pool: Python's multiprocessing.Pool on the cluster."""

import multiprocessing
import os
import threading

import pytest

from raynode.exceptions import RayActorError
from raynode.util.multiprocessing import Pool
from raynode.util.queue import Queue


def square(x):
    return x * x


def fail_on_three(x):
    if x == 3:
        raise ValueError("three")
    return x


def wait_for(q):
    """Returns what is put on `q`: blocks a worker until the test lets it go."""
    return q.get(timeout=60)


_initialized_with = None


def remember(value):
    global _initialized_with
    _initialized_with = value


def initialized_with(_):
    return _initialized_with, os.getpid()


@pytest.fixture(scope="module")
def pool(ray):
    p = Pool(processes=2)
    yield p
    p.terminate()


def test_map_and_friends(pool):
    assert pool.map(square, range(20)) == [x * x for x in range(20)]
    assert pool.map(square, range(20), chunksize=3) == [x * x for x in range(20)]
    assert pool.map(square, []) == []
    assert list(pool.imap(square, range(10))) == [x * x for x in range(10)]
    assert sorted(pool.imap_unordered(square, range(10), chunksize=2)) == [x * x for x in range(10)]
    assert pool.starmap(pow, [(2, 3), (3, 2), (5, 0)]) == [8, 9, 1]
    assert pool.apply(pow, (2, 10)) == 1024
    assert pool.apply(int, ("ff",), {"base": 16}) == 255


def test_async_calls(pool):
    got = []
    done = threading.Event()

    def callback(value):
        got.append(value)
        done.set()

    r = pool.map_async(square, range(5), callback=callback)
    assert r.get(timeout=60) == [0, 1, 4, 9, 16]
    assert done.wait(60) and got == [[0, 1, 4, 9, 16]]
    assert r.ready() and r.successful()
    a = pool.apply_async(square, (7,))
    a.wait(60)
    assert a.ready() and a.get() == 49
    assert pool.starmap_async(pow, [(2, 2)]).get(timeout=60) == [4]


def test_errors_are_re_raised(pool):
    with pytest.raises(ValueError, match="three"):
        pool.map(fail_on_three, range(6))
    with pytest.raises(ValueError, match="three"):
        list(pool.imap(fail_on_three, range(6)))
    errors = []
    done = threading.Event()
    r = pool.apply_async(fail_on_three, (3,), error_callback=lambda e: (errors.append(e), done.set()))
    with pytest.raises(ValueError):
        r.get(timeout=60)
    assert not r.successful()
    assert done.wait(60) and isinstance(errors[0], ValueError)
    assert pool.map(square, [2]) == [4]  # the workers live on


def test_timeouts(pool, ray):
    q = Queue()
    r = pool.apply_async(wait_for, (q,))
    with pytest.raises(ValueError, match="not ready"):
        r.successful()
    with pytest.raises(multiprocessing.TimeoutError):
        r.get(timeout=0.1)
    r.wait(0.1)
    assert not r.ready()
    q.put("released")
    assert r.get(timeout=60) == "released"
    it = pool.imap(wait_for, [q])
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0.1)
    q.put("again")
    assert it.next(timeout=60) == "again"
    with pytest.raises(StopIteration):
        next(it)
    q.shutdown()


def test_initializer_runs_in_every_worker(ray):
    with Pool(processes=2, initializer=remember, initargs=("set up",)) as p:
        results = p.map(initialized_with, range(8), chunksize=1)
    assert {value for value, _ in results} == {"set up"}
    assert len({pid for _, pid in results}) == 2
    assert os.getpid() not in {pid for _, pid in results}


def test_initializer_that_raises_fails_the_pool(ray):
    with pytest.raises(RayActorError):
        Pool(processes=1, initializer=fail_on_three, initargs=(3,))


def test_maxtasksperchild_replaces_workers(ray):
    with Pool(processes=1, maxtasksperchild=1) as p:
        pids = [p.apply(os.getpid) for _ in range(3)]
    assert len(set(pids)) == 3
    p = Pool(processes=1, maxtasksperchild=2)
    r = p.map_async(square, range(4), chunksize=1)
    p.close()
    p.join()
    assert r.ready() and r.get() == [0, 1, 4, 9]


def test_bad_arguments(ray):
    cpus = int(ray.cluster_resources()["CPU"])
    with pytest.raises(ValueError):
        Pool(processes=0)
    with pytest.raises(ValueError, match="CPUs"):
        Pool(processes=cpus + 1)
    with pytest.raises(ValueError):
        Pool(processes=1, maxtasksperchild=0)


def test_close_join_and_terminate(ray):
    p = Pool(processes=1)
    with pytest.raises(ValueError, match="still running"):
        p.join()
    r = p.map_async(square, range(5))
    p.close()
    with pytest.raises(ValueError, match="not running"):
        p.map(square, [1])
    p.join()
    assert r.ready() and r.get() == [0, 1, 4, 9, 16]

    p = Pool(processes=1)
    q = Queue()
    r = p.apply_async(wait_for, (q,))
    p.terminate()
    with pytest.raises(RayActorError):
        r.get(timeout=60)
    with pytest.raises(ValueError, match="not running"):
        p.apply(square, (1,))
    q.shutdown()


def test_context_manager_terminates(ray):
    with Pool(processes=1) as p:
        assert p.map(square, [3]) == [9]
    with pytest.raises(ValueError, match="not running"):
        p.map(square, [3])
