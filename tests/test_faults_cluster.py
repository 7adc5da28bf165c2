"""Faults across nodes: frozen voters, killed nodes, a node that joins while
the control store has no quorum. Each test is the regression test of a fault
found by running clusters the way a hostile operator would: the cluster
must never wedge, hang a caller or keep control state nobody owns."""

import json
import os
import signal
import subprocess
import time

import pytest

from testnet import start_healthy as start_cluster

pytestmark = pytest.mark.timeout(300)


def run(cluster, i, code, timeout=120.0):
    """Runs a driver on member i; returns the JSON value of its last line."""
    res = cluster.run_driver(i, code=code, timeout=timeout)
    assert res.returncode == 0, f"driver on node{i + 1} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def roles(cluster, via):
    return {str(e["NodeID"]).lower(): e["RaftRole"] for e in cluster.status(via) if e.get("Alive")}


def wait_role(cluster, via, node, wanted, timeout):
    """The Raft role member `via` reports for member `node` once it is one of
    `wanted`, or the last one seen when `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        role = roles(cluster, via).get(cluster.nodes[node].node_id)
        if role in wanted or time.monotonic() > deadline:
            return role
        time.sleep(0.3)


def kill_home_between(cluster, code, timeout=150):
    """Runs `code` as a driver on member 0. Its first line of stdout is JSON
    naming a node ("home"); that member is killed (SIGKILL), the driver is
    told to go on (a line on its stdin), and its first and last JSON lines
    are returned with the killed member's index."""
    proc = subprocess.Popen([cluster.python, "-c", code], env=cluster.driver_env(0), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line:
            proc.wait(30)
            pytest.fail(f"the driver stopped early:\n{proc.stderr.read()}")
        first = json.loads(line)
        home = next(i for i, n in enumerate(cluster.nodes) if n.node_id == first["home"].lower())
        cluster.kill(home, signal.SIGKILL)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"driver failed:\n{out}\n{err}"
    return first, json.loads(out.strip().splitlines()[-1]), home


class Frozen:
    """Members stopped with SIGSTOP (their sockets stay open, nothing
    answers), resumed on exit whatever happens."""

    def __init__(self, cluster, indexes):
        self.pids = [cluster.nodes[i].pid for i in indexes]

    def __enter__(self):
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        self.resume()

    def resume(self):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.pids = []


NAMED = """
import json, sys, time
import raynode as ray
try:
    from raynode.exceptions import ControlStoreUnavailableError
except ImportError:  # a build without it: nothing is caught as it
    ControlStoreUnavailableError = ()
ray.init()

@ray.remote(num_cpus=0)
class Named:
    def ping(self):
        return "pong"

t = time.monotonic()
try:
    a = Named.options(name=sys.argv[1] if len(sys.argv) > 1 else "solo", lifetime="detached").remote()
    print(json.dumps({"created": ray.get(a.ping.remote(), timeout=60), "s": time.monotonic() - t}))
except ControlStoreUnavailableError as e:
    print(json.dumps({"error": "ControlStoreUnavailableError", "message": str(e), "s": time.monotonic() - t}))
"""


def test_a_control_write_without_quorum_fails_in_bounded_time_and_leaves_no_name():
    cluster = start_cluster(3, num_cpus=1)
    try:
        with Frozen(cluster, [1, 2]):
            got = run(cluster, 0, NAMED.replace('"solo"', '"lonely"'))
            assert got.get("error") == "ControlStoreUnavailableError", got
            assert "quorum" in got["message"], got
            assert got["s"] < 15, f"the write took {got['s']:.1f} s to fail"
            # A creator killed while its write waits: the name must not outlive it.
            proc = subprocess.Popen([cluster.python, "-c", NAMED, "zombie"], env=cluster.driver_env(0),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=os.path.dirname(__file__))
            time.sleep(2.0)
            proc.kill()
            proc.wait()
        cluster.wait_healthy(60)
        # Every name that was refused or abandoned is free again, everywhere.
        deadline = time.monotonic() + 60
        while True:
            found = run(cluster, 1, """
import json
import raynode as ray
ray.init()
out = {}
for name in ("lonely", "zombie"):
    try:
        ray.get_actor(name)
        out[name] = "found"
    except ValueError:
        out[name] = "free"
print(json.dumps(out))
""")
            if found == {"lonely": "free", "zombie": "free"} or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert found == {"lonely": "free", "zombie": "free"}, found
        for name in ("lonely", "zombie"):
            again = run(cluster, 2, NAMED.replace('"solo"', repr(name)))
            assert again.get("created") == "pong", again
    finally:
        cluster.stop()


def test_an_isolated_leader_says_so_instead_of_leading():
    cluster = start_cluster(3, num_cpus=1)
    try:
        leader = cluster.leader()
        others = [i for i in range(3) if i != leader]
        with Frozen(cluster, others):
            role = wait_role(cluster, leader, leader, {"isolated"}, 20)
            assert role == "isolated", f"a leader cut off from its voters reports {role!r}"
        cluster.wait_healthy(60)
    finally:
        cluster.stop()


def test_five_nodes_survive_losing_two_voters_at_once_the_leader_among_them():
    cluster = start_cluster(5, num_cpus=1)
    try:
        leader = cluster.leader()
        view = roles(cluster, leader)
        voters = [i for i, n in enumerate(cluster.nodes) if view.get(n.node_id) in ("leader", "follower")]
        assert len(voters) == 5, f"five nodes should have five voters: {view}"
        doomed = [leader, next(i for i in voters if i != leader)]
        via = next(i for i in range(5) if i not in doomed)
        for i in doomed:
            cluster.kill(i, signal.SIGKILL)
        got = run(cluster, via, NAMED.replace('"solo"', '"after-two-deaths"'), timeout=90)
        assert got.get("created") == "pong", got
        cluster.wait_healthy(90)
    finally:
        cluster.stop()


def test_a_node_joining_while_no_leader_is_known_registers_once_one_is():
    """Two of three voters are down, so the node it joins through knows no
    leader: its registration is refused at first and must keep trying."""
    cluster = start_cluster(3, num_cpus=1)
    try:
        for i in (1, 2):
            cluster.kill(i, signal.SIGKILL)
        late = cluster.add_node()
        time.sleep(15)  # past any fixed number of registration attempts
        for i in (1, 2):
            cluster.restart(i, join=True)
        role = wait_role(cluster, 0, late.index, {"learner", "follower", "leader"}, 60)
        assert role in ("learner", "follower", "leader"), f"the late node's role is {role!r}"
        cluster.wait_healthy(60)
    finally:
        cluster.stop()


def test_an_actor_whose_node_died_restarts_once_resources_free_up():
    """No peer had a free slot for it when its node died: the restart must
    wait for one like any pending task, not be dropped."""
    cluster = start_cluster(3, num_cpus=1, resources_on={1: {"r": 1}, 2: {"r": 1}})
    try:
        code = """
import json, sys, time
import raynode as ray
ray.init()

@ray.remote(max_restarts=-1, max_task_retries=-1, resources={"r": 1}, num_cpus=0)
class Counter:
    def __init__(self):
        self.n = 0
    def incr(self):
        self.n += 1
        return self.n
    def node(self):
        return ray.get_runtime_context().get_node_id()

@ray.remote(resources={"r": 1}, num_cpus=0)
def hold(seconds):
    time.sleep(seconds)
    return ray.get_runtime_context().get_node_id()

c = Counter.remote()
home = ray.get(c.node.remote(), timeout=60)
blocker = hold.remote(12)          # takes the other node's only "r"
time.sleep(2)
print(json.dumps({"home": home}), flush=True)
sys.stdin.readline()               # the test kills the actor's node
t = time.monotonic()
n = ray.get(c.incr.remote(), timeout=90)
print(json.dumps({"n": n, "s": time.monotonic() - t, "node": ray.get(c.node.remote(), timeout=30),
                  "blocker": ray.get(blocker, timeout=60)}))
"""
        _, last, home = kill_home_between(cluster, code)
        assert home in (1, 2)
        other = 3 - home
        assert last["node"].lower() == cluster.nodes[other].node_id
        assert last["blocker"].lower() == cluster.nodes[other].node_id
        assert last["n"] >= 1
    finally:
        cluster.stop()


def test_results_made_on_another_node_survive_store_pressure():
    """Tasks on node 2 return 8 MiB arrays to a driver on node 1, both nodes
    with a 64 MiB store and the results four times that: none may be lost."""
    small = ["--object-store-memory", str(64 << 20)]
    cluster = start_cluster(2, num_cpus=1, resources_on={1: {"b": 1}}, args_on={0: small, 1: small})
    try:
        got = run(cluster, 0, """
import json
import numpy as np
import raynode as ray
ray.init()

@ray.remote(resources={"b": 1})
def make(i):
    return np.full(8 * 1024 * 1024 // 8, i, dtype=np.int64)

refs = [make.remote(i) for i in range(32)]
ok, bad = 0, []
for i, ref in enumerate(refs):
    try:
        a = ray.get(ref, timeout=120)
        if a.shape == (1024 * 1024,) and int(a[0]) == i and int(a[-1]) == i:
            ok += 1
        else:
            bad.append((i, "wrong"))
    except Exception as e:
        bad.append((i, f"{type(e).__name__}: {e}"[:200]))
print(json.dumps({"ok": ok, "bad": bad}))
""", timeout=240)
        assert got == {"ok": 32, "bad": []}, got
    finally:
        cluster.stop()


def test_an_actor_has_one_restart_budget_wherever_it_lives():
    """max_restarts=1: a restart on the node it lives on uses the budget up,
    so when that node dies the actor stays dead. Before, each node counted
    restarts on its own and the owner restarted it once more."""
    cluster = start_cluster(3, num_cpus=1, resources_on={1: {"r": 1}, 2: {"r": 1}})
    try:
        code = """
import json, os, sys
import raynode as ray
from raynode.exceptions import RayActorError
ray.init()

@ray.remote(max_restarts=1, resources={"r": 1}, num_cpus=0)
class Fragile:
    def node(self):
        return ray.get_runtime_context().get_node_id()
    def die(self):
        os._exit(1)

a = Fragile.remote()
home = ray.get(a.node.remote(), timeout=60)
try:
    ray.get(a.die.remote(), timeout=60)
except RayActorError:
    pass
again = ray.get(a.node.remote(), timeout=60)       # restarted once, on its node
print(json.dumps({"home": home, "again": again}), flush=True)
sys.stdin.readline()                                # the test kills that node
try:
    ray.get(a.node.remote(), timeout=60)
    print(json.dumps({"after": "alive"}))
except RayActorError as e:
    print(json.dumps({"after": "dead"}))
"""
        first, last, _ = kill_home_between(cluster, code, timeout=120)
        assert first["home"] == first["again"], first
        assert last == {"after": "dead"}
    finally:
        cluster.stop()
