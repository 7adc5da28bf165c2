import os

import pytest
from standalone_node import StandaloneNode


@pytest.fixture
def small_store_node():
    """A node whose 16 MiB store holds at most one 8 MB array besides the
    one being written: further live ones are spilled to its data dir."""
    node = StandaloneNode(extra=("--object-store-memory", str(16 << 20)))
    yield node
    node.stop()


def test_objects_spill_to_disk_and_come_back_on_get(small_store_node):
    # Six live 8 MB arrays: most are spilled, and a get restores each one,
    # over and over.
    spill = os.path.join(small_store_node.dir, "spill")
    out = small_store_node.run_driver(
        "import os, numpy as np, raynode as ray\n"
        "ray.init()\n"
        "refs = [ray.put(np.full(1_000_000, float(i))) for i in range(6)]\n"
        f"print('spilled', len(os.listdir({spill!r})))\n"
        "for _ in range(2):\n"
        "    for i, r in enumerate(refs):\n"
        "        a = ray.get(r)\n"
        "        assert a.shape == (1_000_000,) and a[0] == a[-1] == i, (i, a[0], a[-1])\n"
        "        del a\n"
        "print('ok')\n",
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[-1] == "ok", out.stdout
    assert int(lines[1]) >= 4, out.stdout
    assert small_store_node.proc.poll() is None


def test_a_value_spilled_after_the_node_named_its_file_is_asked_for_again(small_store_node):
    # The node names a value's file, then (before the driver maps it) other
    # puts spill that object: the old name is stale, and a get asks again.
    out = small_store_node.run_driver(
        "import numpy as np, raynode as ray\n"
        "from raynode import _api, _runtime, _serialization\n"
        "ray.init()\n"
        "client = _runtime.client()\n"
        "a = ray.put(np.full(1_000_000, 1.0))\n"
        "old = client.get([a], None)\n"
        "others = [ray.put(np.full(1_000_000, 2.0)) for _ in range(3)]\n"
        "try:\n"
        "    _serialization.deserialize(old[0])\n"
        "    print('still there')\n"
        "except _serialization.StalePath as e:\n"
        "    assert isinstance(e, ray.exceptions.ObjectLostError)\n"
        "    print('stale')\n"
        "value = _api._decode(client, [a], old, None)[0]\n"
        "print('value', value[0], value[-1])\n",
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["stale", "value 1.0 1.0"], out.stdout


def test_a_put_the_store_cannot_hold_raises_object_store_full_error(small_store_node):
    out = small_store_node.run_driver(
        "import numpy as np, raynode as ray\n"
        "from raynode.exceptions import ObjectStoreFullError\n"
        "ray.init()\n"
        "try:\n"
        "    ray.put(np.zeros(32 << 20, dtype=np.uint8))\n"
        "    print('stored')\n"
        "except ObjectStoreFullError as e:\n"
        "    print('full', 'larger than the store' in str(e))\n"
        "print(ray.get(ray.put(np.ones(1 << 20)))[0])\n",
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["full", "True", "1.0"], out.stdout
    assert small_store_node.proc.poll() is None
