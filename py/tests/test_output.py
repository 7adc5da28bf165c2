"""Worker output in the driver: what tasks and actors print reaches the
driver that submitted the work, prefixed as Ray prefixes it."""

import os
import re
import subprocess
import sys

import pytest


def run_driver(code, timeout=120):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


PRINTS = """
import sys
import raynode as ray
ray.init(num_cpus=2{extra})

@ray.remote
def shout(i):
    print("task says", i)
    print("task warns", i, file=sys.stderr)
    return i

@ray.remote
class Talker:
    def say(self, text):
        print("actor says", text)
        return text

assert ray.get([shout.remote(i) for i in range(3)]) == [0, 1, 2]
t = Talker.remote()
assert ray.get(t.say.remote("hi")) == "hi"
# Output travels on its own; a get does not wait for it.
ray.get(shout.remote(99))
import time; time.sleep(1.0)
ray.shutdown()
print("driver done")
"""


def test_task_and_actor_output_reaches_the_driver_with_rays_prefix():
    out = run_driver(PRINTS.format(extra=""))
    assert out.returncode == 0, out.stderr
    for i in range(3):
        assert re.search(rf"^\(shout pid=\d+, ip=[\d.]+\) task says {i}$", out.stdout, re.M), out.stdout
        assert re.search(rf"^\(shout pid=\d+, ip=[\d.]+\) task warns {i}$", out.stderr, re.M), out.stderr
    assert re.search(r"^\(Talker pid=\d+, ip=[\d.]+\) actor says hi$", out.stdout, re.M), out.stdout
    assert "task warns" not in out.stdout and "task says" not in out.stderr
    assert out.stdout.rstrip().endswith("driver done")


def test_log_to_driver_false_keeps_output_out_of_the_driver():
    out = run_driver(PRINTS.format(extra=", log_to_driver=False"))
    assert out.returncode == 0, out.stderr
    assert "task says" not in out.stdout and "actor says" not in out.stdout
    assert "task warns" not in out.stderr
    assert "driver done" in out.stdout


FLOOD = """
import raynode as ray
ray.init(num_cpus=2)

@ray.remote
def flood():
    line = "x" * 99
    for _ in range(1_000_000):  # 100 MB
        print(line)
    return "flooded"

@ray.remote
def small():
    return 5

ref = flood.remote()
# The node keeps serving while the worker floods its pipe.
assert sum(ray.get([small.remote() for _ in range(50)])) == 250
assert ray.get(ref) == "flooded"
import time; time.sleep(1.5)
ray.shutdown()
print("driver done")
"""


def test_a_worker_printing_100_mb_is_rate_limited_with_a_note():
    out = run_driver(FLOOD, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "driver done" in out.stdout
    forwarded = out.stdout.count("x" * 99)
    assert 0 < forwarded < 1_000_000
    assert "lines of output were not forwarded" in out.stdout


def test_every_line_is_kept_in_the_workers_log_file_under_the_data_dir(standalone_node):
    out = standalone_node.run_driver(
        "import raynode as ray\nray.init(log_to_driver=False)\n"
        "@ray.remote\ndef f():\n    print('kept in the log 4242')\n    return 1\n"
        "print(ray.get(f.remote()))\n"
    )
    assert out.stdout.strip() == "1", out.stderr
    logs = os.path.join(standalone_node.dir, "logs")
    deadline_lines = []
    for _ in range(50):  # the node writes the file as the line arrives
        deadline_lines = [open(os.path.join(logs, n)).read() for n in os.listdir(logs) if n.endswith(".out")]
        if any("kept in the log 4242" in text for text in deadline_lines):
            break
        import time

        time.sleep(0.1)
    assert any("kept in the log 4242" in text for text in deadline_lines)
    assert oct(os.stat(logs).st_mode & 0o777) == "0o700"
