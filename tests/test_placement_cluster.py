"""Scheduling strategies and placement groups across 3 nodes on loopback:
SPREAD over every node, node affinity (to a live node, and to a killed one,
hard and soft), and placement-group bundles reserved on distinct nodes,
seen from every node, removed with their actors."""

import json
import time

import pytest

from conftest import start_cluster

pytestmark = pytest.mark.timeout(240)

PRELUDE = """
import json, time
import raynode as ray
from raynode.util.placement_group import (
    placement_group, placement_group_table, remove_placement_group, get_placement_group)
from raynode.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy)
ray.init()

@ray.remote
def node_of(delay=0.0):
    time.sleep(delay)
    return ray.get_runtime_context().get_node_id()
"""


def result(cluster, i, code):
    """Runs `code` as a driver on node i; returns the JSON its last line printed."""
    res = cluster.run_driver(i, PRELUDE + code, timeout=180)
    assert res.returncode == 0, f"driver failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def node_ids(cluster):
    return [n.node_id for n in cluster.nodes]


def test_spread_puts_tasks_and_actors_on_every_node(cluster3):
    got = result(cluster3, 0, """
tasks = ray.get([node_of.options(scheduling_strategy="SPREAD").remote(0.3) for _ in range(6)])

@ray.remote(num_cpus=0)
class A:
    def node(self):
        return ray.get_runtime_context().get_node_id()

actors = [A.options(scheduling_strategy="SPREAD").remote() for _ in range(3)]
print(json.dumps({"tasks": tasks, "actors": ray.get([a.node.remote() for a in actors])}))
""")
    assert {n.lower() for n in got["tasks"]} == set(node_ids(cluster3))
    assert {n.lower() for n in got["actors"]} == set(node_ids(cluster3))


def test_node_affinity_runs_on_the_chosen_node(cluster3):
    target = cluster3.nodes[2].node_id
    got = result(cluster3, 0, f"""
s = NodeAffinitySchedulingStrategy("{target}", soft=False)
tasks = ray.get([node_of.options(scheduling_strategy=s).remote() for _ in range(4)])

@ray.remote
class A:
    def node(self):
        return ray.get_runtime_context().get_node_id()

a = A.options(scheduling_strategy=s).remote()
print(json.dumps({{"tasks": tasks, "actor": ray.get(a.node.remote())}}))
""")
    assert {n.lower() for n in got["tasks"]} == {target}
    assert got["actor"].lower() == target


def test_affinity_to_a_killed_node(fresh_cluster3):
    cluster = fresh_cluster3
    dead = cluster.nodes[2].node_id
    cluster.kill(2)
    got = result(cluster, 0, f"""
from raynode.exceptions import TaskUnschedulableError
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    if not any(n["NodeID"] == "{dead}" and n["Alive"] for n in ray.nodes()):
        break
    time.sleep(0.2)
try:
    ray.get(node_of.options(scheduling_strategy=NodeAffinitySchedulingStrategy("{dead}", soft=False)).remote(), timeout=60)
    hard = "ran"
except TaskUnschedulableError as e:
    hard = "TaskUnschedulableError"
soft = ray.get(node_of.options(scheduling_strategy=NodeAffinitySchedulingStrategy("{dead}", soft=True)).remote(), timeout=60)
print(json.dumps({{"hard": hard, "soft": soft}}))
""")
    assert got["hard"] == "TaskUnschedulableError"
    assert got["soft"].lower() in node_ids(cluster)[:2]


def test_strict_spread_puts_three_bundles_on_three_nodes(cluster3):
    got = result(cluster3, 1, """
pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
assert pg.wait(60)
row = placement_group_table(pg)
ran = ray.get([node_of.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote()
               for i in range(3)])
too_many = placement_group([{"CPU": 1}] * 4, strategy="STRICT_SPREAD")
pending = not too_many.wait(2)
state = placement_group_table(too_many)["state"]
remove_placement_group(too_many)
remove_placement_group(pg)
print(json.dumps({"row": row, "ran": ran, "pending": pending, "state": state}))
""")
    placed = [got["row"]["bundles_to_node_id"][str(i)] for i in range(3)]
    assert sorted(placed) == sorted(node_ids(cluster3))
    assert [n.lower() for n in got["ran"]] == placed, "each task ran on its bundle's node"
    assert got["pending"] and got["state"] == "PENDING"


def test_strict_pack_and_custom_resources_pick_the_node_that_holds_them(cluster3):
    got = result(cluster3, 0, """
packed = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK")
special = placement_group([{"special": 1, "CPU": 0.5}])
assert packed.wait(60) and special.wait(60)
out = {"packed": placement_group_table(packed)["bundles_to_node_id"],
       "special": placement_group_table(special)["bundles_to_node_id"],
       "ran": ray.get(node_of.options(num_cpus=0.5, resources={"special": 1},
                      scheduling_strategy=PlacementGroupSchedulingStrategy(special, 0)).remote())}
remove_placement_group(packed)
remove_placement_group(special)
print(json.dumps(out))
""")
    assert got["packed"]["0"] == got["packed"]["1"]
    assert got["special"]["0"] == cluster3.nodes[2].node_id
    assert got["ran"].lower() == cluster3.nodes[2].node_id


def test_a_group_is_seen_from_every_node_and_removed_with_its_actors(cluster3):
    made = result(cluster3, 0, """
pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD", name="shared", lifetime="detached")
assert pg.wait(60)
print(json.dumps(pg.id.hex()))
""")
    got = result(cluster3, 1, """
from raynode.exceptions import ActorDiedError
pg = get_placement_group("shared")
row = placement_group_table(pg)
far = [i for i, n in row["bundles_to_node_id"].items() if n != ray.get_runtime_context().get_node_id()][0]

@ray.remote(num_cpus=1)
class Holder:
    def node(self):
        return ray.get_runtime_context().get_node_id()

h = Holder.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, int(far))).remote()
home = ray.get(h.node.remote())
# Every node reports its reservation in its next load report.
deadline = time.monotonic() + 30
while ray.available_resources()["CPU"] > 3 + 1e-6 and time.monotonic() < deadline:
    time.sleep(0.2)
before = ray.available_resources()["CPU"]
remove_placement_group(pg)
try:
    ray.get(h.node.remote(), timeout=60)
    after_remove = "answered"
except ActorDiedError:
    after_remove = "ActorDiedError"
deadline = time.monotonic() + 30
while ray.available_resources()["CPU"] < 6 - 1e-6 and time.monotonic() < deadline:
    time.sleep(0.2)
print(json.dumps({"id": pg.id.hex(), "state": row["state"], "far": row["bundles_to_node_id"][far],
                  "home": home, "before": before, "after_remove": after_remove,
                  "freed": ray.available_resources()["CPU"],
                  "final": placement_group_table(pg)["state"]}))
""")
    assert got["id"] == made and got["state"] == "CREATED"
    assert got["home"].lower() == got["far"]
    assert got["before"] == pytest.approx(3.0)
    assert got["after_remove"] == "ActorDiedError"
    assert got["freed"] == pytest.approx(6.0)
    assert got["final"] == "REMOVED"


def test_a_drivers_groups_go_when_it_exits(cluster3):
    gid = result(cluster3, 0, """
pg = placement_group([{"CPU": 1}])
assert pg.wait(60)
print(json.dumps(pg.id.hex()))
""")
    deadline = time.monotonic() + 30
    state = None
    while time.monotonic() < deadline:
        state = result(cluster3, 2, f"""
print(json.dumps(placement_group_table().get("{gid}", {{}}).get("state")))
""")
        if state == "REMOVED":
            break
        time.sleep(0.5)
    assert state == "REMOVED"
