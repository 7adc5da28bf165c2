"""The deployment files in deploy/, run here as far as this machine allows:
the systemd unit's command (a node in the foreground that `address="auto"`
finds and SIGTERM stops cleanly), and the Kubernetes start script (a pod's
node joining through the peers a headless Service name resolves to, with
the cluster key copied from a Secret's mount). Docker and Kubernetes
themselves are not run here."""

import json
import os
import re
import shlex
import signal
import subprocess
import time

import pytest
from started import BIN, alive, driver, env_for, home, raynode, sessions  # noqa: F401

pytestmark = pytest.mark.timeout(240)

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy")
READY_S = 60.0
SMALL = ["--num-cpus", "1", "--object-store-memory", str(64 << 20), "--ray-client-server-port", "0"]


def wait_for_session(home, proc):
    """The session the node started by `proc` recorded, once it is ready."""
    deadline = time.monotonic() + READY_S
    for _ in range(int(READY_S / 0.05)):
        found = [s for s in sessions(home) if s["pid"] == proc.pid]
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()[1]
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise AssertionError("the node did not become ready")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_the_systemd_units_command_runs_a_node_that_stops_on_sigterm(home, tmp_path):
    with open(os.path.join(DEPLOY, "raynode.service")) as f:
        unit = f.read()
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    key = tmp_path / "cluster.key"
    key.write_text(os.urandom(32).hex() + "\n")
    key.chmod(0o600)
    data_dir = tmp_path / "data"
    args = []
    for word in shlex.split(exec_start):
        if word == "$RAYNODE_OPTIONS":
            args += ["--node-ip-address", "127.0.0.1", "--port", "0", *SMALL]
        elif word.endswith("/bin/raynode"):
            args.append(BIN)
        else:
            args.append(word.replace("/var/lib/raynode", str(data_dir)).replace("/etc/raynode/cluster.key",
                                                                                   str(key)))
    assert args[1:3] == ["start", "--block"]
    proc = subprocess.Popen(args, env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        session = wait_for_session(home, proc)
        res = driver(home, """
            import raynode as ray
            ray.init(address="auto")
            print(ray.get(ray.remote(lambda: 42).remote()))
        """, env={"RAYNODE_CLUSTER_KEY": str(key)})
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "42"
    finally:
        code = stop(proc)
    assert code == 0
    assert sessions(home) == []
    assert not os.path.exists(session["store_dir"])
    assert (data_dir / "identity.key").exists(), "the data dir is kept across restarts"


def test_the_kubernetes_start_script_joins_through_the_service_name(home, tmp_path):
    first = raynode(home, "start", "--node-ip-address", "127.0.0.1", "--port", "0", *SMALL)
    assert first.returncode == 0, first.stderr
    port = re.search(r"--address='127\.0\.0\.1:(\d+)'", first.stdout).group(1)

    # The pod: its own HOME, the key from a "Secret", "localhost" as the
    # headless Service (it resolves to the first node's address, 127.0.0.1)
    # and 127.0.0.2 as its own pod IP. Pods have an IP each; here both
    # nodes share one machine, so the pod listens on a port of its own.
    pod_home = tmp_path / "pod"
    pod_home.mkdir()
    secret = tmp_path / "secret-cluster.key"
    with open(os.path.join(home, ".raynode", "cluster.key")) as f:
        secret.write_text(f.read())
    env = {**env_for(str(pod_home)), "RAYNODE_PEERS": "localhost", "POD_IP": "127.0.0.2", "RAYNODE_PORT": "0", "RAYNODE_PEER_PORT": port,
           "RAYNODE_KEY_SECRET": str(secret)}
    proc = subprocess.Popen([os.path.join(DEPLOY, "raynode-k8s-start"), *SMALL], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        pod = wait_for_session(str(pod_home), proc)
        assert any("/ip4/127.0.0.2/" in a for a in pod["p2p"]), pod["p2p"]
        assert os.stat(pod_home / ".raynode" / "cluster.key").st_mode & 0o777 == 0o600
        status = raynode(home, "status")
        assert status.returncode == 0, status.stderr
        assert len([n for n in json.loads(status.stdout) if n.get("Alive", True)]) == 2
    finally:
        assert stop(proc) == 0
    assert not alive(proc.pid)
    assert raynode(home, "stop").returncode == 0
