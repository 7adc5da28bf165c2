"""A tour of a raynode cluster: tasks spread over the nodes, a large object
read on another node, an actor. Run it with `scripts/demo`, or against any
node with RAYNODE_ADDRESS=<its client address>."""

import collections
import time

import numpy as np

import raynode as ray

ray.init()  # connects to the node named by RAYNODE_ADDRESS
alive = [n for n in ray.nodes() if n["Alive"]]
print(f"connected to a cluster of {len(alive)} nodes, {ray.cluster_resources().get('CPU', 0):.0f} CPUs")


def short(node_id):
    return node_id[:8]


@ray.remote
def where(i):
    time.sleep(0.05)
    return ray.get_runtime_context().get_node_id()


start = time.perf_counter()
ran_on = collections.Counter(ray.get([where.remote(i) for i in range(60)]))
print(f"60 tasks of 50 ms took {time.perf_counter() - start:.2f} s on {len(ran_on)} distinct nodes:",
      ", ".join(f"{short(node)} ran {count}" for node, count in ran_on.most_common()))


@ray.remote
def total(array):
    return float(array.sum()), ray.get_runtime_context().get_node_id()


array = np.ones(50 * 1024 * 1024 // 8)  # 50 MB of float64
ref = ray.put(array)
start = time.perf_counter()
value, node = ray.get(total.remote(ref))
assert value == array.size, value
print(f"sum of a 50 MB array put by the driver: {value:.0f}, on node {short(node)},"
      f" in {time.perf_counter() - start:.2f} s")


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value

    def node(self):
        return ray.get_runtime_context().get_node_id()


counter = Counter.remote()
counts = ray.get([counter.increment.remote() for _ in range(10)])
assert counts == list(range(1, 11)), counts
print(f"actor on node {short(ray.get(counter.node.remote()))} counted {counts}")
ray.shutdown()
