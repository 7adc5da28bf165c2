"""Ray's cluster verbs on the `raynode` command, as a user runs them:
`raynode start` (the first node, in the background), `raynode start
--address` (another node joining through it), a driver finding them with
`address="auto"` or no address at all, `raynode status` and `raynode stop`,
which leaves no process, no shared memory and no record behind. Every test
runs with its own HOME (see `started.py`)."""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import pytest
from started import BIN, NODE_ARGS, alive, descendants, driver, env_for, home, raynode, sessions  # noqa: F401

pytestmark = pytest.mark.timeout(240)


def join_address(start_output):
    """The address `raynode start` says other nodes join through."""
    m = re.search(r"raynode start --address='([^']+)'", start_output)
    assert m, f"raynode start did not say how to join:\n{start_output}"
    return m.group(1)


def test_start_join_auto_driver_then_stop_leaves_nothing(home):
    first = raynode(home, "start", "--port", "0", *NODE_ARGS)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "ray.init()" in first.stdout and "raynode stop" in first.stdout, first.stdout
    address = join_address(first.stdout)

    second = raynode(home, "start", f"--address={address}", "--port", "0", *NODE_ARGS)
    assert second.returncode == 0, second.stderr + second.stdout

    started = sessions(home)
    assert len(started) == 2
    for s in started:
        mode = os.stat(os.path.join(home, ".raynode", "sessions", f"node-{s['pid']}.json")).st_mode
        assert mode & 0o777 == 0o600

    res = driver(home, """
        import json
        import raynode as ray
        ray.init(address="auto")

        @ray.remote
        def where():
            return ray.get_runtime_context().get_node_id()

        nodes = [n for n in ray.nodes() if n["Alive"]]
        ran_on = ray.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(20)])
        print(json.dumps({"nodes": len(nodes), "ran_on": len(set(ran_on))}))
    """)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"nodes": 2, "ran_on": 2}

    status = raynode(home, "status")
    assert status.returncode == 0, status.stderr
    assert len(json.loads(status.stdout)) == 2

    pids = [s["pid"] for s in started]
    processes = set(pids) | descendants(pids)
    stores = [s["store_dir"] for s in started]
    assert all(os.path.isdir(d) for d in stores)

    stopped = raynode(home, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "Stopped 2 raynode nodes" in stopped.stdout, stopped.stdout
    assert [p for p in processes if alive(p)] == []
    assert [d for d in stores if os.path.exists(d)] == []
    assert [d for d in (s["data_dir"] for s in started) if os.path.exists(d)] == []
    assert sessions(home) == []


def test_stop_with_nothing_running_says_so(home):
    res = raynode(home, "stop")
    assert res.returncode == 0, res.stderr
    assert "No raynode node started by this user is running on this machine" in res.stdout


def test_auto_with_no_node_running_says_how_to_start_one(home):
    for env in ({}, {"RAY_ADDRESS": "auto"}, {"RAYNODE_ADDRESS": "auto"}):
        res = driver(home, """
            import raynode as ray
            try:
                ray.init(address=None if __import__("os").environ.get("RAY_ADDRESS") or
                         __import__("os").environ.get("RAYNODE_ADDRESS") else "auto")
            except ConnectionError as e:
                print(e)
            else:
                print("connected")
        """, env=env)
        assert res.returncode == 0, res.stderr
        assert "no raynode node started with `raynode start` is running on this machine" in res.stdout, res.stdout
        assert "raynode start" in res.stdout


def test_init_without_address_uses_the_node_started_on_this_machine(home):
    first = raynode(home, "start", "--port", "0", *NODE_ARGS, "--resources", '{"started": 1}')
    assert first.returncode == 0, first.stderr + first.stdout
    res = driver(home, """
        import raynode as ray
        ray.init()
        print(ray.cluster_resources().get("started"))
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "1.0"
    # num_cpus is a property of a node, not of a driver that connects to one (as in Ray).
    res = driver(home, """
        import raynode as ray
        try:
            ray.init(num_cpus=3)
        except ValueError as e:
            print(e)
    """)
    assert "num_cpus" in res.stdout and "existing cluster" in res.stdout, res.stdout + res.stderr
    assert raynode(home, "stop").returncode == 0


def test_rays_documented_start_and_stop_flow(home):
    # Ray's manual cluster set-up, word for word but for `ray` -> `raynode`
    # and a free port on loopback in place of 6379.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = textwrap.dedent(f"""
        set -e
        ray start --head --port={port} --node-ip-address=127.0.0.1 --num-cpus=1 --ray-client-server-port=0
        ray start --address='127.0.0.1:{port}' --node-ip-address=127.0.0.1 --num-cpus=1 --ray-client-server-port=0
        python -c 'import ray; ray.init(); print(int(ray.cluster_resources()["CPU"]))'
        ray status
        ray stop
    """)
    script = re.sub(r"^ray ", "raynode ", script, flags=re.M).replace("import ray;", "import raynode as ray;")
    script = script.replace("python -c", f"{sys.executable} -c")
    res = subprocess.run(["bash", "-c", script], env=env_for(home), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "\n2\n" in res.stdout, res.stdout
    assert "has no head" in res.stdout + res.stderr  # --head is accepted, with a note
    assert "Stopped 2 raynode nodes" in res.stdout
    assert sessions(home) == []


def test_start_refuses_bad_input_and_leaves_nothing(home):
    res = raynode(home, "start", "--resources", "not json", *NODE_ARGS)
    assert res.returncode != 0
    assert "--resources must be a JSON object" in res.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens there once closed
    res = raynode(home, "start", f"--address=127.0.0.1:{closed}", "--port", "0", *NODE_ARGS)
    assert res.returncode != 0
    assert f"127.0.0.1:{closed}" in res.stderr, res.stderr
    assert sessions(home) == []


def test_help_says_where_options_differ_from_ray():
    res = subprocess.run([BIN, "start", "--help"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0
    for option in ("--address", "--num-cpus", "--num-gpus", "--resources", "--object-store-memory", "--block",
                   "--head", "--port"):
        assert option in res.stdout, option
    assert "Ray" in res.stdout


def test_a_home_too_deep_for_a_socket_path_still_works(home):
    """A Unix socket path holds at most 107 bytes; a node whose data dir is
    deeper serves its socket from a short directory of this user's instead
    of failing at start."""
    deep = os.path.join(home, "d" * 60, "e" * 40)
    os.makedirs(deep)
    try:
        first = raynode(deep, "start", "--port", "0", *NODE_ARGS)
        assert first.returncode == 0, first.stderr + first.stdout
        [session] = sessions(deep)
        assert len(os.fsencode(session["socket"])) <= 107, session["socket"]
        res = driver(deep, """
            import raynode as ray
            ray.init(address="auto")
            print(ray.get(ray.put("deep")))
        """)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip().splitlines()[-1] == "deep"
        socket_file = session["socket"]
    finally:
        stopped = raynode(deep, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not os.path.exists(socket_file)
