"""Multi-node workloads: raynode clusters on loopback, and remote drivers.

``workloads/`` lists the metrics (group "multinode") and hands the group to
``run()`` here.  The workloads come in scenarios, each measuring one or more
metrics on clusters it starts and always stops:

* transfer      a 2-node cluster; a task on node 2 takes a large object put
                on node 1 (the node pulls it before the task runs)
* loopback      no cluster: the machine's TCP bandwidth over 127.0.0.1, the
                reference for the transfer figure
* spread        a 3-node cluster; one driver submits batches of tasks
* locality      a 3-node cluster; a driver on node 1 maps and reduces large
                arrays on node 3 (the bytes moved between nodes are counted)
* rebuild       per round, a 3-node cluster; the node holding a large result
                is killed and a task reads the result, made again by lineage
* join          per round, a 2-node cluster with a pending task only a third
                node can run; the third node is started and the task awaited
* leader kill   per round, a 3-node cluster; the Raft leader is killed and a
                named actor (a committed control-store write) is created
* remote driver a driver that reaches its node over TCP only; for Ray, the
                same workloads through Ray Client (``remote_driver.py``)

Ray is measured only by the remote driver scenario; every other scenario
reports n/a for Ray.  Clusters come from ``testnet/testnet.py`` (``Cluster``);
every wait is bounded by the workload timeout ``bench/run.py`` passes on.

Like ``workloads/``, this module imports only the standard library at
import time.
"""

import contextlib
import importlib
import os
import signal
import socket
import statistics
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MiB = 1024 * 1024
GiB = 1024 * MiB

TRANSFER = "1 GiB transfer between two nodes"
LOOPBACK = "loopback TCP bandwidth"
TASKS = "tasks/s across a 3-node testnet"
TASKS_10MS = "tasks/s across a 3-node testnet (10 ms tasks)"
LOCAL_REDUCE = "map and reduce on one node of three"
REBUILD = "node kill to a lost result rebuilt and read"
JOIN = "join to first task on the new node"
NEW_LEADER = "leader kill to new leader"
LEADER_WRITE = "leader kill to next committed write"
REMOTE_GET = "remote driver get calls"
REMOTE_PUT = "remote driver put calls"
REMOTE_PUT_GB = "remote driver put gigabytes"
REMOTE = (REMOTE_GET, REMOTE_PUT, REMOTE_PUT_GB)

# Seconds kept back from the workload timeout for tearing clusters down, so
# the harness never has to kill this process while nodes run.
TEARDOWN_RESERVE_S = 15.0


class BudgetExceeded(Exception):
    """A bounded wait ran past the workload's time budget."""


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self, what="the workload"):
        """Seconds left; raises BudgetExceeded when none are."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise BudgetExceeded("%s ran out of time" % what)
        return left


class Ctx:
    """What every scenario needs: the harness (workloads module), the mode
    and its parameters, the system under test and the time budget."""

    def __init__(self, wl, system, mode, timeout):
        self.wl = wl
        self.system = system
        self.mode = mode
        self.p = wl.MODES[mode]
        self.budget = max(20.0, timeout - TEARDOWN_RESERVE_S)
        self.entries = {m: (u, h) for (m, _f, u, h) in wl.GROUPS["multinode"]}
        self.recorded = set()

    def emit(self, event):
        if event.get("event") == "record":
            self.recorded.add(event["metric"])
        self.wl.emit(event)

    def start(self, metric):
        self.emit({"event": "start", "metric": metric})

    def ok(self, metric, values, **extra):
        unit, higher = self.entries[metric]
        rec = self.wl.record(self.system, "multinode", metric, unit, higher, values)
        rec.update(extra)
        self.emit(rec)

    def fail(self, metric, status, error, **extra):
        unit, higher = self.entries[metric]
        rec = self.wl.record(self.system, "multinode", metric, unit, higher, status=status, error=error)
        rec.update(extra)
        self.emit(rec)


def testnet_module():
    path = os.path.join(REPO, "testnet")
    if path not in sys.path:
        sys.path.insert(0, path)
    import testnet
    return testnet


def numpy_module():
    try:
        import numpy as np
    except ImportError:
        raise RuntimeError("numpy is not installed in this Python")
    return np


def wait_members(cluster, dl):
    """Until every member lists every member alive and one Raft leader (the
    voter count is left to the membership policy)."""
    want = {n.node_id for n in cluster.live()}
    why = "no status yet"
    while True:
        dl.left("waiting for the cluster (%s)" % why)
        why = None
        for node in cluster.live():
            try:
                view = cluster.status(node.index)
            except Exception as e:  # the node may still be starting
                why = "%s: %s" % (node.name, e)
                break
            alive = {str(e.get("NodeID", "")).lower() for e in view if e.get("Alive")}
            leaders = [e for e in view if e.get("Alive") and e.get("RaftRole") == "leader"]
            if alive != want or len(leaders) != 1:
                why = "%s sees %d of %d nodes and %d leaders" % (node.name, len(alive & want), len(want),
                                                               len(leaders))
                break
        if why is None:
            return
        cluster.check_alive()
        time.sleep(0.1)


def start_cluster(cluster, n, dl, **kwargs):
    cluster.start(n, timeout=min(30.0, dl.left()), **kwargs)
    wait_members(cluster, dl)


def bounded(fn, seconds, what):
    """fn() in a thread, waited for at most `seconds`; its result or its
    exception. A call that does not return in time raises BudgetExceeded (the
    thread is left behind; tearing the cluster down ends it)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise BudgetExceeded("%s did not return within %.0f s" % (what, seconds))
    if "error" in box:
        raise box["error"]
    return box.get("value")


@contextlib.contextmanager
def driver(ray, cluster, i):
    """This process as a driver of member i, over TCP, with the environment
    testnet gives its drivers (the cluster key, for the client token)."""
    env = {k: v for k, v in cluster.driver_env(i).items()
           if k != "RAYNODE_ADDRESS" and os.environ.get(k) != v}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        ray.init(address=cluster.nodes[i].client_addr)
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def node_name(cluster, node_id):
    for n in cluster.nodes:
        if n.node_id == str(node_id).lower():
            return n.name
    return str(node_id)


# --------------------------------------------------------------------------
# Scenarios (raynode)
# --------------------------------------------------------------------------

def transfer(ctx, ray, todo):
    """A task on node 2 gets an object put by the driver on node 1."""
    np = numpy_module()
    testnet = testnet_module()
    p = ctx.p
    size = p["transfer_bytes"]
    dl = Deadline(ctx.budget)
    ctx.start(TRANSFER)
    # Room for the object, its pulled copy and recycled files: a store
    # recycles freed files up to a quarter of its capacity, so the measured
    # pulls (after the warm-up) write into warm pages, as on a busy node.
    store = str(max(2 * GiB, 4 * size + 512 * MiB))
    args = ("--object-store-memory", store)
    with testnet.Cluster() as cluster:
        start_cluster(cluster, 2, dl, resources_on={1: {"special": 1}}, args_on={0: args, 1: args})
        with driver(ray, cluster, 0):
            @ray.remote(resources={"special": 1})
            def nbytes_on_node(x):
                return getattr(x, "nbytes", 0), ray.get_runtime_context().get_node_id()

            want = cluster.nodes[1].node_id
            rates, trips = [], []
            for rep in range(1 + p["reps"]):  # the first is the warm-up
                arr = np.full(size // 8, rep, dtype=np.int64)
                ref = ray.put(arr)
                del arr
                tiny = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    ray.get(nbytes_on_node.remote(0), timeout=dl.left())
                    tiny.append(time.perf_counter() - t0)
                trip = statistics.median(tiny)
                t0 = time.perf_counter()
                got, where = ray.get(nbytes_on_node.remote(ref), timeout=dl.left())
                elapsed = time.perf_counter() - t0
                del ref
                if got != size or str(where).lower() != want:
                    raise RuntimeError("the task ran on %s and saw %s bytes (expected node2, %d)"
                                       % (node_name(cluster, where), got, size))
                if rep:
                    rates.append(size / max(elapsed - trip, 1e-9) / 1e9)
                    trips.append(trip)
            ctx.ok(TRANSFER, rates, bytes=size, tiny_task_round_trip_s=trips)


def loopback(ctx, _ray, todo):
    """The machine's TCP bandwidth over 127.0.0.1: one thread sends `size`
    bytes in 4 MiB chunks, another receives them."""
    size = ctx.p["transfer_bytes"]
    chunk = 4 * MiB
    ctx.start(LOOPBACK)
    dl = Deadline(ctx.budget)
    payload = memoryview(bytes(chunk))
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(min(30.0, dl.left()))

    def once():
        done = {}

        def receive():
            conn, _ = server.accept()
            with conn:
                buf = memoryview(bytearray(chunk))
                got = 0
                while got < size:
                    n = conn.recv_into(buf)
                    if not n:
                        break
                    got += n
            done["got"] = got
            done["t"] = time.perf_counter()

        t = threading.Thread(target=receive, daemon=True)
        t.start()
        with socket.create_connection(server.getsockname(), timeout=dl.left()) as conn:
            t0 = time.perf_counter()
            sent = 0
            while sent < size:
                n = min(chunk, size - sent)
                conn.sendall(payload[:n])
                sent += n
        t.join(dl.left())
        if done.get("got") != size:
            raise RuntimeError("received %s of %d bytes" % (done.get("got"), size))
        return size / (done["t"] - t0) / 1e9

    try:
        once()  # warm-up
        rates = [once() for _ in range(ctx.p["reps"])]
    finally:
        server.close()
    ctx.ok(LOOPBACK, rates, bytes=size)


def spread(ctx, ray, todo):
    """One driver on node 1 submits batches of tasks to a 3-node cluster."""
    testnet = testnet_module()
    p = ctx.p
    dl = Deadline(ctx.budget)
    ctx.start(todo[0])
    with testnet.Cluster() as cluster:
        start_cluster(cluster, 3, dl)
        with driver(ray, cluster, 0):
            @ray.remote
            def noop():
                return ray.get_runtime_context().get_node_id()

            @ray.remote
            def sleep_10ms():
                time.sleep(0.01)
                return ray.get_runtime_context().get_node_id()

            for metric in todo:
                fn, n = (noop, p["batch"]) if metric == TASKS else (sleep_10ms, p["sleep_batch"])
                ran_on = {}

                def batch():
                    for where in ray.get([fn.remote() for _ in range(n)], timeout=dl.left()):
                        name = node_name(cluster, where)
                        ran_on[name] = ran_on.get(name, 0) + 1

                if metric != todo[0]:
                    ctx.start(metric)
                rates = ctx.wl.timeit(batch, n, p)
                ctx.ok(metric, rates, batch=n, tasks_per_node=dict(sorted(ran_on.items())))


def pulled_bytes(cluster):
    """Bytes all live members have pulled from other nodes (their /metrics)."""
    total = 0.0
    for node in cluster.live():
        view = cluster.status(node.index)
        addr = next((e.get("DashboardAddress") for e in view
                     if str(e.get("NodeID", "")).lower() == node.node_id), None)
        if not addr:
            raise RuntimeError("%s has no dashboard address" % node.name)
        with urllib.request.urlopen("http://%s/metrics" % addr, timeout=10) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith("raynode_pulled_bytes_total"):
                    total += float(line.split()[-1])
    return total


def locality(ctx, ray, todo):
    """A driver on node 1 makes `count` arrays on node 3 and reduces each
    there. Timed per round, with the bytes pulled between nodes meanwhile."""
    np = numpy_module()
    testnet = testnet_module()
    p = ctx.p
    count, size = p["locality"]
    dl = Deadline(ctx.budget)
    ctx.start(LOCAL_REDUCE)
    store = ("--object-store-memory", str(max(2 * GiB, 2 * count * size)))
    with testnet.Cluster() as cluster:
        start_cluster(cluster, 3, dl, resources_on={2: {"special": 1}}, args_on={0: store, 1: store, 2: store})
        with driver(ray, cluster, 0):
            @ray.remote(resources={"special": 0.01})
            def produce(i):
                return np.full(size // 8, i, dtype=np.int64)

            @ray.remote(resources={"special": 0.01})
            def reduce(a):
                return int(a[0])

            times, moved = [], []
            for rep in range(1 + p["reps"]):  # the first is the warm-up
                before = pulled_bytes(cluster)
                t0 = time.perf_counter()
                made = [produce.remote(i) for i in range(count)]
                got = ray.get([reduce.remote(m) for m in made], timeout=dl.left())
                elapsed = time.perf_counter() - t0
                del made
                if got != list(range(count)):
                    raise RuntimeError("the reduce saw %s" % got[:5])
                if rep:
                    times.append(elapsed)
                    moved.append((pulled_bytes(cluster) - before) / MiB)
            ctx.ok(LOCAL_REDUCE, times, arrays=count, bytes_each=size, mib_moved_between_nodes=moved)


def rebuild(ctx, ray, todo):
    """Per round: nodes 2 and 3 may run the work; a task makes a large
    array on one of them, that node is killed (SIGKILL), and a task on the
    other reads the array. Timed from the kill to the read's result: the
    loss is noticed and the array made again from its lineage."""
    np = numpy_module()
    testnet = testnet_module()
    p = ctx.p
    size = p["transfer_bytes"]
    dl = Deadline(ctx.budget)
    ctx.start(REBUILD)
    store = ("--object-store-memory", str(max(2 * GiB, 2 * size + 512 * MiB)))
    times = []
    for _ in range(ctx.p["cluster_rounds"]):
        with testnet.Cluster() as cluster:
            start_cluster(cluster, 3, dl, resources_on={1: {"special": 1}, 2: {"special": 1}},
                          args_on={0: store, 1: store, 2: store})
            with driver(ray, cluster, 0):
                @ray.remote(resources={"special": 1}, num_returns=2)
                def produce():
                    return np.ones(size // 8, dtype=np.int64), ray.get_runtime_context().get_node_id()

                @ray.remote(resources={"special": 1})
                def read(a):
                    return int(a.sum())

                ref, where = produce.remote()
                where = str(ray.get(where, timeout=dl.left())).lower()
                holder = next(n.index for n in cluster.nodes if n.node_id == where)
                t0 = time.perf_counter()
                cluster.kill(holder, signal.SIGKILL)
                got = ray.get(read.remote(ref), timeout=dl.left())
                times.append(time.perf_counter() - t0)
                if got != size // 8:
                    raise RuntimeError("the rebuilt array sums to %d, not %d" % (got, size // 8))
    ctx.ok(REBUILD, times, bytes=size)


def join(ctx, ray, todo):
    """Per round: a 2-node cluster whose driver has submitted a task needing
    {"special": 1}, which neither node has; a third node with it is
    started. Timed from launching its process to the task's result."""
    testnet = testnet_module()
    dl = Deadline(ctx.budget)
    ctx.start(JOIN)
    times = []
    for _ in range(ctx.p["cluster_rounds"]):
        with testnet.Cluster() as cluster:
            start_cluster(cluster, 2, dl)
            with driver(ray, cluster, 0):
                @ray.remote
                def where():
                    return ray.get_runtime_context().get_node_id()

                ray.get([where.remote() for _ in range(4)], timeout=dl.left())  # warm-up
                ref = where.options(resources={"special": 1}).remote()
                ready, _ = ray.wait([ref], timeout=0.2)
                if ready:
                    raise RuntimeError("the task needing {'special': 1} ran before a node had it")
                t0 = time.perf_counter()
                node = cluster.add_node(resources={"special": 1}, timeout=min(30.0, dl.left()))
                got = ray.get(ref, timeout=dl.left())
                times.append(time.perf_counter() - t0)
                if str(got).lower() != node.node_id:
                    raise RuntimeError("the task ran on %s, not on the new node" % node_name(cluster, got))
    ctx.ok(JOIN, times)


def leader_kill(ctx, ray, todo):
    """Per round: a healthy 3-node cluster, a driver on a node that is not
    the Raft leader; the leader's node is killed (SIGKILL) and a named actor
    created at once. Timed from the kill to the call's return (the name is
    committed to the control store before it returns) and to the first
    status of a survivor that names a survivor leader."""
    testnet = testnet_module()
    dl = Deadline(ctx.budget)
    ctx.start(todo[0])
    writes, leaders = [], []
    for rep in range(ctx.p["cluster_rounds"]):
        with testnet.Cluster() as cluster:
            cluster.start(3, timeout=min(30.0, dl.left()))
            cluster.wait_healthy(dl.left())
            leader = cluster.leader()
            if leader is None:
                raise RuntimeError("no leader in a healthy cluster")
            survivors = [i for i in range(3) if i != leader]
            with driver(ray, cluster, survivors[0]):
                @ray.remote(num_cpus=0)
                class Named:
                    def ping(self):
                        return 1

                bounded(lambda: Named.options(name="warm-up").remote(), dl.left(), "a named actor (warm-up)")
                seen = {}
                survivor_ids = {cluster.nodes[i].node_id for i in survivors}

                def watch(t0):
                    k = 0
                    while "at" not in seen and time.monotonic() < dl.end:
                        i = survivors[k % len(survivors)]
                        k += 1
                        try:
                            view = cluster.status(i)
                        except Exception:
                            continue
                        for e in view:
                            if e.get("RaftRole") == "leader" and str(e.get("NodeID")).lower() in survivor_ids:
                                seen["at"] = time.perf_counter() - t0
                                break

                t0 = time.perf_counter()
                cluster.kill(leader, signal.SIGKILL)
                watcher = threading.Thread(target=watch, args=(t0,), daemon=True)
                watcher.start()
                bounded(lambda: Named.options(name="after-kill-%d" % rep).remote(), dl.left(),
                        "creating a named actor after the leader was killed")
                writes.append(time.perf_counter() - t0)
                watcher.join(dl.left())
                if "at" not in seen:
                    raise BudgetExceeded("no survivor reported a new leader")
                leaders.append(seen["at"])
    extra = {}
    # A write cannot commit before a leader exists; the watcher sees the
    # leader a status call late at most, well under half a second.
    early = [i for i, (w, l) in enumerate(zip(writes, leaders)) if w + 0.5 < l]
    if early:
        extra["note"] = ("in %d of %d rounds the write returned before a survivor reported a new leader"
                         % (len(early), len(writes)))
    if NEW_LEADER in todo:
        ctx.ok(NEW_LEADER, leaders)
    if LEADER_WRITE in todo:
        if early:
            ctx.fail(LEADER_WRITE, "error", "the named-actor call returned before a new leader existed "
                     "(%s s vs %s s): it did not wait for a committed write"
                     % (_fmt(writes), _fmt(leaders)), values=writes, **extra)
        else:
            ctx.ok(LEADER_WRITE, writes)


def _fmt(xs):
    return "[" + ", ".join("%.3f" % x for x in xs) + "]"


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------

SCENARIOS = [
    (transfer, (TRANSFER,)),
    (loopback, (LOOPBACK,)),
    (spread, (TASKS, TASKS_10MS)),
    (locality, (LOCAL_REDUCE,)),
    (rebuild, (REBUILD,)),
    (join, (JOIN,)),
    (leader_kill, (NEW_LEADER, LEADER_WRITE)),
]  # then remote_driver.on_testnet


def run(wl, system, mode, timeout, skip):
    """Runs the multinode group for `system`, emitting one record per metric
    not in `skip`."""
    import remote_driver  # it builds on this module

    ctx = Ctx(wl, system, mode, timeout)
    ray = None
    scenarios = SCENARIOS + [(remote_driver.on_testnet, REMOTE)]
    for scenario, metrics in scenarios:
        todo = [m for m in metrics if m not in skip]
        if not todo:
            continue
        if system != "raynode":
            if metrics is REMOTE:
                guarded(ctx, lambda: remote_driver.on_ray_client(ctx, todo), todo)
            else:
                why = ("a figure of the machine, not of the system: see the raynode column"
                       if scenario is loopback else "not measured for this system: raynode clusters only")
                for m in todo:
                    ctx.fail(m, "n/a", why)
            continue
        if ray is None and scenario is not loopback:
            ray = importlib.import_module(system)
            wl.emit(wl.meta(ray, system))
        guarded(ctx, lambda: scenario(ctx, ray, todo), todo)


def guarded(ctx, fn, todo):
    """fn(), with an error record for each metric of `todo` it left without one."""
    try:
        fn()
    except Exception as e:
        text = "%s: %s" % (type(e).__name__, e)
        first = text.splitlines()[0]
        for m in todo:
            if m not in ctx.recorded:
                detail = {"detail": text[-4000:]} if text != first else {}
                ctx.fail(m, "timeout" if isinstance(e, BudgetExceeded) else "error", first, **detail)
