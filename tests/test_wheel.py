"""The wheel is the whole install: built with `maturin build --release -m
py/Cargo.toml`, installed with pip into a fresh venv that has nothing else
but numpy, it gives a `raynode` command and a package whose `init()` starts
a node and runs tasks, with no Rust toolchain and no environment variables.

The wheel is built in the workspace's release target dir (CARGO_TARGET_DIR
when set), after `scripts/setup` built the same release profile, so only
the packaging is new work."""

import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.timeout(900)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MATURIN = os.path.join(os.path.dirname(sys.executable), "maturin")


def clean_env(**extra):
    """No Rust, no raynode settings, no repo on the path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAYNODE_", "RAY_", "CARGO", "RUST", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/bin:/bin"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    res = subprocess.run([MATURIN, "build", "--release", "-m", os.path.join(REPO, "py", "Cargo.toml"),
                          "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=840)
    assert res.returncode == 0, res.stdout + res.stderr
    wheels = glob.glob(str(out / "raynode-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_carries_the_binary_with_honest_tags(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        scripts = [n for n in names if re.fullmatch(r"raynode-[^/]+\.data/scripts/raynode", n)]
        assert scripts, names
        info = zf.getinfo(scripts[0])
        assert (info.external_attr >> 16) & 0o111, "the binary is executable"
        binary = zf.read(scripts[0])
        assert any(re.fullmatch(r"raynode/_core\..*\.so", n) for n in names), names
    assert binary[:4] == b"\x7fELF"
    # manylinux_2_X promises the binary runs on glibc 2.X: no symbol it
    # needs may come from a later glibc.
    tag = re.search(r"-(manylinux_(\d+)_(\d+)_x86_64|linux_x86_64)\.whl$", os.path.basename(wheel))
    assert tag, wheel
    if tag.group(1) != "linux_x86_64":
        needed = max(int(m) for m in re.findall(rb"GLIBC_2\.(\d+)", binary))
        assert (int(tag.group(2)), int(tag.group(3))) >= (2, needed), (wheel, needed)


def test_a_fresh_venv_with_only_the_wheel_and_numpy_runs_a_task(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=clean_env())
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", wheel, "numpy"], capture_output=True,
                         text=True, timeout=600, env=clean_env())
    assert pip.returncode == 0, pip.stdout + pip.stderr
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(HOME=str(home), PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    assert shutil.which("raynode", path=env["PATH"]) == str(venv / "bin" / "raynode")
    assert shutil.which("cargo", path=env["PATH"]) is None

    version = subprocess.run(["raynode", "--version"], capture_output=True, text=True, timeout=30, env=env)
    assert version.returncode == 0 and version.stdout.startswith("raynode "), version.stdout + version.stderr

    program = """
import numpy as np
import raynode as ray
ray.init()

@ray.remote
def total(a):
    return float(a.sum())

assert ray.get(total.remote(np.ones(1 << 20))) == float(1 << 20)
print(ray.__file__)
"""
    res = subprocess.run(["python", "-c", program], capture_output=True, text=True, timeout=120, env=env,
                         cwd=str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().startswith(str(venv)), res.stdout
    assert res.stderr == ""
