"""A raynode cluster on one machine: several nodes on loopback, for trying
things out, for the integration tests in `tests/` and for the benchmark.

As a command (`testnet/testnet up -n 3 ...`, see `--help`) it starts the
nodes, waits until they form one healthy cluster, prints their addresses,
optionally runs a driver script against one of them, and tears everything
down at the end, on Ctrl-C or on SIGTERM.

As a module, `Cluster` does the same from Python:

    with Cluster() as cluster:
        cluster.start(3, resources_on={2: {"special": 1}})
        cluster.wait_healthy(60)
        cluster.nodes[0].client_addr      # "127.0.0.1:41353"

Nodes are numbered from 0 in Python (`cluster.nodes[i]`, `kill(i)`,
`status(i)`) and from 1 on the command line and in file names (node 1 is
`nodes[0]`, its log is `node1.log`). Everything a cluster writes lives in
one temporary directory (data dirs, logs, the cluster key) plus one store
directory per node under /dev/shm; `stop()` removes both.
"""

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHM = "/dev/shm"
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
STATUS_TIMEOUT_S = 10.0
DEFAULT_VOTERS = 3  # the node's --gcs-voters default when its --help does not say
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ClusterError(RuntimeError):
    """The cluster could not be started, or a node died, or it stayed unhealthy."""


def find_binary():
    """$RAYNODE_BIN, else the venv's raynode, else the release build."""
    path = os.environ.get("RAYNODE_BIN")
    if path:
        return path
    venv = os.path.join(REPO, ".venv", "bin", "raynode")
    if os.path.exists(venv):
        return venv
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    built = os.path.join(target, "release", "raynode")
    if os.path.exists(built):
        return built
    raise ClusterError("no raynode binary: run scripts/setup, or set RAYNODE_BIN")


def find_python():
    """The Python that runs workers and drivers: the repo's venv if it exists."""
    venv = os.path.join(REPO, ".venv", "bin", "python")
    return venv if os.path.exists(venv) else sys.executable


_default_voters = {}


def default_voters(binary):
    """The --gcs-voters default of `binary`, as its --help states it
    ("[default: N]"); DEFAULT_VOTERS if it cannot be read."""
    if binary not in _default_voters:
        found = DEFAULT_VOTERS
        try:
            res = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=STATUS_TIMEOUT_S)
            m = re.search(r"--gcs-voters\b.*?\[default: (\d+)\]", ANSI.sub("", res.stdout), re.S)
            if m:
                found = int(m.group(1))
        except (OSError, subprocess.TimeoutExpired):
            pass
        _default_voters[binary] = found
    return _default_voters[binary]


def tail(path, lines=40):
    """The last `lines` lines of a file, without colour codes ("" if none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(ANSI.sub("", text).splitlines()[-lines:])


class Node:
    """One `raynode` process of a cluster and what it printed at start."""

    def __init__(self, name, args, data_dir, store_dir, log_path, out_path):
        self.name = name  # "node<k>", k counting launches from 1
        self.index = None  # 0-based position in Cluster.nodes, if a member
        self.args = args  # the command line, reused by Cluster.restart
        self.data_dir = data_dir
        self.store_dir = store_dir
        self.log_path = log_path  # stderr: the node's tracing log
        self.out_path = out_path  # stdout: the start banner
        self.proc = None
        self.node_id = None
        self.socket = None
        self.client_addr = None
        self.p2p_addrs = []
        self.peer_id = None
        self.stopped = False  # stopped or killed on purpose

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def p2p_addr(self):
        """The first loopback p2p multiaddr (with /p2p/<peer id>), else the first one."""
        for addr in self.p2p_addrs:
            if addr.startswith("/ip4/127.0.0.1/"):
                return addr
        return self.p2p_addrs[0] if self.p2p_addrs else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self):
        """Everything the node wrote to stdout and stderr so far."""
        parts = []
        for path in (self.out_path, self.log_path):
            try:
                with open(path, "rb") as f:
                    parts.append(ANSI.sub("", f.read().decode("utf-8", "replace")))
            except OSError:
                pass
        return "\n".join(parts)

    def log_tail(self, lines=40):
        status = "running" if self.alive() else f"exited with {self.proc.returncode}" if self.proc else "not started"
        out = tail(self.out_path, 10)
        return (
            f"--- {self.name} (pid {self.pid}, {status}) stdout {self.out_path}:\n{out}\n"
            f"--- {self.name} log {self.log_path} (last {lines} lines):\n{tail(self.log_path, lines)}\n"
        )

    def _parse_banner(self):
        """Reads the start banner; True once it is complete."""
        try:
            with open(self.out_path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        p2p = []
        for line in lines:
            line = line.strip()
            m = re.match(r"raynode node ([0-9a-fA-F]+) ready", line)
            if m:
                self.node_id = m.group(1).lower()
            elif line.startswith("socket:"):
                self.socket = line.split(":", 1)[1].strip()
            elif line.startswith("client address:"):
                self.client_addr = line.split(":", 1)[1].strip()
            elif line.startswith("p2p:"):
                p2p.append(line.split(":", 1)[1].strip())
            elif line.startswith("peer id:"):
                self.peer_id = line.split(":", 1)[1].strip()
        self.p2p_addrs = p2p
        return bool(self.node_id and self.client_addr and p2p and self.peer_id)


class Cluster:
    """Nodes on loopback sharing a fresh cluster key; a context manager that stops them.

    Every node gets `--num-cpus`/`--min-workers` from the constructor unless
    its own `args` override them, its own data dir, log and store dir, and
    the cluster's key file. With `base_port`, node k (from 1) listens for p2p
    on base_port + 2(k-1) and for drivers on the port after; without it, on
    ports the system picks.
    """

    def __init__(self, binary=None, python=None, base_port=None, num_cpus=2, min_workers=1,
                 log_level="info", workdir=None, keep=False):
        self.binary = binary or find_binary()
        self.python = python or find_python()
        self.base_port = base_port
        self.num_cpus = num_cpus
        self.min_workers = min_workers
        self.log_level = log_level
        self.keep = keep  # leave the nodes running and the files in place on stop()
        self.workdir = workdir or tempfile.mkdtemp(prefix="raynode-testnet-")
        os.makedirs(self.workdir, exist_ok=True)
        self.key_path = os.path.join(self.workdir, "cluster.key")
        write_cluster_key(self.key_path)
        self.voters = None
        self.nodes = []  # members, in start order
        self._spawned = []  # every process launched, members or not, for stop()
        self._launches = 0
        self._stopped = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # Starting

    def start(self, n, resources_on=None, voters=None, args_on=None, timeout=READY_TIMEOUT_S):
        """Starts n nodes: the first alone, the others joining it. `resources_on`
        maps a 0-based index to custom resources, `args_on` to extra flags;
        `voters` is passed as --gcs-voters. Returns the nodes, each ready
        (banner printed); call wait_healthy() to wait for the cluster."""
        self.voters = voters
        resources_on = resources_on or {}
        args_on = args_on or {}
        if n > 0:
            self.add_node(resources=resources_on.get(0), args=args_on.get(0, ()), timeout=timeout)
        # The rest join the first all at once, as machines of a real
        # cluster would start.
        rest = []
        for i in range(1, n):
            node = self.launch(resources=resources_on.get(i), args=args_on.get(i, ()))
            self.nodes.append(node)
            node.index = len(self.nodes) - 1
            rest.append(node)
        for node in rest:
            self._wait_ready(node, timeout)
        return self.nodes

    def add_node(self, resources=None, args=(), join=True, timeout=READY_TIMEOUT_S):
        """Starts one more member (joining the first live member unless
        there is none or join is False) and waits for its banner."""
        node = self.launch(resources=resources, args=args, join=join)
        self.nodes.append(node)
        node.index = len(self.nodes) - 1
        self._wait_ready(node, timeout)
        return node

    def launch(self, resources=None, args=(), join=True, cluster_key=None, data_dir=None):
        """Starts a node process without waiting for it and without making it a
        member (so its death is no failure): for nodes expected to fail. It is
        still stopped by stop()."""
        k = self._launches
        self._launches += 1
        label = f"node{k + 1}"
        data_dir = data_dir or os.path.join(self.workdir, label)
        store_dir = os.path.join(SHM, f"raynode-testnet-{os.getpid()}-{os.path.basename(self.workdir)}-{label}")
        cmd = [self.binary, "--data-dir", data_dir, "--store-dir", store_dir,
               "--cluster-key", cluster_key or self.key_path, "--python", self.python,
               "--log-level", self.log_level]
        if self.base_port:
            cmd += ["--listen", f"127.0.0.1:{self.base_port + 2 * k}",
                    "--client-addr", f"127.0.0.1:{self.base_port + 2 * k + 1}"]
        else:
            cmd += ["--listen", "127.0.0.1:0", "--client-addr", "127.0.0.1:0"]
        if "--num-cpus" not in args:
            cmd += ["--num-cpus", str(self.num_cpus)]
        if "--min-workers" not in args:
            cmd += ["--min-workers", str(self.min_workers)]
        if self.voters is not None and "--gcs-voters" not in args:
            cmd += ["--gcs-voters", str(self.voters)]
        if resources:
            cmd += ["--resources", json.dumps(resources)]
        seeds = [n for n in self.live() if n.alive()]
        if join and seeds:
            cmd += ["--join", seeds[0].p2p_addr]
        if not self.keep:
            cmd += ["--exit-with-parent"]
        cmd += list(args)
        node = Node(label, cmd, data_dir, store_dir,
                    os.path.join(self.workdir, f"{label}.log"), os.path.join(self.workdir, f"{label}.out"))
        self._spawn(node)
        return node

    def restart(self, i, timeout=READY_TIMEOUT_S, join=False):
        """Stops member i (SIGTERM) if it runs and starts it again with the
        same command line and data dir. Its banner is read afresh. A --join
        naming a member that restarted since (on another port) or is down
        now names a live member instead. With join, a member started
        without --join (the first one) is given one."""
        node = self.nodes[i]
        if node.alive():
            self.kill(i, signal.SIGTERM)
        seeds = [n.p2p_addr for n in self.live() if n is not node and n.alive()]
        if "--join" in node.args:
            k = node.args.index("--join") + 1
            if seeds and node.args[k] not in seeds:
                node.args = node.args[:k] + [seeds[0]] + node.args[k + 1:]
        elif join:
            if not seeds:
                raise ClusterError(f"{node.name}: no live member to join through")
            node.args = node.args + ["--join", seeds[0]]
        node.stopped = False
        node.node_id = node.client_addr = node.peer_id = None
        node.p2p_addrs = []
        self._spawn(node)
        self._wait_ready(node, timeout)
        return node

    def _spawn(self, node):
        os.makedirs(node.data_dir, exist_ok=True)
        with open(node.out_path, "wb") as out, open(node.log_path, "ab") as log:
            # Their own session: a Ctrl-C in the terminal reaches testnet, which
            # then stops the nodes in order, and stop() can reach stray workers.
            node.proc = subprocess.Popen(node.args, stdin=subprocess.DEVNULL, stdout=out, stderr=log,
                                         cwd=REPO, start_new_session=True)
        self._spawned.append((node, node.proc))

    def _wait_ready(self, node, timeout):
        deadline = time.monotonic() + timeout
        while not node._parse_banner():
            if not node.alive():
                raise ClusterError(f"{node.name} exited at start with status {node.proc.returncode}\n"
                                   + node.log_tail())
            if time.monotonic() > deadline:
                raise ClusterError(f"{node.name} printed no complete banner within {timeout:.0f} s\n"
                                   + node.log_tail())
            time.sleep(0.05)

    # Watching

    def status(self, i):
        """`raynode status` as member i sees the cluster (parsed JSON)."""
        node = self.nodes[i]
        res = subprocess.run([self.binary, "status", "--address", node.client_addr,
                              "--cluster-key", self.key_path],
                             capture_output=True, text=True, timeout=STATUS_TIMEOUT_S)
        if res.returncode != 0:
            raise ClusterError(f"raynode status --address {node.client_addr} failed: {res.stderr.strip()}")
        return json.loads(res.stdout)

    def live(self):
        """Members not stopped on purpose."""
        return [n for n in self.nodes if not n.stopped]

    def check_alive(self):
        """Raises ClusterError, with the log tail, if a member died unasked."""
        for node in self.live():
            if not node.alive():
                raise ClusterError(f"{node.name} (pid {node.pid}) died with status {node.proc.returncode}\n"
                                   + node.log_tail())

    def health(self):
        """None if healthy, else why not. Healthy: every live member lists
        exactly the live members as alive, one leader (the same in every
        view) and, among them, as many voters as the Raft group aims for:
        min(live, voters), or one fewer where the group keeps its voter count
        odd (two live nodes: one voter and one learner), or as many as still
        live after a voter's loss (two of three) until it is replaced."""
        live = self.live()
        want_ids = {n.node_id for n in live}
        most = min(len(live), self.voters or default_voters(self.binary))
        least = most if most % 2 == 1 else most - 1
        leaders = set()
        for node in live:
            try:
                view = self.status(node.index)
            except (ClusterError, subprocess.TimeoutExpired, ValueError) as e:
                return f"{node.name}: {e}"
            alive = [e for e in view if e.get("Alive")]
            ids = {str(e.get("NodeID", "")).lower() for e in alive}
            if ids != want_ids:
                return f"{node.name} sees alive {sorted(ids)}, expected {sorted(want_ids)}"
            roles = [e.get("RaftRole") for e in alive]
            lead = [e for e in alive if e.get("RaftRole") == "leader"]
            if len(lead) != 1:
                return f"{node.name} sees {len(lead)} leaders (roles {roles})"
            leaders.add(str(lead[0].get("NodeID")).lower())
            n_voters = sum(1 for r in roles if r in ("leader", "follower"))
            if not least <= n_voters <= most:
                want = most if least == most else f"{least} or {most}"
                return f"{node.name} sees {n_voters} live voters, expected {want} (roles {roles})"
        if len(leaders) != 1:
            return f"members disagree on the leader: {sorted(leaders)}"
        return None

    def wait_healthy(self, timeout=60.0):
        """Polls status until healthy(); raises ClusterError (with every
        member's log tail) on timeout or if a member dies."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            why = self.health()
            if why is None:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"the cluster is not healthy after {timeout:.0f} s: {why}\n" + self.log_tails())
            time.sleep(0.3)

    def leader(self, via=None):
        """The 0-based index of the member that status (of member `via`, else
        the first live one) reports as the Raft leader, or None."""
        via = self.live()[0].index if via is None else via
        for entry in self.status(via):
            if entry.get("Alive") and entry.get("RaftRole") == "leader":
                for node in self.live():
                    if node.node_id == str(entry.get("NodeID")).lower():
                        return node.index
        return None

    def log_tails(self, lines=40):
        return "".join(node.log_tail(lines) for node, _ in self._spawned_latest())

    def _spawned_latest(self):
        seen = {}
        for node, proc in self._spawned:
            seen[id(node)] = (node, proc)
        return list(seen.values())

    # Drivers

    def driver_env(self, i):
        """The environment for a driver connecting to member i."""
        return dict(os.environ, RAYNODE_ADDRESS=self.nodes[i].client_addr, RAYNODE_CLUSTER_KEY=self.key_path)

    def run_driver(self, i, code=None, script=None, timeout=120.0, args=()):
        """Runs Python code (or a script) as a driver connected to member i;
        returns the CompletedProcess (stdout and stderr as text)."""
        cmd = [self.python] + (["-c", code] if code is not None else [script]) + list(args)
        return subprocess.run(cmd, env=self.driver_env(i), capture_output=True, text=True, timeout=timeout,
                              cwd=REPO)

    # Stopping

    def kill(self, i, sig=signal.SIGKILL, timeout=STOP_GRACE_S):
        """Sends sig to member i and waits for it to exit (SIGKILL after
        timeout); the member then counts as stopped on purpose."""
        node = self.nodes[i]
        node.stopped = True
        if node.alive():
            node.proc.send_signal(sig)
            try:
                node.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
        return node.proc.returncode

    def stop(self, force=False):
        """SIGTERM to every node, SIGKILL to those still running after a grace
        period and to their stray workers, then removes store dirs and the
        work dir. With keep=True, does nothing unless force is set."""
        if self._stopped or (self.keep and not force):
            return
        self._stopped = True
        procs = [(n, p) for n, p in self._spawned]
        for _, proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for _, proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Workers of a node killed with SIGKILL are left in its process group
        # (each node leads its own group, see _spawn).
        groups = {proc.pid for _, proc in procs}
        for pid in _group_members(groups):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for node, _ in procs:
            shutil.rmtree(node.store_dir, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _group_members(groups):
    """Pids of the running processes whose process group is one of `groups`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) in groups:
            found.append(int(entry))
    return found


def start_healthy(n, resources_on=None, args_on=None, timeout=60.0, **kwargs):
    """A started, healthy cluster of n nodes (`Cluster(**kwargs)`); stopped,
    with its files removed, if it does not get healthy."""
    cluster = Cluster(**kwargs)
    try:
        cluster.start(n, resources_on=resources_on, args_on=args_on)
        cluster.wait_healthy(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def write_cluster_key(path):
    """A fresh cluster key in libp2p's pre-shared key format, mode 0600."""
    if os.path.exists(path):
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"/key/swarm/psk/1.0.0/\n/base16/\n{secrets.token_hex(32)}\n")


# The command line


class Interrupted(Exception):
    """SIGINT or SIGTERM reached testnet."""


def _on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def _print_nodes(cluster):
    print(f"raynode cluster of {len(cluster.nodes)} nodes in {cluster.workdir}")
    for node in cluster.nodes:
        print(f"  {node.name}: client {node.client_addr}  p2p {node.p2p_addr}  id {node.node_id}  pid {node.pid}")
    print(f"  drivers: RAYNODE_ADDRESS=<client address> RAYNODE_CLUSTER_KEY={cluster.key_path}")
    sys.stdout.flush()


def _run_demo(cluster, script, i):
    """Runs the driver script against member i while watching the nodes;
    returns its exit status."""
    print(f"running {script} against {cluster.nodes[i].name} ({cluster.nodes[i].client_addr})", flush=True)
    driver = subprocess.Popen([cluster.python, script], env=cluster.driver_env(i), cwd=REPO)
    try:
        while driver.poll() is None:
            cluster.check_alive()
            time.sleep(0.2)
    finally:
        if driver.poll() is None:
            driver.terminate()
            try:
                driver.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait()
    return driver.returncode


def _up(opts):
    resources_on = {}
    for k, spec in opts.resources_on or []:
        if not 1 <= int(k) <= opts.n:
            raise SystemExit(f"--resources-on {k}: no such node (1..{opts.n})")
        resources_on[int(k) - 1] = json.loads(spec)
    if opts.demo and not 1 <= opts.node <= opts.n:
        raise SystemExit(f"--node {opts.node}: no such node (1..{opts.n})")
    if opts.demo:
        opts.demo = os.path.abspath(opts.demo)
        if not os.path.isfile(opts.demo):
            raise SystemExit(f"--demo {opts.demo}: no such file")
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    cluster = None
    waiting = False  # up and waiting for Ctrl-C: a signal is then the normal end
    failed = True
    try:
        cluster = Cluster(base_port=opts.base_port, num_cpus=opts.num_cpus, min_workers=opts.min_workers,
                          log_level=opts.log_level, keep=opts.keep)
        cluster.start(opts.n, resources_on=resources_on, voters=opts.voters)
        cluster.wait_healthy(opts.timeout)
        _print_nodes(cluster)
        if opts.demo:
            code = _run_demo(cluster, opts.demo, opts.node - 1)
            if code != 0:
                print(f"testnet: {opts.demo} exited with status {code}", file=sys.stderr)
                return 1
        if opts.keep:
            pids = " ".join(str(n.pid) for n in cluster.nodes)
            print(f"the nodes keep running; stop them with: kill {pids}; rm -rf {cluster.workdir}")
        elif not opts.demo:
            print("Ctrl-C stops the cluster", flush=True)
            waiting = True
            while True:
                cluster.check_alive()
                time.sleep(0.5)
        failed = False
        return 0
    except ClusterError as e:
        print(f"testnet: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(f"testnet: {e}, stopping the cluster", file=sys.stderr)
        failed = not waiting
        return 0 if waiting else 128 + signal.Signals[str(e)].value
    finally:
        # A second signal must not cut the teardown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if cluster is not None:
            cluster.stop(force=failed)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="testnet", description="A raynode cluster on loopback.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a cluster, wait until it is healthy, print it; stop it on Ctrl-C")
    up.add_argument("-n", type=int, default=3, help="number of nodes (default 3)")
    up.add_argument("--base-port", type=int, help="node k listens on P+2(k-1) (p2p) and P+2(k-1)+1 (drivers)")
    up.add_argument("--resources-on", nargs=2, action="append", metavar=("K", "JSON"),
                    help="custom resources of node K (from 1), e.g. --resources-on 3 '{\"special\": 1}'")
    up.add_argument("--voters", type=int, help="--gcs-voters of every node (the node's default if absent)")
    up.add_argument("--num-cpus", type=int, default=2, help="CPUs of each node (default 2)")
    up.add_argument("--min-workers", type=int, default=1, help="idle workers of each node (default 1)")
    up.add_argument("--log-level", default="info", help="log level of the nodes (default info)")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a healthy cluster")
    up.add_argument("--demo", metavar="SCRIPT", help="run this driver script against the cluster, then stop it")
    up.add_argument("--node", type=int, default=1, help="the node (from 1) the demo connects to (default 1)")
    up.add_argument("--keep", action="store_true", help="leave the cluster running when testnet exits")
    opts = parser.parse_args(argv)
    return _up(opts)


if __name__ == "__main__":
    sys.exit(main())
