"""Helpers for tests of nodes started with `raynode start`: each test gets a
HOME of its own, so the nodes it starts (and the records `raynode start`
keeps under ~/.raynode) are its own."""

import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testnet"))

from testnet import find_binary  # noqa: E402

BIN = find_binary()
# Small nodes on loopback only.
NODE_ARGS = ["--node-ip-address", "127.0.0.1", "--ray-client-server-port", "0", "--num-cpus", "1",
             "--object-store-memory", str(64 << 20)]


@pytest.fixture
def home(tmp_path):
    """A HOME of the test's own; whatever nodes are still running in it at
    the end are stopped with `raynode stop --force`."""
    path = tmp_path / "home"
    path.mkdir()
    yield str(path)
    if sessions(str(path)):
        subprocess.run([BIN, "stop", "--force"], env=env_for(str(path)), capture_output=True, timeout=60)


def env_for(home):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAYNODE_ADDRESS", "RAY_ADDRESS", "RAYNODE_CLUSTER_KEY", "RUST_LOG", "RAYNODE_LOG")}
    env["HOME"] = home
    env["PATH"] = os.path.dirname(BIN) + os.pathsep + env.get("PATH", "")
    return env


def raynode(home, *args, timeout=90):
    return subprocess.run([BIN, *args], env=env_for(home), capture_output=True, text=True, timeout=timeout)


def driver(home, code, timeout=120, env=None):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**env_for(home), **(env or {})},
                          capture_output=True, text=True, timeout=timeout, cwd=home)


def sessions(home):
    """The records `raynode start` keeps of the nodes it started."""
    found = []
    for path in sorted(glob.glob(os.path.join(home, ".raynode", "sessions", "*.json"))):
        with open(path) as f:
            found.append(json.load(f))
    return found


def alive(pid):
    """Whether process `pid` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendants(pids):
    """Every live process below `pids` (workers of a node)."""
    children = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    found, todo = set(), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
