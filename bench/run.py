"""Run the benchmark workloads on raynode and Ray side by side.

Each system's workloads run in fresh subprocesses of that system's Python
(``workloads/``, one subprocess per workload group, each bounded by a
timeout), so a crash or hang in one workload costs only that workload.
Results are printed as one table (metric, raynode, Ray, ratio) and written as
JSON to ``bench/results/<timestamp>.json`` (or ``--json PATH``).

Usually started through ``bench/run``, which provides the two Pythons.  This
script needs only the standard library.
"""

import argparse
import datetime
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import workloads  # noqa: E402  (standard library only at import time)

SYSTEMS = ("raynode", "ray")
LABELS = {"raynode": "raynode", "ray": "Ray"}
GROUP_ORDER = ("startup", "memory", "objects", "tasks", "actors",
               "generators", "multinode")
# Seconds without progress (no workload finished) before a subprocess is
# killed and the workload reported as "timeout".
DEFAULT_TIMEOUT = workloads.DEFAULT_TIMEOUT
# After this many timeouts in a row, the rest of that system's group is not
# attempted.
MAX_TIMEOUTS_IN_A_ROW = 2


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# Machine info
# --------------------------------------------------------------------------

def machine_info():
    info = {
        "cores": os.cpu_count(),
        "memory_bytes": None,
        "cpu_model": None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
    }
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_bytes"] = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def git_commit():
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except Exception:
        return None


# --------------------------------------------------------------------------
# Subprocesses
# --------------------------------------------------------------------------

def child_env():
    env = dict(os.environ)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("RAY_DEDUP_LOGS", "0")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def session_pids(sid):
    """Pids of live processes in session ``sid`` (other than sid itself)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == sid:
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after ")": state ppid pgrp session ...
        if fields[0] != "Z" and int(fields[3]) == sid:
            out.append(int(name))
    return out


def reap_session(sid, grace=3.0):
    """End what is left of a subprocess' session: it was all started by us."""
    if not os.path.isdir("/proc"):
        return []
    deadline = time.time() + grace
    left = session_pids(sid)
    while left and time.time() < deadline:
        time.sleep(0.1)
        left = session_pids(sid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if not left:
            break
        time.sleep(1.0)
        left = session_pids(sid)
    return left


class Child:
    """A workloads subprocess; its events come through a queue."""

    def __init__(self, cmd):
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.err, text=True,
            env=child_env(), start_new_session=True, cwd=HERE)
        self.events = queue.Queue()
        t = threading.Thread(target=self._read, daemon=True)
        t.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith(workloads.PREFIX):
                try:
                    self.events.put(json.loads(line[len(workloads.PREFIX):]))
                except ValueError:
                    pass
        self.events.put(None)  # EOF

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self):
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
        reap_session(self.proc.pid)
        return self.proc.returncode

    def stderr_tail(self, n=20):
        self.err.seek(0)
        lines = [l.rstrip() for l in self.err.read().splitlines()
                 if l.strip()]
        self.err.close()
        return lines[-n:]


def failed(system, group, metric, unit, higher, status, error):
    return workloads.record(system, group, metric, unit, higher,
                            status=status, error=error)


def run_group(system, python, group, selected, mode, timeout, metas):
    """Run the selected metrics of one group; return {metric: record}.

    A subprocess that crashes or hangs is killed; the workload it was running
    is reported as "error" or "timeout", and the remaining ones are retried in
    a new subprocess.
    """
    entries = {m: (u, h) for (m, u, h) in workloads.registry()[group]}
    done = {}
    broken = None
    timeouts_in_a_row = 0
    while True:
        remaining = [m for m in selected if m not in done]
        if not remaining:
            break
        skip = [m for m in entries if m not in remaining]
        cmd = [python, os.path.join(HERE, "workloads"), "--system", system,
               "--group", group, "--mode", mode, "--skip", json.dumps(skip),
               "--timeout", str(timeout)]
        child = Child(cmd)
        current, progressed, timed_out = None, False, False
        deadline = time.time() + timeout
        while True:
            try:
                ev = child.events.get(timeout=max(0.1, deadline - time.time()))
            except queue.Empty:
                timed_out = True
                child.kill()
                break
            if ev is None:
                break
            kind = ev.get("event")
            if kind == "meta":
                metas.setdefault(system, ev)
            elif kind == "start":
                current = ev["metric"]
                deadline = time.time() + timeout
            elif kind == "record":
                done[ev["metric"]] = ev
                progressed = True
                timeouts_in_a_row = 0
                current = None
                deadline = time.time() + timeout
                show(ev)
        code = child.finish()
        tail = child.stderr_tail()
        remaining = [m for m in selected if m not in done]
        if not remaining:
            break
        if timed_out:
            nothing_done = not done
            victim = current or remaining[0]
            u, h = entries[victim]
            where = "" if current else " (before the workload started)"
            done[victim] = failed(system, group, victim, u, h, "timeout",
                                  "no result within %ds%s" % (timeout, where))
            show(done[victim])
            timeouts_in_a_row += 1
            if current is None or timeouts_in_a_row >= MAX_TIMEOUTS_IN_A_ROW:
                reason = ("skipped: the previous workload timed out"
                          if current else "skipped: the system did not start")
                if current is None and nothing_done:
                    broken = "did not start within %ds" % timeout
                for m in remaining:
                    if m not in done:
                        u, h = entries[m]
                        done[m] = failed(system, group, m, u, h, "error",
                                         reason)
                break
            continue
        # the subprocess ended without reporting everything
        err = "subprocess exited with code %s" % code
        if tail:
            err += ": " + tail[-1]
        if current is not None:
            u, h = entries[current]
            done[current] = failed(system, group, current, u, h, "error", err)
            done[current]["stderr_tail"] = tail
            show(done[current])
            continue
        if progressed:
            continue  # it got somewhere: try the rest in a new subprocess
        # nothing was running and nothing finished: the failure is in
        # start-up (import, init); report it for all, do not loop
        for m in remaining:
            u, h = entries[m]
            done[m] = failed(system, group, m, u, h, "error", err)
            done[m]["stderr_tail"] = tail
            show(done[m])
        break
    return done, broken


def check_import(system, python):
    """None if ``python`` can import ``system``, else the reason why not."""
    if not python:
        return "no Python given for %s" % system
    if not os.path.exists(python):
        return "%s not found" % python
    try:
        p = subprocess.run(
            [python, "-c", "import %s" % system], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, timeout=120, env=child_env())
    except subprocess.TimeoutExpired:
        return "import %s timed out" % system
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines() or ["exit code %d"
                                                   % p.returncode]
        return "cannot import %s with %s: %s" % (system, python, lines[-1])
    return None


# --------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------

def fmt_num(x):
    if x is None:
        return "-"
    ax = abs(x)
    if ax >= 100:
        return "{:,.0f}".format(x)
    if ax >= 1:
        return "{:.2f}".format(x)
    return "{:.3g}".format(x)


def fmt_cell(rec):
    if rec is None:
        return "-"
    if rec["status"] != "ok":
        return rec["status"]
    return "%s ± %s" % (fmt_num(rec["mean"]), fmt_num(rec["std"]))


def ratio(a, b):
    """raynode vs Ray, oriented so that above 1 means raynode is better."""
    if not a or not b or a["status"] != "ok" or b["status"] != "ok":
        return None
    if not a["mean"] or not b["mean"]:
        return None
    if a["higher_is_better"]:
        return a["mean"] / b["mean"]
    return b["mean"] / a["mean"]


def show(rec):
    if rec["status"] == "ok":
        what = "%s %s" % (fmt_cell(rec), rec["unit"])
    else:
        what = "%s (%s)" % (rec["status"], rec.get("error"))
    log("  [%s] %s: %s" % (rec["system"], rec["metric"], what))


def table(order, results, systems):
    header = ["metric"] + [LABELS[s] for s in systems]
    both = "raynode" in systems and "ray" in systems
    if both:
        header.append("ratio")
    rows = []
    for metric, unit in order:
        row = ["%s (%s)" % (metric, unit)]
        for s in systems:
            row.append(fmt_cell(results[s].get(metric)))
        if both:
            r = ratio(results["raynode"].get(metric),
                      results["ray"].get(metric))
            row.append("%.2f" % r if r is not None else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [header])
              for i in range(len(header))]

    def line(r):
        cells = [r[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        return " | ".join(cells)

    out = [line(header), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="bench/run",
        description="Run the benchmark workloads on raynode and Ray, side "
                    "by side.")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true",
                   help="shorter repetitions and smaller sizes "
                        "(under 3 minutes)")
    g.add_argument("--smoke", action="store_true",
                   help="tiny sizes: checks that every workload runs; "
                        "figures are meaningless")
    ap.add_argument("--systems", default="raynode,ray",
                    help="comma-separated, from: raynode, ray "
                         "(default: both)")
    ap.add_argument("--only", default="",
                    help="run only metrics whose name contains this "
                         "substring (case-insensitive; several separated "
                         "by commas)")
    ap.add_argument("--json", default=None, metavar="PATH",
                    help="where to write the JSON results (default: "
                         "bench/results/<timestamp>.json)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds a workload may run without finishing "
                         "before it is killed (default: 60 smoke, 90 "
                         "quick, 300 full)")
    ap.add_argument("--python-raynode", default=sys.executable,
                    help="the Python that has raynode (default: this one)")
    ap.add_argument("--python-ray", default=None,
                    help="the Python that has ray")
    ap.add_argument("--unavailable", action="append", default=[],
                    metavar="SYSTEM=REASON",
                    help="do not run SYSTEM; show REASON instead")
    return ap.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    mode = "smoke" if a.smoke else "quick" if a.quick else "full"
    timeout = a.timeout or DEFAULT_TIMEOUT[mode]
    systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    for s in systems:
        if s not in SYSTEMS:
            sys.exit("bench/run: unknown system %r (known: %s)"
                     % (s, ", ".join(SYSTEMS)))
    pythons = {"raynode": a.python_raynode, "ray": a.python_ray}
    only = [o.strip().lower() for o in a.only.split(",") if o.strip()]

    def wanted(metric):
        return not only or any(o in metric.lower() for o in only)

    reasons = {}
    for item in a.unavailable:
        s, _, why = item.partition("=")
        reasons[s] = why or "unavailable"
    for s in systems:
        if s not in reasons:
            why = check_import(s, pythons[s])
            if why:
                reasons[s] = why
    running = [s for s in systems if s not in reasons]
    for s in systems:
        if s in reasons:
            log("%s: not measured: %s" % (LABELS[s], reasons[s]))

    reg = workloads.registry()
    order = [(m, u) for g in GROUP_ORDER for (m, u, _h) in reg[g]
             if wanted(m)]
    if not order:
        sys.exit("bench/run: --only %r matches no metric" % a.only)

    started = datetime.datetime.now(datetime.timezone.utc)
    log("bench: mode %s, systems %s, %d cores" % (
        mode, ",".join(running) or "none", os.cpu_count() or 0))
    results = {s: {} for s in systems}
    metas = {}
    broken = {}
    t0 = time.time()
    for group in GROUP_ORDER:
        selected = [m for (m, _u, _h) in reg[group] if wanted(m)]
        if not selected:
            continue
        entries = {m: (u, h) for (m, u, h) in reg[group]}
        for s in running:
            if s in broken:
                for m in selected:
                    u, h = entries[m]
                    results[s][m] = workloads.record(
                        s, group, m, u, h, status="error",
                        error="skipped: %s earlier" % broken[s])
                continue
            log("%s / %s" % (LABELS[s], group))
            tg = time.time()
            done, why = run_group(s, pythons[s], group, selected, mode,
                                  timeout, metas)
            log("  (%.1f s)" % (time.time() - tg))
            results[s].update(done)
            if why:
                broken[s] = why
    elapsed = time.time() - t0

    shown = [s for s in systems if s in running]
    print()
    print("benchmark (%s mode, %d cores, %.0f s)" % (
        mode, os.cpu_count() or 0, elapsed))
    if shown:
        print(table(order, results, shown))
        print("mean ± std over repetitions. ratio: raynode/Ray for rates, "
              "Ray/raynode for seconds and MiB; above 1 means raynode is "
              "better.")
    for s in systems:
        if s in reasons:
            print("%s: not measured: %s" % (LABELS[s], reasons[s]))
    notes = []
    for s in shown:
        for m, _u in order:
            rec = results[s].get(m)
            if rec and rec.get("error"):
                notes.append("  %s, %s: %s" % (
                    LABELS[s], m, rec["error"] if rec["status"] == "n/a"
                    else "%s: %s" % (rec["status"], rec["error"])))
    if notes:
        print("notes:")
        print("\n".join(notes))

    machine = machine_info()
    sysinfo = {}
    for s in systems:
        m = metas.get(s, {})
        sysinfo[s] = {
            "available": s in running, "reason": reasons.get(s),
            "version": m.get("version"), "python": m.get("python"),
            "numpy": m.get("numpy"),
            "executable": m.get("executable") or pythons.get(s),
        }
    records = []
    for s in shown:
        for m, _u in order:
            rec = dict(results[s].get(m) or {})
            if not rec:
                continue
            rec.pop("event", None)
            rec["version"] = sysinfo[s]["version"]
            rec["mode"] = mode
            rec["timestamp"] = started.isoformat()
            rec["machine"] = {"cores": machine["cores"],
                              "memory_bytes": machine["memory_bytes"]}
            records.append(rec)
    doc = {
        "schema": 1,
        "timestamp": started.isoformat(),
        "mode": mode,
        "elapsed_s": round(elapsed, 1),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "git_commit": git_commit(),
        "machine": machine,
        "systems": sysinfo,
        "params": workloads.MODES[mode],
        "records": records,
    }
    path = a.json or os.path.join(
        HERE, "results", started.strftime("%Y%m%dT%H%M%SZ") + ".json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("results: %s" % path)
    return 0 if running else 2


if __name__ == "__main__":
    sys.exit(main())
