"""A private node started by `init()` says nothing on the driver's terminal
when nothing is wrong: not at start, not while other drivers come and go,
not at shutdown."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)

# Long enough for the node to have finished starting and joined nothing (its
# peer discovery would complain a moment after start, if it did).
SETTLE_S = 1.5


def run_driver(code, timeout=60):
    env = dict(os.environ)
    for name in ("RAYNODE_ADDRESS", "RAY_ADDRESS", "RAYNODE_LOG", "RUST_LOG"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_init_and_shutdown_write_nothing_to_stderr():
    res = run_driver(f"""
        import time
        import raynode as ray
        ray.init()

        @ray.remote
        def square(x):
            return x * x

        assert ray.get([square.remote(i) for i in range(20)]) == [i * i for i in range(20)]
        time.sleep({SETTLE_S})
        ray.shutdown()
        print("done")
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "done"
    assert res.stderr == ""


def test_a_driver_leaving_abruptly_is_not_reported():
    # A second driver connects to the first one's private node and leaves
    # with replies still unread (its end of the socket is reset).
    res = run_driver(f"""
        import subprocess, sys, textwrap, time
        import raynode as ray
        ctx = ray.init()

        other = '''
        import os, sys
        import raynode as ray
        ray.init(address=sys.argv[1])

        @ray.remote
        def chatty(i):
            for _ in range(200):
                print("x" * 200)
            return i

        refs = [chatty.remote(i) for i in range(20)]
        ray.get(refs[0])
        os._exit(0)
        '''
        subprocess.run([sys.executable, "-c", textwrap.dedent(other), ctx.address], check=True,
                       stdout=subprocess.DEVNULL, timeout=60)
        time.sleep({SETTLE_S})
        ray.shutdown()
        print("done")
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "done"
    assert res.stderr == ""


def test_a_driver_that_exits_without_shutdown_writes_nothing_to_stderr():
    res = run_driver("""
        import raynode as ray
        ray.init()

        @ray.remote
        def square(x):
            return x * x

        refs = [square.remote(i) for i in range(500)]
        print(ray.get(refs[0]))
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "0"
    assert res.stderr == ""
