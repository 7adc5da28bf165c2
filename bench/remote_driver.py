"""Remote drivers: a driver that reaches its node over TCP alone.

raynode: a 1-node testnet cluster and a child process of the benchmark
(``remote_driver.py --mode ...``) connected with RAYNODE_NO_SHM=1; the child
first checks that values really travel over its connection (it must map no
file of the node's store), then times get and put. Its @@BENCH lines are
passed on by the parent.

Ray: the same workloads through Ray Client, against a ``ray start --head
--block`` on 127.0.0.1 that this module starts and stops (by pid).

Part of the multinode group (``multinode.py`` holds Ctx, Deadline and the
cluster helpers). Standard library only at import time.
"""

import argparse
import importlib
import importlib.util
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from multinode import (REMOTE_GET, REMOTE_PUT, HERE, MiB, TEARDOWN_RESERVE_S, Ctx, Deadline,
                       guarded, numpy_module, testnet_module)

# Extra grpcio for Ray Client when the Ray venv lacks `ray[client]` (see
# README, "Multi-node").
RAY_CLIENT_DEPS = os.environ.get("RAYNODE_BENCH_RAY_CLIENT_DEPS") or os.path.expanduser(
    "~/.cache/raynode/ray-client-deps")


def remote_timings(ctx, ray, todo):
    """The remote-driver workloads against whatever `ray` is connected to."""
    p = ctx.p
    for metric in todo:
        ctx.start(metric)
        if metric == REMOTE_GET:
            value = ray.put(0)
            rates = ctx.wl.timeit(lambda: ray.get(value), 1, p)
        elif metric == REMOTE_PUT:
            rates = ctx.wl.timeit(lambda: ray.put(0), 1, p)
        else:
            np = numpy_module()
            arr = np.zeros(p["remote_put_bytes"] // 8, dtype=np.int64)
            rates = ctx.wl.timeit(lambda: ray.put(arr), arr.nbytes / 1e9, p)
        ctx.ok(metric, rates)


def mapped_under(prefix):
    """Files under `prefix` this process has mapped."""
    found = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].strip().startswith(prefix):
                found.add(parts[5].strip())
    return sorted(found)


def child(ctx, todo, store_dir):
    """In the child: connect (RAYNODE_ADDRESS, RAYNODE_NO_SHM=1), check that
    values really travel over the connection, then time."""
    np = numpy_module()
    ray = importlib.import_module("raynode")
    ray.init()
    try:
        arr = np.arange(MiB // 8, dtype=np.int64)  # above the inline limit
        back = ray.get(ray.put(arr))
        if not np.array_equal(arr, back):
            raise RuntimeError("a 1 MiB array did not come back intact")
        mapped = mapped_under(store_dir)
        if mapped:
            why = ("RAYNODE_NO_SHM=1 is not honoured: the driver mapped the node's store (%s)"
                   % os.path.basename(mapped[0]))
            for metric in todo:
                ctx.fail(metric, "n/a", why)
            return
        remote_timings(ctx, ray, todo)
    finally:
        ray.shutdown()


def on_testnet(ctx, ray, todo):
    """A 1-node cluster and a child process driving it over TCP alone."""
    testnet = testnet_module()
    dl = Deadline(ctx.budget)
    ctx.start(todo[0])
    with testnet.Cluster() as cluster:
        node = cluster.start(1, timeout=min(30.0, dl.left()))[0]
        env = dict(cluster.driver_env(0), RAYNODE_NO_SHM="1")
        cmd = [sys.executable, os.path.abspath(__file__), "--mode", ctx.mode,
               "--todo", json.dumps(todo), "--store-dir", node.store_dir]
        code, tail = relay(ctx, cmd, env, dl)
    missing = [m for m in todo if m not in ctx.recorded]
    if missing:
        raise RuntimeError("the remote driver exited with %s before reporting %s: %s"
                           % (code, ", ".join(missing), tail or "no output"))


def relay(ctx, cmd, env, dl):
    """Runs a child that prints @@BENCH lines and passes its events on.
    Returns its exit status and the last line of its stderr. The child is
    ended (by its pid) if it outruns `dl`."""
    err = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True, cwd=HERE)
    lines = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            try:
                line = lines.get(timeout=dl.left("the remote driver"))
            except queue.Empty:
                continue
            if line is None:
                break
            if line.startswith(ctx.wl.PREFIX):
                ctx.emit(json.loads(line[len(ctx.wl.PREFIX):]))
        proc.wait(max(1.0, dl.end - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.seek(0)
        tail = [l for l in err.read().splitlines() if l.strip()]
        err.close()
    return proc.returncode, tail[-1] if tail else ""


class RayHead:
    """`ray start --head --block` on loopback with a Ray Client server, in
    its own session; stopped by its pid (SIGTERM, then SIGKILL) and every
    process of that session or naming its temp dir."""

    def __init__(self, dl):
        self.dl = dl
        self.proc = None
        self.tmp = tempfile.mkdtemp(prefix="rnb-ray-", dir="/tmp")  # short: Ray's socket paths
        self.log = os.path.join(self.tmp, "ray-start.log")
        self.client_port = None

    @staticmethod
    def client_env():
        """Environment for the head and its drivers: loopback addresses
        (Ray otherwise advertises the machine's address), token
        authentication (Ray's default for a new cluster, said explicitly so
        the Ray Client driver presents the token) and grpcio for Ray Client."""
        env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"),
               "RAY_USAGE_STATS_ENABLED": "0"}
        spec = importlib.util.find_spec("grpc")
        if spec is None or (spec.origin or "").startswith(RAY_CLIENT_DEPS):
            if not os.path.isdir(os.path.join(RAY_CLIENT_DEPS, "grpc")):
                return None
            env["PYTHONPATH"] = os.pathsep.join(
                [RAY_CLIENT_DEPS] + [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x])
        return env

    def start(self, env):
        ports = free_ports(9)
        self.client_port = ports[1]
        ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
        cmd = [ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               "--port=%d" % ports[0], "--ray-client-server-port=%d" % ports[1],
               "--node-manager-port=%d" % ports[2], "--object-manager-port=%d" % ports[3],
               "--dashboard-agent-grpc-port=%d" % ports[4], "--dashboard-agent-listen-port=%d" % ports[5],
               "--metrics-export-port=%d" % ports[6], "--runtime-env-agent-port=%d" % ports[7],
               "--dashboard-port=%d" % ports[8], "--include-dashboard=false",
               "--num-cpus=%d" % (os.cpu_count() or 1), "--temp-dir=%s" % self.tmp,
               "--disable-usage-stats"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=dict(os.environ, **env), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("ray start exited with %s: %s" % (self.proc.returncode, self.log_tail()))
            try:
                socket.create_connection(("127.0.0.1", self.client_port), timeout=1).close()
                return "ray://127.0.0.1:%d" % self.client_port
            except OSError:
                pass
            self.dl.left("waiting for the Ray Client server")
            time.sleep(0.2)

    def log_tail(self):
        try:
            with open(self.log, errors="replace") as f:
                lines = [l for l in f.read().splitlines() if l.strip()]
            return lines[-1] if lines else "no output"
        except OSError:
            return "no output"

    def client_server_log(self):
        """The first error line of Ray Client's proxy log and the last line
        of each per-client server's log."""
        logs = os.path.join(self.tmp, "session_latest", "logs")
        found = []
        try:
            names = sorted(n for n in os.listdir(logs) if n.startswith("ray_client_server") and n.endswith(".err"))
        except OSError:
            return "none"
        for name in names:
            with open(os.path.join(logs, name), errors="replace") as f:
                lines = [l.strip() for l in f if l.strip()]
            errors = [l for l in lines if "ERROR" in l]
            if name == "ray_client_server.err":
                found.append("%s: %s" % (name, errors[0] if errors else "no errors"))
            else:
                found.append("%s: %s" % (name, lines[-1] if lines else "empty"))
        return "; ".join(found)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # ray start --block stops what it started
            try:
                self.proc.wait(min(35.0, max(5.0, self.dl.end + TEARDOWN_RESERVE_S - 5 - time.monotonic())))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            for pid in leftovers(self.proc.pid, self.tmp):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def leftovers(sid, marker):
    """Pids of live processes in session `sid` or whose command line names `marker`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] != "Z" and (int(fields[3]) == sid or marker in cmdline):
            found.append(int(name))
    return found


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def connect_ray_client(ray, address, head, dl):
    """ray.init over Ray Client. Its proxy sometimes fails to start the
    per-client server; the driver then hears "Initialization failure from
    server" after the proxy's 30 s wait, and one more try usually works."""
    for attempt in (1, 2):
        try:
            ray.init(address, logging_level="ERROR", log_to_driver=False)
            return
        except ConnectionError as e:
            why = "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            if attempt == 2 or dl.end - time.monotonic() < 20:
                raise RuntimeError("%s (Ray Client proxy log: %s)" % (why, head.client_server_log())) from e


def on_ray_client(ctx, todo):
    """The remote-driver workloads on Ray, through Ray Client."""
    dl = Deadline(ctx.budget)
    ctx.start(todo[0])
    if not ctx.p["ray_client"]:
        for metric in todo:
            ctx.fail(metric, "n/a", "Ray Client is measured in full mode only (it starts a Ray head)")
        return
    env = RayHead.client_env()
    if env is None:
        why = ("Ray Client needs grpcio (ray[client]); install it beside the Ray venv with: "
               "<ray venv>/bin/pip install --no-deps --target %s grpcio" % RAY_CLIENT_DEPS)
        for metric in todo:
            ctx.fail(metric, "n/a", why)
        return
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})
    if "PYTHONPATH" in env and RAY_CLIENT_DEPS not in sys.path:
        sys.path.insert(0, RAY_CLIENT_DEPS)
    head = RayHead(dl)
    try:
        address = head.start(env)
        ray = importlib.import_module("ray")
        connect_ray_client(ray, address, head, dl)
        try:
            ctx.emit(ctx.wl.meta(ray, "ray"))
            remote_timings(ctx, ray, todo)
        finally:
            ray.shutdown()
    finally:
        head.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description="internal: the remote driver of the multinode group")
    ap.add_argument("--mode", required=True)
    ap.add_argument("--todo", required=True, help="JSON list of metrics")
    ap.add_argument("--store-dir", required=True, help="the node's store (must not be mapped here)")
    a = ap.parse_args(argv)
    import workloads
    ctx = Ctx(workloads, "raynode", a.mode, 3600)
    todo = json.loads(a.todo)
    guarded(ctx, lambda: child(ctx, todo, a.store_dir), todo)


if __name__ == "__main__":
    main()
