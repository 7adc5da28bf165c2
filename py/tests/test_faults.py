"""Faults on one node: nothing wedges it, no caller hangs, nothing leaks.
Each test is the regression test of a fault found by driving a node the way
a hostile operator would."""

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from standalone_node import StandaloneNode

pytestmark = pytest.mark.timeout(180)


def _driver_ok(node, code, timeout=90):
    out = node.run_driver(code, timeout=timeout)
    assert out.returncode == 0, f"driver failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout.strip().splitlines()


def test_tasks_that_cannot_start_give_back_their_worker_and_cpu():
    """A task whose function was never registered fails at dispatch; before,
    its worker and CPU stayed taken, so two of them wedged a 2-CPU node."""
    node = StandaloneNode(num_cpus=2)
    try:
        lines = _driver_ok(node, """
import raynode as ray
from raynode import _runtime
from raynode.exceptions import RaySystemError
ray.init()
client = _runtime.client()
never_registered = b"\\x01" * 16
ghosts = [client.submit(never_registered, "ghost", [], [], 1, [("CPU", 1.0)], 0, False, [])[0]
          for _ in range(4)]
for ref in ghosts:
    try:
        ray.get(ref, timeout=30)
        print("no error")
    except RaySystemError as e:
        assert "never registered" in str(e), e
        print("failed as it should")

@ray.remote
def f(x):
    return x + 1

print(ray.get([f.remote(i) for i in range(8)], timeout=30))
""")
        assert lines[:4] == ["failed as it should"] * 4
        assert lines[4] == str(list(range(1, 9)))
        status = subprocess.run([_binary(), "status", "--address", node.socket],
                                capture_output=True, text=True, timeout=30)
        [entry] = json.loads(status.stdout)
        assert entry["BusyWorkers"] == 0, status.stdout
        assert entry["Available"]["CPU"] == 2.0, status.stdout
    finally:
        node.stop()


def test_a_remote_driver_gets_values_larger_together_than_one_frame():
    """Three 100 MiB values asked for in one get by a driver without the
    node's shared memory: before, the reply could not be framed, the node
    only logged it, and the driver waited forever."""
    node = StandaloneNode(num_cpus=1, extra=("--object-store-memory", str(1 << 30)))
    try:
        env_code = """
import os
os.environ["RAYNODE_NO_SHM"] = "1"
import numpy as np
import raynode as ray
ray.init()
arrays = [np.full(100 * 1024 * 1024 // 8, i, dtype=np.int64) for i in range(3)]
refs = [ray.put(a) for a in arrays]
got = ray.get(refs, timeout=60)
print([int(g[0]) for g in got], [int(g[-1]) for g in got], [g.nbytes for g in got])
"""
        lines = _driver_ok(node, env_code, timeout=120)
        assert lines[-1] == "[0, 1, 2] [0, 1, 2] [104857600, 104857600, 104857600]"
    finally:
        node.stop()


def _binary():
    from raynode._node_process import find_binary

    return find_binary()


def _start(data_dir):
    proc = subprocess.Popen([_binary(), "--data-dir", data_dir, "--num-cpus", "1", "--min-workers", "0",
                             "--listen", "/ip4/127.0.0.1/tcp/0", "--log-level", "warn"],
                            stdout=subprocess.PIPE, text=True)
    store = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.strip().startswith("store:"):
            store = line.split(":", 1)[1].strip()
        if line.strip().startswith("peer id:"):
            break
    if not store:
        proc.kill()
        proc.wait()
        raise AssertionError("the node printed no store directory")
    return proc, store


def test_store_directories_follow_the_data_dir_and_are_reclaimed():
    """A node killed with -9 left its /dev/shm store directory behind, and a
    restart with the same data dir picked a new one."""
    data_dir = tempfile.mkdtemp(prefix="raynode-test-")
    other_dir = tempfile.mkdtemp(prefix="raynode-test-")
    procs = []
    try:
        first, store = _start(data_dir)
        procs.append(first)
        assert os.path.isdir(store)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert os.path.isdir(store), "kill -9 leaves the directory (nothing runs at exit)"

        again, store_again = _start(data_dir)
        procs.append(again)
        assert store_again == store, "a restart with its data dir reuses its store directory"
        again.send_signal(signal.SIGKILL)
        again.wait(10)

        other, other_store = _start(other_dir)
        procs.append(other)
        assert other_store != store
        assert not os.path.exists(store), "a starting node removes the directory of a dead one"
        other.terminate()
        other.wait(10)
        assert not os.path.exists(other_store), "a node that stops removes its directory"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_failed_start_leaves_no_store_directory():
    data_dir = tempfile.mkdtemp(prefix="raynode-test-")
    before = set(glob.glob("/dev/shm/raynode-*"))
    out = subprocess.run([_binary(), "--data-dir", data_dir, "--listen", "not an address", "--log-level", "warn"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "--listen" in out.stderr, out.stderr
    leaked = set(glob.glob("/dev/shm/raynode-*")) - before
    assert not leaked, f"a failed start left {leaked}"
