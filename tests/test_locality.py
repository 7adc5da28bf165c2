"""Objects stay where they are made: a result lives in the store of the node
that made it, its owner knows where, a consumer on that node reads it there,
and when that node dies the owner makes the result again by running its
task once more (lineage). An object whose owner died raises
`OwnerDiedError`, quickly."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

pytestmark = pytest.mark.timeout(300)

MIB = 1 << 20


def store_bytes(node, spill_only=False):
    """Bytes of objects in a node's store directory and its spill directory
    (or in its spill directory alone)."""
    total = 0
    roots = [os.path.join(node.data_dir, "spill")] if spill_only else [node.store_dir, os.path.join(node.data_dir, "spill")]
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in files:
                try:
                    total += os.stat(os.path.join(dirpath, f)).st_blocks * 512
                except OSError:
                    pass
    return total


class Sampler:
    """Samples a node's store use in the background; `peak` is the most seen."""

    def __init__(self, node, spill_only=False):
        self.node, self.spill_only, self.peak, self._stop = node, spill_only, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, store_bytes(self.node, self.spill_only))
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def driver(cluster, i, code):
    return subprocess.Popen([cluster.python, "-c", code], env=cluster.driver_env(i), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout):
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"driver failed ({proc.returncode}):\n{out}\n{err}"
    return json.loads(out.strip().splitlines()[-1])


def first_line(proc):
    line = proc.stdout.readline()
    if not line:
        proc.wait(30)
        pytest.fail(f"the driver stopped early:\n{proc.stderr.read()}")
    return json.loads(line)


def seen_dead(cluster, via, node, timeout=30.0):
    """Waits until member `via` reports member `node` dead."""
    wanted = cluster.nodes[node].node_id
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = {str(e["NodeID"]).lower(): e.get("Alive") for e in cluster.status(via)}
        if not alive.get(wanted, False):
            return
        time.sleep(0.2)
    pytest.fail(f"node{via + 1} still sees node{node + 1} alive after {timeout} s")


PIPELINE = """
import json, sys
import numpy as np
import raynode as ray
from raynode.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
MIB = 1 << 20
here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)

@ray.remote(num_cpus=0, scheduling_strategy=here)
class Counter:
    def __init__(self):
        self.runs = {}
    def ran(self, what):
        self.runs[what] = self.runs.get(what, 0) + 1
    def get(self):
        return self.runs

counter = Counter.remote()

@ray.remote(resources={"special": 0.01})
def produce(i, counter):
    ray.get(counter.ran.remote(f"produce{i}"))
    return np.full(50 * MIB // 8, i, dtype=np.int64)

@ray.remote(resources={"special": 0.01})
def consume(a, i):
    return bool(a.nbytes == 50 * MIB and int(a[0]) == i and int(a[-1]) == i)

made = [produce.remote(i, counter) for i in range(20)]
ready, _ = ray.wait(made, num_returns=len(made), timeout=240)
from raynode.util.state import list_objects
rows = list_objects(filters=[("object_id", "=", made[0].hex())])
where = [str(n).lower() for n in rows[0]["locations"]] if rows else None
print(json.dumps({"produced": len(ready)}), flush=True)
if KILL:
    sys.stdin.readline()  # the test kills node 3 and starts it again
ok = ray.get([consume.remote(m, i) for i, m in enumerate(made)], timeout=240)
runs = ray.get(counter.get.remote())
print(json.dumps({"ok": sum(ok), "runs": [runs.get(f"produce{i}", 0) for i in range(20)], "where": where}))
"""


def test_results_consumed_where_they_were_made_never_cross_to_the_driver(fresh_cluster3):
    """20 tasks make 50 MiB arrays on node 3 and 20 more consume them there,
    driven from node 1: node 1's store never holds the arrays."""
    cluster = fresh_cluster3
    with Sampler(cluster.nodes[0]) as driver_node, Sampler(cluster.nodes[2]) as maker:
        proc = driver(cluster, 0, "KILL = False\n" + PIPELINE)
        assert first_line(proc) == {"produced": 20}
        got = finish(proc, 240)
    assert got["ok"] == 20, got
    assert got["runs"] == [1] * 20, got
    # The object table knows where it is: node 3 alone.
    assert got["where"] == [cluster.nodes[2].node_id], got
    assert driver_node.peak < 100 * MIB, f"the driver's node stored {driver_node.peak / MIB:.0f} MiB"
    # The arrays were there, on the node that made them.
    assert maker.peak >= 20 * 50 * MIB * 0.9, f"node 3 stored only {maker.peak / MIB:.0f} MiB"


def test_results_lost_with_their_node_are_made_again_by_lineage(fresh_cluster3):
    """Node 3 dies after making the arrays and starts again: every consumer
    still gets correct data, because each producer ran once more."""
    cluster = fresh_cluster3
    proc = driver(cluster, 0, "KILL = True\n" + PIPELINE)
    try:
        assert first_line(proc) == {"produced": 20}
        cluster.kill(2, signal.SIGKILL)
        seen_dead(cluster, 0, 2)
        cluster.restart(2)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        got = finish(proc, 280)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert got["ok"] == 20, got
    assert got["runs"] == [2] * 20, got


CHAIN = """
import json, sys
import numpy as np
import raynode as ray
from raynode.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)

@ray.remote(num_cpus=0, scheduling_strategy=here)
class Counter:
    def __init__(self):
        self.runs = [0] * 5
    def ran(self, k):
        self.runs[k] += 1
    def get(self):
        return self.runs

counter = Counter.remote()

@ray.remote(resources={"special": 0.01})
def step(prev, k, counter):
    ray.get(counter.ran.remote(k))
    base = 0 if prev is None else int(prev[0])
    return np.full(1 << 18, base * 10 + k + 1, dtype=np.int64)  # 2 MiB: stored, not inline

x = step.remote(None, 0, counter)
for k in range(1, 5):
    x = step.remote(x, k, counter)
ray.wait([x], timeout=120)
print(json.dumps({"done": True}), flush=True)
sys.stdin.readline()  # the test kills node 3 and starts it again
v = ray.get(x, timeout=200)
print(json.dumps({"value": int(v[0]), "last": int(v[-1]), "runs": ray.get(counter.get.remote())}))
"""


def test_a_chain_whose_links_all_lived_on_a_dead_node_is_made_again(fresh_cluster3):
    """The driver keeps only the last of 5 chained results; all lived on
    node 3, which dies: the final get makes the whole chain again."""
    cluster = fresh_cluster3
    proc = driver(cluster, 0, CHAIN)
    try:
        assert first_line(proc) == {"done": True}
        cluster.kill(2, signal.SIGKILL)
        seen_dead(cluster, 0, 2)
        cluster.restart(2)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        got = finish(proc, 240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert got["value"] == 12345 and got["last"] == 12345, got
    assert got["runs"] == [2] * 5, got


OWNER = """
import json, sys
import numpy as np
import raynode as ray
from raynode.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()

@ray.remote(num_cpus=0)
class Keeper:
    def __init__(self):
        self.kept = None
    def keep(self, refs):
        self.kept = refs
    def give(self):
        return self.kept

there = NodeAffinitySchedulingStrategy(NODE2, soft=False)
keeper = Keeper.options(name="keeper", lifetime="detached", scheduling_strategy=there).remote()
ref = ray.put(np.ones(1 << 17))
ray.get(keeper.keep.remote([ref]))
print(json.dumps({"kept": True}), flush=True)
sys.stdin.readline()  # killed with its node before it reads this
"""

READER = """
import json, time
import raynode as ray
ray.init()
refs = ray.get(ray.get_actor("keeper").give.remote())
t0 = time.monotonic()
try:
    ray.get(refs[0], timeout=60)
    got = "value"
except ray.exceptions.OwnerDiedError as e:
    got = "OwnerDiedError"
except Exception as e:
    got = f"{type(e).__name__}: {e}"
print(json.dumps({"got": got, "seconds": time.monotonic() - t0}))
"""


def test_get_of_an_object_whose_owner_died_raises_owner_died(fresh_cluster3):
    """A put object whose owner's node died: a get elsewhere raises
    OwnerDiedError at once, never hangs."""
    cluster = fresh_cluster3
    code = f"NODE2 = {cluster.nodes[1].node_id!r}\n" + OWNER
    proc = driver(cluster, 0, code)
    try:
        assert first_line(proc) == {"kept": True}
        cluster.kill(0, signal.SIGKILL)
        seen_dead(cluster, 1, 0)
        got = finish(subprocess.Popen([cluster.python, "-c", READER], env=cluster.driver_env(1),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert got["got"] == "OwnerDiedError", got
    assert got["seconds"] < 10, got


def test_copies_read_through_a_small_store_are_evicted_not_spilled():
    """A driver reads results made on node 2, twice over, through a node
    whose store holds fewer than half of them: every value comes back
    right each time, and node 1 spills nothing (its copies are secondary,
    evicted and pulled again; the primaries stay on node 2)."""
    from testnet import start_healthy

    small = ["--object-store-memory", str(128 * MIB)]
    cluster = start_healthy(2, num_cpus=1, resources_on={1: {"b": 1}}, args_on={0: small}, timeout=60)
    try:
        with Sampler(cluster.nodes[0], spill_only=True) as spill:
            proc = driver(cluster, 0, """
import json
import numpy as np
import raynode as ray
ray.init()

@ray.remote(resources={"b": 1})
def make(i):
    return np.full(16 * 1024 * 1024 // 8, i, dtype=np.int64)

refs = [make.remote(i) for i in range(16)]
bad = []
for rnd in range(2):
    for i, ref in enumerate(refs):
        a = ray.get(ref, timeout=120)
        if not (a.shape == (2 * 1024 * 1024,) and int(a[0]) == i and int(a[-1]) == i):
            bad.append((rnd, i))
        del a
print(json.dumps({"bad": bad}))
""")
            got = finish(proc, 240)
    finally:
        cluster.stop()
    assert got == {"bad": []}, got
    assert spill.peak == 0, f"node 1 spilled {spill.peak / MIB:.0f} MiB"
