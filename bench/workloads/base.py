"""Parameters, timing and records shared by every workload group: the modes
(``MODES``: sizes and repetitions for "full", "quick" and "smoke"), the
per-mode timeouts, the ``@@BENCH `` event lines (``emit``), Ray's ``timeit``,
and the ``init``, ``record`` and ``meta`` calls that are the same for every
system under test.  Standard library only.
"""

import json
import logging
import os
import platform
import statistics
import sys
import time

PREFIX = "@@BENCH "

MiB = 1024 * 1024

# Parameters per mode.  "full" follows ray_perf.py where the 2-core machine
# allows it; "quick" is the routine mode (whole run in under 3 minutes);
# "smoke" only checks that the harness works (tiny sizes, no meaningful
# figures).
MODES = {
    "full": dict(
        warmup_s=1.0, reps=4, rep_s=2.0, pause_s=0.5,
        startup_reps=5, settle_s=5.0,
        batch=1000,                 # tasks / actor calls per batch
        contained_refs=10000,       # refs inside one object
        wait_refs=1000,
        multi_put_small=(4, 100),   # (client tasks, puts each)
        put_bytes=800 * MiB,        # ray_perf.py: np.zeros(100M, int64)
        multi_put=(4, 10, 80 * MiB),  # (client tasks, puts each, bytes each)
        multi_tasks=(4, 10000),     # (client actors, tasks each)
        one_to_n=5000,              # calls per server actor
        n_to_n=(4, 5000),           # (client tasks, calls each)
        n_to_n_arg=1000,            # calls per client
        # multi-node (bench/multinode.py)
        transfer_bytes=1024 * MiB,  # object moved between nodes; loopback TCP; rebuilt
        locality=(20, 50 * MiB),    # (arrays, bytes each) mapped and reduced on node 3
        sleep_batch=600,            # 10 ms tasks per batch
        remote_put_bytes=100 * MiB,  # remote driver put gigabytes
        cluster_rounds=4,           # fresh clusters for join / leader kill
        ray_client=True,            # measure Ray Client (starts a Ray head)
    ),
    "quick": dict(
        warmup_s=0.15, reps=3, rep_s=0.3, pause_s=0.0,
        startup_reps=3, settle_s=1.5,
        batch=1000,
        contained_refs=10000,
        wait_refs=1000,
        multi_put_small=(4, 100),
        put_bytes=100 * MiB,
        multi_put=(4, 2, 80 * MiB),
        multi_tasks=(4, 1000),
        one_to_n=1000,
        n_to_n=(4, 1000),
        n_to_n_arg=500,
        transfer_bytes=256 * MiB,
        locality=(10, 50 * MiB),
        sleep_batch=120,
        remote_put_bytes=100 * MiB,
        cluster_rounds=2,
        ray_client=False,
    ),
    "smoke": dict(
        warmup_s=0.02, reps=2, rep_s=0.05, pause_s=0.0,
        startup_reps=1, settle_s=0.5,
        batch=20,
        contained_refs=100,
        wait_refs=20,
        multi_put_small=(2, 5),
        put_bytes=1 * MiB,
        multi_put=(2, 2, 1 * MiB),
        multi_tasks=(2, 20),
        one_to_n=20,
        n_to_n=(2, 20),
        n_to_n_arg=20,
        transfer_bytes=8 * MiB,
        locality=(2, 1 * MiB),
        sleep_batch=12,
        remote_put_bytes=1 * MiB,
        cluster_rounds=1,
        ray_client=False,
    ),
}


# Seconds a workload may run without a result before bench/run.py kills it.
DEFAULT_TIMEOUT = {"smoke": 60, "quick": 90, "full": 300}


def cpu_count():
    return os.cpu_count() or 1


def n_servers():
    """Server actors for the 1:n / n:n workloads.

    ray_perf.py uses cpu_count() // 2; on small machines that is 1, which
    would make "n" meaningless, so we use at least 2 (and at most 4).
    """
    return max(2, min(4, cpu_count() // 2))


def emit(obj):
    sys.stdout.write(PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------

def timeit(fn, multiplier, p):
    """Rate of ``fn`` (calls/s times ``multiplier``), like Ray's timeit.

    Warm up for ``warmup_s`` (at least one call), then ``reps`` repetitions of
    at least ``rep_s`` seconds each; returns the per-repetition rates.
    """
    start = time.perf_counter()
    count = 0
    while True:
        fn()
        count += 1
        if time.perf_counter() - start >= p["warmup_s"]:
            break
    step = count // 10 + 1
    rates = []
    for _ in range(p["reps"]):
        start = time.perf_counter()
        count = 0
        while time.perf_counter() - start < p["rep_s"]:
            for _ in range(step):
                fn()
            count += step
        rates.append(multiplier * count / (time.perf_counter() - start))
    return rates


# --------------------------------------------------------------------------
# Init / records
# --------------------------------------------------------------------------

def init(ray, system, num_cpus=None):
    """``ray.init`` with the same arguments for every system.

    num_cpus defaults to the machine's core count.  The dashboard is off and
    logs are quiet; a system whose init does not take those keywords is
    called with num_cpus alone.
    """
    num_cpus = num_cpus or cpu_count()
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False,
                 logging_level=logging.ERROR, log_to_driver=False)
    except TypeError:
        ray.init(num_cpus=num_cpus)


def record(system, group, metric, unit, higher, values=None, status="ok",
           error=None):
    rec = {
        "event": "record", "system": system, "group": group,
        "metric": metric, "unit": unit, "higher_is_better": higher,
        "status": status, "mean": None, "std": None, "values": values or [],
        "error": error,
    }
    if values:
        rec["mean"] = statistics.fmean(values)
        rec["std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
    return rec


def meta(ray, system):
    info = {
        "event": "meta", "system": system,
        "version": getattr(ray, "__version__", "unknown"),
        "python": platform.python_version(),
        "executable": sys.executable,
    }
    try:
        import numpy
        info["numpy"] = numpy.__version__
    except ImportError:
        info["numpy"] = None
    return info
