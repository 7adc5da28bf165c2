"""Workloads of the "tasks" group (small tasks, one at a time and in
batches, from the driver and from actors) and of the "generators" group
(items streamed by a generator task, and the latency of one item).
"""

import statistics
import time

from .base import timeit
from .defs import kill_actors


def w_tasks_and_get_batch(ray, d, p):
    n = p["batch"]
    return timeit(
        lambda: ray.get([d.small_value.remote() for _ in range(n)]), 1, p)


def w_tasks_sync(ray, d, p):
    return timeit(lambda: ray.get(d.small_value.remote()), 1, p)


def w_tasks_async(ray, d, p):
    n = p["batch"]
    return timeit(
        lambda: ray.get([d.small_value.remote() for _ in range(n)]), n, p)


def w_multi_tasks_async(ray, d, p):
    m, n = p["multi_tasks"]
    actors = [d.Actor.remote() for _ in range(m)]
    try:
        return timeit(
            lambda: ray.get([a.small_value_batch.remote(n) for a in actors]),
            n * m, p)
    finally:
        kill_actors(ray, actors)


def w_generator_items(ray, d, p):
    n = p["batch"]
    return timeit(
        lambda: [ray.get(r) for r in d.stream_items.remote(n)], n, p)


# Items per run of the latency workload, and the pause before each.
LATENCY_ITEMS = 20
LATENCY_PAUSE_S = 0.005


def w_generator_latency(ray, d, p):
    """Mean ms from an item's yield (its value is the time) to the driver
    holding its value, over items yielded while the driver waits."""
    means = []
    ray.get(list(d.paced_items.remote(1, 0)))  # a warm worker
    for _ in range(p["reps"]):
        lags = []
        for ref in d.paced_items.remote(LATENCY_ITEMS, LATENCY_PAUSE_S):
            made = ray.get(ref)
            lags.append(time.time() - made)
        means.append(1000 * statistics.fmean(lags))
    return means
