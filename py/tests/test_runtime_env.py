"""Runtime environments: `working_dir` and `py_modules` (packed once,
content-addressed, shipped through the object store, unpacked per job;
the working dir is the workers' cwd and on `sys.path`), given to
`init` or to `.options`; and what is refused."""

import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

WAIT_S = 60


def _tree(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
    return str(root)


@pytest.fixture
def working_dir(tmp_path):
    """A directory with a module of a name nothing else has, and a data file."""
    name = "rn_wd_" + uuid.uuid4().hex[:8]
    root = _tree(tmp_path / "wd", {
        f"{name}.py": "VALUE = 'from the working dir'\n\ndef double(x):\n    return 2 * x\n",
        "data/input.txt": "hello from a file\n",
        "skipped/big.bin": "x" * 100,
    })
    return root, name


def test_working_dir_in_task_options(ray, working_dir):
    root, name = working_dir

    @ray.remote
    def use():
        import importlib

        m = importlib.import_module(name)
        with open("data/input.txt") as f:
            text = f.read().strip()
        return m.VALUE, text, os.getcwd() == sys.path[0], os.path.basename(os.getcwd())

    got = ray.get(use.options(runtime_env={"working_dir": root}).remote(), timeout=WAIT_S)
    assert got[:3] == ("from the working dir", "hello from a file", True)
    assert got[3].startswith("pkg_")
    # Not in the driver, and not in tasks without it.
    with pytest.raises(ImportError):
        __import__(name)

    @ray.remote
    def plain():
        try:
            __import__(name)
            return "imported"
        except ImportError:
            return "no module"

    assert ray.get([plain.remote() for _ in range(8)], timeout=WAIT_S) == ["no module"] * 8


def test_working_dir_for_an_actor_and_nested_tasks(ray, working_dir):
    root, name = working_dir

    @ray.remote
    def child():
        return __import__(name).double(21)

    @ray.remote
    def parent():
        return ray.get(child.remote())

    @ray.remote(runtime_env={"working_dir": root})
    class User:
        def __init__(self):
            self.m = __import__(name)

        def value(self):
            with open("data/input.txt") as f:
                return self.m.VALUE, f.read().strip()

        def nested(self):
            return ray.get(child.remote())

    u = User.remote()
    assert ray.get(u.value.remote(), timeout=WAIT_S) == ("from the working dir", "hello from a file")
    assert ray.get(u.nested.remote(), timeout=WAIT_S) == 42
    assert ray.get(parent.options(runtime_env={"working_dir": root}).remote(), timeout=WAIT_S) == 42


def test_a_function_defined_in_the_working_dir(ray, working_dir):
    """A function from a module the worker can import only from the working
    dir travels by reference, and is unpickled after the dir is in place."""
    root, name = working_dir
    sys.path.insert(0, root)
    try:
        m = __import__(name)
    finally:
        sys.path.remove(root)
    try:
        f = ray.remote(m.double)
        assert ray.get(f.options(runtime_env={"working_dir": root}).remote(5), timeout=WAIT_S) == 10
    finally:
        sys.modules.pop(name, None)


def test_working_dir_package_is_content_addressed(ray, working_dir, tmp_path):
    root, name = working_dir
    copy = _tree(tmp_path / "copy", {
        f"{name}.py": open(os.path.join(root, f"{name}.py")).read(),
        "data/input.txt": "hello from a file\n",
        "skipped/big.bin": "x" * 100,
    })
    other = _tree(tmp_path / "other", {f"{name}.py": "VALUE = 'other'\n"})

    @ray.remote
    def where():
        return ray.get_runtime_context().runtime_env["working_dir"], __import__(name).VALUE

    a = ray.get(where.options(runtime_env={"working_dir": root}).remote(), timeout=WAIT_S)
    b = ray.get(where.options(runtime_env={"working_dir": copy}).remote(), timeout=WAIT_S)
    c = ray.get(where.options(runtime_env={"working_dir": other}).remote(), timeout=WAIT_S)
    assert a[0] == b[0] and a[0].startswith("raynode://pkg_") and a[0].endswith(".zip")
    assert c[0] != a[0]
    assert (a[1], c[1]) == ("from the working dir", "other")


def test_excludes_leave_files_out(ray, working_dir):
    root, _ = working_dir

    @ray.remote
    def listing():
        return sorted(os.listdir("."))

    env = {"working_dir": root, "excludes": ["skipped/"]}
    got = ray.get(listing.options(runtime_env=env).remote(), timeout=WAIT_S)
    assert "data" in got and "skipped" not in got


def test_py_modules(ray, tmp_path):
    pkg = "rn_pkg_" + uuid.uuid4().hex[:8]
    single = "rn_single_" + uuid.uuid4().hex[:8]
    _tree(tmp_path, {
        f"{pkg}/__init__.py": "from .inner import NAME\n",
        f"{pkg}/inner.py": "NAME = 'package'\n",
        f"{single}.py": "NAME = 'single file'\n",
    })

    @ray.remote
    def names():
        return __import__(pkg).NAME, __import__(single).NAME, os.getcwd()

    env = {"py_modules": [str(tmp_path / pkg), str(tmp_path / f"{single}.py")]}
    got = ray.get(names.options(runtime_env=env).remote(), timeout=WAIT_S)
    assert got[:2] == ("package", "single file")
    # py_modules leave the cwd alone.
    assert not os.path.basename(got[2]).startswith("pkg_")

    # A module imported in the driver is shipped from its file.
    sys.path.insert(0, str(tmp_path))
    try:
        module = __import__(pkg)
    finally:
        sys.path.remove(str(tmp_path))
    try:
        assert ray.get(names.options(runtime_env={"py_modules": [module, str(tmp_path / f"{single}.py")]}).remote(),
                       timeout=WAIT_S)[:2] == ("package", "single file")
    finally:
        for m in [k for k in sys.modules if k == pkg or k.startswith(pkg + ".")]:
            del sys.modules[m]


def test_runtime_env_bad_input(ray, tmp_path):
    @ray.remote
    def f():
        return 1

    with pytest.raises(ValueError, match="working_dir"):
        f.options(runtime_env={"working_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="working_dir.*remote URIs"):
        f.options(runtime_env={"working_dir": "s3://bucket/dir.zip"})
    with pytest.raises(TypeError, match="working_dir"):
        f.options(runtime_env={"working_dir": 3})
    with pytest.raises(TypeError, match="py_modules"):
        f.options(runtime_env={"py_modules": str(tmp_path)})
    with pytest.raises(ValueError, match="py_modules"):
        f.options(runtime_env={"py_modules": [str(tmp_path / "missing")]})
    with pytest.raises(ValueError, match="py_modules"):
        f.options(runtime_env={"py_modules": ["pkg-1.0-py3-none-any.whl"]})
    with pytest.raises(TypeError, match="excludes"):
        f.options(runtime_env={"working_dir": str(tmp_path), "excludes": "*.bin"})
    for key in ("pip", "conda", "container"):
        with pytest.raises(ValueError, match=key):
            f.options(runtime_env={key: ["x"]})


_INIT_DRIVER = """
import json, os, sys
import raynode as ray
root, name = sys.argv[1], sys.argv[2]
try:
    ray.init(num_cpus=2, runtime_env={"working_dir": os.path.join(root, "missing")})
except ValueError as e:
    print("refused:", e)
ray.init(num_cpus=2, runtime_env={"working_dir": root, "env_vars": {"RN_JOB": "job"}})

@ray.remote
def task():
    return __import__(name).VALUE, open("data/input.txt").read().strip(), os.environ.get("RN_JOB")

@ray.remote
def nested():
    return ray.get(task.remote())

@ray.remote
class A:
    def read(self):
        return ray.get(task.remote())

print(json.dumps({
    "task": ray.get(task.remote()),
    "nested": ray.get(nested.remote()),
    "actor": ray.get(A.remote().read.remote()),
    "driver_cwd": os.getcwd(),
    "context": ray.get_runtime_context().runtime_env,
}))
ray.shutdown()
"""


def test_working_dir_given_to_init_applies_to_the_whole_job(working_dir, tmp_path):
    root, name = working_dir
    out = subprocess.run([sys.executable, "-c", _INIT_DRIVER, root, name], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("refused:") and "working_dir" in lines[0]
    got = json.loads(lines[-1])
    expected = ["from the working dir", "hello from a file", "job"]
    assert got["task"] == expected and got["nested"] == expected and got["actor"] == expected
    assert got["driver_cwd"] == str(tmp_path)
    assert got["context"]["working_dir"].startswith("raynode://pkg_")
    assert got["context"]["env_vars"] == {"RN_JOB": "job"}
