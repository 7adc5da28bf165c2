#!/usr/bin/env python3
"""What a cluster of many nodes costs on one machine: ``bench/scale.py -n 50``.

Starts ``-n`` nodes with testnet (each ``--num-cpus 1 --min-workers 0``,
all joining the first at once) and reports:

* time to healthy: from the first launch until every node's ``raynode
  status`` lists every node alive, one leader and the voters;
* idle CPU of all the nodes' processes together (their workers included,
  of which an idle cluster here has none), in percent of one core, over
  ``--idle-seconds`` after ``--settle-seconds`` of rest;
* total RSS of the node processes;
* load reports per second, sent and received (each counted once), summed
  over the nodes' ``/metrics``;
* ``raynode status`` latency (the median of 5 calls);
* 1,000 tasks of 50 ms (``num_cpus=1``) from a driver on node 1, twice in
  one driver: the first round starts a worker process on every node it
  reaches, the second finds them started;
* leader kill to next write: the Raft leader is killed (SIGKILL) and a
  driver already connected to another node creates a named actor, timed
  from the kill to the call's return.

Every wait is bounded; the cluster is always stopped. Standard library
only. ``--json FILE`` also writes the figures as JSON.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "testnet"))
from testnet import Cluster  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")

TASKS = """
import collections, json, time
import raynode as ray
ray.init()

@ray.remote(num_cpus=1)
def nap(i):
    time.sleep(0.05)
    return ray.get_runtime_context().get_node_id()

rounds = []
for _ in range(2):
    t = time.monotonic()
    where = collections.Counter(ray.get([nap.remote(i) for i in range(1000)], timeout=300))
    rounds.append({"s": time.monotonic() - t, "nodes": len(where)})
print(json.dumps(rounds))
"""

WRITER = """
import json, sys, time
import raynode as ray
ray.init()

@ray.remote(num_cpus=0)
class Named:
    def ping(self):
        return 1

ray.get(Named.options(name="warm-up").remote().ping.remote(), timeout=60)
print("ready", flush=True)
killed_at = float(sys.stdin.readline())
Named.options(name="after-the-kill").remote()
print(json.dumps({"s": time.monotonic() - killed_at}), flush=True)
"""


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


def rss_mib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def metric_sum(cluster, name):
    total = 0.0
    for node in cluster.nodes:
        with open(node.out_path) as f:
            found = re.search(r"dashboard: (\S+)", f.read())
        if not found:
            continue
        with urllib.request.urlopen(found.group(1) + "/metrics", timeout=10) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith(name + "{") or line.startswith(name + " "):
                    total += float(line.split()[-1])
    return total


def measure(n, settle, idle):
    out = {"nodes": n}
    with Cluster(num_cpus=1, min_workers=0) as cluster:
        t0 = time.monotonic()
        cluster.start(n, timeout=120)
        cluster.wait_healthy(300)
        out["healthy_s"] = time.monotonic() - t0
        pids = [node.pid for node in cluster.nodes]
        time.sleep(settle)
        sent0 = metric_sum(cluster, "raynode_load_reports_sent_total")
        got0 = metric_sum(cluster, "raynode_load_reports_received_total")
        c0, w0 = cpu_seconds(pids), time.monotonic()
        time.sleep(idle)
        c1, w1 = cpu_seconds(pids), time.monotonic()
        sent1 = metric_sum(cluster, "raynode_load_reports_sent_total")
        got1 = metric_sum(cluster, "raynode_load_reports_received_total")
        out["idle_cpu_pct_of_one_core"] = 100 * (c1 - c0) / (w1 - w0)
        out["rss_mib"] = rss_mib(pids)
        out["load_reports_sent_per_s"] = (sent1 - sent0) / (w1 - w0)
        out["load_reports_received_per_s"] = (got1 - got0) / (w1 - w0)
        latencies = []
        for _ in range(5):
            s = time.monotonic()
            cluster.status(n - 1)
            latencies.append(time.monotonic() - s)
        out["status_ms"] = 1000 * statistics.median(latencies)

        run = cluster.run_driver(0, code=TASKS, timeout=700)
        if run.returncode != 0:
            raise RuntimeError("the task driver failed:\n" + run.stderr[-3000:])
        rounds = json.loads(run.stdout.strip().splitlines()[-1])
        out["tasks_cold_s"], out["tasks_cold_nodes"] = rounds[0]["s"], rounds[0]["nodes"]
        out["tasks_warm_s"], out["tasks_warm_nodes"] = rounds[1]["s"], rounds[1]["nodes"]

        leader = cluster.leader()
        via = next(i for i in range(n) if i != leader)
        writer = subprocess.Popen([cluster.python, "-c", WRITER], env=cluster.driver_env(via),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=REPO)
        try:
            line = writer.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError("the writer did not start: " + line + writer.stderr.read()[-2000:])
            cluster.kill(leader, signal.SIGKILL)
            writer.stdin.write(f"{time.monotonic()}\n")
            writer.stdin.flush()
            reply, err = writer.communicate(timeout=120)
            if writer.returncode != 0:
                raise RuntimeError("the writer failed:\n" + err[-3000:])
            out["leader_kill_to_write_s"] = json.loads(reply.strip().splitlines()[-1])["s"]
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    return out


ROWS = [
    ("healthy_s", "time to healthy (s)", "{:.1f}"),
    ("idle_cpu_pct_of_one_core", "idle CPU of all nodes (% of one core)", "{:.1f}"),
    ("rss_mib", "node RSS total (MiB)", "{:.0f}"),
    ("load_reports_sent_per_s", "load reports sent, whole cluster (/s)", "{:.1f}"),
    ("load_reports_received_per_s", "load reports received, whole cluster (/s)", "{:.1f}"),
    ("status_ms", "raynode status (ms)", "{:.0f}"),
    ("tasks_cold_s", "1,000 tasks of 50 ms, workers not started (s)", "{:.2f}"),
    ("tasks_warm_s", "1,000 tasks of 50 ms, workers started (s)", "{:.2f}"),
    ("leader_kill_to_write_s", "leader kill to next committed write (s)", "{:.2f}"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=50, help="nodes (default 50)")
    parser.add_argument("--settle-seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    opts = parser.parse_args(argv)
    got = measure(opts.n, opts.settle_seconds, opts.idle_seconds)
    width = max(len(label) for _, label, _ in ROWS)
    print(f"{opts.n} nodes on {os.cpu_count()} cores")
    for key, label, fmt in ROWS:
        print(f"{label:<{width}}  {fmt.format(got[key])}")
    print(f"(tasks ran on {got['tasks_cold_nodes']} nodes, then {got['tasks_warm_nodes']})")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(got, f, indent=2)


if __name__ == "__main__":
    main()
