"""raynode.util across nodes: an ActorPool whose actors are on different
nodes, and a Queue shared by tasks on different nodes (3 nodes on loopback)."""

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "testnet"))

from testnet import start_healthy  # noqa: E402

pytestmark = pytest.mark.timeout(180)

# Node i alone has the resource "n<i>", so work can be put on a chosen node.
RESOURCES_ON = {i: {f"n{i}": 1} for i in range(3)}


@pytest.fixture(scope="module")
def cluster():
    c = start_healthy(3, resources_on=RESOURCES_ON, timeout=60.0)
    yield c
    c.stop()


def driver_result(cluster, code):
    """Runs `code` as a driver on node 1 (over its Unix socket); returns the
    JSON its last line printed."""
    env = dict(os.environ, RAYNODE_ADDRESS=cluster.nodes[0].socket)
    res = subprocess.run([cluster.python, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"driver failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_actor_pool_over_three_nodes(cluster):
    got = driver_result(cluster, """
import json
import raynode as ray
from raynode.util import ActorPool
ray.init()

@ray.remote
class Worker:
    def work(self, v):
        return v * v, ray.get_runtime_context().get_node_id()

pool = ActorPool([Worker.options(resources={f"n{i}": 0.5}).remote() for i in range(3)])
print(json.dumps(list(pool.map(lambda a, v: a.work.remote(v), range(30)))))
""")
    assert [v for v, _ in got] == [v * v for v in range(30)]
    assert {node.lower() for _, node in got} == {n.node_id for n in cluster.nodes}


def test_queue_shared_by_tasks_on_three_nodes(cluster):
    got = driver_result(cluster, """
import json
import raynode as ray
from raynode.util.queue import Queue
ray.init()

@ray.remote
def produce(q, i):
    me = ray.get_runtime_context().get_node_id()
    for k in range(5):
        q.put((i, k, me))

@ray.remote
def consume(q, n):
    return [q.get(timeout=60) for _ in range(n)]

q = Queue()
consumer = consume.options(resources={"n2": 0.5}).remote(q, 15)
ray.get([produce.options(resources={f"n{i}": 0.5}).remote(q, i) for i in range(3)])
print(json.dumps(ray.get(consumer, timeout=60)))
""")
    assert sorted((i, k) for i, k, _ in got) == [(i, k) for i in range(3) for k in range(5)]
    assert {node.lower() for _, _, node in got} == {n.node_id for n in cluster.nodes}
    for i in range(3):
        assert [k for j, k, _ in got if j == i] == list(range(5))
