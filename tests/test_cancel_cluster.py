"""ray.cancel of a task running on another node interrupts it there, as
on the driver's own node: its worker lives on unless force=True."""

import pytest

CANCEL = """
import os, sys, time
import raynode as ray
ray.init()

@ray.remote(resources={{"special": 1}}, max_retries=0)
def spin(path):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.01)

path = {path!r}
ref = spin.remote(path)
deadline = time.monotonic() + 30
while not os.path.exists(path) and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.1)
pid = int(open(path).read())
ray.cancel(ref, force={force})
try:
    ray.get(ref, timeout=30)
    sys.exit("the task was not cancelled")
except ray.exceptions.TaskCancelledError:
    pass
time.sleep(0.5)
try:
    os.kill(pid, 0)
    print("worker alive")
except ProcessLookupError:
    print("worker gone")
"""


@pytest.mark.parametrize("force,expect", [(False, "worker alive"), (True, "worker gone")])
def test_cancel_a_task_on_another_node(cluster3, tmp_path, force, expect):
    out = cluster3.run_driver(0, CANCEL.format(path=str(tmp_path / f"pid-{force}"), force=force))
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout
