"""Generator items made on another node reach the driver that owns them,
as they are made."""


def test_items_made_on_another_node_stream_to_the_driver(cluster3, tmp_path):
    gate = tmp_path / "open"
    code = f"""
import os, time
import numpy as np
import raynode as ray
ray.init()

def wait_for(path, bound_s=30.0):
    deadline = time.monotonic() + bound_s
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)

@ray.remote(resources={{"special": 1}})
def far(gate):
    yield ray.get_runtime_context().get_node_id()
    yield np.arange(1_000_000)  # stored: pulled from the far node
    wait_for(gate)
    yield "after the gate"
    raise KeyError("far failure")

gen = far.remote({str(gate)!r})
where = ray.get(next(gen))
big = ray.get(next(gen))
assert int(big[-1]) == 999_999
# The task is held at the gate: these items came before it ended.
assert not gen.is_finished()
open({str(gate)!r}, "w").close()
assert ray.get(next(gen)) == "after the gate"
try:
    ray.get(next(gen))
    raise SystemExit("no error item")
except KeyError as e:
    assert "far failure" in str(e)
try:
    next(gen)
    raise SystemExit("no end")
except StopIteration:
    pass

# Half each: the actor keeps its share while far_dynamic runs.
@ray.remote(resources={{"special": 0.5}})
class FarActor:
    def squares(self, n):
        for i in range(n):
            yield i * i

@ray.remote(resources={{"special": 0.5}}, num_returns="dynamic")
def far_dynamic(n):
    for i in range(n):
        yield np.full(300_000, i)

a = FarActor.remote()
assert ray.get(list(a.squares.remote(4))) == [0, 1, 4, 9]
assert [int(x[0]) for x in ray.get(list(ray.get(far_dynamic.remote(3))))] == [0, 1, 2]
print("made on", where)
"""
    out = cluster3.run_driver(0, code)
    assert out.returncode == 0, out.stderr
    assert f"made on {cluster3.nodes[2].node_id}" in out.stdout.lower()
