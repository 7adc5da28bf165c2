#!/usr/bin/env python3
"""The long chaos run: the workload and kill schedule of tests/test_chaos.py
(tests/chaos_controller.py and tests/chaos_driver.py: 5 nodes on loopback, a
checked driver on node 1, SIGKILL of other nodes, the Raft leader among
them, sometimes two at once, each restarted with its data dir) for
--minutes, then a table of the recovery times:

  kill -> next task done          any task of the driver completing after the kill
  kill -> cut tasks done again    the last result of the tasks that were running on a killed node
                                  (they ran again elsewhere)
  kill -> actor answers again     an actor that lived on a killed node: its first call answered by
                                  its new incarnation
  leader kill -> new leader       node 1's `raynode status` names a survivor leader
  leader kill -> control write    a named actor's creation returns (the name is committed)
  two down -> control write       the same after a double kill that spared the leader (2 of 5 down)
  restart -> task on that node    from launching the node again to a task needing its own
                                  resource "node<k>" being done
  kill -> cluster healthy         every node sees every node, one leader, its voters

and the result counts (ok, wrong, lost, hung). Exit status 0 only if no
result was wrong, lost or hung and the controller met no error.

Node 1 is never killed; once it wins an election it leads for good, and
leader kills give way to other kills: a long run has few leader-kill samples.

  .venv/bin/python bench/chaos.py --minutes 5 [--seed S] [--json PATH] [--logs DIR]
                                  [--store-mib M] [--actors N]
"""

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

import chaos_common  # noqa: E402  (the cluster's shape, the workload's defaults)
import chaos_controller as chaos  # noqa: E402  (the controller, the cluster set-up, the report)

ROWS = [
    ("kill -> next task done", "kill_to_next_task_s"),
    ("kill -> cut tasks done again", "kill_to_rerun_done_s"),
    ("kill -> actor answers again", "kill_to_actor_back_s"),
    ("leader kill -> new leader", "leader_kill_to_new_leader_s"),
    ("leader kill -> control write", "leader_kill_to_write_s"),
    ("two down -> control write", "two_down_to_write_s"),
    ("restart -> task on that node", "restart_to_task_s"),
    ("kill -> cluster healthy", "kill_to_healthy_s"),
]


def table(report):
    d = report.get("driver") or {}
    figures = dict(d.get("recovery") or {}, **report.get("figures", {}))
    out = [f"{'recovery (s)':<30} {'n':>4} {'min':>7} {'median':>7} {'mean':>7} {'max':>7}",
           "-" * 66]
    for label, key in ROWS:
        xs = figures.get(key) or []
        if xs:
            out.append(f"{label:<30} {len(xs):>4} {min(xs):>7.2f} {statistics.median(xs):>7.2f} "
                       f"{statistics.mean(xs):>7.2f} {max(xs):>7.2f}")
        else:
            out.append(f"{label:<30} {0:>4} {'-':>7} {'-':>7} {'-':>7} {'-':>7}")
    out.append("-" * 66)
    out.append("results: " + ", ".join(f"{k} {d.get(k)}" for k in ("ok", "wrong", "lost", "hung"))
               + f"; rounds {d.get('rounds')}; tasks run again {d.get('rerun_tasks')}")
    out.append(f"events: {len(report.get('events', []))} ({report.get('kills')} nodes killed, "
               f"{report.get('leader_kills')} leader kills, {report.get('double_kills')} double kills); "
               f"seed {report.get('seed')}; {report.get('elapsed_s')} s")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench/chaos.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="minutes of chaos (default 5)")
    p.add_argument("--seed", type=int, help="the kill schedule's seed (default: random, printed)")
    p.add_argument("--json", help="write the whole report here")
    p.add_argument("--logs", help="copy the node and driver logs into a new folder of this directory")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--store-mib", type=int, default=chaos_common.STORE_MIB,
                   help="each node's --object-store-memory in MiB (default: the node's own default); "
                   "16 keeps the driver's node spilling")
    p.add_argument("--actors", type=int, default=chaos_common.ACTORS,
                   help=f"counting actors (1 CPU each, on nodes 2-5; default {chaos_common.ACTORS})")
    opts = p.parse_args(argv)

    log = (lambda msg: None) if opts.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    cluster = chaos.start_chaos_cluster(store_mib=opts.store_mib)
    try:
        run = chaos.Chaos(cluster, opts.minutes * 60.0, seed=opts.seed, log=log,
                          driver_args=["--actors", str(opts.actors)])
        report = run.run()
        saved = chaos.save_logs(cluster, opts.logs, "chaos-bench")
    finally:
        cluster.stop()
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(report, f, indent=1)
    problems = chaos.format_report(report, figures=False).splitlines()[1:]
    print(table(report))
    for line in problems:
        print(line)
    if saved:
        print(f"logs: {saved}")
    d = report.get("driver") or {}
    clean = (not report["errors"] and d and d.get("fatal") is None
             and (d.get("wrong"), d.get("lost"), d.get("hung")) == (0, 0, 0))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
