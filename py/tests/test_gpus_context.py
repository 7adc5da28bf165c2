"""GPUs by index (a node started with --num-gpus 2), the runtime context's
methods, and list_named_actors, as Ray 2.x has them."""

import json

import pytest

from standalone_node import StandaloneNode

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def gpu_node():
    node = StandaloneNode(num_cpus=4, extra=("--num-gpus", "2"))
    yield node
    node.stop()


def run(node, code):
    res = node.run_driver("import json, os\nimport raynode as ray\nray.init()\n" + code)
    assert res.returncode == 0, f"driver failed:\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_tasks_get_their_gpus_as_cuda_visible_devices(gpu_node):
    got = run(gpu_node, """
@ray.remote
def f():
    return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

whole = [f.options(num_gpus=1).remote() for _ in range(2)]
print(json.dumps({
    "whole": ray.get(whole),
    "none": ray.get(f.remote()),
    "two": ray.get(f.options(num_gpus=2).remote()),
    "half": ray.get(f.options(num_gpus=0.5).remote()),
    "driver": ray.get_gpu_ids(),
}))
""")
    ids = sorted(tuple(g) for g, _ in got["whole"])
    assert all(len(g) == 1 for g in ids) and set(sum(ids, ())) <= {0, 1}
    for gpus, visible in got["whole"]:
        assert visible == ",".join(str(g) for g in gpus)
    assert got["none"] == [[], None], "a task without GPUs sees none"
    assert got["two"] == [[0, 1], "0,1"]
    assert len(got["half"][0]) == 1
    assert got["driver"] == []


def test_an_actor_keeps_its_gpu_for_its_life(gpu_node):
    got = run(gpu_node, """
@ray.remote(num_gpus=1)
class Trainer:
    def gpus(self):
        return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

@ray.remote
def f():
    return ray.get_gpu_ids()

a, b = Trainer.remote(), Trainer.remote()
first = ray.get([a.gpus.remote(), b.gpus.remote()])
again = ray.get(a.gpus.remote())
# Both GPUs are the actors': a task asking for one waits.
ready, _ = ray.wait([f.options(num_gpus=1).remote()], timeout=1.0)
print(json.dumps({"first": first, "again": again, "blocked": not ready}))
""")
    (ga, va), (gb, vb) = got["first"]
    assert sorted(ga + gb) == [0, 1]
    assert va == str(ga[0]) and vb == str(gb[0])
    assert got["again"] == [ga, va]
    assert got["blocked"]


def test_runtime_context_in_tasks_actors_and_the_driver(gpu_node):
    got = run(gpu_node, """
def context():
    c = ray.get_runtime_context()
    return {
        "resources": c.get_assigned_resources(), "task": c.get_task_name(), "actor": c.get_actor_name(),
        "group": c.get_placement_group_id(), "job": c.get_job_id(), "task_id": c.get_task_id(),
        "actor_id": c.get_actor_id(), "canceled": c.is_canceled(),
    }

@ray.remote
def f():
    return context()

@ray.remote
class A:
    def m(self):
        return context()

named = A.options(name="ctx-actor", num_cpus=0.25, num_gpus=1).remote()
plain = A.remote()
c = ray.get_runtime_context()
try:
    c.get_assigned_resources()
    driver_assigned = "no error"
except AssertionError:
    driver_assigned = "AssertionError"
try:
    c.is_canceled()
    driver_canceled = "no error"
except RuntimeError:
    driver_canceled = "RuntimeError"
print(json.dumps({
    "task": ray.get(f.options(num_cpus=0.5).remote()),
    "named_task": ray.get(f.options(name="custom").remote()),
    "named": ray.get(named.m.remote()),
    "plain": ray.get(plain.m.remote()),
    "driver": [c.get_task_name(), c.get_actor_name(), c.get_placement_group_id(), c.get_task_id(), c.get_actor_id(), c.get_job_id()],
    "driver_assigned": driver_assigned,
    "driver_canceled": driver_canceled,
}))
""")
    task = got["task"]
    assert task["resources"] == {"CPU": 0.5}
    assert task["task"] == "f" and task["actor"] is None and task["group"] is None
    assert task["actor_id"] is None and task["task_id"] and task["job"]
    assert task["canceled"] is False
    assert got["named_task"]["task"] == "custom"
    named = got["named"]
    assert named["resources"] == {"CPU": 0.25, "GPU": 1.0}
    assert named["actor"] == "ctx-actor" and named["task"] == "A.m" and named["actor_id"]
    assert got["plain"]["actor"] == "" and got["plain"]["resources"] == {}
    assert got["driver"][:5] == [None, None, None, None, None]
    assert got["driver"][5] == task["job"]
    assert got["driver_assigned"] == "AssertionError"
    assert got["driver_canceled"] == "RuntimeError"


def test_list_named_actors(gpu_node):
    got = run(gpu_node, """
from raynode.util import list_named_actors

@ray.remote
class A:
    def ping(self):
        return 1

a = A.options(name="one").remote()
b = A.options(name="two", namespace="other").remote()
c = A.remote()
ray.get([a.ping.remote(), b.ping.remote(), c.ping.remote()])
mine = sorted(list_named_actors())
every = sorted((d["name"], d["namespace"]) for d in list_named_actors(all_namespaces=True))
ray.kill(a)
import time
deadline = time.monotonic() + 20
while "one" in list_named_actors() and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({"mine": mine, "every": every, "after_kill": list_named_actors(),
                  "ns": ray.get_runtime_context().namespace}))
""")
    assert got["mine"] == ["one"]
    assert ("one", got["ns"]) in [tuple(x) for x in got["every"]]
    assert ["two", "other"] in got["every"]
    assert got["after_kill"] == []
