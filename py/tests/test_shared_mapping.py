"""Large objects are mapped once per process: two gets of the same object
return arrays over the same memory, and the mapping goes with the last
value that uses it."""

import gc
import os

import numpy as np

WAIT_S = 60


def _maps_of(path_part):
    """Lines of this process's memory map naming files that contain `path_part`."""
    with open(f"/proc/{os.getpid()}/maps") as f:
        return [line for line in f if path_part in line]


def test_two_gets_of_one_object_share_memory(ray):
    ref = ray.put(np.arange(1_000_000, dtype=np.int64))
    a = ray.get(ref)
    b = ray.get(ref)
    assert a is not b
    assert np.shares_memory(a, b)
    assert a.ctypes.data == b.ctypes.data
    assert not a.flags.writeable
    c, d = ray.get([ref, ref])
    assert np.shares_memory(a, c) and np.shares_memory(a, d)


def test_a_task_result_got_twice_shares_memory(ray):
    @ray.remote
    def make():
        return np.ones(500_000)

    ref = make.remote()
    a = ray.get(ref, timeout=WAIT_S)
    b = ray.get(ref, timeout=WAIT_S)
    assert np.shares_memory(a, b)


def test_other_objects_get_other_memory(ray):
    x = ray.put(np.zeros(500_000))
    y = ray.put(np.zeros(500_000))
    assert not np.shares_memory(ray.get(x), ray.get(y))


def test_the_mapping_goes_with_its_last_value(ray):
    ref = ray.put(np.arange(300_000, dtype=np.float64))
    store = ray._runtime.client().store_root
    before = len(_maps_of(store))
    a = ray.get(ref)
    b = ray.get(ref)
    assert len(_maps_of(store)) == before + 1
    del a
    gc.collect()
    assert len(_maps_of(store)) == before + 1
    assert float(b[-1]) == 299_999.0
    del b
    gc.collect()
    assert len(_maps_of(store)) == before
    # Mapped again on the next get.
    assert float(ray.get(ref)[1]) == 1.0


def test_mapping_shared_inside_a_worker(ray):
    ref = ray.put(np.arange(200_000))

    @ray.remote
    def same(boxed):
        a = ray.get(boxed[0])
        b = ray.get(boxed[0])
        return bool(np.shares_memory(a, b))

    assert ray.get(same.remote([ref]), timeout=WAIT_S) is True
