"""Bad input from a program is refused at the call, with a ValueError."""

import subprocess
import sys

import pytest

BAD_AMOUNTS = [float("nan"), float("inf"), float("-inf"), -1, -0.5]


@pytest.mark.parametrize("bad", BAD_AMOUNTS)
def test_bad_resource_amounts_raise_value_error_at_the_call(ray, bad):
    @ray.remote
    def f():
        return 1

    @ray.remote
    class A:
        pass

    for options in ({"num_cpus": bad}, {"num_gpus": bad}, {"resources": {"custom": bad}}):
        with pytest.raises(ValueError):
            f.options(**options).remote()
        with pytest.raises(ValueError):
            A.options(**options).remote()
    # Nothing was submitted that could wedge the node.
    assert ray.get(f.remote()) == 1


def test_init_refuses_bad_amounts_before_starting_anything():
    code = (
        "import raynode as ray\n"
        "for kw in ({'num_cpus': float('nan')}, {'num_gpus': -1}, {'resources': {'x': float('inf')}}):\n"
        "    try:\n"
        "        ray.init(**kw)\n"
        "        print('accepted', kw)\n"
        "    except ValueError as e:\n"
        "        print('refused')\n"
        "print(ray.is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["refused", "refused", "refused", "False"], out.stdout + out.stderr
