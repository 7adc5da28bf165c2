"""raynode.util.state on one node: a task's row found by its hex id and by
one of its ObjectRefs, as in Ray."""

import pytest

from standalone_node import StandaloneNode

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def node():
    n = StandaloneNode(num_cpus=2)
    yield n
    n.stop()


def test_get_task_takes_a_hex_id_or_an_object_ref(node):
    res = node.run_driver("""
import raynode as ray
from raynode.util.state import get_task
ray.init()

@ray.remote
def work():
    return 1

ref = work.remote()
assert ray.get(ref) == 1
by_ref = get_task(ref)
by_hex = get_task(ref.task_id())
assert by_ref is not None and by_hex is not None
assert by_ref.task_id == by_hex.task_id == ref.task_id()
assert by_ref.state == "FINISHED", by_ref.state
assert get_task("00" * 16) is None
print("ok")
""")
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout
