"""The workload registry: ``GROUPS`` maps each group to its ordered rows
(metric name, function, unit, higher is better); ``registry()`` is the
driver's view of it.  Row names and order are those ``bench/run.py``
prints and selects with ``--only``.
"""

from .actors import (w_actor_async, w_actor_concurrent, w_actor_sync, w_async_actor_async, w_async_actor_sync,
                     w_n_to_n, w_n_to_n_arg, w_one_to_n)
from .objects import (w_get_calls, w_get_containing_refs, w_multi_put_calls, w_multi_put_gigabytes,
                      w_put_calls, w_put_gigabytes, w_wait_ready_refs, w_wait_refs)
from .tasks import (w_generator_items, w_generator_latency, w_multi_tasks_async, w_tasks_and_get_batch,
                    w_tasks_async, w_tasks_sync)

OPS = "ops/s"
GBS = "GB/s"

# (metric, function, unit, higher_is_better)
GROUPS = {
    "objects": [
        ("single client get calls", w_get_calls, OPS, True),
        ("single client put calls", w_put_calls, OPS, True),
        ("multi client put calls", w_multi_put_calls, OPS, True),
        ("single client put gigabytes", w_put_gigabytes, GBS, True),
        ("multi client put gigabytes", w_multi_put_gigabytes, GBS, True),
        ("single client get object containing 10k refs",
         w_get_containing_refs, OPS, True),
        ("single client wait 1k refs", w_wait_refs, OPS, True),
        ("single client wait on 1k ready refs", w_wait_ready_refs, OPS, True),
    ],
    "tasks": [
        ("single client tasks and get batch", w_tasks_and_get_batch, OPS,
         True),
        ("single client tasks sync", w_tasks_sync, OPS, True),
        ("single client tasks async", w_tasks_async, OPS, True),
        ("multi client tasks async", w_multi_tasks_async, OPS, True),
    ],
    "actors": [
        ("1:1 actor calls sync", w_actor_sync, OPS, True),
        ("1:1 actor calls async", w_actor_async, OPS, True),
        ("1:1 actor calls concurrent", w_actor_concurrent, OPS, True),
        ("1:n actor calls async", w_one_to_n, OPS, True),
        ("n:n actor calls async", w_n_to_n, OPS, True),
        ("n:n actor calls with arg async", w_n_to_n_arg, OPS, True),
        ("1:1 async-actor calls sync", w_async_actor_sync, OPS, True),
        ("1:1 async-actor calls async", w_async_actor_async, OPS, True),
    ],
    "generators": [
        ("generator items streamed", w_generator_items, OPS, True),
        ("generator item latency", w_generator_latency, "ms", False),
    ],
    # Special groups, each handled by its own function below.
    "startup": [
        ("init to first result", None, "s", False),
    ],
    "memory": [
        ("idle node RSS", None, "MiB", False),
        ("idle worker RSS", None, "MiB", False),
        ("worker processes after 10 quick tasks", None, "count", False),
    ],
    # Clusters of raynode nodes on loopback and remote drivers: run by
    # bench/multinode.py (Ray: only the remote driver, through Ray Client).
    "multinode": [
        ("1 GiB transfer between two nodes", None, GBS, True),
        ("loopback TCP bandwidth", None, GBS, True),
        ("tasks/s across a 3-node testnet", None, OPS, True),
        ("tasks/s across a 3-node testnet (10 ms tasks)", None, OPS, True),
        ("map and reduce on one node of three", None, "s", False),
        ("node kill to a lost result rebuilt and read", None, "s", False),
        ("join to first task on the new node", None, "s", False),
        ("leader kill to new leader", None, "s", False),
        ("leader kill to next committed write", None, "s", False),
        ("remote driver get calls", None, OPS, True),
        ("remote driver put calls", None, OPS, True),
        ("remote driver put gigabytes", None, GBS, True),
    ],
}


def registry():
    """Metric table for the driver: group -> [(metric, unit, higher)]."""
    return {g: [(m, u, h) for (m, _f, u, h) in ws] for g, ws in GROUPS.items()}
