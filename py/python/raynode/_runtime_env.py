"""Runtime environments: `env_vars`, `working_dir` and `py_modules`.

Driver side, `check` validates a runtime_env where it is given (`init`,
`@remote`, `.options`), and `resolve` turns it into what a task carries:
each local directory is packed once per process into a zip with sorted
entries and fixed dates (so equal contents give equal bytes), named by the
hash of those bytes, and put in the object store; the task carries
`(name, ref)`, so the object travels to whichever node runs the task, as
any argument does, and lives while tasks that need it do.

Worker side, `Applied` makes a task's environment real: each package is
fetched and unpacked once per node and job (into
`<node data dir>/runtime_env/<job>/`), the working dir becomes the cwd and
goes first on `sys.path`, with the py_modules roots after it; env_vars are
set. A task's environment is undone when it ends (an actor's lasts its
life), but modules imported from a package stay imported until a task with
other packages runs in the worker.
"""

import fnmatch
import hashlib
import io
import os
import shutil
import stat
import sys
import tempfile
import types
import zipfile
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import _core

#: A package as a task carries it: (its name, the ref of its zip).
Package = tuple[str, "_core.ObjectRef"]
#: A runtime_env as a task carries it: `env_vars`, `working_dir` (a
#: Package) and `py_modules` (a list of them); None when empty.
Resolved = dict[str, Any]

# The keys raynode applies; any other is refused by name.
SUPPORTED_KEYS = ("env_vars", "working_dir", "py_modules", "excludes")

# The largest package (zipped) a working_dir or py_module may make, as Ray's.
MAX_PACKAGE_BYTES = 500 << 20

# Left out of every package.
DEFAULT_EXCLUDES = ("__pycache__/", "*.pyc", ".git/")

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class Spec:
    """A checked runtime_env, not packed yet."""

    __slots__ = ("env_vars", "working_dir", "py_modules", "excludes")

    env_vars: dict[str, str]
    working_dir: str | None
    py_modules: tuple[str, ...]
    excludes: tuple[str, ...]

    def __init__(
        self,
        env_vars: dict[str, str] | None = None,
        working_dir: str | None = None,
        py_modules: Iterable[str] = (),
        excludes: Iterable[str] = (),
    ) -> None:
        self.env_vars = env_vars or {}
        self.working_dir = working_dir
        self.py_modules = tuple(py_modules)
        self.excludes = tuple(excludes)

    def __bool__(self) -> bool:
        return bool(self.env_vars or self.working_dir or self.py_modules)


def check(env: dict[str, Any] | None) -> Spec:
    """A `Spec` of a runtime_env dict (or None), refusing what raynode does not apply."""
    if env is None:
        return Spec()
    if not isinstance(env, dict):
        raise TypeError(f"runtime_env must be a dict or None, got {type(env).__name__}")
    for key in env:
        if key not in SUPPORTED_KEYS:
            raise ValueError(
                f"runtime_env['{key}'] is not supported by raynode; it applies only {', '.join(SUPPORTED_KEYS)}"
            )
    env_vars = env.get("env_vars") or {}
    if not isinstance(env_vars, dict):
        raise TypeError(f"runtime_env['env_vars'] must be of type Dict[str, str], got {type(env_vars).__name__}")
    for k, v in env_vars.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(
                f"runtime_env['env_vars'] must be of type Dict[str, str], but {k!r}: {v!r} is not a pair of strings"
            )
    excludes = env.get("excludes") or []
    if not isinstance(excludes, (list, tuple)) or not all(isinstance(p, str) for p in excludes):
        raise TypeError("runtime_env['excludes'] must be a list of path patterns (strings)")
    working_dir = env.get("working_dir")
    if working_dir is not None:
        working_dir = _local_dir("working_dir", working_dir)
    modules = env.get("py_modules")
    py_modules = []
    if modules is not None:
        if not isinstance(modules, (list, tuple)):
            raise TypeError(
                f"runtime_env['py_modules'] must be a list of local paths or imported modules, "
                f"got {type(modules).__name__}"
            )
        py_modules = [_module_path(m) for m in modules]
    return Spec(dict(env_vars), working_dir, py_modules, excludes)


def _local_dir(key: str, value: object) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"runtime_env['{key}'] must be a path (str), got {type(value).__name__}")
    value = os.fspath(value)
    if "://" in value:
        raise ValueError(f"runtime_env['{key}'] {value!r}: remote URIs are not supported by raynode; give a local directory")
    if not os.path.isdir(value):
        raise ValueError(f"runtime_env['{key}'] {value!r} is not a local directory")
    return os.path.abspath(value)


def _module_path(m: object) -> str:
    if isinstance(m, types.ModuleType):
        f: str | None = getattr(m, "__file__", None)
        if f is None:
            raise ValueError(f"runtime_env['py_modules']: module {m.__name__} has no file to ship")
        return os.path.dirname(os.path.abspath(f)) if os.path.basename(f) == "__init__.py" else os.path.abspath(f)
    if not isinstance(m, (str, os.PathLike)):
        raise TypeError(f"runtime_env['py_modules'] holds a {type(m).__name__}; give local paths or imported modules")
    path = os.fspath(m)
    if "://" in path or path.endswith(".whl"):
        raise ValueError(f"runtime_env['py_modules'] {path!r}: only local directories and .py files are supported by raynode")
    if not (os.path.isdir(path) or (os.path.isfile(path) and path.endswith(".py"))):
        raise ValueError(f"runtime_env['py_modules'] {path!r} is not a local directory or .py file")
    return os.path.abspath(path)


# -- packing (driver side) ------------------------------------------------------


def _excluded(rel: str, is_dir: bool, patterns: Iterable[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for p in patterns:
        if p.endswith("/"):
            if is_dir and (fnmatch.fnmatch(rel, p[:-1]) or fnmatch.fnmatch(name, p[:-1])):
                return True
        elif fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p):
            return True
    return False


def pack(path: str, excludes: Iterable[str] = (), prefix: str = "") -> bytes:
    """The zip of a directory (or one file), entries sorted, dates fixed."""
    patterns = DEFAULT_EXCLUDES + tuple(excludes)
    buf = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if os.path.isfile(path):
            entries = [(os.path.basename(path), path)]
        else:
            entries = []
            for root, dirs, files in os.walk(path):
                rel_root = os.path.relpath(root, path).replace(os.sep, "/")
                rel_root = "" if rel_root == "." else rel_root + "/"
                dirs[:] = sorted(d for d in dirs if not _excluded(rel_root + d, True, patterns))
                for f in sorted(files):
                    if not _excluded(rel_root + f, False, patterns):
                        entries.append((rel_root + f, os.path.join(root, f)))
        for rel, full in entries:
            st = os.stat(full)
            total += st.st_size
            if total > MAX_PACKAGE_BYTES:
                raise ValueError(
                    f"the runtime_env package of {path!r} is larger than {MAX_PACKAGE_BYTES >> 20} MiB; "
                    "leave files out with runtime_env['excludes']"
                )
            info = zipfile.ZipInfo(prefix + rel, date_time=_ZIP_DATE)
            info.external_attr = (stat.S_IFREG | (st.st_mode & 0o777)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as fh:
                zf.writestr(info, fh.read())
    return buf.getvalue()


# (id(client), kind, path, excludes) -> (client, (name, ref))
_packages: dict[tuple[int, str, str, tuple[str, ...]], tuple["_core.Client", Package]] = {}


def package(client: "_core.Client", kind: str, path: str, excludes: Iterable[str]) -> Package:
    """`(name, ref)` of the packed directory, made once per process and connection."""
    key = (id(client), kind, path, tuple(excludes))
    got = _packages.get(key)
    if got is not None and got[0] is client:
        return got[1]
    # A py_module keeps its own name inside its package (a file does anyway).
    prefix = os.path.basename(path) + "/" if kind == "py_modules" and os.path.isdir(path) else ""
    data = pack(path, excludes, prefix)
    name = "pkg_" + hashlib.blake2b(data, digest_size=16).hexdigest()
    from . import _api

    pkg = (name, _api.put(data))
    _packages[key] = (client, pkg)
    return pkg


def resolve(spec: Spec, inherited: Resolved | None) -> Resolved | None:
    """What a task carries: `inherited` (its submitter's, already packed)
    with `spec` over it: its env_vars merged in, its working_dir and
    py_modules in place of the inherited ones. None when empty."""
    merged: Resolved = dict(inherited or {})
    if spec:
        if spec.env_vars:
            merged["env_vars"] = {**merged.get("env_vars", {}), **spec.env_vars}
        if spec.working_dir or spec.py_modules:
            from . import _runtime

            client = _runtime.client()
            if spec.working_dir:
                merged["working_dir"] = package(client, "working_dir", spec.working_dir, spec.excludes)
            if spec.py_modules:
                merged["py_modules"] = [package(client, "py_modules", p, spec.excludes) for p in spec.py_modules]
    return {k: v for k, v in merged.items() if v} or None


def describe(env: Resolved | None) -> dict[str, Any]:
    """A runtime_env as `get_runtime_context().runtime_env` shows it."""
    if not env:
        return {}
    out: dict[str, Any] = {}
    if env.get("env_vars"):
        out["env_vars"] = dict(env["env_vars"])
    if env.get("working_dir"):
        out["working_dir"] = f"raynode://{env['working_dir'][0]}.zip"
    if env.get("py_modules"):
        out["py_modules"] = [f"raynode://{name}.zip" for name, _ in env["py_modules"]]
    return out


# -- applying (worker side) -----------------------------------------------------


def _base_dir() -> str:
    return _BASE_DIR


# Fixed when the worker starts, before any task changes its cwd.
_BASE_DIR = os.path.abspath(
    os.path.join(os.environ["RAYNODE_DATA_DIR"], "runtime_env")
    if os.environ.get("RAYNODE_DATA_DIR")
    else os.path.join(tempfile.gettempdir(), f"raynode-{os.getuid()}", "runtime_env")
)


def unpacked(job: str | None, kind: str, pkg: Package) -> str:
    """The directory holding package `pkg` for `job`, unpacked on first use."""
    name, ref = pkg
    final = os.path.join(_base_dir(), job or "nojob", kind, name)
    if os.path.isdir(final):
        return final
    from . import _api

    data = _api.get(ref)
    os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=name + ".", dir=os.path.dirname(final))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                path = zf.extract(info, tmp)
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    os.chmod(path, mode)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final


class Applied:
    """The environment a task or actor runs in, entered and left in its worker."""

    # The package directories on sys.path for the last task that had any:
    # modules imported from them stay imported while the tasks' packages are the same.
    _active_dirs: tuple[str, ...] = ()

    def __init__(self, env: Resolved | None, job: str | None) -> None:
        self.env: Resolved = env or {}
        self.job = job
        self.saved_env: dict[str, str | None] | None = None
        self.saved_cwd: str | None = None
        self.saved_path: list[str] | None = None

    def enter(self) -> None:
        env = self.env
        dirs: list[str] = []
        workdir = None
        if env.get("working_dir"):
            workdir = unpacked(self.job, "working_dir", env["working_dir"])
            dirs.append(workdir)
        for pkg in env.get("py_modules") or ():
            dirs.append(unpacked(self.job, "py_modules", pkg))
        _forget_modules_unless(dirs)
        if dirs:
            self.saved_path = list(sys.path)
            sys.path[:0] = [d for d in dirs if d not in sys.path]
        if workdir is not None:
            self.saved_cwd = os.getcwd()
            os.chdir(workdir)
        if env.get("env_vars"):
            self.saved_env = {k: os.environ.get(k) for k in env["env_vars"]}
            os.environ.update(env["env_vars"])

    def leave(self) -> None:
        if self.saved_env is not None:
            for k, v in self.saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        if self.saved_cwd is not None:
            try:
                os.chdir(self.saved_cwd)
            except OSError:
                pass
        if self.saved_path is not None:
            sys.path[:] = self.saved_path


def _forget_modules_unless(dirs: Iterable[str]) -> None:
    """Unloads the modules imported from the previous task's packages when
    this task's are others (or none), so it imports its own."""
    now = tuple(dirs)
    old = Applied._active_dirs
    Applied._active_dirs = now
    if not old or old == now:
        return
    roots = tuple(d.rstrip(os.sep) + os.sep for d in old)
    for name, m in list(sys.modules.items()):
        f = getattr(m, "__file__", None) or ""
        if f.startswith(roots):
            del sys.modules[name]
