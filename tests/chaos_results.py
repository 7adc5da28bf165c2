"""The driver's books: how each result it waited for turned out (ok,
wrong, lost, hung), the checks that decide it, and the recovery figures
derived from its logs (kill to next task, to the cut tasks done again, to an
actor answering again), with the report's descriptions of slow recoveries
and of where a hung result ran.

`DriverResults` is a base class of `chaos_driver.Driver`: its methods use the
driver's state (`lock`, `counts`, `actor_log`, `events`, ...), set up in
`Driver.__init__`.
"""

from chaos_common import SLOW_S, mono


class DriverResults:
    """Bookkeeping and checks of the chaos driver (see the module's text)."""

    # Bookkeeping

    def record(self, outcome, kind, label, detail=None):
        with self.lock:
            self.counts[outcome] += 1
            k = self.by_kind.setdefault(kind, {"ok": 0, "wrong": 0, "lost": 0, "hung": 0})
            k[outcome] += 1
            if outcome != "ok":
                if len(self.problems) < 30:
                    self.problems.append({"outcome": outcome, "kind": kind, "what": label,
                                          "at_s": round(mono() - self.t0, 2), "detail": str(detail)[:600]})
        if outcome != "ok":
            self.log(f"{outcome.upper()}: {kind} {label}: {str(detail)[:300]}")

    def error(self, e):
        name = type(e).__name__
        with self.lock:
            self.errors[name] = self.errors.get(name, 0) + 1

    def summary(self):
        with self.lock:
            recovery = dict(self.recovery, **self.kill_recovery())
            out = dict(self.counts)
            out.update({
                "rounds": self.rounds,
                "by_kind": self.by_kind,
                "errors": self.errors,
                "problems": self.problems,
                "rerun_tasks": self.rerun_tasks,
                "slow_recoveries": self.slow[:30],
                "task_nodes": self.task_nodes,
                "actors": {str(a): {"calls": len(log), "incarnations": len({e[2] for e in log}),
                                    "stuck": a in self.stuck}
                           for a, log in sorted(self.actor_log.items())},
                "kills_seen": len(self.events),
                "recovery": recovery,
                "fatal": self.fatal,
                "elapsed_s": round(mono() - self.t0, 2),
            })
        return out

    def runs_cut_short(self):
        """{task i: [(node, start)]} of the sleeping tasks (whose result came
        back) that ran more than once, from the exec log."""
        if not self.opts.exec_log:
            return {}
        delivered = {i for _, i, _ in self.task_done}
        runs = {}
        try:
            with open(self.opts.exec_log) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3:
                        runs.setdefault(int(parts[0]), []).append((parts[1], float(parts[2])))
        except OSError:
            return {}
        return {i: rs for i, rs in runs.items() if i in delivered and len(rs) > 1}

    def kill_recovery(self):
        """Per kill the controller reported: the time to the next completed
        task; to the last result of the tasks that were running on a killed
        node at the kill (their run there was cut short, so they ran again
        elsewhere); and for each actor that lived on a killed node, to its
        first call answered by a new incarnation."""
        next_task, rerun, actors = [], [], []
        self.slow = []  # recoveries over SLOW_S, described for the report
        kills = sorted(self.events, key=lambda e: e["t"])
        done = sorted(self.task_done)
        done_at = {i: t for t, i, _ in done}
        cut = self.runs_cut_short()
        self.rerun_tasks = len(cut)
        for ev in kills:
            t = ev["t"]
            dead = set(ev.get("nodes", []))
            after = [d for d, _, _ in done if d > t]
            if after:
                next_task.append(round(after[0] - t, 3))
            hit = [i for i, rs in cut.items() if any(node in dead and start < t for node, start in rs)
                   and done_at.get(i, 0) > t]
            if hit:
                rerun.append(round(max(done_at[i] for i in hit) - t, 3))
                for i in hit:
                    if done_at[i] - t > SLOW_S:
                        self.slow.append(
                            f"work({i}) cut short by the kill of {'+'.join(ev.get('names', []))} at "
                            f"{t - self.t0:.2f} s: done {done_at[i] - t:.2f} s after it; runs: "
                            + ", ".join(f"{self.name(n)} at {s - self.t0:.2f} s" for n, s in sorted(cut[i], key=lambda r: r[1])))
            for a, log in self.actor_log.items():
                by_time = sorted(log, key=lambda e: e[4])
                before = [e for e in by_time if e[4] <= t]
                if not before or before[-1][3] not in dead:
                    continue
                inc = before[-1][2]
                back = [e for e in by_time if e[4] > t and e[2] != inc]
                if back:
                    actors.append(round(back[0][4] - t, 3))
                    if back[0][4] - t > SLOW_S:
                        self.slow.append(
                            f"Counter{a} on {self.name(before[-1][3])}, killed with "
                            f"{'+'.join(ev.get('names', []))} at {t - self.t0:.2f} s: answered again "
                            f"{back[0][4] - t:.2f} s later (call {back[0][0]}), from {self.name(back[0][3])}")
        return {"kill_to_next_task_s": next_task, "kill_to_rerun_done_s": rerun,
                "kill_to_actor_back_s": actors}

    def name(self, node):
        return self.node_names.get(node, node[:8])

    def whereabouts(self, it):
        """What the driver knows of where a hung item ran, for the report."""
        at = lambda t: f"{t - self.t0:.2f} s"  # noqa: E731
        kills = ", ".join(f"{'+'.join(e.get('names', []))} at {at(e['t'])}" for e in self.events) or "none"
        if it.kind == "task" and self.opts.exec_log:
            runs = []
            try:
                with open(self.opts.exec_log) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) == 3 and int(parts[0]) == it.k:
                            runs.append(f"{self.name(parts[1])} at {at(float(parts[2]))}")
            except OSError:
                pass
            return f"submitted at {at(it.t_sub)}, started on: {', '.join(runs) or 'no node'}; kills: {kills}"
        if it.kind == "actor":
            log = sorted(self.actor_log.get(it.actor, []), key=lambda e: e[4])
            last = (f"its last answer (call {log[-1][0]}) came from incarnation {log[-1][2][:8]} on "
                    f"{self.name(log[-1][3])} at {at(log[-1][4])}") if log else "it never answered"
            return f"submitted at {at(it.t_sub)}; {last}; kills: {kills}"
        return f"submitted at {at(it.t_sub)}; kills: {kills}"

    def mark_stuck(self, it):
        if it.kind == "actor" and it.actor not in self.stuck:
            self.stuck.add(it.actor)
            self.log(f"Counter{it.actor} has a hung call: no more calls to it")

    # Checks: each returns None if the value is right, else why not.

    def check_task(self, i, ms):
        def check(v):
            if v.get("i") != i or v.get("v") != i * i + ms:
                return f"got {v!r}, expected i={i} v={i * i + ms}"
            return None
        return check

    def check_digest(self, want):
        exp = {"sum": int(want.sum()), "first": int(want[0]), "last": int(want[-1]), "nbytes": int(want.nbytes)}

        def check(v):
            got = {k: v.get(k) for k in exp}
            return None if got == exp else f"got {got}, expected {exp}"
        return check

    def check_array(self, want):
        np = self.np

        def check(v):
            if not isinstance(v, np.ndarray) or v.shape != want.shape or v.dtype != want.dtype:
                return f"got {type(v).__name__} {getattr(v, 'shape', None)} {getattr(v, 'dtype', None)}"
            if not np.array_equal(v, want):
                bad = np.flatnonzero(v != want)
                return f"{bad.size} elements differ, first at {bad[0]}: {v[bad[0]]} != {want[bad[0]]}"
            return None
        return check

    def check_actor(self, k, want_sum):
        def check(v):
            if v.get("k") != k:
                return f"answered call {v.get('k')} for call {k}: {v!r}"
            if not isinstance(v.get("n"), int) or v["n"] < 1:
                return f"count {v.get('n')!r} after a call"
            if want_sum is not None and v.get("sum") != want_sum:
                return f"array argument sums to {v.get('sum')}, expected {want_sum}"
            return None
        return check

    def check_actor_logs(self):
        """Across calls of one actor, in call order: within one incarnation
        the count strictly grows (calls run in order, each once there); an
        incarnation never answers again once a later one has (no two live
        copies). A call may have run before on an incarnation that died,
        so a new incarnation's counts need not start at 1."""
        for a, log in sorted(self.actor_log.items()):
            seen_incs, prev = [], None
            for k, n, inc, node, _ in sorted(log, key=lambda e: e[0]):
                if prev is not None and inc == prev[2]:
                    if n <= prev[1]:
                        self.flag_wrong(f"Counter{a}.inc({k})", f"count {n} after {prev[1]} (call {prev[0]}) "
                                        f"in the same incarnation {inc[:8]}")
                elif inc in seen_incs:
                    self.flag_wrong(f"Counter{a}.inc({k})", f"incarnation {inc[:8]} answered again after "
                                    f"{prev[2][:8]} had answered call {prev[0]}")
                if inc not in seen_incs:
                    seen_incs.append(inc)
                prev = (k, n, inc)

    def flag_wrong(self, label, why):
        """A result that passed its own check but breaks the actor's sequence."""
        with self.lock:
            self.counts["ok"] -= 1
            self.by_kind["actor"]["ok"] -= 1
        self.record("wrong", "actor", label, why)

    def final_actor_check(self):
        """Each actor's count now: the same incarnation as its last call
        answered must hold exactly that call's count."""
        ray = self.ray
        for a, actor in enumerate(self.actors):
            if a in self.stuck:
                continue
            try:
                c = ray.get(actor.count.remote(), timeout=10)
            except self.rex.GetTimeoutError:
                self.record("hung", "actor", f"Counter{a}.count()", "final count not ready")
                continue
            except Exception as e:  # noqa: BLE001
                self.error(e)
                self.record("lost", "actor", f"Counter{a}.count()", f"{type(e).__name__}: {e}")
                continue
            last = max(self.actor_log[a], key=lambda e: e[0])
            if c["inc"] == last[2] and c["n"] != last[1]:
                self.record("wrong", "actor", f"Counter{a}.count()",
                            f"count {c['n']}, but call {last[0]} of the same incarnation returned {last[1]}")
            else:
                self.record("ok", "actor", f"Counter{a}.count()")
