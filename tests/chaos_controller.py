"""The chaos controller: the 5-node cluster on loopback
(`start_chaos_cluster`), the kill schedule against every node but the
driver's (`Chaos`: SIGKILL of random nodes, the Raft leader at least once,
two nodes at once at least once, each restarted with its data dir), the
driver process it starts and talks to, and the text of its report
(`format_report`). Used by `test_chaos.py` and by `bench/chaos.py`.

RAYNODE_CHAOS_SEED replays a schedule; RAYNODE_CHAOS_LOG_LEVEL sets the
nodes' --log-level (e.g. info,raynode=debug).
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

from chaos_common import (DRIVER_NODE, HEALTHY_TIMEOUT_S, HERE, NODES, NUM_CPUS, PROBE_TIMEOUT_S, REPO,
                          ROUND_TIMEOUT_S, STORE_MIB, mono, node_resources)

sys.path.insert(0, os.path.join(REPO, "testnet"))

from testnet import Cluster, ClusterError  # noqa: E402

DRIVER = os.path.join(HERE, "chaos_driver.py")


def start_chaos_cluster(nodes=NODES, store_mib=STORE_MIB, **kwargs):
    """A healthy cluster of `nodes` nodes with the chaos resources and
    object stores of `store_mib` MiB (None: the node's default); stopped if
    it does not get healthy."""
    kwargs.setdefault("log_level", os.environ.get("RAYNODE_CHAOS_LOG_LEVEL", "info"))
    cluster = Cluster(num_cpus=NUM_CPUS, **kwargs)
    args = ["--object-store-memory", str(store_mib << 20)] if store_mib else []
    try:
        # Every start and restart runs this copy of the binary: one rebuilt
        # during the run would otherwise make a cluster of mixed versions.
        snapshot = os.path.join(cluster.workdir, "raynode")
        shutil.copy2(cluster.binary, snapshot)
        cluster.binary = snapshot
        cluster.start(nodes, resources_on={i: node_resources(i) for i in range(nodes)},
                      args_on={i: args for i in range(nodes)})
        cluster.wait_healthy(60)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def save_logs(cluster, dest, label="chaos"):
    """Copies the cluster's logs (nodes' and driver's) into a new folder of dest."""
    if not dest:
        return None
    out = os.path.join(dest, f"{label}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(cluster.workdir)):
        if name.endswith((".log", ".out", ".json")):
            shutil.copy(os.path.join(cluster.workdir, name), out)
    return out


class Chaos:
    """Runs the driver on member DRIVER_NODE and the kill schedule against
    the other members for `seconds`; `run()` returns a report: the driver's
    summary plus what the controller did and measured."""

    def __init__(self, cluster, seconds, seed=None, round_timeout=ROUND_TIMEOUT_S, probe_timeout=PROBE_TIMEOUT_S,
                 healthy_timeout=HEALTHY_TIMEOUT_S, max_events=1000, log=None, driver_args=(), budget=None):
        """`budget`: seconds the whole run may take, every wait included
        (None: unbounded beyond each wait's own limit); a run out of budget
        stops where it is and says so in its report."""
        self.cluster = cluster
        self.budget_end = None if budget is None else mono() + budget
        self.seconds = seconds
        self.seed = int(os.environ.get("RAYNODE_CHAOS_SEED", random.randrange(1 << 30))) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.round_timeout = round_timeout
        self.probe_timeout = probe_timeout
        self.healthy_timeout = healthy_timeout
        self.max_events = max_events
        self.driver_args = list(driver_args)
        self._log = log or (lambda msg: print(msg, flush=True))
        self.t0 = mono()
        self.driver = None
        self.driver_log = os.path.join(cluster.workdir, "driver.log")
        self.lines = []
        self.ready = threading.Event()
        self.events = []
        self.errors = []
        self.figures = {"leader_kill_to_new_leader_s": [], "kill_to_healthy_s": []}
        self.kills = 0
        self.write_probes = 0

    def log(self, msg):
        self._log(f"[chaos {mono() - self.t0:7.2f}] {msg}")

    def left(self, seconds):
        """`seconds`, cut to what is left of the budget (at least 1 s)."""
        if self.budget_end is None:
            return seconds
        return max(1.0, min(seconds, self.budget_end - mono()))

    def wait_healthy(self):
        self.cluster.wait_healthy(self.left(self.healthy_timeout))

    # Steps

    def killable(self):
        return [n.index for n in self.cluster.nodes if n.index != DRIVER_NODE]

    def leader(self):
        try:
            return self.cluster.leader(DRIVER_NODE)
        except (ClusterError, subprocess.TimeoutExpired, ValueError):
            return None

    def wait_new_leader(self, dead, limit=30.0):
        """Seconds until the driver's node (another live member if it is
        among `dead`) names a member other than `dead` as leader; None if
        not within `limit`."""
        t0 = mono()
        dead_ids = {self.cluster.nodes[i].node_id for i in dead}
        via = DRIVER_NODE if DRIVER_NODE not in dead else next(
            n.index for n in self.cluster.nodes if n.index not in dead)
        while mono() - t0 < limit:
            try:
                view = self.cluster.status(via)
            except (ClusterError, subprocess.TimeoutExpired, ValueError):
                view = []
            for e in view:
                if e.get("RaftRole") == "leader" and e.get("Alive") and str(e.get("NodeID")).lower() not in dead_ids:
                    return mono() - t0
            time.sleep(0.05)
        return None

    def move_leader_off_driver_node(self):
        """Node 1 bootstraps the Raft group and so leads it; before the driver
        starts, kill and restart it (with --join) so that another node leads
        and a leader kill does not need to kill the driver's node."""
        if self.leader() != DRIVER_NODE:
            return
        self.log("node1 leads the Raft group: killing and restarting it before the driver starts")
        self.cluster.kill(DRIVER_NODE, signal.SIGKILL)
        if self.wait_new_leader([DRIVER_NODE]) is None:
            self.cluster.restart(DRIVER_NODE, join=True)
            raise ClusterError("no new leader within 30 s of killing node1 (before the driver started)")
        self.cluster.restart(DRIVER_NODE, join=True)
        self.wait_healthy()
        self.log(f"leader is now node{self.leader() + 1}")

    def send(self, msg):
        try:
            self.driver.stdin.write(json.dumps(msg) + "\n")
            self.driver.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def start_driver(self):
        cmd = [self.cluster.python, DRIVER, "--driver", "--seed", str(self.seed),
               "--exec-log", os.path.join(self.cluster.workdir, "exec.log"),
               "--node-names", json.dumps({n.node_id: n.name for n in self.cluster.nodes}),
               "--seconds", str(self.seconds + self.round_timeout + 3 * self.probe_timeout + 120),
               "--round-timeout", str(self.round_timeout), "--probe-timeout", str(self.probe_timeout)]
        cmd += self.driver_args
        err = open(self.driver_log, "ab")
        try:
            self.driver = subprocess.Popen(cmd, env=self.cluster.driver_env(DRIVER_NODE), cwd=REPO, text=True,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                           start_new_session=True)
        finally:
            err.close()

        def read():
            for line in self.driver.stdout:
                line = line.rstrip("\n")
                self.lines.append(line)
                if line == "READY":
                    self.ready.set()
        threading.Thread(target=read, daemon=True).start()

    def stop_driver(self, limit):
        """Asks the driver to finish; returns its summary (None if it printed none)."""
        self.send({"op": "stop"})
        try:
            self.driver.stdin.close()
        except OSError:
            pass
        try:
            self.driver.wait(limit)
        except subprocess.TimeoutExpired:
            self.errors.append(f"the driver did not finish within {limit:.0f} s of being stopped (hung)")
            self.driver.kill()
            self.driver.wait()
        time.sleep(0.2)  # the reader thread takes the last line
        for line in reversed(self.lines):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    break
        return None

    def event(self, kind, targets, leader=False):
        """Kills `targets` (SIGKILL; `leader`: the Raft leader among them),
        tells the driver, waits, restarts them with their data dirs, has the
        driver probe each, waits until healthy. After a leader kill or a
        double kill the driver also times a control-state write."""
        c = self.cluster
        n = len(self.events) + 1
        names = [c.nodes[i].name for i in targets]
        ids = [c.nodes[i].node_id for i in targets]
        rec = {"n": n, "kind": kind, "leader": leader, "nodes": names, "at_s": round(mono() - self.t0, 2)}
        self.events.append(rec)
        self.log(f"event {n}: {kind}: kill -9 {', '.join(names)}{' (the leader first)' if leader else ''}")
        t = mono()
        for i in targets:
            c.kill(i, signal.SIGKILL)
        self.kills += len(targets)
        self.send({"op": "kill", "n": n, "t": t, "nodes": ids, "names": names, "leader": leader})
        if leader or len(targets) > 1:
            figure = "leader_kill_to_write_s" if leader else "two_down_to_write_s"
            self.write_probes += 1
            self.send({"op": "write_probe", "n": n, "t": t, "figure": figure})
        if leader:
            took = self.wait_new_leader(targets, self.left(30.0))
            if took is None:
                self.errors.append(f"event {n}: no new leader within 30 s of killing {names[0]}")
            else:
                self.figures["leader_kill_to_new_leader_s"].append(round(mono() - t, 3))
                rec["new_leader_s"] = round(mono() - t, 3)
        time.sleep(self.rng.uniform(1.5, 4.0))  # down for a while: its work must go elsewhere
        for i in targets:
            tr = mono()
            try:
                c.restart(i)
            except ClusterError as e:
                self.errors.append(f"event {n}: restarting {c.nodes[i].name} failed: {e}")
                return False
            res = node_resources(i)
            own = next(k for k in res if k.startswith("node"))
            self.send({"op": "node_probe", "t": tr, "name": c.nodes[i].name, "resource": own,
                       "node_id": c.nodes[i].node_id})
        try:
            self.wait_healthy()
        except ClusterError as e:
            self.errors.append(f"event {n}: the cluster did not get healthy after restarting {names}: {e}")
            return False
        healed = round(mono() - t, 3)
        rec["healthy_s"] = healed
        self.figures["kill_to_healthy_s"].append(healed)
        self.log(f"event {n}: healthy again {healed:.1f} s after the kill")
        return True

    def run(self):
        """The whole chaos run; returns the report (never raises for what
        the cluster or the driver did: that is in the report)."""
        self.log(f"seed {self.seed}, {self.seconds:.0f} s of chaos")
        report = {"seed": self.seed}
        summary = None
        try:
            self.move_leader_off_driver_node()
            self.start_driver()
            if not self.ready.wait(self.left(90)):
                self.errors.append("the driver did not get ready within 90 s")
            else:
                self.log("driver ready")
                self.schedule(mono() + self.seconds)
        except ClusterError as e:
            self.errors.append(f"cluster: {e}")
        finally:
            if self.driver is not None:
                # The driver ends its round, its probes and its final checks.
                summary = self.stop_driver(self.left(max(self.round_timeout, self.probe_timeout) + 60))
                report["driver_rc"] = self.driver.returncode
        if summary is None:
            self.errors.append(f"the driver printed no summary (exit status {report.get('driver_rc')})")
        try:
            self.wait_healthy()
        except ClusterError as e:
            self.errors.append(f"the cluster is not healthy at the end: {e}")
        report.update({
            "driver": summary,
            "node_names": {n.node_id: n.name for n in self.cluster.nodes},
            "events": self.events,
            "leader_kills": sum(e["leader"] for e in self.events),
            "write_probes": self.write_probes,
            "double_kills": sum(e["kind"] == "double" for e in self.events),
            "kills": self.kills,
            "errors": self.errors,
            "figures": self.figures,
            "elapsed_s": round(mono() - self.t0, 1),
        })
        try:
            with open(os.path.join(self.cluster.workdir, "chaos-report.json"), "w") as f:
                json.dump(report, f, indent=1)
        except OSError:
            pass
        return report

    def schedule(self, end):
        """Events until `end` (or max_events): a leader kill and a double kill
        first, then random ones; a leader kill when node 1 leads becomes a
        single kill and the leader kill is tried again next. Half the double
        kills take the leader (when it is not node 1) and another node."""
        required = ["leader", "double"]
        event_s = 12.0  # about what one event takes
        for _ in range(self.max_events):
            if self.driver.poll() is not None:
                self.errors.append(f"the driver exited early with status {self.driver.returncode}")
                return
            left = min(end, self.budget_end or end) - mono()
            if left < (event_s * 0.5 if required else event_s):
                if left < 0 or not required:
                    return
            if required:
                kind = required.pop(0)
            else:
                kind = self.rng.choice(["single", "single", "leader", "double"])
            pool = self.killable()
            lead = self.leader() if kind in ("leader", "double") else None
            with_leader = lead is not None and lead != DRIVER_NODE
            if kind == "leader":
                if not with_leader:
                    self.log(f"the leader is {'unknown' if lead is None else 'node1'}: a single kill instead")
                    if "leader" not in required:
                        required.insert(0, "leader")
                    kind, targets = "single", [self.rng.choice(pool)]
                else:
                    targets = [lead]
            elif kind == "double":
                with_leader = with_leader and self.rng.random() < 0.5
                if with_leader:
                    targets = [lead, self.rng.choice([i for i in pool if i != lead])]
                else:
                    targets = self.rng.sample(pool, 2)
            else:
                with_leader = False
                targets = [self.rng.choice(pool)]
            if not self.event(kind, targets, leader=with_leader):
                return
            time.sleep(min(max(0.0, end - mono()), self.rng.uniform(1.0, 3.0)))


def format_report(report, figures=True):
    """A short text of the report, for logs and assertion messages: a line
    of counts, the errors and problems, then (with figures) every recovery
    figure."""
    d = report.get("driver") or {}
    lines = [f"seed {report.get('seed')}: " + ", ".join(f"{k} {d.get(k)}" for k in ("ok", "wrong", "lost", "hung"))
             + f", rounds {d.get('rounds')}, kills {report.get('kills')} "
             f"({report.get('leader_kills')} of the leader, {report.get('double_kills')} double), "
             f"{report.get('elapsed_s')} s"]
    for e in report.get("errors", []):
        lines.append(f"controller: {e[:2000]}")
    if d.get("fatal"):
        lines.append(f"driver: {d['fatal'][:3000]}")
    if d.get("errors"):
        lines.append(f"errors: {d['errors']}")
    names = report.get("node_names") or {}
    if d.get("task_nodes"):
        lines.append("sleeping tasks per node: " + ", ".join(
            f"{names.get(k, k[:8])} {v}" for k, v in sorted(d["task_nodes"].items(), key=lambda kv: names.get(kv[0], kv[0]))))
    if d.get("actors"):
        lines.append("actors: " + ", ".join(f"Counter{a} {v['calls']} calls, {v['incarnations']} incarnations"
                                           + (" (stuck)" if v["stuck"] else "") for a, v in d["actors"].items())
                     + f"; sleeping tasks run more than once: {d.get('rerun_tasks')}")
    for p in d.get("problems", []):
        lines.append(f"  {p['outcome']} at {p['at_s']} s: {p['kind']} {p['what']}: {p['detail']}")
    for line in d.get("slow_recoveries", []):
        lines.append(f"  slow: {line}")
    if figures:
        rec = dict(d.get("recovery") or {}, **report.get("figures", {}))
        for k, v in sorted(rec.items()):
            lines.append(f"  {k}: {v}")
    return "\n".join(lines)
