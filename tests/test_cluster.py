"""A raynode cluster on loopback, as a user sees it: tasks spread over the
nodes, objects and actors reached across them, resources routing work,
surviving the loss of the Raft leader, refusing a node with another
cluster key, status and stable peer identities."""

import json
import re
import signal
import subprocess
import time

import pytest

pytestmark = pytest.mark.timeout(240)

ROLES = {"leader", "isolated", "follower", "learner", "candidate", "none"}
VOTER_ROLES = {"leader", "follower"}


def driver_result(cluster, i, code, timeout=120.0):
    """Runs `code` as a driver connected to member i; returns the JSON value
    it printed on its last line of stdout. Fails with its output otherwise."""
    res = cluster.run_driver(i, code=code, timeout=timeout)
    assert res.returncode == 0, f"driver on node{i + 1} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    lines = res.stdout.strip().splitlines()
    assert lines, f"driver printed nothing:\n{res.stderr}"
    return json.loads(lines[-1])


def node_ids(cluster):
    return [n.node_id for n in cluster.nodes]


def test_tasks_spread_over_all_nodes(cluster3):
    ran_on = driver_result(cluster3, 1, """
import json, time
import raynode as ray
ray.init()

@ray.remote
def where(i):
    time.sleep(0.2)
    return i, ray.get_runtime_context().get_node_id()

print(json.dumps(ray.get([where.remote(i) for i in range(60)])))
""")
    assert [i for i, _ in ran_on] == list(range(60))
    assert {node.lower() for _, node in ran_on} == set(node_ids(cluster3))


def test_object_put_on_one_node_read_by_a_task_on_another(cluster3):
    got = driver_result(cluster3, 0, """
import json
import numpy as np
import raynode as ray
ray.init()

@ray.remote(resources={"special": 1})
def consume(big, small):
    return float(big.sum()), int(big[-1]), big.nbytes, small, ray.get_runtime_context().get_node_id()

big = np.arange(20 * 1024 * 1024 // 8, dtype=np.int64)   # 20 MB, through the shared-memory store
small = {"a": [1, 2, 3], "b": "text"}                   # travels inline
total, last, nbytes, echoed, node = ray.get(consume.remote(ray.put(big), ray.put(small)))
print(json.dumps({"ok": total == float(big.sum()), "last": last, "nbytes": nbytes,
                  "small": echoed, "node": node}))
""")
    assert got["node"].lower() == cluster3.nodes[2].node_id
    assert got["ok"]
    assert got["last"] == 20 * 1024 * 1024 // 8 - 1
    assert got["nbytes"] == 20 * 1024 * 1024
    assert got["small"] == {"a": [1, 2, 3], "b": "text"}


def test_actor_on_a_remote_node_keeps_its_state(cluster3):
    got = driver_result(cluster3, 0, """
import json
import raynode as ray
ray.init()

@ray.remote
class Counter:
    def __init__(self):
        self.value = 0
    def increment(self):
        self.value += 1
        return self.value
    def node(self):
        return ray.get_runtime_context().get_node_id()

c = Counter.options(resources={"special": 1}).remote()
counts = ray.get([c.increment.remote() for _ in range(10)])
print(json.dumps({"node": ray.get(c.node.remote()), "counts": counts}))
""")
    assert got["node"].lower() == cluster3.nodes[2].node_id
    assert got["counts"] == list(range(1, 11))


def test_custom_resource_routes_tasks_to_the_node_that_has_it(cluster3):
    got = driver_result(cluster3, 0, """
import json
import raynode as ray
ray.init()

@ray.remote
def where():
    return ray.get_runtime_context().get_node_id()

special = ray.get([where.options(resources={"special": 1}).remote() for _ in range(20)])
print(json.dumps(special))
""")
    assert len(got) == 20
    assert {n.lower() for n in got} == {cluster3.nodes[2].node_id}


def test_status_on_every_node_lists_the_whole_cluster(cluster3):
    ids = set(node_ids(cluster3))
    for i, node in enumerate(cluster3.nodes):
        res = subprocess.run([cluster3.binary, "status", "--address", node.client_addr,
                              "--cluster-key", cluster3.key_path],
                             capture_output=True, text=True, timeout=10)
        assert res.returncode == 0, res.stderr
        view = json.loads(res.stdout)
        assert {e["NodeID"].lower() for e in view} == ids, f"status of node{i + 1}"
        by_id = {e["NodeID"].lower(): e for e in view}
        for member in cluster3.nodes:
            entry = by_id[member.node_id]
            assert entry["Alive"] is True
            assert entry["Resources"]["CPU"] == 2.0
            assert entry["RaftRole"] in ROLES
            assert entry["PeerId"] == member.peer_id
            assert "ClientAddress" in entry
        assert by_id[cluster3.nodes[2].node_id]["Resources"]["special"] == 1.0
        assert "special" not in by_id[cluster3.nodes[0].node_id]["Resources"]
        roles = [e["RaftRole"] for e in view]
        assert roles.count("leader") == 1, roles
        assert sum(r in VOTER_ROLES for r in roles) == 3, roles


def test_node_with_another_cluster_key_is_refused(cluster3):
    other_key = cluster3.workdir + "/other.key"
    stranger = cluster3.launch(cluster_key=other_key)
    try:
        code = stranger.proc.wait(60)
    except subprocess.TimeoutExpired:
        raise AssertionError("a node with another cluster key kept running\n" + stranger.log_tail())
    assert code != 0
    assert "cluster key" in stranger.output().lower(), stranger.log_tail()
    # The cluster did not take it in and still works.
    cluster3.wait_healthy(30)
    for i in range(3):
        assert len(cluster3.status(i)) == 3
    assert driver_result(cluster3, 0, """
import raynode as ray
ray.init()

@ray.remote
def seven():
    return 7

print(ray.get(seven.remote()))
""") == 7


def test_workload_survives_the_raft_leader_crashing(fresh_cluster3):
    cluster = fresh_cluster3
    leader = cluster.leader()
    assert leader is not None
    via = next(i for i in range(3) if i != leader)
    driver = subprocess.Popen(
        [cluster.python, "-c", """
import json, sys, time
import raynode as ray
ray.init()

@ray.remote
def square(x):
    time.sleep(0.1)
    return x * x

first = [square.remote(i) for i in range(120)]
print("submitted", flush=True)
sys.stdin.readline()                      # the test has killed the leader
second = [square.remote(i) for i in range(120, 180)]
print(json.dumps(ray.get(first + second, timeout=120)), flush=True)
"""],
        env=cluster.driver_env(via), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert driver.stdout.readline().strip() == "submitted", driver.stderr.read()
        time.sleep(0.5)  # tasks are running on every node
        cluster.kill(leader, signal.SIGKILL)
        driver.stdin.write("\n")
        driver.stdin.flush()
        out, err = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, f"driver failed after the leader was killed:\n{out}\n{err}"
    assert json.loads(out.strip().splitlines()[-1]) == [x * x for x in range(180)]

    cluster.wait_healthy(60)
    new_leader = cluster.leader(via)
    assert new_leader is not None and new_leader != leader
    got = driver_result(cluster, via, """
import json
import raynode as ray
ray.init()

@ray.remote
class Counter:
    def __init__(self):
        self.value = 0
    def increment(self):
        self.value += 1
        return self.value

counters = [Counter.remote() for _ in range(4)]
print(json.dumps([ray.get([c.increment.remote() for _ in range(3)]) for c in counters]))
""")
    assert got == [[1, 2, 3]] * 4


def test_joined_node_prints_its_address_and_keeps_its_peer_id(fresh_cluster2):
    cluster = fresh_cluster2
    joined = cluster.nodes[1]
    assert "--join" in joined.args
    with open(joined.out_path) as f:
        banner = f.read()
    assert re.search(r"^\s*p2p: /ip4/127\.0\.0\.1/tcp/\d+/p2p/\S+$", banner, re.M), banner
    assert re.search(r"^\s*peer id: 12D3KooW\w+$", banner, re.M), banner
    assert joined.p2p_addr.endswith("/p2p/" + joined.peer_id)
    peer_id = joined.peer_id

    cluster.restart(1)
    assert joined.peer_id == peer_id
    cluster.wait_healthy(60)
