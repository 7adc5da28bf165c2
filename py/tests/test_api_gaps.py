"""Smaller pieces of Ray's API: cloudpickle, wait on nothing, argument
checks on actor methods, task errors, ending actors from inside,
`__ray_ready__`, `retry_exceptions` and `runtime_env`."""

import os
import re
import subprocess
import sys
import threading
import time

import pytest

from raynode import exceptions
from raynode.exceptions import ActorDiedError, RayActorError, RayError, RayTaskError, WorkerCrashedError


def _gone(pid, timeout=30):
    """Whether process `pid` ends within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


# -- cloudpickle ---------------------------------------------------------------


def test_cloudpickle_is_reexported():
    import cloudpickle as upstream

    import raynode
    from raynode import cloudpickle

    assert cloudpickle is upstream
    assert raynode.cloudpickle is upstream
    scale = 3
    assert cloudpickle.loads(cloudpickle.dumps(lambda x: x * scale))(2) == 6


# -- wait ------------------------------------------------------------------------


def test_wait_on_an_empty_list(ray):
    assert ray.wait([]) == ([], [])
    assert ray.wait([], num_returns=0) == ([], [])
    assert ray.wait([], timeout=0) == ([], [])
    with pytest.raises(ValueError):
        ray.wait([ray.put(1)], num_returns=0)
    with pytest.raises(TypeError):
        ray.wait(ray.put(1))


# -- actor method arguments --------------------------------------------------------


def test_actor_method_with_wrong_arguments_raises_type_error_at_remote(ray):
    @ray.remote
    class A:
        def m(self, a, b=2, *, c=3):
            return a + b + c

        def star(self, *args, **kwargs):
            return len(args) + len(kwargs)

        @staticmethod
        def static(x):
            return x

        async def coro(self, x):
            return x

    a = A.remote()
    with pytest.raises(TypeError, match="missing a required argument: 'a'"):
        a.m.remote()
    with pytest.raises(TypeError, match="too many positional arguments"):
        a.m.remote(1, 2, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'd'"):
        a.m.remote(1, d=4)
    with pytest.raises(TypeError):
        a.static.remote()
    with pytest.raises(TypeError):
        a.coro.remote(1, 2)
    assert ray.get(a.m.remote(1)) == 6
    assert ray.get(a.m.remote(1, 1, c=1)) == 3
    assert ray.get(a.star.remote(1, 2, k=3)) == 3
    assert ray.get(a.static.remote(5)) == 5
    assert ray.get(a.coro.remote(7)) == 7


def test_handles_from_elsewhere_check_arguments_too(ray):
    @ray.remote
    class Named:
        def one(self, x):
            return x

    Named.options(name="args-checked").remote()
    got = ray.get_actor("args-checked")
    with pytest.raises(TypeError):
        got.one.remote()

    @ray.remote
    def call_without_args(h):
        try:
            h.one.remote()
        except TypeError as e:
            return str(e)
        return "no error"

    assert "missing a required argument" in ray.get(call_without_args.remote(got))
    ray.kill(got)


# -- task errors -------------------------------------------------------------------------


def test_task_error_text_follows_rays_layout(ray):
    @ray.remote
    def boom():
        raise ValueError(f"boom from {os.getpid()}")

    with pytest.raises(ValueError) as info:
        ray.get(boom.remote())
    err = info.value
    assert isinstance(err, RayTaskError)
    text = str(err)
    header = text.splitlines()[0]
    m = re.fullmatch(r"ray::boom\(\) \(pid=(\d+), ip=([^)]+)\)", header)
    assert m, header
    assert f"boom from {m.group(1)}" in text
    assert 'in boom\n    raise ValueError(f"boom from {os.getpid()}")' in text
    assert text.rstrip().endswith(f"ValueError: boom from {m.group(1)}")
    # The traceback is the user's, not the worker's machinery.
    assert "_worker.py" not in text
    assert err.pid == int(m.group(1)) and err.ip == m.group(2)
    assert isinstance(err.cause, ValueError)

    @ray.remote
    class A:
        def fail(self):
            raise KeyError("in actor")

    with pytest.raises(KeyError) as info:
        ray.get(A.remote().fail.remote())
    assert re.match(r"ray::A\.fail\(\) \(pid=\d+, ip=[^,]+, actor_id=[0-9a-f]+\)\n", str(info.value))


def test_an_exception_class_that_cannot_be_rebuilt_is_a_ray_task_error_with_its_text(ray):
    class NeedsTwo(Exception):
        def __init__(self, a, b):
            super().__init__(f"needs {a} and {b}")

    @ray.remote
    def two():
        raise NeedsTwo(1, 2)

    with pytest.raises(RayTaskError) as info:
        ray.get(two.remote())
    assert "NeedsTwo: needs 1 and 2" in str(info.value)
    assert isinstance(info.value.cause, RayError)
    assert "needs 1 and 2" in str(info.value.cause)


def test_an_exception_that_cannot_be_pickled_comes_back_as_its_text(ray):
    class Unpicklable(Exception):
        def __init__(self, msg):
            super().__init__(msg)
            self.lock = threading.Lock()

    @ray.remote
    def unp():
        raise Unpicklable("cannot pickle me")

    with pytest.raises(RayTaskError) as info:
        ray.get(unp.remote())
    err = info.value
    assert not isinstance(err, Unpicklable)
    assert type(err.cause) is RayError
    assert "cannot pickle me" in str(err.cause)
    assert "Unpicklable" in str(err.cause)
    assert "Unpicklable: cannot pickle me" in str(err)


def test_no_raynode_error_is_a_system_exit_or_keyboard_interrupt(ray):
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, Exception), name
    for cause in (SystemExit(3), KeyboardInterrupt(), GeneratorExit()):
        err = RayTaskError("f", "tb", cause).as_instanceof_cause()
        assert isinstance(err, Exception) and isinstance(err, RayTaskError)
        assert not isinstance(err, (SystemExit, KeyboardInterrupt, GeneratorExit))

    class Halt(BaseException):
        pass

    @ray.remote(max_retries=0)
    def halt():
        raise Halt("halted")

    with pytest.raises(RayTaskError, match="halted") as info:
        ray.get(halt.remote())
    assert not isinstance(info.value, Halt)


def test_sys_exit_in_a_task_ends_its_worker_not_the_driver(ray):
    @ray.remote(max_retries=0)
    def leave():
        sys.exit(0)

    with pytest.raises(WorkerCrashedError):
        ray.get(leave.remote(), timeout=60)


# -- ending an actor from inside ----------------------------------------------------------


def _exiting_actor(ray):
    @ray.remote
    class Leaver:
        def pid(self):
            return os.getpid()

        def leave(self):
            ray.actor.exit_actor()

        def sys_exit(self, code=None):
            sys.exit(code)

        def ping(self):
            return "pong"

    return Leaver


def test_exit_actor_ends_the_actor_for_good(ray):
    Leaver = _exiting_actor(ray)
    a = Leaver.options(max_restarts=2).remote()
    pid = ray.get(a.pid.remote())
    leave = a.leave.remote()
    queued = a.ping.remote()
    with pytest.raises(ActorDiedError, match="exit_actor"):
        ray.get(leave, timeout=30)
    with pytest.raises(RayActorError):
        ray.get(queued, timeout=30)
    # Not restarted, although it had restarts left.
    with pytest.raises(RayActorError):
        ray.get(a.ping.remote(), timeout=30)
    assert _gone(pid)


@pytest.mark.parametrize("code", [None, 0])
def test_sys_exit_in_an_actor_method_ends_the_actor(ray, code):
    Leaver = _exiting_actor(ray)
    a = Leaver.options(max_restarts=1).remote()
    pid = ray.get(a.pid.remote())
    with pytest.raises(RayActorError):
        ray.get(a.sys_exit.remote(code), timeout=30)
    with pytest.raises(RayActorError):
        ray.get(a.ping.remote(), timeout=30)
    assert _gone(pid)


def test_sys_exit_with_an_error_status_is_a_crash_that_may_restart(ray):
    Leaver = _exiting_actor(ray)
    a = Leaver.options(max_restarts=1).remote()
    pid = ray.get(a.pid.remote())
    with pytest.raises(RayActorError):
        ray.get(a.sys_exit.remote(3), timeout=30)
    assert ray.get(a.ping.remote(), timeout=60) == "pong"
    assert ray.get(a.pid.remote()) != pid
    ray.kill(a)


def test_exit_actor_in_threaded_and_async_actors(ray):
    @ray.remote(max_concurrency=2)
    class Threaded:
        def leave(self):
            ray.actor.exit_actor()

        def ping(self):
            return 1

    @ray.remote
    class Async:
        async def leave(self):
            ray.actor.exit_actor()

        async def ping(self):
            return 1

    for cls in (Threaded, Async):
        a = cls.remote()
        assert ray.get(a.ping.remote()) == 1
        with pytest.raises(RayActorError):
            ray.get(a.leave.remote(), timeout=30)
        with pytest.raises(RayActorError):
            ray.get(a.ping.remote(), timeout=30)


def test_exit_actor_in_the_constructor(ray):
    @ray.remote
    class Never:
        def __init__(self):
            ray.actor.exit_actor()

        def ping(self):
            return 1

    with pytest.raises(RayActorError):
        ray.get(Never.remote().ping.remote(), timeout=30)


def test_exit_actor_outside_an_actor_is_a_type_error(ray):
    with pytest.raises(TypeError, match="actor"):
        ray.actor.exit_actor()

    @ray.remote
    def in_a_task():
        ray.actor.exit_actor()

    with pytest.raises(TypeError, match="actor"):
        ray.get(in_a_task.remote())


def test_ray_terminate_lets_earlier_calls_finish(ray):
    @ray.remote
    class Slow:
        def work(self):
            time.sleep(0.3)
            return "done"

        def ping(self):
            return 1

    a = Slow.remote()
    first = a.work.remote()
    a.__ray_terminate__.remote()
    after = a.ping.remote()
    assert ray.get(first, timeout=30) == "done"
    with pytest.raises(RayActorError):
        ray.get(after, timeout=30)


# -- __ray_ready__ -------------------------------------------------------------------------------


def test_ray_ready_resolves_once_the_actor_is_constructed(ray):
    @ray.remote
    class SlowStart:
        def __init__(self, path):
            time.sleep(0.5)
            self.path = path

    a = SlowStart.remote("x")
    ready = a.__ray_ready__.remote()
    assert isinstance(ready, ray.ObjectRef)
    assert ray.get(ready, timeout=30) is True

    @ray.remote
    class Broken:
        def __init__(self):
            raise RuntimeError("cannot build")

    with pytest.raises(RayActorError, match="cannot build"):
        ray.get(Broken.remote().__ray_ready__.remote(), timeout=30)


# -- retry_exceptions ---------------------------------------------------------------------------


def _attempts(path):
    try:
        with open(path) as f:
            return len(f.read())
    except FileNotFoundError:
        return 0


def test_retry_exceptions_list_retries_only_the_listed_types(ray, tmp_path):
    class Flaky(Exception):
        pass

    class SubFlaky(Flaky):
        pass

    @ray.remote(max_retries=3, retry_exceptions=[Flaky])
    def flaky(path, error_type, fail_times):
        with open(path, "a") as f:
            f.write("x")
        with open(path) as f:
            attempt = len(f.read())
        if attempt <= fail_times:
            raise error_type("try again")
        return "ok"

    listed = tmp_path / "listed"
    assert ray.get(flaky.remote(str(listed), Flaky, 2), timeout=60) == "ok"
    assert _attempts(listed) == 3

    sub = tmp_path / "sub"
    assert ray.get(flaky.remote(str(sub), SubFlaky, 1), timeout=60) == "ok"
    assert _attempts(sub) == 2

    unlisted = tmp_path / "unlisted"
    with pytest.raises(KeyError):
        ray.get(flaky.remote(str(unlisted), KeyError, 5), timeout=60)
    assert _attempts(unlisted) == 1

    exhausted = tmp_path / "exhausted"
    with pytest.raises(Flaky):
        ray.get(flaky.remote(str(exhausted), Flaky, 10), timeout=60)
    assert _attempts(exhausted) == 4

    any_error = tmp_path / "any"
    with_any = flaky.options(retry_exceptions=True)
    assert ray.get(with_any.remote(str(any_error), KeyError, 1), timeout=60) == "ok"
    assert _attempts(any_error) == 2

    none = tmp_path / "none"
    with pytest.raises(Flaky):
        ray.get(flaky.options(retry_exceptions=False).remote(str(none), Flaky, 1), timeout=60)
    assert _attempts(none) == 1


def test_retry_exceptions_rejects_what_is_not_a_bool_or_exception_types(ray):
    @ray.remote
    def f():
        return 1

    with pytest.raises(TypeError):
        f.options(retry_exceptions="ValueError")
    with pytest.raises(ValueError):
        f.options(retry_exceptions=[1])
    with pytest.raises(ValueError):
        f.options(retry_exceptions=[ValueError, "x"])
    assert ray.get(f.options(retry_exceptions=(ValueError,)).remote()) == 1


# -- runtime_env -------------------------------------------------------------------------------


def test_runtime_env_vars_in_task_and_actor_options(ray):
    @ray.remote
    def read(*names):
        return [os.environ.get(n) for n in names]

    @ray.remote
    def nested():
        return ray.get(read.remote("RN_TASK"))

    @ray.remote(runtime_env={"env_vars": {"RN_ACTOR": "a"}})
    class Reader:
        def read(self, name):
            return os.environ.get(name)

        def read_nested(self):
            return ray.get(read.remote("RN_ACTOR"))

    env = {"env_vars": {"RN_TASK": "t"}}
    assert ray.get(read.options(runtime_env=env).remote("RN_TASK")) == ["t"]
    assert os.environ.get("RN_TASK") is None
    # Applied around the task only: the next tasks in those workers see none.
    assert ray.get([read.remote("RN_TASK") for _ in range(8)]) == [[None]] * 8
    # Tasks started by a task inherit its environment.
    assert ray.get(nested.options(runtime_env=env).remote()) == ["t"]
    r = Reader.remote()
    assert ray.get(r.read.remote("RN_ACTOR")) == "a"
    assert ray.get(r.read_nested.remote()) == ["a"]
    r2 = Reader.options(runtime_env={"env_vars": {"RN_ACTOR": "b"}}).remote()
    assert ray.get(r2.read.remote("RN_ACTOR")) == "b"

    @ray.remote(runtime_env=env)
    def context():
        return ray.get_runtime_context().runtime_env

    assert ray.get(context.remote()) == {"env_vars": {"RN_TASK": "t"}}


def test_runtime_env_rejects_what_it_does_not_support(ray):
    @ray.remote
    def f():
        return 1

    for key in ("pip", "conda", "container", "uv", "no_such_key"):
        with pytest.raises(ValueError, match=key):
            f.options(runtime_env={key: "x"})
        with pytest.raises(ValueError, match=key):

            @ray.remote(runtime_env={key: "x"})
            class A:
                pass

    with pytest.raises(TypeError):
        f.options(runtime_env={"env_vars": {"A": 1}})
    with pytest.raises(TypeError):
        f.options(runtime_env={"env_vars": "A=1"})
    with pytest.raises(TypeError):
        f.options(runtime_env="env_vars")


_INIT_DRIVER = """
import json, os, sys
import raynode as ray
try:
    ray.init(num_cpus=1, runtime_env={"pip": ["requests"]})
except ValueError as e:
    print("refused:", e)
ray.init(num_cpus=1, runtime_env={"env_vars": {"RN_JOB": "job", "RN_BOTH": "job"}})

@ray.remote
def read():
    return [os.environ.get(n) for n in ("RN_JOB", "RN_BOTH", "RN_TASK")]

@ray.remote
def nested():
    return ray.get(read.remote())

@ray.remote
class Reader:
    def read(self):
        return ray.get(read.remote())

override = {"env_vars": {"RN_BOTH": "task", "RN_TASK": "t"}}
print(json.dumps({
    "task": ray.get(read.remote()),
    "nested": ray.get(nested.remote()),
    "actor": ray.get(Reader.remote().read.remote()),
    "merged": ray.get(read.options(runtime_env=override).remote()),
    "driver": os.environ.get("RN_JOB"),
}))
ray.shutdown()
"""


def test_runtime_env_given_to_init_applies_to_every_worker_of_the_job():
    import json

    out = subprocess.run([sys.executable, "-c", _INIT_DRIVER], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("refused:") and "pip" in lines[0]
    got = json.loads(lines[-1])
    assert got["task"] == ["job", "job", None]
    assert got["nested"] == ["job", "job", None]
    assert got["actor"] == ["job", "job", None]
    assert got["merged"] == ["job", "task", "t"]
    assert got["driver"] is None
