"""Starting and stopping the private node that `init()` runs for a driver."""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time

from . import _core

START_TIMEOUT_S = 20.0


def find_binary() -> str:
    """The `raynode` binary: $RAYNODE_BIN, else the one the wheel installed
    with this package (into the scripts dir of this Python's install scheme:
    beside the interpreter in a venv, ~/.local/bin for a user install), else
    the one on PATH."""
    path = os.environ.get("RAYNODE_BIN")
    if path:
        return path
    dirs = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    try:
        dirs.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    except KeyError:
        pass
    for d in dirs:
        candidate = os.path.join(d, "raynode")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("raynode")
    if found:
        return found
    raise RuntimeError(
        "cannot find the raynode binary, which the raynode wheel installs beside this Python: reinstall "
        "the wheel, put raynode on PATH, or set RAYNODE_BIN"
    )


class NodeProcess:
    def __init__(self, proc: "subprocess.Popen[bytes]", data_dir: str, socket: str) -> None:
        self.proc = proc
        self.data_dir = data_dir
        self.socket = socket

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def start(
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: float | None = None,
) -> tuple[NodeProcess, _core.Client]:
    """Starts a node as a child process; returns it with a connected client."""
    data_dir = tempfile.mkdtemp(prefix="raynode-")
    socket = os.path.join(data_dir, _core.SOCKET_FILE)
    cmd = [find_binary(), "--data-dir", data_dir, "--exit-with-parent", "--python", sys.executable,
           "--listen", "/ip4/127.0.0.1/tcp/0"]
    cmd += ["--log-level", os.environ.get("RAYNODE_LOG", "warn")]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        cmd += ["--num-gpus", str(num_gpus)]
    if resources:
        import json

        cmd += ["--resources", json.dumps(resources)]
    if object_store_memory is not None:
        cmd += ["--object-store-memory", str(int(object_store_memory))]
    env = dict(os.environ)
    # Workers import what the driver can import (its script's directory first).
    paths = [p for p in sys.path if p] + ([os.getcwd()] if "" in sys.path else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
    node = NodeProcess(proc, data_dir, socket)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
            raise RuntimeError(f"the raynode node exited at start with status {proc.returncode}")
        if os.path.exists(socket):
            try:
                return node, _core.Client.connect(socket)
            except ConnectionError:
                pass
        if time.monotonic() > deadline:
            node.stop()
            raise RuntimeError(f"the raynode node did not start within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.002)
