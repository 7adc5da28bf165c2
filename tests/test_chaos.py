"""Chaos: a driver whose every result is checked keeps working while nodes
of a 5-node cluster are killed (SIGKILL) and restarted with their data dirs.

The workload (run by a driver connected to node 1, which is never killed):
tasks of 20-100 ms, numpy arrays over 1 MiB made by tasks and passed on to
downstream tasks (and one put by the driver), a tree reduce of such arrays,
and actors with max_restarts=-1, max_task_retries=-1 counting their calls.
Every result is compared with what it must be; nothing may be wrong, lost
(an error instead of a value) or hung (not ready within the round timeout).

Meanwhile the controller (this process) kills random nodes other than the
driver's, the Raft leader at least once, two nodes at once at least once
(half the time the leader and another), restarts each with its data dir
(`Cluster.restart`) and waits until the cluster is healthy again. It tells
the driver what it did over the driver's stdin, and asks it to measure
recovery: the time from a leader kill or a double kill to the next
control-state write (a named actor's creation, which returns once the name
is committed), and from a restart to a task that only the restarted node
can run (its own custom resource "node<k>") being done. Node 1 leads the
Raft group at first (it bootstraps it), so before the driver starts it is
killed and restarted once to hand the leadership to another node; once node
1 wins an election again, leader kills give way to other kills.

The pieces live beside this file, shared with the long version,
`bench/chaos.py`: `chaos_common.py` (the cluster's shape, the timeouts),
`chaos_controller.py` (the cluster, the kill schedule, the report),
`chaos_driver.py` (the driver, `python tests/chaos_driver.py --driver ...`,
which reports a JSON summary on its last line of stdout) and
`chaos_results.py` (the driver's checks and recovery figures).

Set RAYNODE_CHAOS_SEED to replay a schedule, RAYNODE_CHAOS_LOGS=DIR to keep
the node and driver logs of every run in DIR, RAYNODE_CHAOS_LOG_LEVEL for the
nodes' --log-level (e.g. info,raynode=debug), RAYNODE_CHAOS_STORE_MIB for
their --object-store-memory (MiB; default: the node's).
"""

import os

import pytest

from chaos_common import CHAOS_S
from chaos_controller import Chaos, format_report, save_logs, start_chaos_cluster

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def chaos_cluster():
    cluster = start_chaos_cluster()
    yield cluster
    save_logs(cluster, os.environ.get("RAYNODE_CHAOS_LOGS"))
    cluster.stop()


def test_driver_survives_nodes_killed_and_restarted(chaos_cluster):
    cluster = chaos_cluster
    # 240 s in all: about 20 s to start the cluster, 15 s to stop it.
    report = Chaos(cluster, CHAOS_S, budget=200).run()
    text = format_report(report)
    print(text)
    from testnet import tail
    context = f"{text}\n--- driver log (tail):\n{tail(os.path.join(cluster.workdir, 'driver.log'), 60)}"
    d = report["driver"]
    assert not report["errors"], context
    assert d is not None and report.get("driver_rc") == 0, context
    assert d["fatal"] is None, context
    assert (d["wrong"], d["lost"], d["hung"]) == (0, 0, 0), context
    assert d["rounds"] >= 5 and d["ok"] > 0, context
    assert report["leader_kills"] >= 1 and report["double_kills"] >= 1, context
    # Every leader kill and double kill was followed by a committed write, every restart by a task there.
    writes = d["recovery"]["leader_kill_to_write_s"] + d["recovery"]["two_down_to_write_s"]
    assert len(d["recovery"]["leader_kill_to_write_s"]) == report["leader_kills"], context
    assert len(writes) == report["write_probes"], context
    assert len(d["recovery"]["restart_to_task_s"]) == report["kills"], context
