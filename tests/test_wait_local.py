"""A `ray.wait` whose answer the driver already knows costs no round trip.

The driver gets its refs' values, then freezes its node (SIGSTOP) with a
watchdog that thaws it after a while. A wait on refs known to be ready
answers while the node is frozen, before the watchdog fires; a wait that
must ask the node (a ref it has not seen ready) still works once the node
thaws.
"""

DRIVER = """
import os, signal, threading
import raynode as ray
ray.init()
node_pid = {node_pid}

@ray.remote
def one(i):
    return i

refs = [one.remote(i) for i in range(200)]
assert ray.get(refs) == list(range(200))
first, _ = ray.wait(refs[:10], num_returns=1)        # asks the node, learns all ten
thawed = threading.Event()
def thaw():
    os.kill(node_pid, signal.SIGCONT)
    thawed.set()
watchdog = threading.Timer(15.0, thaw)
os.kill(node_pid, signal.SIGSTOP)
watchdog.start()
try:
    ready, rest = ray.wait(refs, num_returns=len(refs))
    answered_frozen = not thawed.is_set()
    some, others = ray.wait(refs[::-1], num_returns=3)
finally:
    watchdog.cancel()
    thaw()
later = one.remote(7)
late_ready, _ = ray.wait([later], num_returns=1, timeout=30)
print("result", answered_frozen, len(ready), len(rest), [ray.get(r) for r in some], len(others), len(first),
      late_ready == [later])
"""


def test_a_wait_on_known_ready_refs_needs_no_node(fresh_cluster2):
    node = fresh_cluster2.nodes[0]
    out = fresh_cluster2.run_driver(0, DRIVER.format(node_pid=node.pid), timeout=120)
    assert out.returncode == 0, out.stderr
    line = [l for l in out.stdout.splitlines() if l.startswith("result")][-1]
    assert line == "result True 200 0 [199, 198, 197] 197 1 True", line
