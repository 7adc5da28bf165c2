"""Workloads of the "objects" group: puts and gets from the driver and from
tasks (small values and arrays of gigabytes), an object holding 10k refs,
and waits on refs.  Each returns its per-repetition rates.
"""

from .base import timeit


def w_get_calls(ray, d, p):
    value = ray.put(0)
    return timeit(lambda: ray.get(value), 1, p)


def w_put_calls(ray, d, p):
    return timeit(lambda: ray.put(0), 1, p)


def w_multi_put_calls(ray, d, p):
    clients, puts = p["multi_put_small"]

    def fn():
        ray.get([d.do_put_small.remote(puts) for _ in range(clients)])
    return timeit(fn, clients * puts, p)


def _numpy():
    try:
        import numpy as np
    except ImportError:
        raise RuntimeError("numpy is not installed in this Python")
    return np


def w_put_gigabytes(ray, d, p):
    np = _numpy()
    arr = np.zeros(p["put_bytes"] // 8, dtype=np.int64)
    return timeit(lambda: ray.put(arr), arr.nbytes / 1e9, p)


def w_multi_put_gigabytes(ray, d, p):
    _numpy()
    clients, puts, nbytes = p["multi_put"]

    def fn():
        ray.get([d.do_put.remote(puts, nbytes) for _ in range(clients)])
    return timeit(fn, clients * puts * nbytes / 1e9, p)


def w_get_containing_refs(ray, d, p):
    ref = d.create_object_containing_ref.remote(p["contained_refs"])
    ray.get(ref)  # created before timing, as in ray_perf.py's warm-up
    return timeit(lambda: ray.get(ref), 1, p)


def w_wait_refs(ray, d, p):
    n = p["wait_refs"]

    def fn():
        not_ready = [d.small_value.remote() for _ in range(n)]
        fetch_local = True
        for _ in range(n):
            _ready, not_ready = ray.wait(not_ready, fetch_local=fetch_local)
            fetch_local = False
    return timeit(fn, 1, p)


def w_wait_ready_refs(ray, d, p):
    """Repeated `ray.wait(refs, num_returns=len(refs))` over refs that are
    all ready: an answer the driver can know without asking (calls/s)."""
    n = p["wait_refs"]
    refs = [d.small_value.remote() for _ in range(n)]
    ray.get(refs)
    return timeit(lambda: ray.wait(refs, num_returns=n), 1, p)
