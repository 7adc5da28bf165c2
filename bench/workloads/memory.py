"""The "memory" group: the RSS of the node and of an idle worker, and the
count of worker processes, after 10 quick tasks.  Processes are found among
this process's descendants (psutil if present, else /proc) and a worker is
told apart by its program name.
"""

import os
import time

from .base import MiB, emit, init, record
from .groups import GROUPS


# --------------------------------------------------------------------------
# Process memory (psutil if present, else /proc)
# --------------------------------------------------------------------------

def _descendants_proc(root):
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # field 4 (ppid) comes after the ")" closing the command name
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for c in children.get(pid, []):
            out.append(c)
            todo.append(c)
    return out


def _rss_proc(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _cmdline_proc(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace").strip()


def child_processes():
    """[(pid, cmdline, rss bytes)] for every descendant of this process."""
    out = []
    try:
        import psutil
        for c in psutil.Process().children(recursive=True):
            try:
                out.append((c.pid, " ".join(c.cmdline()),
                            c.memory_info().rss))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return out
    except ImportError:
        pass
    for pid in _descendants_proc(os.getpid()):
        try:
            out.append((pid, _cmdline_proc(pid), _rss_proc(pid)))
        except OSError:
            pass
    return out


# A worker is recognised by its program name, never by its arguments (Ray's
# raylet carries the worker command line among its own arguments).
WORKER_SCRIPTS = ("default_worker.py", "raynode._worker", "raynode.worker",
                  "raynode-worker")


def is_worker(cmdline):
    tokens = cmdline.split()
    if not tokens:
        return False
    if tokens[0].startswith("ray::"):
        # Ray renames workers "ray::IDLE" / "ray::<task or actor>"; its node
        # agents are "ray::DashboardAgent", "ray::RuntimeEnvAgent".
        return not tokens[0].endswith("Agent")
    prog = os.path.basename(tokens[0])
    if any(m in prog for m in WORKER_SCRIPTS):
        return True
    if prog.startswith("python"):
        # "python [-u ...] [-m] <script or module>": the first non-option
        for t in tokens[1:]:
            if not t.startswith("-"):
                return any(m in t for m in WORKER_SCRIPTS)
    return False


def run_memory(system, ray, p, group, skip):
    """A fresh init, then 10 quick tasks at once (as many workers as CPUs
    are needed); once settled, the node's RSS, an idle worker's, and how
    many worker processes were started."""
    (m_node, _f, unit, higher), (m_worker, _g, _u, _h), (m_count, _c, c_unit, _ch) = GROUPS[group]
    emit({"event": "start",
          "metric": next((m for m in (m_node, m_worker, m_count) if m not in skip), m_node)})
    init(ray, system)

    @ray.remote
    def f():
        return 1

    ray.get([f.remote() for _ in range(10)])
    time.sleep(p["settle_s"])
    procs = child_processes()
    nodes = [r for (_pid, cmd, r) in procs if not is_worker(cmd)]
    workers = sorted(r for (_pid, cmd, r) in procs if is_worker(cmd))
    detail = [{"pid": pid, "cmd": cmd[:120], "rss_mib": round(r / MiB, 1),
               "worker": is_worker(cmd)} for (pid, cmd, r) in procs]
    if m_node not in skip:
        if nodes:
            rec = record(system, group, m_node, unit, higher,
                         [sum(nodes) / MiB])
        else:
            rec = record(system, group, m_node, unit, higher, status="error",
                         error="no node process found among children")
        rec["processes"] = detail
        emit(rec)
    if m_worker not in skip:
        if workers:
            # one idle worker: the median one
            emit(record(system, group, m_worker, unit, higher,
                        [workers[len(workers) // 2] / MiB]))
        else:
            emit(record(system, group, m_worker, unit, higher,
                        status="error", error="no idle worker process found"))
    if m_count not in skip:
        # Idle workers above the pool's size stop only after a while (10 s
        # or more in both systems), so those alive now are those started.
        if workers:
            emit(record(system, group, m_count, c_unit, False, [float(len(workers))]))
        else:
            emit(record(system, group, m_count, c_unit, False, status="error",
                        error="no worker process found"))
    ray.shutdown()
