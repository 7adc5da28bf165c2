"""Benchmark workloads, shared by every system under test.

This module is run as a script in a fresh subprocess, once per system and per
workload group, by ``bench/run.py``.  The system is a parameter: the module is
imported with ``importlib.import_module(system)``, so the very same code drives
``ray`` and ``raynode``.

Metric names follow ``ray microbenchmark`` (``ray/_private/ray_perf.py``) so
that figures can be compared with Ray's published ones.

Protocol with the driver: every line this script prints that starts with
``@@BENCH `` carries one JSON object:

* ``{"event": "meta", ...}``      versions and interpreter of this subprocess
* ``{"event": "start", "metric": name}`` a workload begins (used for timeouts)
* ``{"event": "record", ...}``    the result of one workload

Anything else on stdout/stderr (log lines of the system under test) is ignored
by the driver.

The module itself imports only the standard library at import time, so the
driver can read the workload registry (``GROUPS``) without importing any
system.
"""

import argparse
import importlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time

PREFIX = "@@BENCH "

MiB = 1024 * 1024

# Parameters per mode.  "full" follows ray_perf.py where the 2-core machine
# allows it; "quick" is the routine mode (whole run in under 3 minutes);
# "smoke" only checks that the harness works (tiny sizes, no meaningful
# figures).
MODES = {
    "full": dict(
        warmup_s=1.0, reps=4, rep_s=2.0, pause_s=0.5,
        startup_reps=5, settle_s=5.0,
        batch=1000,                 # tasks / actor calls per batch
        contained_refs=10000,       # refs inside one object
        wait_refs=1000,
        multi_put_small=(4, 100),   # (client tasks, puts each)
        put_bytes=800 * MiB,        # ray_perf.py: np.zeros(100M, int64)
        multi_put=(4, 10, 80 * MiB),  # (client tasks, puts each, bytes each)
        multi_tasks=(4, 10000),     # (client actors, tasks each)
        one_to_n=5000,              # calls per server actor
        n_to_n=(4, 5000),           # (client tasks, calls each)
        n_to_n_arg=1000,            # calls per client
        # multi-node (bench/multinode.py)
        transfer_bytes=1024 * MiB,  # object moved between nodes; loopback TCP; rebuilt
        locality=(20, 50 * MiB),    # (arrays, bytes each) mapped and reduced on node 3
        sleep_batch=600,            # 10 ms tasks per batch
        remote_put_bytes=100 * MiB,  # remote driver put gigabytes
        cluster_rounds=4,           # fresh clusters for join / leader kill
        ray_client=True,            # measure Ray Client (starts a Ray head)
    ),
    "quick": dict(
        warmup_s=0.15, reps=3, rep_s=0.3, pause_s=0.0,
        startup_reps=3, settle_s=1.5,
        batch=1000,
        contained_refs=10000,
        wait_refs=1000,
        multi_put_small=(4, 100),
        put_bytes=100 * MiB,
        multi_put=(4, 2, 80 * MiB),
        multi_tasks=(4, 1000),
        one_to_n=1000,
        n_to_n=(4, 1000),
        n_to_n_arg=500,
        transfer_bytes=256 * MiB,
        locality=(10, 50 * MiB),
        sleep_batch=120,
        remote_put_bytes=100 * MiB,
        cluster_rounds=2,
        ray_client=False,
    ),
    "smoke": dict(
        warmup_s=0.02, reps=2, rep_s=0.05, pause_s=0.0,
        startup_reps=1, settle_s=0.5,
        batch=20,
        contained_refs=100,
        wait_refs=20,
        multi_put_small=(2, 5),
        put_bytes=1 * MiB,
        multi_put=(2, 2, 1 * MiB),
        multi_tasks=(2, 20),
        one_to_n=20,
        n_to_n=(2, 20),
        n_to_n_arg=20,
        transfer_bytes=8 * MiB,
        locality=(2, 1 * MiB),
        sleep_batch=12,
        remote_put_bytes=1 * MiB,
        cluster_rounds=1,
        ray_client=False,
    ),
}


# Seconds a workload may run without a result before bench/run.py kills it.
DEFAULT_TIMEOUT = {"smoke": 60, "quick": 90, "full": 300}


def cpu_count():
    return os.cpu_count() or 1


def n_servers():
    """Server actors for the 1:n / n:n workloads.

    ray_perf.py uses cpu_count() // 2; on small machines that is 1, which
    would make "n" meaningless, so we use at least 2 (and at most 4).
    """
    return max(2, min(4, cpu_count() // 2))


def emit(obj):
    sys.stdout.write(PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------

def timeit(fn, multiplier, p):
    """Rate of ``fn`` (calls/s times ``multiplier``), like Ray's timeit.

    Warm up for ``warmup_s`` (at least one call), then ``reps`` repetitions of
    at least ``rep_s`` seconds each; returns the per-repetition rates.
    """
    start = time.perf_counter()
    count = 0
    while True:
        fn()
        count += 1
        if time.perf_counter() - start >= p["warmup_s"]:
            break
    step = count // 10 + 1
    rates = []
    for _ in range(p["reps"]):
        start = time.perf_counter()
        count = 0
        while time.perf_counter() - start < p["rep_s"]:
            for _ in range(step):
                fn()
            count += step
        rates.append(multiplier * count / (time.perf_counter() - start))
    return rates


# --------------------------------------------------------------------------
# Remote definitions (built per system, so closures capture that module)
# --------------------------------------------------------------------------

class Defs:
    def __init__(self, ray):
        self.ray = ray

        @ray.remote
        def small_value():
            return b"ok"

        @ray.remote
        def small_value_batch(n):
            ray.get([small_value.remote() for _ in range(n)])
            return 0

        @ray.remote
        def create_object_containing_ref(n):
            return [ray.put(1) for _ in range(n)]

        @ray.remote
        def do_put_small(n):
            for _ in range(n):
                ray.put(0)

        @ray.remote
        def do_put(n, nbytes):
            import numpy as np
            for _ in range(n):
                ray.put(np.zeros(nbytes // 8, dtype=np.int64))

        @ray.remote(num_cpus=0)
        class Actor:
            def small_value(self):
                return b"ok"

            def small_value_arg(self, x):
                return b"ok"

            def small_value_batch(self, n):
                ray.get([small_value.remote() for _ in range(n)])

        @ray.remote
        class AsyncActor:
            async def small_value(self):
                return b"ok"

            async def small_value_with_arg(self, x):
                return b"ok"

        @ray.remote(num_cpus=0)
        class Client:
            def __init__(self, servers):
                if not isinstance(servers, list):
                    servers = [servers]
                self.servers = servers

            def small_value_batch(self, n):
                results = []
                for s in self.servers:
                    results.extend([s.small_value.remote() for _ in range(n)])
                ray.get(results)

            def small_value_batch_arg(self, n):
                x = ray.put(0)
                results = []
                for s in self.servers:
                    results.extend(
                        [s.small_value_arg.remote(x) for _ in range(n)])
                ray.get(results)

        @ray.remote
        def stream_items(n):
            for _ in range(n):
                yield b"ok"

        @ray.remote
        def paced_items(n, pause):
            import time
            for _ in range(n):
                time.sleep(pause)
                yield time.time()

        @ray.remote
        def actor_work(actors, n):
            k = len(actors)
            ray.get([actors[i % k].small_value.remote() for i in range(n)])

        self.small_value = small_value
        self.small_value_batch = small_value_batch
        self.create_object_containing_ref = create_object_containing_ref
        self.do_put_small = do_put_small
        self.do_put = do_put
        self.Actor = Actor
        self.AsyncActor = AsyncActor
        self.Client = Client
        self.actor_work = actor_work
        self.stream_items = stream_items
        self.paced_items = paced_items


def kill_actors(ray, actors):
    """Stop actors a workload created, so the next one has the CPUs."""
    kill = getattr(ray, "kill", None)
    for a in actors:
        if kill is not None:
            try:
                kill(a)
            except Exception:
                pass


# --------------------------------------------------------------------------
# Workloads.  Each returns (rates list, unit) and cleans up after itself.
# Registry: GROUPS maps a group name to an ordered list of
# (metric name, function name, unit, higher_is_better).
# --------------------------------------------------------------------------

def w_get_calls(ray, d, p):
    value = ray.put(0)
    return timeit(lambda: ray.get(value), 1, p)


def w_put_calls(ray, d, p):
    return timeit(lambda: ray.put(0), 1, p)


def w_multi_put_calls(ray, d, p):
    clients, puts = p["multi_put_small"]

    def fn():
        ray.get([d.do_put_small.remote(puts) for _ in range(clients)])
    return timeit(fn, clients * puts, p)


def _numpy():
    try:
        import numpy as np
    except ImportError:
        raise RuntimeError("numpy is not installed in this Python")
    return np


def w_put_gigabytes(ray, d, p):
    np = _numpy()
    arr = np.zeros(p["put_bytes"] // 8, dtype=np.int64)
    return timeit(lambda: ray.put(arr), arr.nbytes / 1e9, p)


def w_multi_put_gigabytes(ray, d, p):
    _numpy()
    clients, puts, nbytes = p["multi_put"]

    def fn():
        ray.get([d.do_put.remote(puts, nbytes) for _ in range(clients)])
    return timeit(fn, clients * puts * nbytes / 1e9, p)


def w_get_containing_refs(ray, d, p):
    ref = d.create_object_containing_ref.remote(p["contained_refs"])
    ray.get(ref)  # created before timing, as in ray_perf.py's warm-up
    return timeit(lambda: ray.get(ref), 1, p)


def w_wait_refs(ray, d, p):
    n = p["wait_refs"]

    def fn():
        not_ready = [d.small_value.remote() for _ in range(n)]
        fetch_local = True
        for _ in range(n):
            _ready, not_ready = ray.wait(not_ready, fetch_local=fetch_local)
            fetch_local = False
    return timeit(fn, 1, p)


def w_wait_ready_refs(ray, d, p):
    """Repeated `ray.wait(refs, num_returns=len(refs))` over refs that are
    all ready: an answer the driver can know without asking (calls/s)."""
    n = p["wait_refs"]
    refs = [d.small_value.remote() for _ in range(n)]
    ray.get(refs)
    return timeit(lambda: ray.wait(refs, num_returns=n), 1, p)


def w_tasks_and_get_batch(ray, d, p):
    n = p["batch"]
    return timeit(
        lambda: ray.get([d.small_value.remote() for _ in range(n)]), 1, p)


def w_tasks_sync(ray, d, p):
    return timeit(lambda: ray.get(d.small_value.remote()), 1, p)


def w_tasks_async(ray, d, p):
    n = p["batch"]
    return timeit(
        lambda: ray.get([d.small_value.remote() for _ in range(n)]), n, p)


def w_multi_tasks_async(ray, d, p):
    m, n = p["multi_tasks"]
    actors = [d.Actor.remote() for _ in range(m)]
    try:
        return timeit(
            lambda: ray.get([a.small_value_batch.remote(n) for a in actors]),
            n * m, p)
    finally:
        kill_actors(ray, actors)


def w_actor_sync(ray, d, p):
    a = d.Actor.remote()
    try:
        return timeit(lambda: ray.get(a.small_value.remote()), 1, p)
    finally:
        kill_actors(ray, [a])


def w_actor_async(ray, d, p):
    n = p["batch"]
    a = d.Actor.remote()
    try:
        return timeit(
            lambda: ray.get([a.small_value.remote() for _ in range(n)]), n, p)
    finally:
        kill_actors(ray, [a])


def w_actor_concurrent(ray, d, p):
    n = p["batch"]
    a = d.Actor.options(max_concurrency=16).remote()
    try:
        return timeit(
            lambda: ray.get([a.small_value.remote() for _ in range(n)]), n, p)
    finally:
        kill_actors(ray, [a])


def w_one_to_n(ray, d, p):
    n = p["one_to_n"]
    servers = [d.Actor.remote() for _ in range(n_servers())]
    client = d.Client.remote(servers)
    try:
        return timeit(lambda: ray.get(client.small_value_batch.remote(n)),
                      n * len(servers), p)
    finally:
        kill_actors(ray, [client] + servers)


def w_n_to_n(ray, d, p):
    m, n = p["n_to_n"]
    servers = [d.Actor.remote() for _ in range(n_servers())]
    try:
        return timeit(
            lambda: ray.get([d.actor_work.remote(servers, n)
                             for _ in range(m)]),
            m * n, p)
    finally:
        kill_actors(ray, servers)


def w_n_to_n_arg(ray, d, p):
    n = p["n_to_n_arg"]
    servers = [d.Actor.remote() for _ in range(n_servers())]
    clients = [d.Client.remote(s) for s in servers]
    try:
        return timeit(
            lambda: ray.get([c.small_value_batch_arg.remote(n)
                             for c in clients]),
            n * len(clients), p)
    finally:
        kill_actors(ray, clients + servers)


def w_async_actor_sync(ray, d, p):
    a = d.AsyncActor.remote()
    try:
        return timeit(lambda: ray.get(a.small_value.remote()), 1, p)
    finally:
        kill_actors(ray, [a])


def w_async_actor_async(ray, d, p):
    n = p["batch"]
    a = d.AsyncActor.remote()
    try:
        return timeit(
            lambda: ray.get([a.small_value.remote() for _ in range(n)]), n, p)
    finally:
        kill_actors(ray, [a])


def w_generator_items(ray, d, p):
    n = p["batch"]
    return timeit(
        lambda: [ray.get(r) for r in d.stream_items.remote(n)], n, p)


# Items per run of the latency workload, and the pause before each.
LATENCY_ITEMS = 20
LATENCY_PAUSE_S = 0.005


def w_generator_latency(ray, d, p):
    """Mean ms from an item's yield (its value is the time) to the driver
    holding its value, over items yielded while the driver waits."""
    means = []
    ray.get(list(d.paced_items.remote(1, 0)))  # a warm worker
    for _ in range(p["reps"]):
        lags = []
        for ref in d.paced_items.remote(LATENCY_ITEMS, LATENCY_PAUSE_S):
            made = ray.get(ref)
            lags.append(time.time() - made)
        means.append(1000 * statistics.fmean(lags))
    return means


OPS = "ops/s"
GBS = "GB/s"

# (metric, function, unit, higher_is_better)
GROUPS = {
    "objects": [
        ("single client get calls", w_get_calls, OPS, True),
        ("single client put calls", w_put_calls, OPS, True),
        ("multi client put calls", w_multi_put_calls, OPS, True),
        ("single client put gigabytes", w_put_gigabytes, GBS, True),
        ("multi client put gigabytes", w_multi_put_gigabytes, GBS, True),
        ("single client get object containing 10k refs",
         w_get_containing_refs, OPS, True),
        ("single client wait 1k refs", w_wait_refs, OPS, True),
        ("single client wait on 1k ready refs", w_wait_ready_refs, OPS, True),
    ],
    "tasks": [
        ("single client tasks and get batch", w_tasks_and_get_batch, OPS,
         True),
        ("single client tasks sync", w_tasks_sync, OPS, True),
        ("single client tasks async", w_tasks_async, OPS, True),
        ("multi client tasks async", w_multi_tasks_async, OPS, True),
    ],
    "actors": [
        ("1:1 actor calls sync", w_actor_sync, OPS, True),
        ("1:1 actor calls async", w_actor_async, OPS, True),
        ("1:1 actor calls concurrent", w_actor_concurrent, OPS, True),
        ("1:n actor calls async", w_one_to_n, OPS, True),
        ("n:n actor calls async", w_n_to_n, OPS, True),
        ("n:n actor calls with arg async", w_n_to_n_arg, OPS, True),
        ("1:1 async-actor calls sync", w_async_actor_sync, OPS, True),
        ("1:1 async-actor calls async", w_async_actor_async, OPS, True),
    ],
    "generators": [
        ("generator items streamed", w_generator_items, OPS, True),
        ("generator item latency", w_generator_latency, "ms", False),
    ],
    # Special groups, each handled by its own function below.
    "startup": [
        ("init to first result", None, "s", False),
    ],
    "memory": [
        ("idle node RSS", None, "MiB", False),
        ("idle worker RSS", None, "MiB", False),
        ("worker processes after 10 quick tasks", None, "count", False),
    ],
    # Clusters of raynode nodes on loopback and remote drivers: run by
    # bench/multinode.py (Ray: only the remote driver, through Ray Client).
    "multinode": [
        ("1 GiB transfer between two nodes", None, GBS, True),
        ("loopback TCP bandwidth", None, GBS, True),
        ("tasks/s across a 3-node testnet", None, OPS, True),
        ("tasks/s across a 3-node testnet (10 ms tasks)", None, OPS, True),
        ("map and reduce on one node of three", None, "s", False),
        ("node kill to a lost result rebuilt and read", None, "s", False),
        ("join to first task on the new node", None, "s", False),
        ("leader kill to new leader", None, "s", False),
        ("leader kill to next committed write", None, "s", False),
        ("remote driver get calls", None, OPS, True),
        ("remote driver put calls", None, OPS, True),
        ("remote driver put gigabytes", None, GBS, True),
    ],
}


def registry():
    """Metric table for the driver: group -> [(metric, unit, higher)]."""
    return {g: [(m, u, h) for (m, _f, u, h) in ws] for g, ws in GROUPS.items()}


# --------------------------------------------------------------------------
# Init / records
# --------------------------------------------------------------------------

def init(ray, system, num_cpus=None):
    """``ray.init`` with the same arguments for every system.

    num_cpus defaults to the machine's core count.  The dashboard is off and
    logs are quiet; a system whose init does not take those keywords is
    called with num_cpus alone.
    """
    num_cpus = num_cpus or cpu_count()
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False,
                 logging_level=logging.ERROR, log_to_driver=False)
    except TypeError:
        ray.init(num_cpus=num_cpus)


def record(system, group, metric, unit, higher, values=None, status="ok",
           error=None):
    rec = {
        "event": "record", "system": system, "group": group,
        "metric": metric, "unit": unit, "higher_is_better": higher,
        "status": status, "mean": None, "std": None, "values": values or [],
        "error": error,
    }
    if values:
        rec["mean"] = statistics.fmean(values)
        rec["std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
    return rec


def meta(ray, system):
    info = {
        "event": "meta", "system": system,
        "version": getattr(ray, "__version__", "unknown"),
        "python": platform.python_version(),
        "executable": sys.executable,
    }
    try:
        import numpy
        info["numpy"] = numpy.__version__
    except ImportError:
        info["numpy"] = None
    return info


# --------------------------------------------------------------------------
# Process memory (psutil if present, else /proc)
# --------------------------------------------------------------------------

def _descendants_proc(root):
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # field 4 (ppid) comes after the ")" closing the command name
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for c in children.get(pid, []):
            out.append(c)
            todo.append(c)
    return out


def _rss_proc(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _cmdline_proc(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace").strip()


def child_processes():
    """[(pid, cmdline, rss bytes)] for every descendant of this process."""
    out = []
    try:
        import psutil
        for c in psutil.Process().children(recursive=True):
            try:
                out.append((c.pid, " ".join(c.cmdline()),
                            c.memory_info().rss))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return out
    except ImportError:
        pass
    for pid in _descendants_proc(os.getpid()):
        try:
            out.append((pid, _cmdline_proc(pid), _rss_proc(pid)))
        except OSError:
            pass
    return out


# A worker is recognised by its program name, never by its arguments (Ray's
# raylet carries the worker command line among its own arguments).
WORKER_SCRIPTS = ("default_worker.py", "raynode._worker", "raynode.worker",
                  "raynode-worker")


def is_worker(cmdline):
    tokens = cmdline.split()
    if not tokens:
        return False
    if tokens[0].startswith("ray::"):
        # Ray renames workers "ray::IDLE" / "ray::<task or actor>"; its node
        # agents are "ray::DashboardAgent", "ray::RuntimeEnvAgent".
        return not tokens[0].endswith("Agent")
    prog = os.path.basename(tokens[0])
    if any(m in prog for m in WORKER_SCRIPTS):
        return True
    if prog.startswith("python"):
        # "python [-u ...] [-m] <script or module>": the first non-option
        for t in tokens[1:]:
            if not t.startswith("-"):
                return any(m in t for m in WORKER_SCRIPTS)
    return False


# --------------------------------------------------------------------------
# Special groups
# --------------------------------------------------------------------------

def startup_probe(system):
    """Run in a fresh process: seconds from init() to the first result."""
    ray = importlib.import_module(system)

    t0 = time.perf_counter()
    init(ray, system)

    @ray.remote
    def f():
        return 1

    assert ray.get(f.remote()) == 1
    elapsed = time.perf_counter() - t0
    ray.shutdown()
    emit({"event": "probe", "seconds": elapsed})


def run_startup(system, p, group, skip):
    metric, _f, unit, higher = GROUPS[group][0]
    if metric in skip:
        return
    emit({"event": "start", "metric": metric})
    values, err = [], None
    for _ in range(p["startup_reps"]):
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--system", system,
             "--probe"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        got = [json.loads(l[len(PREFIX):]) for l in proc.stdout.splitlines()
               if l.startswith(PREFIX)]
        if proc.returncode != 0 or not got:
            err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            break
        values.append(got[0]["seconds"])
    if err:
        emit(record(system, group, metric, unit, higher, status="error",
                    error=err))
    else:
        emit(record(system, group, metric, unit, higher, values))


def run_memory(system, ray, p, group, skip):
    """A fresh init, then 10 quick tasks at once (as many workers as CPUs
    are needed); once settled, the node's RSS, an idle worker's, and how
    many worker processes were started."""
    (m_node, _f, unit, higher), (m_worker, _g, _u, _h), (m_count, _c, c_unit, _ch) = GROUPS[group]
    emit({"event": "start",
          "metric": next((m for m in (m_node, m_worker, m_count) if m not in skip), m_node)})
    init(ray, system)

    @ray.remote
    def f():
        return 1

    ray.get([f.remote() for _ in range(10)])
    time.sleep(p["settle_s"])
    procs = child_processes()
    nodes = [r for (_pid, cmd, r) in procs if not is_worker(cmd)]
    workers = sorted(r for (_pid, cmd, r) in procs if is_worker(cmd))
    detail = [{"pid": pid, "cmd": cmd[:120], "rss_mib": round(r / MiB, 1),
               "worker": is_worker(cmd)} for (pid, cmd, r) in procs]
    if m_node not in skip:
        if nodes:
            rec = record(system, group, m_node, unit, higher,
                         [sum(nodes) / MiB])
        else:
            rec = record(system, group, m_node, unit, higher, status="error",
                         error="no node process found among children")
        rec["processes"] = detail
        emit(rec)
    if m_worker not in skip:
        if workers:
            # one idle worker: the median one
            emit(record(system, group, m_worker, unit, higher,
                        [workers[len(workers) // 2] / MiB]))
        else:
            emit(record(system, group, m_worker, unit, higher,
                        status="error", error="no idle worker process found"))
    if m_count not in skip:
        # Idle workers above the pool's size stop only after a while (10 s
        # or more in both systems), so those alive now are those started.
        if workers:
            emit(record(system, group, m_count, c_unit, False, [float(len(workers))]))
        else:
            emit(record(system, group, m_count, c_unit, False, status="error",
                        error="no worker process found"))
    ray.shutdown()


def run_multinode(system, mode, timeout, skip):
    """The multinode group lives in bench/multinode.py (clusters on
    loopback, remote drivers); it reports through this module."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import multinode
    multinode.run(sys.modules[__name__], system, mode, timeout, skip)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def run_group(system, group, mode, skip, timeout):
    p = MODES[mode]
    if group == "startup":
        ray = importlib.import_module(system)
        emit(meta(ray, system))
        return run_startup(system, p, group, skip)
    if group == "multinode":
        return run_multinode(system, mode, timeout, skip)
    ray = importlib.import_module(system)
    emit(meta(ray, system))
    if group == "memory":
        return run_memory(system, ray, p, group, skip)

    todo = [w for w in GROUPS[group] if w[0] not in skip]
    if not todo:
        return
    init(ray, system)
    try:
        d = Defs(ray)
        for metric, fn, unit, higher in todo:
            emit({"event": "start", "metric": metric})
            if p["pause_s"]:
                time.sleep(p["pause_s"])
            try:
                values = fn(ray, d, p)
                emit(record(system, group, metric, unit, higher, values))
            except Exception as e:  # report and go on with the next one
                emit(record(system, group, metric, unit, higher,
                            status="error",
                            error="%s: %s" % (type(e).__name__, e)))
    finally:
        ray.shutdown()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--system", default="raynode")
    ap.add_argument("--group", choices=sorted(GROUPS))
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    ap.add_argument("--skip", default="[]",
                    help="JSON list of metric names not to run")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds the harness allows a workload (default: "
                         "bench/run.py's for the mode)")
    ap.add_argument("--probe", action="store_true",
                    help="internal: one init-to-first-result measurement")
    ap.add_argument("--list", action="store_true",
                    help="print the workload registry as JSON")
    a = ap.parse_args(argv)
    if a.list:
        print(json.dumps(registry(), indent=1))
        return
    if a.probe:
        return startup_probe(a.system)
    if not a.group:
        ap.error("--group is required")
    timeout = a.timeout or DEFAULT_TIMEOUT[a.mode]
    run_group(a.system, a.group, a.mode, set(json.loads(a.skip)), timeout)


if __name__ == "__main__":
    main()
