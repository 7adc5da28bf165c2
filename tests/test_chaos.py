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

The same file is the driver (`python tests/test_chaos.py --driver ...`,
which reports a JSON summary on its last line of stdout) and the shared code
of the long version, `bench/chaos.py`.

Set RAYNODE_CHAOS_SEED to replay a schedule, RAYNODE_CHAOS_LOGS=DIR to keep
the node and driver logs of every run in DIR, RAYNODE_CHAOS_LOG_LEVEL for the
nodes' --log-level (e.g. info,raynode=debug), RAYNODE_CHAOS_STORE_MIB for
their --object-store-memory (MiB; default: the node's).
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid

try:
    import pytest
except ImportError:  # run as the driver or from bench/chaos.py without pytest
    pytest = None

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "testnet"))

from testnet import Cluster, ClusterError  # noqa: E402

NODES = 5
DRIVER_NODE = 0  # node 1: the driver's node, never killed once the driver runs
NUM_CPUS = 2
ARRAY_ELEMS = 196_608  # int64: 1.5 MiB per array
ROUND_TIMEOUT_S = 20.0  # a result not ready this long after its round was submitted is hung
# Counting actors, 1 CPU each, on nodes 2-5 (8 CPUs): with two of those nodes
# down, the survivors' CPUs are just enough for them all.
ACTORS = 4
PROBE_TIMEOUT_S = 30.0  # a recovery probe (write, task on a restarted node) not done by then is hung
HEALTHY_TIMEOUT_S = 45.0
SLOW_S = 5.0  # a recovery slower than this is described in the report
CHAOS_S = 100.0  # the test's chaos phase; the whole test stays under 4 minutes
STORE_MIB = int(os.environ.get("RAYNODE_CHAOS_STORE_MIB", "0")) or None  # each node's object store


def node_resources(i):
    """Custom resources of member i: every node but the driver's offers
    "chaos" (the actors need it, so they live on nodes that get killed) and
    each its own "node<k>" (k from 1), for probes that must run there."""
    if i == DRIVER_NODE:
        return {f"node{i + 1}": 1}
    return {"chaos": 4, f"node{i + 1}": 1}


def mono():
    """CLOCK_MONOTONIC: the same clock in the controller and the driver."""
    return time.monotonic()


# ---------------------------------------------------------------------------
# The driver: `python tests/test_chaos.py --driver`, connected to its node
# through RAYNODE_ADDRESS. Reads the controller's messages (JSON lines) on
# stdin, prints "READY" once its actors answer, and its summary (JSON) as its
# last line of stdout. Progress goes to stderr.
# ---------------------------------------------------------------------------


def driver_main(argv):
    p = argparse.ArgumentParser(prog="test_chaos.py --driver")
    p.add_argument("--driver", action="store_true")
    p.add_argument("--seconds", type=float, default=600.0, help="hard limit on the driver's life")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--round-timeout", type=float, default=ROUND_TIMEOUT_S)
    p.add_argument("--probe-timeout", type=float, default=PROBE_TIMEOUT_S)
    p.add_argument("--array-elems", type=int, default=ARRAY_ELEMS)
    p.add_argument("--tasks", type=int, default=12, help="sleeping tasks per round")
    p.add_argument("--pipelines", type=int, default=3, help="make -> scale -> digest chains per round")
    p.add_argument("--leaves", type=int, default=8, help="arrays summed by the tree reduce")
    p.add_argument("--actors", type=int, default=ACTORS)
    p.add_argument("--actor-calls", type=int, default=4, help="calls per actor per round")
    p.add_argument("--node-names", help="JSON {node id: name}, for the report")
    p.add_argument("--exec-log", help="file every run of a sleeping task appends a line to (all nodes share "
                   "the machine's file system): which runs a kill cut short")
    opts = p.parse_args(argv)
    return Driver(opts).main()


class Item:
    """One result the driver waits for and checks."""

    __slots__ = ("ref", "kind", "label", "check", "t_sub", "actor", "k")

    def __init__(self, ref, kind, label, check, t_sub, actor=None, k=None):
        self.ref, self.kind, self.label, self.check, self.t_sub = ref, kind, label, check, t_sub
        self.actor, self.k = actor, k


class Driver:
    def __init__(self, opts):
        self.opts = opts
        self.t0 = mono()
        self.lock = threading.Lock()
        self.counts = {"ok": 0, "wrong": 0, "lost": 0, "hung": 0}
        self.by_kind = {}
        self.errors = {}  # exception type -> count
        self.problems = []  # the first wrong/lost/hung results, described
        self.stop = threading.Event()
        self.beat = mono()
        self.rounds = 0
        self.events = []  # kills the controller reported
        self.task_done = []  # (t, i, node) of every checked "work" task
        self.task_nodes = {}  # node id -> "work" results it gave
        self.actor_log = {}  # actor index -> [(k, n, incarnation, node, t)]
        self.stuck = set()  # actors with a hung call: no more calls to them
        self.recovery = {"leader_kill_to_write_s": [], "two_down_to_write_s": [], "restart_to_task_s": []}
        self.probe_threads = []
        self.fatal = None
        self.rerun_tasks = 0
        self.slow = []
        self.node_names = json.loads(opts.node_names) if opts.node_names else {}

    def log(self, *parts):
        print(f"[driver {mono() - self.t0:7.2f}]", *parts, file=sys.stderr, flush=True)

    # Bookkeeping

    def record(self, outcome, kind, label, detail=None):
        with self.lock:
            self.counts[outcome] += 1
            k = self.by_kind.setdefault(kind, {"ok": 0, "wrong": 0, "lost": 0, "hung": 0})
            k[outcome] += 1
            if outcome != "ok":
                if len(self.problems) < 30:
                    self.problems.append({"outcome": outcome, "kind": kind, "what": label,
                                          "at_s": round(mono() - self.t0, 2), "detail": str(detail)[:600]})
        if outcome != "ok":
            self.log(f"{outcome.upper()}: {kind} {label}: {str(detail)[:300]}")

    def error(self, e):
        name = type(e).__name__
        with self.lock:
            self.errors[name] = self.errors.get(name, 0) + 1

    def summary(self):
        with self.lock:
            recovery = dict(self.recovery, **self.kill_recovery())
            out = dict(self.counts)
            out.update({
                "rounds": self.rounds,
                "by_kind": self.by_kind,
                "errors": self.errors,
                "problems": self.problems,
                "rerun_tasks": self.rerun_tasks,
                "slow_recoveries": self.slow[:30],
                "task_nodes": self.task_nodes,
                "actors": {str(a): {"calls": len(log), "incarnations": len({e[2] for e in log}),
                                    "stuck": a in self.stuck}
                           for a, log in sorted(self.actor_log.items())},
                "kills_seen": len(self.events),
                "recovery": recovery,
                "fatal": self.fatal,
                "elapsed_s": round(mono() - self.t0, 2),
            })
        return out

    def runs_cut_short(self):
        """{task i: [(node, start)]} of the sleeping tasks (whose result came
        back) that ran more than once, from the exec log."""
        if not self.opts.exec_log:
            return {}
        delivered = {i for _, i, _ in self.task_done}
        runs = {}
        try:
            with open(self.opts.exec_log) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3:
                        runs.setdefault(int(parts[0]), []).append((parts[1], float(parts[2])))
        except OSError:
            return {}
        return {i: rs for i, rs in runs.items() if i in delivered and len(rs) > 1}

    def kill_recovery(self):
        """Per kill the controller reported: the time to the next completed
        task; to the last result of the tasks that were running on a killed
        node at the kill (their run there was cut short, so they ran again
        elsewhere); and for each actor that lived on a killed node, to its
        first call answered by a new incarnation."""
        next_task, rerun, actors = [], [], []
        self.slow = []  # recoveries over SLOW_S, described for the report
        kills = sorted(self.events, key=lambda e: e["t"])
        done = sorted(self.task_done)
        done_at = {i: t for t, i, _ in done}
        cut = self.runs_cut_short()
        self.rerun_tasks = len(cut)
        for ev in kills:
            t = ev["t"]
            dead = set(ev.get("nodes", []))
            after = [d for d, _, _ in done if d > t]
            if after:
                next_task.append(round(after[0] - t, 3))
            hit = [i for i, rs in cut.items() if any(node in dead and start < t for node, start in rs)
                   and done_at.get(i, 0) > t]
            if hit:
                rerun.append(round(max(done_at[i] for i in hit) - t, 3))
                for i in hit:
                    if done_at[i] - t > SLOW_S:
                        self.slow.append(
                            f"work({i}) cut short by the kill of {'+'.join(ev.get('names', []))} at "
                            f"{t - self.t0:.2f} s: done {done_at[i] - t:.2f} s after it; runs: "
                            + ", ".join(f"{self.name(n)} at {s - self.t0:.2f} s" for n, s in sorted(cut[i], key=lambda r: r[1])))
            for a, log in self.actor_log.items():
                by_time = sorted(log, key=lambda e: e[4])
                before = [e for e in by_time if e[4] <= t]
                if not before or before[-1][3] not in dead:
                    continue
                inc = before[-1][2]
                back = [e for e in by_time if e[4] > t and e[2] != inc]
                if back:
                    actors.append(round(back[0][4] - t, 3))
                    if back[0][4] - t > SLOW_S:
                        self.slow.append(
                            f"Counter{a} on {self.name(before[-1][3])}, killed with "
                            f"{'+'.join(ev.get('names', []))} at {t - self.t0:.2f} s: answered again "
                            f"{back[0][4] - t:.2f} s later (call {back[0][0]}), from {self.name(back[0][3])}")
        return {"kill_to_next_task_s": next_task, "kill_to_rerun_done_s": rerun,
                "kill_to_actor_back_s": actors}

    # The controller's messages

    def read_commands(self):
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                self.log(f"bad message {line!r}")
                continue
            op = msg.get("op")
            if op == "stop":
                break
            if op == "kill":
                with self.lock:
                    self.events.append(msg)
                self.log(f"controller killed {msg.get('names')}{' (leader)' if msg.get('leader') else ''}")
            elif op in ("write_probe", "node_probe"):
                fn = self.write_probe if op == "write_probe" else self.node_probe
                t = threading.Thread(target=self.guard, args=(fn, msg), daemon=True)
                t.start()
                self.probe_threads.append(t)
        self.stop.set()  # "stop", or stdin closed: the controller is gone

    def guard(self, fn, *args):
        try:
            fn(*args)
        except Exception:  # a bug of the probe itself: reported, not hidden
            self.record("lost", "probe", fn.__name__, traceback.format_exc())

    def bounded(self, fn, seconds):
        """fn() in a thread: ("ok", value), ("error", exc) or ("hung", None)."""
        box = {}

        def run():
            try:
                box["v"] = fn()
            except BaseException as e:  # noqa: BLE001 - handed back
                box["e"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(max(0.0, seconds))
        if t.is_alive():
            return "hung", None
        if "e" in box:
            return "error", box["e"]
        return "ok", box.get("v")

    def write_probe(self, msg):
        """After a leader kill: the time until a control-state write (a named
        actor's creation) succeeds. A failed attempt (no leader yet, no
        quorum) is tried again with a fresh name until the probe timeout."""
        ray = self.ray
        t0 = msg["t"]
        deadline = t0 + self.opts.probe_timeout
        label = f"named actor after leader kill #{msg.get('n')}"
        attempt, last = 0, None
        while True:
            left = deadline - mono()
            if left <= 0:
                self.record("hung", "probe-write", label, f"no write succeeded within {self.opts.probe_timeout} s"
                            f" of the kill ({attempt} attempts, last error: {last!r})")
                return
            attempt += 1
            name = f"chaos-write-{msg.get('n')}-{attempt}-{uuid.uuid4().hex[:6]}"
            status, value = self.bounded(lambda: self.Probe.options(name=name).remote(), left)
            if status == "ok":
                took = mono() - t0
                with self.lock:
                    self.recovery.setdefault(msg.get("figure", "leader_kill_to_write_s"), []).append(round(took, 3))
                self.record("ok", "probe-write", label)
                self.log(f"write probe: named actor created {took:.2f} s after the leader kill "
                         f"({attempt} attempts)")
                self.bounded(lambda: ray.kill(value), 10)
                return
            if status == "hung":
                self.record("hung", "probe-write", label, f"creating {name} did not return within {left:.0f} s"
                            f" (last error: {last!r})")
                return
            last = value
            self.log(f"write probe attempt {attempt}: {type(value).__name__}: {value}")
            time.sleep(0.2)

    def node_probe(self, msg):
        """After a restart: the time from launching the node until a task
        needing its own resource ("node<k>") is done there."""
        ray = self.ray
        t0 = msg["t"]
        label = f"task on restarted {msg['name']}"
        ref = self.where.options(resources={msg["resource"]: 1}).remote()
        try:
            got = ray.get(ref, timeout=max(1.0, t0 + self.opts.probe_timeout - mono()))
        except self.rex.GetTimeoutError:
            self.record("hung", "probe-node", label, f"not done within {self.opts.probe_timeout} s of the restart")
            return
        except Exception as e:  # noqa: BLE001
            self.error(e)
            self.record("lost", "probe-node", label, f"{type(e).__name__}: {e}")
            return
        took = mono() - t0
        if str(got).lower() != msg["node_id"]:
            self.record("wrong", "probe-node", label, f"ran on {got}, expected {msg['node_id']}")
            return
        with self.lock:
            self.recovery["restart_to_task_s"].append(round(took, 3))
        self.record("ok", "probe-node", label)
        self.log(f"node probe: {msg['name']} ran a task {took:.2f} s after its restart began")

    # Watchdog: a call that does not come back (a get or wait ignoring its
    # timeout, a submit that blocks) is a hang; report and exit.

    def watchdog(self):
        limit = self.opts.round_timeout + 30.0
        while True:
            time.sleep(1.0)
            if mono() - self.beat > limit:
                frames = sys._current_frames()
                stacks = "".join(f"--- thread {tid}:\n" + "".join(traceback.format_stack(f))
                                 for tid, f in frames.items())
                self.record("hung", "driver", "main loop", f"no progress for {limit:.0f} s")
                self.fatal = f"watchdog: no progress for {limit:.0f} s\n{stacks}"
                self.log(self.fatal)
                self.emit()
                os._exit(3)

    def emit(self):
        sys.stdout.write(json.dumps(self.summary()) + "\n")
        sys.stdout.flush()

    # The workload

    def main(self):
        import numpy as np
        import raynode as ray
        from raynode import exceptions as rex

        self.ray, self.np, self.rex = ray, np, rex
        threading.Thread(target=self.watchdog, daemon=True).start()
        ray.init()
        opts = self.opts
        n_elems = opts.array_elems
        self.rng = random.Random(opts.seed)

        def array_for(seed):
            return np.arange(n_elems, dtype=np.int64) * (seed % 1000 + 1) + seed

        def here():
            ctx = ray.get_runtime_context()
            return str(ctx.get_node_id()).lower(), bool(ctx.was_current_actor_reconstructed)

        exec_log = opts.exec_log

        @ray.remote
        def work(i, ms):
            node, retried = here()
            if exec_log:
                fd = os.open(exec_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, f"{i} {node} {time.monotonic()}\n".encode())
                finally:
                    os.close(fd)
            time.sleep(ms / 1000.0)
            return {"i": i, "v": i * i + ms, "node": node, "retried": retried}

        @ray.remote
        def make(seed):
            return array_for(seed)

        @ray.remote
        def scale(a, k):
            return a * k

        @ray.remote
        def add(a, b):
            return a + b

        @ray.remote
        def digest(a):
            node, retried = here()
            return {"sum": int(a.sum()), "first": int(a[0]), "last": int(a[-1]), "nbytes": int(a.nbytes),
                    "node": node, "retried": retried}

        @ray.remote(num_cpus=0)
        def where():
            return here()[0]

        @ray.remote(num_cpus=1, resources={"chaos": 1}, max_restarts=-1, max_task_retries=-1)
        class Counter:
            def __init__(self):
                self.n = 0
                self.incarnation = uuid.uuid4().hex
                self.node = here()[0]

            def inc(self, k, arr=None):
                self.n += 1
                time.sleep(0.01)
                out = {"k": k, "n": self.n, "inc": self.incarnation, "node": self.node}
                if arr is not None:
                    out["sum"] = int(arr.sum())
                return out

            def count(self):
                return {"n": self.n, "inc": self.incarnation, "node": self.node}

        @ray.remote(num_cpus=0)
        class Probe:
            def ping(self):
                return 1

        self.where, self.Probe, self.array_for = where, Probe, array_for
        self.fns = dict(work=work, make=make, scale=scale, add=add, digest=digest)

        # Warm-up: every actor answers before the controller starts.
        self.actors = [Counter.remote() for _ in range(opts.actors)]
        self.next_k = [0] * opts.actors
        try:
            first = ray.get([a.count.remote() for a in self.actors], timeout=60)
            ray.get([work.remote(-1, 1) for _ in range(2 * NODES)], timeout=60)
        except Exception as e:  # noqa: BLE001
            self.fatal = f"warm-up failed: {type(e).__name__}: {e}"
            self.log(self.fatal)
            self.emit()
            sys.stdout.flush()
            os._exit(2)
        for a, c in enumerate(first):
            self.actor_log[a] = [(-1, c["n"], c["inc"], c["node"], mono())]
        self.log(f"actors on {[c['node'][:8] for c in first]}")
        print("READY", flush=True)
        threading.Thread(target=self.read_commands, daemon=True).start()

        hard_end = self.t0 + opts.seconds
        try:
            while not self.stop.is_set() and mono() < hard_end:
                self.beat = mono()
                items = self.submit_round(self.rounds)
                self.collect(items, mono() + opts.round_timeout)
                self.rounds += 1
                if self.rounds % 10 == 0:
                    self.log(f"round {self.rounds}: {self.counts}")
        except Exception as e:  # noqa: BLE001 - the driver itself failed (its node, its connection)
            self.fatal = f"driver loop: {type(e).__name__}: {e}\n{traceback.format_exc()}"
            self.log(self.fatal)
        # Probes started before the stop end within their own timeout.
        for t in list(self.probe_threads):
            self.beat = mono()
            t.join(self.opts.probe_timeout + 2)
        self.beat = mono()
        if self.fatal is None:
            self.final_actor_check()
        self.check_actor_logs()
        self.log(f"done: {self.counts}")
        self.emit()
        os._exit(0)

    def submit_round(self, r):
        """Submits one round; returns its items."""
        ray, opts, rng, array_for = self.ray, self.opts, self.rng, self.array_for
        f = self.fns
        t = mono()
        items = []
        base = r * 1000
        for j in range(opts.tasks):
            i, ms = base + j, rng.randint(20, 100)
            items.append(Item(f["work"].remote(i, ms), "task", f"work({i}, {ms})", self.check_task(i, ms), t, k=i))
        pipes = []
        for j in range(opts.pipelines):
            s = base + 100 + j
            a = f["make"].remote(s)
            b = f["scale"].remote(a, 3)
            want = array_for(s) * 3
            items.append(Item(f["digest"].remote(b), "pipeline", f"digest(scale(make({s}), 3))",
                              self.check_digest(want), t))
            if j == 0:
                items.append(Item(b, "array", f"scale(make({s}), 3)", self.check_array(want), t))
            pipes.append((a, s))
        s = base + 200
        put = ray.put(array_for(s))
        items.append(Item(f["digest"].remote(put), "put", f"digest(put({s}))", self.check_digest(array_for(s)), t))
        seeds = [base + 300 + j for j in range(opts.leaves)]
        level = [f["make"].remote(s) for s in seeds]
        while len(level) > 1:
            level = [f["add"].remote(level[k], level[k + 1]) if k + 1 < len(level) else level[k]
                     for k in range(0, len(level), 2)]
        want = sum(array_for(s) for s in seeds)
        items.append(Item(level[0], "reduce", f"tree sum of make({seeds[0]}..{seeds[-1]})", self.check_array(want), t))
        for a, actor in enumerate(self.actors):
            if a in self.stuck:
                continue
            for c in range(opts.actor_calls):
                k = self.next_k[a]
                self.next_k[a] += 1
                if c == opts.actor_calls - 1 and pipes:
                    arr, s = pipes[a % len(pipes)]
                    ref, want_sum = actor.inc.remote(k, arr), int(array_for(s).sum())
                else:
                    ref, want_sum = actor.inc.remote(k), None
                items.append(Item(ref, "actor", f"Counter{a}.inc({k})", self.check_actor(k, want_sum), t, a, k))
        return items

    def collect(self, items, deadline):
        """Waits for every item until the deadline; checks and records each."""
        ray, rex = self.ray, self.rex
        pending = {it.ref: it for it in items}
        while pending:
            left = deadline - mono()
            if left <= 0:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=min(left, 1.0))
            self.beat = mono()
            for ref in ready:
                it = pending.pop(ref)
                try:
                    value = ray.get(ref, timeout=max(5.0, deadline - mono()))
                except rex.GetTimeoutError:
                    self.record("hung", it.kind, it.label, "ready in wait, but get timed out")
                    self.mark_stuck(it)
                    continue
                except Exception as e:  # noqa: BLE001 - any error instead of a value is a lost result
                    self.error(e)
                    self.record("lost", it.kind, it.label, f"{type(e).__name__}: {e}")
                    continue
                finally:
                    self.beat = mono()
                done = mono()
                try:
                    why = it.check(value)
                except Exception as e:  # noqa: BLE001 - a value of the wrong shape
                    why = f"checking raised {type(e).__name__}: {e}"
                if why:
                    self.record("wrong", it.kind, it.label, why)
                    continue
                self.record("ok", it.kind, it.label)
                if it.kind == "task":
                    with self.lock:
                        self.task_done.append((done, value["i"], value["node"]))
                        self.task_nodes[value["node"]] = self.task_nodes.get(value["node"], 0) + 1
                elif it.kind == "actor":
                    with self.lock:
                        self.actor_log[it.actor].append((it.k, value["n"], value["inc"], value["node"], done))
        for it in pending.values():
            self.record("hung", it.kind, it.label,
                        f"not ready {self.opts.round_timeout:.0f} s after its round was submitted; "
                        + self.whereabouts(it))
            self.mark_stuck(it)

    def name(self, node):
        return self.node_names.get(node, node[:8])

    def whereabouts(self, it):
        """What the driver knows of where a hung item ran, for the report."""
        at = lambda t: f"{t - self.t0:.2f} s"  # noqa: E731
        kills = ", ".join(f"{'+'.join(e.get('names', []))} at {at(e['t'])}" for e in self.events) or "none"
        if it.kind == "task" and self.opts.exec_log:
            runs = []
            try:
                with open(self.opts.exec_log) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) == 3 and int(parts[0]) == it.k:
                            runs.append(f"{self.name(parts[1])} at {at(float(parts[2]))}")
            except OSError:
                pass
            return f"submitted at {at(it.t_sub)}, started on: {', '.join(runs) or 'no node'}; kills: {kills}"
        if it.kind == "actor":
            log = sorted(self.actor_log.get(it.actor, []), key=lambda e: e[4])
            last = (f"its last answer (call {log[-1][0]}) came from incarnation {log[-1][2][:8]} on "
                    f"{self.name(log[-1][3])} at {at(log[-1][4])}") if log else "it never answered"
            return f"submitted at {at(it.t_sub)}; {last}; kills: {kills}"
        return f"submitted at {at(it.t_sub)}; kills: {kills}"

    def mark_stuck(self, it):
        if it.kind == "actor" and it.actor not in self.stuck:
            self.stuck.add(it.actor)
            self.log(f"Counter{it.actor} has a hung call: no more calls to it")

    # Checks: each returns None if the value is right, else why not.

    def check_task(self, i, ms):
        def check(v):
            if v.get("i") != i or v.get("v") != i * i + ms:
                return f"got {v!r}, expected i={i} v={i * i + ms}"
            return None
        return check

    def check_digest(self, want):
        exp = {"sum": int(want.sum()), "first": int(want[0]), "last": int(want[-1]), "nbytes": int(want.nbytes)}

        def check(v):
            got = {k: v.get(k) for k in exp}
            return None if got == exp else f"got {got}, expected {exp}"
        return check

    def check_array(self, want):
        np = self.np

        def check(v):
            if not isinstance(v, np.ndarray) or v.shape != want.shape or v.dtype != want.dtype:
                return f"got {type(v).__name__} {getattr(v, 'shape', None)} {getattr(v, 'dtype', None)}"
            if not np.array_equal(v, want):
                bad = np.flatnonzero(v != want)
                return f"{bad.size} elements differ, first at {bad[0]}: {v[bad[0]]} != {want[bad[0]]}"
            return None
        return check

    def check_actor(self, k, want_sum):
        def check(v):
            if v.get("k") != k:
                return f"answered call {v.get('k')} for call {k}: {v!r}"
            if not isinstance(v.get("n"), int) or v["n"] < 1:
                return f"count {v.get('n')!r} after a call"
            if want_sum is not None and v.get("sum") != want_sum:
                return f"array argument sums to {v.get('sum')}, expected {want_sum}"
            return None
        return check

    def check_actor_logs(self):
        """Across calls of one actor, in call order: within one incarnation
        the count strictly grows (calls run in order, each once there); an
        incarnation never answers again once a later one has (no two live
        copies). A call may have run before on an incarnation that died,
        so a new incarnation's counts need not start at 1."""
        for a, log in sorted(self.actor_log.items()):
            seen_incs, prev = [], None
            for k, n, inc, node, _ in sorted(log, key=lambda e: e[0]):
                if prev is not None and inc == prev[2]:
                    if n <= prev[1]:
                        self.flag_wrong(f"Counter{a}.inc({k})", f"count {n} after {prev[1]} (call {prev[0]}) "
                                        f"in the same incarnation {inc[:8]}")
                elif inc in seen_incs:
                    self.flag_wrong(f"Counter{a}.inc({k})", f"incarnation {inc[:8]} answered again after "
                                    f"{prev[2][:8]} had answered call {prev[0]}")
                if inc not in seen_incs:
                    seen_incs.append(inc)
                prev = (k, n, inc)

    def flag_wrong(self, label, why):
        """A result that passed its own check but breaks the actor's sequence."""
        with self.lock:
            self.counts["ok"] -= 1
            self.by_kind["actor"]["ok"] -= 1
        self.record("wrong", "actor", label, why)

    def final_actor_check(self):
        """Each actor's count now: the same incarnation as its last call
        answered must hold exactly that call's count."""
        ray = self.ray
        for a, actor in enumerate(self.actors):
            if a in self.stuck:
                continue
            try:
                c = ray.get(actor.count.remote(), timeout=10)
            except self.rex.GetTimeoutError:
                self.record("hung", "actor", f"Counter{a}.count()", "final count not ready")
                continue
            except Exception as e:  # noqa: BLE001
                self.error(e)
                self.record("lost", "actor", f"Counter{a}.count()", f"{type(e).__name__}: {e}")
                continue
            last = max(self.actor_log[a], key=lambda e: e[0])
            if c["inc"] == last[2] and c["n"] != last[1]:
                self.record("wrong", "actor", f"Counter{a}.count()",
                            f"count {c['n']}, but call {last[0]} of the same incarnation returned {last[1]}")
            else:
                self.record("ok", "actor", f"Counter{a}.count()")


# ---------------------------------------------------------------------------
# The controller: the cluster, the kills and restarts, the driver process.
# ---------------------------------------------------------------------------


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
        cmd = [self.cluster.python, os.path.abspath(__file__), "--driver", "--seed", str(self.seed),
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


# ---------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------


if pytest is not None:
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


if __name__ == "__main__":
    if "--driver" in sys.argv[1:]:
        sys.exit(driver_main(sys.argv[1:]))
    sys.exit("usage: python tests/test_chaos.py --driver ... (run by the chaos test); "
             "the test: pytest tests/test_chaos.py; the long version: bench/chaos.py")
