"""`raynode.experimental.tqdm_ray.tqdm`: bars made in tasks and actors are
drawn by the driver, one per task bar, labelled like the task's output."""

import re
import subprocess
import sys

BARS = """
import raynode as ray
from raynode.experimental.tqdm_ray import tqdm
ray.init(num_cpus=2)

@ray.remote
def work(k):
    for _ in tqdm(range(5), desc=f"work {k}", flush_interval_s=0):
        pass
    return k

@ray.remote
class Copier:
    def copy(self):
        with tqdm(total=3, desc="copying", unit="files") as bar:
            for _ in range(3):
                bar.update(1)
        return "copied"

assert ray.get([work.remote(i) for i in range(2)]) == [0, 1]
assert ray.get(Copier.remote().copy.remote()) == "copied"
here = tqdm(total=2, desc="in the driver")
here.update(2)
here.close()
# Output travels on its own: a get does not wait for it.
import time; time.sleep(1.5)
ray.shutdown()
"""


def test_bars_of_tasks_and_actors_reach_the_driver():
    out = subprocess.run([sys.executable, "-c", BARS], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for k in (0, 1):
        assert re.search(rf"^\(work pid=\d+, ip=[\d.]+\) work {k}: 100%\|█+\| 5/5 it$", out.stdout, re.M), out.stdout
    assert re.search(r"^\(Copier pid=\d+, ip=[\d.]+\) copying: 100%\|█+\| 3/3 files$", out.stdout, re.M), out.stdout
    assert re.search(r"^\(driver\) in the driver: 100%\|█+\| 2/2 it$", out.stdout, re.M), out.stdout
    # The bars' state lines themselves are never shown.
    assert "raynode-bar" not in out.stdout + out.stderr


def test_a_bar_needs_an_iterable_to_iterate():
    import pytest

    from raynode.experimental.tqdm_ray import tqdm

    bar = tqdm(total=1, flush_interval_s=60)
    with pytest.raises(ValueError, match="No iterable"):
        iter(bar).__next__()
    bar.close()
