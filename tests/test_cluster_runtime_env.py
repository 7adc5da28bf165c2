"""Runtime environments across a 3-node cluster: a working_dir given to
`init` reaches tasks and actors on every node, through the object store."""

import json
import os
import textwrap
import uuid

import pytest

pytestmark = pytest.mark.timeout(240)

_DRIVER = """
import json, os, sys, time
import raynode as ray
root, name = sys.argv[1], sys.argv[2]
ray.init(runtime_env={"working_dir": root})

@ray.remote
def where(i):
    time.sleep(0.2)
    m = __import__(name)
    with open("data.txt") as f:
        return m.VALUE, f.read().strip(), ray.get_runtime_context().get_node_id()

@ray.remote(resources={"special": 1})
class OnThird:
    def read(self):
        return __import__(name).VALUE, ray.get_runtime_context().get_node_id()

print(json.dumps({
    "tasks": ray.get([where.remote(i) for i in range(60)]),
    "actor": ray.get(OnThird.remote().read.remote()),
}))
"""


def test_working_dir_module_importable_on_every_node(cluster3, tmp_path):
    name = "rn_wd_" + uuid.uuid4().hex[:8]
    root = tmp_path / "wd"
    root.mkdir()
    (root / f"{name}.py").write_text(textwrap.dedent("VALUE = 'only in the working dir'\n"))
    (root / "data.txt").write_text("data file\n")
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    res = cluster3.run_driver(0, script=str(script), args=[str(root), name], timeout=180)
    assert res.returncode == 0, f"driver failed:\n{res.stdout}\n{res.stderr}"
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert {(v, d) for v, d, _ in got["tasks"]} == {("only in the working dir", "data file")}
    ran_on = {n.lower() for _, _, n in got["tasks"]}
    assert ran_on == {n.node_id for n in cluster3.nodes}
    value, node = got["actor"]
    assert value == "only in the working dir" and node.lower() == cluster3.nodes[2].node_id
    # Unpacked under each node's own data dir.
    for n in cluster3.nodes:
        assert os.path.isdir(os.path.join(n.data_dir, "runtime_env")), n.data_dir
