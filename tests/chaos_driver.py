"""The chaos driver: `python tests/chaos_driver.py --driver`, started by the
controller (`chaos_controller.Chaos`) and connected to node 1 through
RAYNODE_ADDRESS. It submits round after round of checked work (sleeping
tasks, numpy arrays made by tasks and passed on, a put array, a tree reduce,
calls to counting actors with max_restarts=-1), reads the controller's
messages (JSON lines) on stdin and runs the recovery probes they ask for,
prints "READY" once its actors answer, and its summary (JSON) as its last
line of stdout. Progress goes to stderr. Its books and checks are in
`chaos_results.py`.
"""

import argparse
import json
import os
import random
import sys
import threading
import time
import traceback
import uuid

from chaos_common import ACTORS, ARRAY_ELEMS, NODES, PROBE_TIMEOUT_S, ROUND_TIMEOUT_S, mono
from chaos_results import DriverResults


def driver_main(argv):
    p = argparse.ArgumentParser(prog="chaos_driver.py --driver")
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


class Driver(DriverResults):
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


if __name__ == "__main__":
    if "--driver" in sys.argv[1:]:
        sys.exit(driver_main(sys.argv[1:]))
    sys.exit("usage: python tests/chaos_driver.py --driver ... (run by the chaos test); "
             "the test: pytest tests/test_chaos.py; the long version: bench/chaos.py")
