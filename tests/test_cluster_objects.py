"""Across nodes, as a user relies on it: actor names unique in the whole
cluster and found from any node, references returned from remote tasks,
stored results, and drivers that do not share the node's memory."""

import json
import subprocess

import pytest

pytestmark = pytest.mark.timeout(240)


def start_driver(cluster, i, code, env=None):
    """Starts `code` as a driver connected to member i."""
    return subprocess.Popen([cluster.python, "-c", code], env=dict(cluster.driver_env(i), **(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def driver_result(cluster, i, code, env=None, timeout=120.0):
    """Runs `code` as a driver on member i; returns the JSON of its last line."""
    proc = start_driver(cluster, i, code, env)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"driver on node{i + 1} failed ({proc.returncode}):\n{out}\n{err}"
    return json.loads(out.strip().splitlines()[-1])


COUNTER = """
import json, sys
import raynode as ray
ray.init()

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0
    def inc(self):
        self.n += 1
        return self.n
    def node(self):
        return ray.get_runtime_context().get_node_id()
"""


def test_named_actor_is_found_from_another_node_and_its_name_is_unique(cluster3):
    created = driver_result(cluster3, 0, COUNTER + """
c = Counter.options(name="shared-counter", lifetime="detached").remote()
print(json.dumps(ray.get(c.inc.remote())))
""")
    assert created == 1
    found = driver_result(cluster3, 2, COUNTER + """
c = ray.get_actor("shared-counter")
print(json.dumps(ray.get([c.inc.remote() for _ in range(3)])))
""")
    assert found == [2, 3, 4]
    refused = driver_result(cluster3, 1, COUNTER + """
try:
    Counter.options(name="shared-counter").remote()
    print(json.dumps("created"))
except ValueError as e:
    print(json.dumps(str(e)))
""")
    assert "already taken" in refused
    # The name is freed when the actor dies, from any node.
    reused = driver_result(cluster3, 1, COUNTER + """
ray.kill(ray.get_actor("shared-counter"))
import time
for _ in range(50):
    try:
        c = Counter.options(name="shared-counter").remote()
        break
    except ValueError:
        time.sleep(0.1)
print(json.dumps(ray.get(c.inc.remote())))
""")
    assert reused == 1


def test_two_nodes_racing_for_one_actor_name_get_one_winner(cluster3):
    code = COUNTER + """
try:
    c = Counter.options(name="race", lifetime="detached").remote()
    print(json.dumps("won"))
except ValueError:
    print(json.dumps("lost"))
"""
    procs = [start_driver(cluster3, i, code) for i in (0, 2)]
    outcomes = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            outcomes.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert sorted(outcomes) == ["lost", "won"]
    driver_result(cluster3, 1, COUNTER + """
ray.kill(ray.get_actor("race"))
print(json.dumps(True))
""")


def test_refs_and_large_results_come_back_from_a_remote_node(cluster3):
    got = driver_result(cluster3, 0, """
import json
import numpy as np
import raynode as ray
ray.init()

@ray.remote(resources={"special": 1})
def make():
    inner = ray.put(np.full(2_000_000, 3.0))     # stored on the remote node
    return inner, np.arange(1_000_000)           # a ref, and a large result

@ray.remote
def total(arr):
    return float(arr.sum())

inner, big = ray.get(make.remote())
print(json.dumps([float(ray.get(inner).sum()), int(big[-1]), ray.get(total.remote(inner))]))
""")
    assert got == [6_000_000.0, 999_999, 6_000_000.0]


def test_driver_without_shared_memory_streams_values(cluster3):
    got = driver_result(cluster3, 1, """
import json
import numpy as np
import raynode as ray
from raynode import _runtime
ray.init()

@ray.remote(resources={"special": 1})
def double(a):
    return a * 2

a = np.arange(5_000_000, dtype=np.float64)      # 40 MB: through the store on the node
r = ray.put(a)
back = ray.get(r)
doubled = ray.get(double.remote(r))
try:
    ray.put(np.zeros(40_000_000))               # 320 MB: more than one frame
    too_big = "accepted"
except ValueError as e:
    too_big = str(e)
print(json.dumps([_runtime.client().shares_memory, bool((back == a).all()),
                  float(doubled[-1]), ray.get(ray.put({"k": 1})), too_big]))
""", env={"RAYNODE_NO_SHM": "1"})
    shares, same, last, small, too_big = got
    assert shares is False
    assert same is True
    assert last == 2 * 4_999_999.0
    assert small == {"k": 1}
    assert "too large" in too_big


def test_actor_restarts_on_another_node_when_its_node_dies(fresh_cluster3_shared):
    cluster = fresh_cluster3_shared
    # Node 1 runs the driver; nodes 2 and 3 both offer "r", so either can host the actor.
    first = driver_result(cluster, 0, COUNTER + """
c = Counter.options(name="phoenix", lifetime="detached", max_restarts=1, max_task_retries=-1,
                    resources={"r": 1}).remote()
print(json.dumps([ray.get(c.inc.remote()), ray.get(c.node.remote())]))
""")
    count, home = first
    assert count == 1
    victim = [i for i, n in enumerate(cluster.nodes) if n.node_id == home.lower()]
    assert victim in ([1], [2])
    cluster.kill(victim[0])
    after = driver_result(cluster, 0, COUNTER + """
c = ray.get_actor("phoenix")
print(json.dumps([ray.get(c.inc.remote(), timeout=60), ray.get(c.node.remote(), timeout=60)]))
""")
    # The constructor ran again on the surviving node: its state starts over.
    survivor = cluster.nodes[3 - victim[0]].node_id
    assert after[0] == 1
    assert after[1].lower() == survivor


def test_tcp_driver_without_the_cluster_key_is_refused(cluster3, tmp_path):
    other = tmp_path / "other.key"
    other.write_text("/key/swarm/psk/1.0.0/\n/base16/\n" + "ab" * 32 + "\n")
    code = """
import json
import raynode as ray
try:
    ray.init()
    print(json.dumps("connected"))
except ConnectionError as e:
    print(json.dumps(str(e)))
"""
    refused = driver_result(cluster3, 0, code, env={"RAYNODE_CLUSTER_KEY": str(other)})
    assert "cluster key is not the cluster's" in refused
    missing = driver_result(cluster3, 0, code, env={"RAYNODE_CLUSTER_KEY": str(tmp_path / "none.key")})
    assert "cannot read the cluster key" in missing
    # The node lost nothing: a driver with the key still runs tasks there.
    ok = driver_result(cluster3, 0, """
import json
import raynode as ray
ray.init()
print(json.dumps(ray.get(ray.put(41)) + 1))
""")
    assert ok == 42


def test_task_no_node_fits_waits_until_a_fitting_node_joins(fresh_cluster2):
    cluster = fresh_cluster2
    proc = start_driver(cluster, 0, """
import json
import raynode as ray
ray.init()

@ray.remote(resources={"late": 1})
def where():
    return ray.get_runtime_context().get_node_id()

ref = where.remote()
ready, _ = ray.wait([ref], timeout=2)
print(json.dumps(len(ready)), flush=True)
print(json.dumps(ray.get(ref, timeout=60)), flush=True)
""")
    try:
        first = proc.stdout.readline()
        assert json.loads(first) == 0, "the task ran with no node that has its resource"
        late = cluster.add_node(resources={"late": 1})
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]).lower() == late.node_id
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_lost_voter_is_replaced_by_a_live_learner():
    import time
    from testnet import Cluster
    cluster = Cluster()
    try:
        cluster.start(4, voters=3)
        cluster.wait_healthy(60)
        view = cluster.status(0)
        voters = {n["NodeID"] for n in view if n["RaftRole"] in ("leader", "follower")}
        assert len(voters) == 3
        leader = cluster.leader()
        victim = next(i for i, n in enumerate(cluster.nodes) if n.node_id in voters and i != leader)
        gone = cluster.nodes[victim].node_id
        cluster.kill(victim)
        survivor = next(i for i in range(4) if i != victim)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            view = cluster.status(survivor)
            live_voters = {n["NodeID"] for n in view if n["Alive"] and n["RaftRole"] in ("leader", "follower")}
            if len(live_voters) == 3 and gone not in live_voters:
                break
            time.sleep(1)
        assert len(live_voters) == 3, view
    finally:
        cluster.stop()
