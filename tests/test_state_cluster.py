"""The state API's first tables, answered by any node for the whole
cluster: jobs (one per driver) and the event log."""

FIRST = """
import os
import raynode as ray
ray.init()

@ray.remote(max_retries=0)
def crash():
    os._exit(3)

@ray.remote
class Doomed:
    def ping(self):
        return 1

try:
    ray.get(crash.remote())
except ray.exceptions.RayError:
    pass
a = Doomed.remote()
ray.get(a.ping.remote())
ray.kill(a)
from raynode.util.placement_group import placement_group, remove_placement_group
pg = placement_group([{"CPU": 0.1}], name="logged")
ray.get(pg.ready(), timeout=30)
remove_placement_group(pg)
print("pid", os.getpid())
"""

SECOND = """
import json, os, time
WANTED = {{"task_failed", "actor_died", "placement_group_created", "placement_group_removed"}}
import raynode as ray
from raynode.util.state import list_cluster_events, list_jobs, list_nodes
ray.init()
first_pid = {pid}
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    jobs = list_jobs()
    events = list_cluster_events()
    done = [j for j in jobs if j.driver_pid == first_pid and j.status == "SUCCEEDED"]
    kinds = {{e.kind for e in events}}
    # This driver's own row comes with the next batch too.
    mine = list_jobs(filters=[("driver_pid", "=", os.getpid())])
    if done and mine and WANTED <= kinds:
        break
    time.sleep(0.2)
print(json.dumps({{
    "first": [dict(j) for j in done],
    "mine": [j.status for j in mine],
    "kinds": sorted(kinds),
    "nodes": sorted(n.state for n in list_nodes()),
    "limited": len(list_jobs(limit=1)),
}}))
"""


def test_jobs_and_events_are_seen_from_another_node(cluster3):
    first = cluster3.run_driver(0, FIRST)
    assert first.returncode == 0, first.stderr
    pid = int(first.stdout.split("pid")[1].split()[0])
    second = cluster3.run_driver(2, SECOND.format(pid=pid))
    assert second.returncode == 0, second.stderr
    import json

    got = json.loads(second.stdout.strip().splitlines()[-1])
    assert len(got["first"]) == 1, got
    job = got["first"][0]
    assert job["end_time"] >= job["start_time"] > 0
    assert got["mine"] == ["RUNNING"]
    wanted = {"task_failed", "actor_died", "placement_group_created", "placement_group_removed"}
    assert wanted <= set(got["kinds"]), got
    assert got["nodes"] == ["ALIVE", "ALIVE", "ALIVE"]
    assert got["limited"] == 1


def test_bad_filters_are_refused(cluster3):
    code = """
import raynode as ray
from raynode.util.state import list_jobs
ray.init()
for bad in ([("status", "~", "x")], ["status"]):
    try:
        list_jobs(filters=bad)
        raise SystemExit("accepted " + repr(bad))
    except ValueError as e:
        print("refused:", e)
"""
    out = cluster3.run_driver(1, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("refused:") == 2


RUN_ON_TWO = """
import os
import raynode as ray
from raynode.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])

@ray.remote
def where():
    return ray.get_runtime_context().get_node_id(), os.getpid()

@ray.remote(max_retries=0)
def refuses():
    raise KeyError("no such thing as state_probe_key")

here = {here!r}
there = {there!r}
for node in (here, there):
    strategy = NodeAffinitySchedulingStrategy(node, soft=False)
    got = ray.get(where.options(scheduling_strategy=strategy).remote())
    print("ran", got[0], got[1])
try:
    ray.get(refuses.remote())
except KeyError:
    pass
"""

LIST_FROM_THIRD = """
import json, time
import raynode as ray
from raynode.util.state import get_task, list_tasks, summarize_tasks
ray.init()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    rows = list_tasks(filters=[("name", "=", "where")], detail=True)
    failed = list_tasks(filters=[("name", "=", "refuses")], detail=True)
    if len(rows) == 2 and all(r.state == "FINISHED" for r in rows) and failed:
        break
    time.sleep(0.2)
print(json.dumps({
    "rows": [dict(r) for r in rows],
    "failed": [dict(r) for r in failed],
    "got": dict(get_task(rows[0].task_id)),
    "summary": summarize_tasks()["cluster"]["summary"].get("where"),
    "brief": sorted(list_tasks(limit=1)[0].keys()),
}))
"""


def test_tasks_that_ran_on_two_nodes_are_listed_from_a_third(cluster3):
    here, there = cluster3.nodes[0].node_id, cluster3.nodes[1].node_id
    first = cluster3.run_driver(0, RUN_ON_TWO.format(here=here, there=there))
    assert first.returncode == 0, first.stderr
    ran = [line.split()[1:] for line in first.stdout.splitlines() if line.startswith("ran")]
    assert [node for node, _ in ran] == [here, there], ran
    second = cluster3.run_driver(2, LIST_FROM_THIRD)
    assert second.returncode == 0, second.stderr
    import json

    got = json.loads(second.stdout.strip().splitlines()[-1])
    by_node = {r["node_id"]: r for r in got["rows"]}
    assert set(by_node) == {here, there}, got["rows"]
    for node, pid in ran:
        row = by_node[node]
        # The owner (node 1) and the node that ran it merged into one row.
        assert row["state"] == "FINISHED" and row["worker_pid"] == int(pid), row
        states = [e["state"] for e in row["events"]]
        assert states[0] == "PENDING_NODE_ASSIGNMENT" and states[-2:] == ["RUNNING", "FINISHED"], states
        assert row["end_time_ms"] >= row["start_time_ms"] >= row["creation_time_ms"] > 0
        assert row["type"] == "NORMAL_TASK" and row["job_id"].startswith(here)
    remote = by_node[there]["events"]
    assert "SUBMITTED_TO_WORKER" in [e["state"] for e in remote]
    [failed] = got["failed"]
    assert failed["state"] == "FAILED" and failed["error_type"] == "TASK_EXECUTION_EXCEPTION"
    assert "state_probe_key" in failed["error_message"]
    assert got["got"]["task_id"] == got["rows"][0]["task_id"]
    assert got["summary"]["state_counts"]["FINISHED"] >= 2
    assert "error_message" not in got["brief"] and "state" in got["brief"]


def _raynode_cli(*args, timeout=30):
    import subprocess

    from testnet import find_binary

    return subprocess.run([find_binary(), *args], capture_output=True, text=True, timeout=timeout)


def test_a_killed_node_is_dead_in_every_listing_and_logged(fresh_cluster3):
    import json
    import time

    cluster = fresh_cluster3
    gone = cluster.nodes[2].node_id
    cluster.kill(2)
    socket = cluster.nodes[0].socket
    deadline = time.monotonic() + 30
    while True:
        listed = _raynode_cli("list", "nodes", "--format", "json", "--address", socket)
        assert listed.returncode == 0, listed.stderr
        nodes = {n["node_id"]: n["state"] for n in json.loads(listed.stdout)}
        events = _raynode_cli("events", "--address", socket)
        assert events.returncode == 0, events.stderr
        lost = [line for line in events.stdout.splitlines() if "node_lost" in line and gone in line]
        if (nodes.get(gone) == "DEAD" and lost) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert nodes.get(gone) == "DEAD", nodes
    assert sorted(nodes.values()) == ["ALIVE", "ALIVE", "DEAD"], nodes
    assert lost, events.stdout
    # The Python API sees it alike, from the other live node.
    code = f"""
from raynode.util.state import list_nodes
import raynode as ray
ray.init()
print([n.state for n in list_nodes() if n.node_id == {gone!r}])
"""
    out = cluster.run_driver(1, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['DEAD']"


def test_the_cli_lists_summarizes_and_refuses_bad_input(cluster3):
    socket = cluster3.nodes[1].socket
    code = """
import raynode as ray
ray.init()
@ray.remote
class CliProbe:
    def ping(self):
        return 1
a = CliProbe.options(name="cli_probe", lifetime="detached").remote()
ray.get(a.ping.remote())
"""
    out = cluster3.run_driver(0, code)
    assert out.returncode == 0, out.stderr
    actors = _raynode_cli("list", "actors", "--filter", "name=cli_probe", "--address", socket)
    assert actors.returncode == 0, actors.stderr
    header, *rows = actors.stdout.splitlines()
    assert header.split()[:4] == ["ACTOR_ID", "CLASS_NAME", "NAME", "STATE"]
    assert any("CliProbe" in r and "ALIVE" in r for r in rows), actors.stdout
    summary = _raynode_cli("summary", "tasks", "--address", socket)
    assert summary.returncode == 0, summary.stderr
    assert any(line.startswith("CliProbe.ping") for line in summary.stdout.splitlines()), summary.stdout
    bad = _raynode_cli("list", "actors", "--filter", "nonsense", "--address", socket)
    assert bad.returncode != 0 and "KEY=VALUE" in bad.stderr, bad.stderr
    unknown = _raynode_cli("list", "widgets", "--address", socket)
    assert unknown.returncode != 0 and "widgets" in unknown.stderr
    kill = "import raynode as ray\nray.init()\nray.kill(ray.get_actor('cli_probe'))\n"
    assert cluster3.run_driver(0, kill).returncode == 0


SPILL = """
import time
import numpy as np
import raynode as ray
from raynode.util.state import list_cluster_events
ray.init()
held = [ray.put(np.full(4 << 20, i, dtype=np.int32)) for i in range(8)]  # 128 MiB in a 64 MiB store
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    kinds = {e.kind for e in list_cluster_events()}
    if {"objects_spilled", "leader_changed"} <= kinds:
        break
    time.sleep(0.2)
print(sorted(kinds))
assert [int(ray.get(r)[0]) for r in held] == list(range(8))
"""


def test_spills_and_the_leader_are_in_the_event_log():
    from testnet import start_healthy

    cluster = start_healthy(1, args_on={0: ("--object-store-memory", str(64 << 20))}, timeout=60.0)
    try:
        out = cluster.run_driver(0, SPILL)
        assert out.returncode == 0, out.stderr
        kinds = out.stdout.strip().splitlines()[-1]
        assert "objects_spilled" in kinds and "leader_changed" in kinds, kinds
    finally:
        cluster.stop()


PRINTS = """
import os, sys
import raynode as ray
from raynode.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()

@ray.remote
class Talker:
    def say(self, word):
        print("talker says", word)
        print("talker warns", word, file=sys.stderr)
        return os.getpid()

there = NodeAffinitySchedulingStrategy({there!r}, soft=False)
t = Talker.options(name="talker", lifetime="detached", scheduling_strategy=there).remote()
pid = ray.get(t.say.remote("log_probe_word"))
print("actor", t._actor_id.hex(), pid)
"""

GET_LOG = """
import time
import raynode as ray
from raynode.util.state import get_log
ray.init()
deadline = time.monotonic() + 15
text = ""
while "log_probe_word" not in text and time.monotonic() < deadline:
    text = "".join(get_log(actor_id={actor!r}, node_id={there!r}, tail=50))
    time.sleep(0.2)
err = "".join(get_log(pid={pid}, node_id={there!r}, suffix="err"))
try:
    list(get_log(pid=1, node_id={there!r}))
    refused = ""
except Exception as e:
    refused = type(e).__name__ + ": " + str(e)
print(repr(text), repr(err), repr(refused))
"""


def test_logs_of_a_worker_on_another_node(cluster3):
    there = cluster3.nodes[1].node_id
    out = cluster3.run_driver(0, PRINTS.format(there=there))
    assert out.returncode == 0, out.stderr
    _, actor, pid = [line for line in out.stdout.splitlines() if line.startswith("actor")][-1].split()
    try:
        # The CLI, asking node 3 for node 2's worker.
        socket = cluster3.nodes[2].socket
        cli = _raynode_cli("logs", "--address", socket, "--node-id", there, "--actor-id", actor)
        assert cli.returncode == 0, cli.stderr
        assert "talker says log_probe_word" in cli.stdout, cli.stdout
        err = _raynode_cli("logs", "--address", socket, "--node-id", there, "--pid", pid, "--err")
        assert err.returncode == 0 and "talker warns log_probe_word" in err.stdout, err.stdout + err.stderr
        own = _raynode_cli("logs", "--address", socket, "--node-id", there, "--tail", "5")
        assert own.returncode == 0 and own.stdout.strip(), own.stderr
        assert len(own.stdout.strip().splitlines()) <= 5
        missing = _raynode_cli("logs", "--address", socket, "--node-id", there, "--pid", "1")
        assert missing.returncode != 0 and "pid 1" in missing.stderr, missing.stderr
        bad = _raynode_cli("logs", "--address", socket, "--node-id", "xyz")
        assert bad.returncode != 0 and "node id" in bad.stderr, bad.stderr
        # The Python API, from node 1.
        got = cluster3.run_driver(0, GET_LOG.format(actor=actor, there=there, pid=pid))
        assert got.returncode == 0, got.stderr
        line = got.stdout.strip().splitlines()[-1]
        assert "talker says log_probe_word" in line and "talker warns log_probe_word" in line, line
        assert "pid 1" in line, line
    finally:
        kill = "import raynode as ray\nray.init()\nray.kill(ray.get_actor('talker'))\n"
        cluster3.run_driver(0, kill)


def test_a_frozen_node_does_not_hold_a_query_up_and_its_actor_is_still_listed(fresh_cluster3):
    import json
    import signal
    import time

    cluster = fresh_cluster3
    there = cluster.nodes[1].node_id
    code = f"""
import raynode as ray
from raynode.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
@ray.remote
class Quiet:
    def ping(self):
        return 1
a = Quiet.options(lifetime="detached", scheduling_strategy=NodeAffinitySchedulingStrategy({there!r}, soft=False)).remote()
ray.get(a.ping.remote())
print("actor", a._actor_id.hex())
"""
    out = cluster.run_driver(0, code)
    assert out.returncode == 0, out.stderr
    actor = out.stdout.split("actor")[-1].split()[0]
    time.sleep(1.5)  # the actor's row reaches the control store with the next batch
    frozen = cluster.nodes[1].proc
    frozen.send_signal(signal.SIGSTOP)
    try:
        query = """
import json, time, warnings
import raynode as ray
from raynode.util.state import list_actors, list_tasks
ray.init()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    started = time.monotonic()
    actors = list_actors()
    list_tasks()
    took = time.monotonic() - started
print(json.dumps({"actors": [dict(a) for a in actors], "took": took, "warned": [str(w.message) for w in caught]}))
"""
        got = cluster.run_driver(0, query, timeout=60)
        assert got.returncode == 0, got.stderr
        result = json.loads(got.stdout.strip().splitlines()[-1])
        # A hang check, not a timing: each query waits at most 2 s for the
        # frozen node, where an unbounded wait would never return.
        assert result["took"] < 30, result
        assert any(there[:8] in w for w in result["warned"]), result["warned"]
        [row] = [a for a in result["actors"] if a["actor_id"] == actor]
        assert row["state"] == "ALIVE" and row["node_id"] == there, row
        assert row.get("from_control_store") is True, row
    finally:
        frozen.send_signal(signal.SIGCONT)


def test_objects_are_listed_with_their_owner_size_and_locations(cluster3):
    here = cluster3.nodes[0].node_id
    code = """
import json
import numpy as np
import raynode as ray
from raynode.util.state import list_objects, summarize_objects
ray.init()
big = ray.put(np.zeros(1 << 18, dtype=np.float64))  # 2 MiB: in the store
small = ray.put("tiny")
rows = {r.object_id: dict(r) for r in list_objects(limit=10_000)}
print(json.dumps({"big": rows.get(big.hex()), "small": rows.get(small.hex()),
                  "summary": summarize_objects()["cluster"]["total_objects"]}))
"""
    out = cluster3.run_driver(0, code)
    assert out.returncode == 0, out.stderr
    import json

    got = json.loads(out.stdout.strip().splitlines()[-1])
    big, small = got["big"], got["small"]
    assert big["state"] == "READY" and big["location"] == "store" and big["object_size"] >= 2 << 20, big
    assert big["owner_node_id"] == here and big["locations"] == [here] and big["pinned"] is True, big
    assert small["location"] == "inline" and small["pinned"] is True, small
    assert got["summary"] >= 2
