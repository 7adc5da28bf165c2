"""What a stranger on the network or another user of the machine can do to
a node: the client port, the cluster key and the node's files.

One node from testnet, with a TCP client port and its own cluster key.
Drivers run as subprocesses; a loopback proxy between a driver and the
node records what crosses the client port."""

import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from testnet import start_healthy  # tests/conftest.py puts testnet on the path

# Connections the stranger holds open; the node serves 4,096 local clients.
IDLE_STRANGERS = 5000


@pytest.fixture(scope="module")
def node1():
    cluster = start_healthy(1)
    yield cluster
    cluster.stop()


def tcp_address(cluster):
    host, port = cluster.nodes[0].client_addr.rsplit(":", 1)
    return host, int(port)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def closed_by_peer(sock, timeout):
    """True if the other side closes `sock` within `timeout` (whatever it sent first)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


class RecordingProxy:
    """Forwards loopback TCP connections to `target`, keeping every byte
    that crosses in either direction."""

    def __init__(self, target):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.to_node = bytearray()
        self.from_node = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=10)
            for src, dst, log in ((client, upstream, self.to_node), (upstream, client, self.from_node)):
                t = threading.Thread(target=self._pipe, args=(src, dst, log), daemon=True)
                t.start()
                self._threads.append(t)

    def _pipe(self, src, dst, log):
        src.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if not data:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            with self._lock:
                log.extend(data)
            try:
                dst.sendall(data)
            except OSError:
                return

    def stop(self):
        self._stop.set()
        self.listener.close()
        for t in self._threads:
            t.join(5)


def run_remote_driver(cluster, address, code, timeout=60):
    env = dict(cluster.driver_env(0), RAYNODE_ADDRESS=address)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)


LOCAL_TASK = "import raynode as ray\nray.init()\n@ray.remote\ndef f(): return 7\nprint(ray.get(f.remote()))\n"


def run_local_driver(cluster, timeout=60):
    env = dict(os.environ, RAYNODE_ADDRESS=os.path.join(cluster.nodes[0].data_dir, "node.sock"))
    return subprocess.run([sys.executable, "-c", LOCAL_TASK], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_huge_length_prefix_is_closed_without_the_node_allocating_it(node1):
    pid = node1.nodes[0].pid
    before = rss_kib(pid)
    socks = []
    for _ in range(4):
        s = socket.create_connection(tcp_address(node1), timeout=10)
        s.sendall(struct.pack("<I", 256 << 20))
        socks.append(s)
        u = socket.socket(socket.AF_UNIX)
        u.connect(os.path.join(node1.nodes[0].data_dir, "node.sock"))
        u.sendall(struct.pack("<I", 256 << 20))
        socks.append(u)
    try:
        closed = [closed_by_peer(s, 10) for s in socks]
        grown_mib = (rss_kib(pid) - before) / 1024
    finally:
        for s in socks:
            s.close()
    assert all(closed), f"connections left open: {closed}"
    assert grown_mib < 64, f"the node grew by {grown_mib:.0f} MiB"
    assert run_local_driver(node1).stdout.strip() == "7"


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until_the_node_stops_accepting(pid, timeout=30):
    """Until the node's count of open files holds still for a second: it has
    taken in (or closed) every connection it is going to."""
    deadline = time.monotonic() + timeout
    last, still_since = open_files(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - still_since < 1.0:
        time.sleep(0.1)
        now = open_files(pid)
        if now != last:
            last, still_since = now, time.monotonic()


def test_idle_strangers_on_tcp_do_not_lock_out_local_drivers(node1):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE_STRANGERS + 256
    if soft < wanted:
        if hard < wanted:
            pytest.skip(f"needs {wanted} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    strangers = []
    try:
        # One at a time, as a patient attacker would, so that the node
        # takes each in (or closes it) before the next: none is lost in
        # the listen backlog. A connect the node no longer takes ends it.
        deadline = time.monotonic() + 60
        while len(strangers) < IDLE_STRANGERS and time.monotonic() < deadline:
            s = socket.socket()
            s.settimeout(2)
            strangers.append(s)
            try:
                s.connect(tcp_address(node1))
            except OSError:
                break
        wait_until_the_node_stops_accepting(node1.nodes[0].pid)
        out = run_local_driver(node1, timeout=60)
        assert out.stdout.strip() == "7", out.stderr
        assert node1.nodes[0].alive()
    finally:
        for s in strangers:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


MARKER = "the-secret-marker-0f3c9a"

ROUND_TRIP = f"""
import raynode as ray
ray.init()
@ray.remote
def echo(s):
    return s + "-back"
print(ray.get(echo.remote("{MARKER}")))
"""


def test_driver_traffic_over_tcp_is_encrypted(node1):
    proxy = RecordingProxy(tcp_address(node1))
    try:
        out = run_remote_driver(node1, proxy.address, ROUND_TRIP)
    finally:
        proxy.stop()
    assert out.stdout.strip() == f"{MARKER}-back", out.stderr
    assert len(proxy.to_node) > 0 and len(proxy.from_node) > 0
    for direction in (bytes(proxy.to_node), bytes(proxy.from_node)):
        assert MARKER.encode() not in direction
        assert b"echo" not in direction  # the function's name travels too


def test_a_recorded_exchange_replayed_is_refused(node1, tmp_path):
    marker = tmp_path / "ran"
    code = f"""
import raynode as ray
ray.init()
@ray.remote
def touch():
    open({str(marker)!r}, "a").write("x")
    return 1
print(ray.get(touch.remote()))
"""
    proxy = RecordingProxy(tcp_address(node1))
    try:
        out = run_remote_driver(node1, proxy.address, code)
    finally:
        proxy.stop()
    assert out.stdout.strip() == "1", out.stderr
    assert marker.read_text() == "x"
    marker.unlink()

    replay = socket.create_connection(tcp_address(node1), timeout=10)
    try:
        replay.sendall(bytes(proxy.to_node))
        assert closed_by_peer(replay, 10), "the node kept a replayed connection open"
    finally:
        replay.close()
    # The node handles a connection's frames in order, and a driver that runs
    # a task after the replay was closed sees the node alive and well.
    assert run_local_driver(node1).stdout.strip() == "7"
    assert not marker.exists(), "the replayed task ran"


def test_a_wrong_key_is_refused_with_a_clear_error(node1, tmp_path):
    wrong = tmp_path / "wrong.key"
    wrong.write_text("/key/swarm/psk/1.0.0/\n/base16/\n" + "ab" * 32 + "\n")
    env = dict(node1.driver_env(0), RAYNODE_CLUSTER_KEY=str(wrong))
    out = subprocess.run([sys.executable, "-c", LOCAL_TASK], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "ConnectionError" in out.stderr and node1.nodes[0].client_addr in out.stderr, out.stderr
    assert "cluster key is not the cluster's" in out.stderr, out.stderr


def test_status_never_creates_a_key_file(node1, tmp_path):
    missing = tmp_path / "nowhere" / "cluster.key"
    res = subprocess.run([node1.binary, "status", "--address", node1.nodes[0].client_addr,
                          "--cluster-key", str(missing)], capture_output=True, text=True, timeout=30)
    assert res.returncode != 0
    assert "cluster key" in res.stderr, res.stderr
    assert not missing.exists() and not missing.parent.exists()


SPILL = """
import numpy as np, raynode as ray
ray.init()
refs = [ray.put(np.full(12 << 20, i, dtype=np.uint8)) for i in range(8)]
print(sum(int(ray.get(r)[0]) for r in refs))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_another_local_user_cannot_read_objects_spill_files_or_control_state(tmp_path):
    cluster = start_healthy(1, args_on={0: ["--object-store-memory", str(48 << 20)]})
    try:
        node = cluster.nodes[0]
        env = dict(os.environ, RAYNODE_ADDRESS=os.path.join(node.data_dir, "node.sock"))
        keep = subprocess.Popen([sys.executable, "-c", SPILL + "import time; time.sleep(60)\n"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = keep.stdout.readline().strip()
            assert line == str(sum(range(8))), keep.stderr.read() if keep.poll() is not None else line
            spill = os.path.join(node.data_dir, "spill")
            files = {
                "object": [os.path.join(node.store_dir, n) for n in os.listdir(node.store_dir)],
                "spill": [os.path.join(spill, n) for n in os.listdir(spill)],
                "control": [os.path.join(r, n) for r, _, ns in os.walk(node.data_dir) for n in ns
                            if "gcs" in r or "raft" in r or "sled" in r],
            }
            for kind, paths in files.items():
                assert paths, f"no {kind} files to try"
            # Prints every file it could read.
            probe = 'for p; do head -c1 "$p" >/dev/null 2>&1 && echo "$p"; done; exit 0'
            paths = [p for ps in files.values() for p in ps]
            res = subprocess.run(["/bin/sh", "-c", probe, "sh", *paths], capture_output=True, text=True,
                                 timeout=30, cwd="/", preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
            assert res.returncode == 0, res.stderr
            assert res.stdout.strip() == "", f"user nobody read: {res.stdout}"
        finally:
            keep.kill()
            keep.wait()
    finally:
        cluster.stop()
