"""raynode.util together: a placement group reserves room for two workers
(on two nodes when the cluster has them), an ActorPool spreads work over
them, and a Queue carries their progress reports back to the driver.

    python examples/util_demo.py                 # on a private local node
    RAYNODE_ADDRESS=127.0.0.1:7001 python examples/util_demo.py
"""

import raynode as ray
from raynode.util import ActorPool
from raynode.util.placement_group import placement_group, placement_group_table, remove_placement_group
from raynode.util.queue import Queue
from raynode.util.scheduling_strategies import PlacementGroupSchedulingStrategy

JOBS = 20

ray.init()


@ray.remote(num_cpus=0.5)
class Worker:
    def __init__(self, name, progress):
        self.name = name
        self.progress = progress

    def work(self, n):
        total = sum(i * i for i in range(n * 1000))
        self.progress.put((self.name, n))
        return n, total


# Two bundles of half a CPU each, on different nodes if there are several.
pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="SPREAD", name="util-demo")
ray.get(pg.ready(), timeout=60)
placed = placement_group_table(pg)["bundles_to_node_id"]
print(f"placement group {pg.id.hex()[:8]}: bundles on {len(set(placed.values()))} node(s)")

progress = Queue(maxsize=JOBS)
workers = [
    Worker.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote(f"worker-{i}", progress)
    for i in range(2)
]
pool = ActorPool(workers)
results = list(pool.map(lambda actor, n: actor.work.remote(n), range(JOBS)))
assert [n for n, _ in results] == list(range(JOBS)), results
assert all(total == sum(i * i for i in range(n * 1000)) for n, total in results)

reports = progress.get_nowait_batch(JOBS)
assert sorted(n for _, n in reports) == list(range(JOBS)), reports
by_worker = {}
for name, _ in reports:
    by_worker[name] = by_worker.get(name, 0) + 1
print(f"{JOBS} jobs done through an ActorPool; progress reports per worker: {dict(sorted(by_worker.items()))}")

remove_placement_group(pg)
assert placement_group_table(pg)["state"] == "REMOVED"
print("util demo OK")
ray.shutdown()
