"""Workers are started for the tasks that can run at once, not for every
task in line: ten quick 1-CPU tasks on a 2-CPU node start at most two
workers (a node with one worker kept idle, as testnet's are)."""

DRIVER = """
import raynode as ray
ray.init()

@ray.remote
def quick(i):
    return i

assert ray.get([quick.remote(i) for i in range(10)]) == list(range(10))
[me] = [n for n in ray.nodes() if n.get("Workers") is not None]
print("workers", me["Workers"])
"""


def test_ten_quick_tasks_on_two_cpus_start_at_most_two_workers(fresh_cluster2):
    out = fresh_cluster2.run_driver(0, DRIVER)
    assert out.returncode == 0, out.stderr
    workers = int(out.stdout.split("workers")[-1].split()[0])
    assert workers <= 2, out.stdout
