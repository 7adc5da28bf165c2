"""Benchmark workloads, shared by every system under test.

This package is run as a script (``python bench/workloads``, its
``__main__.py``) in a fresh subprocess, once per system and per workload
group, by ``bench/run.py``.  The system is a parameter: the module is
imported with ``importlib.import_module(system)``, so the very same code drives
``ray`` and ``raynode``.

Metric names follow ``ray microbenchmark`` (``ray/_private/ray_perf.py``) so
that figures can be compared with Ray's published ones.

Protocol with the driver: every line this script prints that starts with
``@@BENCH `` carries one JSON object:

* ``{"event": "meta", ...}``      versions and interpreter of this subprocess
* ``{"event": "start", "metric": name}`` a workload begins (used for timeouts)
* ``{"event": "record", ...}``    the result of one workload

Anything else on stdout/stderr (log lines of the system under test) is ignored
by the driver.

The package itself imports only the standard library at import time, so the
driver can read the workload registry (``GROUPS``) without importing any
system.  Its modules: ``base`` (modes, timing, records), ``defs`` (the remote
functions and actors), ``objects``, ``tasks`` (tasks and generators) and
``actors`` (the workloads of those groups), ``groups`` (the registry),
``memory`` (the memory group); this module runs the startup group, hands
the multinode group to ``bench/multinode.py`` and holds the command line.
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import time

from .base import (DEFAULT_TIMEOUT, MODES, PREFIX, MiB, cpu_count, emit, init, meta, n_servers,  # noqa: F401
                   record, timeit)
from .defs import Defs, kill_actors  # noqa: F401
from .groups import GBS, GROUPS, OPS, registry  # noqa: F401
from .memory import child_processes, is_worker, run_memory  # noqa: F401

# This package's directory (``python <it>`` runs ``__main__.py``) and bench/.
PACKAGE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(PACKAGE)


# --------------------------------------------------------------------------
# Special groups
# --------------------------------------------------------------------------

def startup_probe(system):
    """Run in a fresh process: seconds from init() to the first result."""
    ray = importlib.import_module(system)

    t0 = time.perf_counter()
    init(ray, system)

    @ray.remote
    def f():
        return 1

    assert ray.get(f.remote()) == 1
    elapsed = time.perf_counter() - t0
    ray.shutdown()
    emit({"event": "probe", "seconds": elapsed})


def run_startup(system, p, group, skip):
    metric, _f, unit, higher = GROUPS[group][0]
    if metric in skip:
        return
    emit({"event": "start", "metric": metric})
    values, err = [], None
    for _ in range(p["startup_reps"]):
        proc = subprocess.run(
            [sys.executable, PACKAGE, "--system", system,
             "--probe"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        got = [json.loads(l[len(PREFIX):]) for l in proc.stdout.splitlines()
               if l.startswith(PREFIX)]
        if proc.returncode != 0 or not got:
            err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            break
        values.append(got[0]["seconds"])
    if err:
        emit(record(system, group, metric, unit, higher, status="error",
                    error=err))
    else:
        emit(record(system, group, metric, unit, higher, values))


def run_multinode(system, mode, timeout, skip):
    """The multinode group lives in bench/multinode.py (clusters on
    loopback, remote drivers); it reports through this module."""
    sys.path.insert(0, BENCH)
    import multinode
    multinode.run(sys.modules[__name__], system, mode, timeout, skip)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def run_group(system, group, mode, skip, timeout):
    p = MODES[mode]
    if group == "startup":
        ray = importlib.import_module(system)
        emit(meta(ray, system))
        return run_startup(system, p, group, skip)
    if group == "multinode":
        return run_multinode(system, mode, timeout, skip)
    ray = importlib.import_module(system)
    emit(meta(ray, system))
    if group == "memory":
        return run_memory(system, ray, p, group, skip)

    todo = [w for w in GROUPS[group] if w[0] not in skip]
    if not todo:
        return
    init(ray, system)
    try:
        d = Defs(ray)
        for metric, fn, unit, higher in todo:
            emit({"event": "start", "metric": metric})
            if p["pause_s"]:
                time.sleep(p["pause_s"])
            try:
                values = fn(ray, d, p)
                emit(record(system, group, metric, unit, higher, values))
            except Exception as e:  # report and go on with the next one
                emit(record(system, group, metric, unit, higher,
                            status="error",
                            error="%s: %s" % (type(e).__name__, e)))
    finally:
        ray.shutdown()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--system", default="raynode")
    ap.add_argument("--group", choices=sorted(GROUPS))
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    ap.add_argument("--skip", default="[]",
                    help="JSON list of metric names not to run")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds the harness allows a workload (default: "
                         "bench/run.py's for the mode)")
    ap.add_argument("--probe", action="store_true",
                    help="internal: one init-to-first-result measurement")
    ap.add_argument("--list", action="store_true",
                    help="print the workload registry as JSON")
    a = ap.parse_args(argv)
    if a.list:
        print(json.dumps(registry(), indent=1))
        return
    if a.probe:
        return startup_probe(a.system)
    if not a.group:
        ap.error("--group is required")
    timeout = a.timeout or DEFAULT_TIMEOUT[a.mode]
    run_group(a.system, a.group, a.mode, set(json.loads(a.skip)), timeout)


if __name__ == "__main__":
    main()
