"""A tour of raynode: tasks, objects, actors, on a private local node."""

import time

import numpy as np

import raynode as ray

start = time.perf_counter()
ray.init()


@ray.remote
def square(x):
    return x * x


print("first result:", ray.get(square.remote(4)), f"after {time.perf_counter() - start:.3f} s")


@ray.remote
def add(a, b):
    return a + b


# Tree reduce over 100 arrays of 100k floats.
arrays = [ray.put(np.full(100_000, i, dtype=np.float64)) for i in range(100)]
while len(arrays) > 1:
    arrays = [add.remote(arrays[i], arrays[i + 1]) for i in range(0, len(arrays) - 1, 2)] + arrays[len(arrays) - len(arrays) % 2 :]
total = ray.get(arrays[0])
print("tree reduce:", total[0], "(expected", sum(range(100)), ")")

t = time.perf_counter()
n = 5000
ray.get([square.remote(i) for i in range(n)])
print(f"{n} tasks: {n / (time.perf_counter() - t):,.0f} tasks/s")


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value


c = Counter.remote()
print("counter:", ray.get([c.increment.remote() for _ in range(10)]))
print("cluster:", ray.cluster_resources())
ray.shutdown()
