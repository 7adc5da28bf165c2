"""A `raynode` process for tests that need a node of their own."""

import os
import socket
import subprocess
import sys
import tempfile
import time


class StandaloneNode:
    """A `raynode` process started by a test, reachable by its socket."""

    def __init__(self, num_cpus=2, extra=()):
        self.dir = tempfile.mkdtemp(prefix="raynode-test-")
        self.socket = os.path.join(self.dir, "node.sock")
        from raynode._node_process import find_binary

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [find_binary(), "--data-dir", self.dir, "--num-cpus", str(num_cpus), "--python", sys.executable,
             "--listen", "/ip4/127.0.0.1/tcp/0", "--log-level", "warn", *extra],
            stdout=subprocess.DEVNULL, env=env,
        )
        # The socket file appears at bind, a moment before the node listens:
        # ready means a connection is accepted.
        deadline = time.monotonic() + 20
        while not self._accepts():
            assert self.proc.poll() is None, "node exited at start"
            assert time.monotonic() < deadline, "node did not start"
            time.sleep(0.01)

    def _accepts(self):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def run_driver(self, code, timeout=60):
        env = dict(os.environ, RAYNODE_ADDRESS=self.socket)
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
