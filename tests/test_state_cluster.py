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
