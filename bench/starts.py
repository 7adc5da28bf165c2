"""Fresh cluster starts: start N nodes on loopback from nothing, wait until
the cluster is healthy, stop it; repeat. Reports how many became healthy and
how long each took.

    .venv/bin/python bench/starts.py --runs 100 --nodes 5
"""

import argparse
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testnet"))

from testnet import Cluster, ClusterError  # noqa: E402


def one_start(nodes, timeout, keep_failed=None, log_level="warn"):
    """Seconds from the first node's launch to a healthy cluster, or the
    reason it did not become healthy (its logs copied under `keep_failed`)."""
    cluster = Cluster(num_cpus=1, min_workers=0, log_level=log_level)
    started = time.monotonic()
    try:
        cluster.start(nodes)
        cluster.wait_healthy(timeout)
        return time.monotonic() - started, None
    except ClusterError as e:
        if keep_failed:
            dest = os.path.join(keep_failed, os.path.basename(cluster.workdir))
            shutil.copytree(cluster.workdir, dest, ignore=shutil.ignore_patterns("*.sock", "gcs", "spill"))
        return None, str(e).splitlines()[0]
    finally:
        cluster.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a start may take to get healthy")
    parser.add_argument("--keep-failed", metavar="DIR", help="copy the logs of starts that fail into DIR")
    parser.add_argument("--log-level", default="warn", help="the nodes' --log-level")
    opts = parser.parse_args(argv)
    times, failures = [], []
    for run in range(1, opts.runs + 1):
        took, why = one_start(opts.nodes, opts.timeout, opts.keep_failed, opts.log_level)
        if why is None:
            times.append(took)
        else:
            failures.append((run, why))
        print(f"start {run}/{opts.runs}: " + (f"healthy after {took:.2f} s" if why is None else f"FAILED: {why}"),
              flush=True)
    print(f"\n{len(times)} of {opts.runs} fresh {opts.nodes}-node starts became healthy")
    if times:
        print(f"time to healthy: median {statistics.median(times):.2f} s, "
              f"min {min(times):.2f} s, max {max(times):.2f} s")
    for run, why in failures:
        print(f"  start {run}: {why}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
