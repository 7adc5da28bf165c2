"""A cluster of 30 nodes on one machine: it becomes healthy, runs tasks on
every node, and an idle cluster stays quiet.

Every node gossips and takes Raft traffic, so what each node spends on the
others grows with the cluster. Thirty nodes, each with one CPU and no
idle worker, share this machine's cores here; before load reports were
sent only when they changed, an idle cluster of that size spent most of a
core on itself and took tasks slowly.
"""

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testnet"))
from testnet import Cluster  # noqa: E402

NODES = 30

pytestmark = pytest.mark.timeout(600)

DRIVER = """
import json, time
import raynode as ray
ray.init()

@ray.remote(num_cpus=1)
def where(i):
    time.sleep(0.05)
    return ray.get_runtime_context().get_node_id()

@ray.remote(num_cpus=1, scheduling_strategy="SPREAD")
def spread(i):
    time.sleep(0.05)
    return ray.get_runtime_context().get_node_id()

placed = ray.get([where.remote(i) for i in range(300)], timeout=240)
spread_out = ray.get([spread.remote(i) for i in range(3 * {nodes})], timeout=240)
print(json.dumps({{"placed": placed, "spread": spread_out}}))
"""


def load_reports(cluster):
    """raynode_load_reports_sent_total summed over the nodes' /metrics."""
    import re
    import urllib.request

    total = 0.0
    for node in cluster.nodes:
        with open(node.out_path) as f:
            found = re.search(r"dashboard: (\S+)", f.read())
        assert found, f"{node.name} printed no dashboard address"
        with urllib.request.urlopen(found.group(1) + "/metrics", timeout=10) as reply:
            text = reply.read().decode()
        [line] = [x for x in text.splitlines() if x.startswith("raynode_load_reports_sent_total{")]
        total += float(line.split()[-1])
    return total


def test_thirty_nodes_become_healthy_run_tasks_everywhere_and_stay_quiet_when_idle():
    with Cluster(num_cpus=1, min_workers=0) as cluster:
        cluster.start(NODES)
        cluster.wait_healthy(180)
        view = cluster.status(NODES - 1)
        assert len([e for e in view if e.get("Alive")]) == NODES, view
        roles = sorted(e.get("RaftRole") for e in view)
        assert roles.count("leader") == 1 and roles.count("follower") == 4, roles
        assert roles.count("learner") == NODES - 5, roles

        # Idle: a node repeats its unchanged load every 10 s, so 30 nodes
        # send about 3 reports a second, not 30 (one per node per second).
        before = load_reports(cluster)
        started = time.monotonic()
        time.sleep(20)
        rate = (load_reports(cluster) - before) / (time.monotonic() - started)
        assert rate < NODES / 4, f"an idle cluster of {NODES} sent {rate:.1f} load reports/s"

        out = cluster.run_driver(0, code=DRIVER.format(nodes=NODES), timeout=400)
        assert out.returncode == 0, out.stderr[-3000:]
        import json

        got = json.loads(out.stdout.strip().splitlines()[-1])
        ids = {n.node_id for n in cluster.nodes}
        assert set(got["spread"]) == ids, f"SPREAD reached {len(set(got['spread']))} of {NODES} nodes"
        assert len(set(got["placed"])) >= NODES // 2, \
            f"300 tasks from node 1 ran on {len(set(got['placed']))} nodes only"
        assert len(got["placed"]) == 300
        cluster.check_alive()
