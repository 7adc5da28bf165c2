"""Output of work that runs on another node reaches the driver that
submitted it, prefixed with that node's worker."""

import re


def test_a_task_on_another_node_prints_in_the_driver(cluster3):
    code = """
import raynode as ray
ray.init()

@ray.remote(resources={"special": 1})
def far():
    print("hello from far away")
    return ray.get_runtime_context().get_node_id()

@ray.remote(resources={"special": 1})
class Far:
    def say(self):
        print("actor far away")
        return 1

node = ray.get(far.remote())
a = Far.remote()
assert ray.get(a.say.remote()) == 1
import time; time.sleep(1.5)
print("ran on", node)
"""
    out = cluster3.run_driver(0, code)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^\(far pid=\d+, ip=127\.0\.0\.1\) hello from far away$", out.stdout, re.M), out.stdout
    assert re.search(r"^\(Far pid=\d+, ip=127\.0\.0\.1\) actor far away$", out.stdout, re.M), out.stdout
    assert f"ran on {cluster3.nodes[2].node_id}" in out.stdout.lower()
