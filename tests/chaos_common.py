"""The shape of the chaos cluster and the defaults of its workload, shared
by the controller (`chaos_controller.py`), the driver (`chaos_driver.py`),
the test (`test_chaos.py`) and the long run (`bench/chaos.py`): node count,
CPUs, custom resources per node, timeouts, and the clock both sides use.

RAYNODE_CHAOS_STORE_MIB sets each node's --object-store-memory (MiB;
default: the node's own).
"""

import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

NODES = 5
DRIVER_NODE = 0  # node 1: the driver's node, never killed once the driver runs
NUM_CPUS = 2
ARRAY_ELEMS = 196_608  # int64: 1.5 MiB per array
ROUND_TIMEOUT_S = 20.0  # a result not ready this long after its round was submitted is hung
# Counting actors, 1 CPU each, on nodes 2-5 (8 CPUs): with two of those nodes
# down, the survivors' CPUs are just enough for them all.
ACTORS = 4
PROBE_TIMEOUT_S = 30.0  # a recovery probe (write, task on a restarted node) not done by then is hung
HEALTHY_TIMEOUT_S = 45.0
SLOW_S = 5.0  # a recovery slower than this is described in the report
CHAOS_S = 100.0  # the test's chaos phase; the whole test stays under 4 minutes
STORE_MIB = int(os.environ.get("RAYNODE_CHAOS_STORE_MIB", "0")) or None  # each node's object store


def node_resources(i):
    """Custom resources of member i: every node but the driver's offers
    "chaos" (the actors need it, so they live on nodes that get killed) and
    each its own "node<k>" (k from 1), for probes that must run there."""
    if i == DRIVER_NODE:
        return {f"node{i + 1}": 1}
    return {"chaos": 4, f"node{i + 1}": 1}


def mono():
    """CLOCK_MONOTONIC: the same clock in the controller and the driver."""
    return time.monotonic()
