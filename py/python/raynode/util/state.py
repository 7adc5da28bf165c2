"""Ray's state API (`ray.util.state`), answered by any node for the whole
cluster.

- `list_tasks()`, `get_task()`, `summarize_tasks()`: the task tables of
  every node, merged. Each node keeps the last 10,000 attempts of the tasks
  it owns or runs (older ones are dropped), with every state change's time.
- `list_actors()`, `get_actor()`, `summarize_actors()`: the actors living
  on every node.
- `list_objects()`, `summarize_objects()`: the object tables of every node.
- `list_nodes()`: every node, alive or dead.
- `list_jobs()`: one row per driver connection of the cluster, with its
  state (RUNNING, SUCCEEDED), start and end times (ms since the epoch),
  the node its driver connected to and the driver's pid.
- `list_cluster_events()`: the cluster's bounded event log, oldest first:
  nodes joined and lost, actors restarted and dead, tasks failed for a
  system reason, placement groups created and removed.
- `list_placement_groups()`: every placement group of the cluster.
- `get_log()`: a node's own log, or a worker's output (by actor, pid or
  file name), from any node.

The node a driver is connected to asks every other live node and merges
their answers; a node that does not answer within 2 s is left out with a
warning (Ray's "partial failure"), it never holds the answer up.

Rows are dicts that also read as attributes (`row.task_id`). `filters`
take Ray's form, `[("key", "=", value)]` or `"!="`; `limit` keeps the
first rows. Jobs and events reach the control store in batches about once
a second.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal, Optional, Union

from .. import _core, _runtime

#: A filter: (key, "=" or "!=", value).
Filter = tuple[str, str, Any]

DEFAULT_LIMIT = 100


class _Row(dict[str, Any]):
    """A state row: a dict whose keys also read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _select(
    rows: list[dict[str, Any]], filters: Optional[Sequence[Filter]], limit: Optional[int]
) -> list[_Row]:
    for f in filters or ():
        if not (isinstance(f, (tuple, list)) and len(f) == 3):
            raise ValueError(f"a filter is (key, predicate, value), got {f!r}")
        key, predicate, value = f
        if predicate == "=":
            rows = [r for r in rows if str(r.get(key)) == str(value)]
        elif predicate == "!=":
            rows = [r for r in rows if str(r.get(key)) != str(value)]
        else:
            raise ValueError(f"unsupported filter predicate {predicate!r}: use '=' or '!='")
    if limit is not None:
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
        rows = rows[:limit]
    return [_Row(r) for r in rows]


def _info(what: _core.InfoName) -> Any:
    return json.loads(_runtime.client().info(what))


def _cluster_rows(what: _core.InfoName, raise_on_missing_output: bool = True) -> list[dict[str, Any]]:
    """Rows of every node for `what`, warning about the nodes that did not answer."""
    answer = _info(what)
    if answer["missing"] and raise_on_missing_output:
        lost = ", ".join(f"{m['node_id'][:8]} ({m['error']})" for m in answer["missing"])
        warnings.warn(f"the {what} of some nodes are missing: {lost}", RuntimeWarning, stacklevel=3)
    rows: list[dict[str, Any]] = answer["rows"]
    return rows


#: Fields of a task row shown without `detail=True` (Ray's default columns).
_TASK_FIELDS = (
    "task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type",
    "func_or_class_name", "parent_task_id", "node_id", "worker_id", "worker_pid",
    "error_type",
)


def _brief(rows: list[dict[str, Any]], fields: Sequence[str], detail: bool) -> list[dict[str, Any]]:
    if detail:
        return rows
    return [{k: r.get(k) for k in fields} for r in rows]


def list_tasks(
    filters: Optional[Sequence[Filter]] = None,
    limit: int = DEFAULT_LIMIT,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    **_ignored: Any,
) -> list[_Row]:
    """Every attempt of every task and actor call the cluster's nodes
    remember (the newest 10,000 per node), oldest first."""
    rows = _cluster_rows("tasks", raise_on_missing_output)
    return _select(_brief(rows, _TASK_FIELDS, detail), filters, limit)


def get_task(id: Union[str, "_core.ObjectRef"], **_ignored: Any) -> Optional[_Row]:
    """The latest attempt of one task (by hex id or one of its ObjectRefs), or None."""
    if not isinstance(id, str):
        id = id.task_id()  # already hex
    attempts = [r for r in _cluster_rows("tasks") if r["task_id"] == id]
    if not attempts:
        return None
    return _Row(max(attempts, key=lambda r: r["attempt_number"]))


def list_actors(
    filters: Optional[Sequence[Filter]] = None,
    limit: int = DEFAULT_LIMIT,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    **_ignored: Any,
) -> list[_Row]:
    """The actors of the cluster, each where it lives (or died)."""
    return _select(_cluster_rows("actors", raise_on_missing_output), filters, limit)


def get_actor(id: str, **_ignored: Any) -> Optional[_Row]:
    """One actor by hex id, or None."""
    found = [r for r in _cluster_rows("actors") if r["actor_id"] == id]
    return _Row(found[0]) if found else None


def list_objects(
    filters: Optional[Sequence[Filter]] = None,
    limit: int = DEFAULT_LIMIT,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    **_ignored: Any,
) -> list[_Row]:
    """The objects in every node's object table, one row each: its size,
    state, owner's node, the nodes that hold its value (`locations`) and
    whether references pin it (`pinned`, `ref_count` at its owner)."""
    return _select(_cluster_rows("objects", raise_on_missing_output), filters, limit)


def list_placement_groups(
    filters: Optional[Sequence[Filter]] = None, limit: int = DEFAULT_LIMIT, **_ignored: Any
) -> list[_Row]:
    """Every placement group of the cluster."""
    rows: list[dict[str, Any]] = []
    for pg_id, group in _info("placement_groups").items():
        row = dict(group)
        row.setdefault("placement_group_id", pg_id)
        rows.append(row)
    return _select(rows, filters, limit)


def summarize_tasks(raise_on_missing_output: bool = True, **_ignored: Any) -> dict[str, Any]:
    """Task counts by function (or method) name and state, as Ray's
    `summarize_tasks()` gives them."""
    summary: dict[str, dict[str, Any]] = {}
    rows = _cluster_rows("tasks", raise_on_missing_output)
    for r in rows:
        name = r["func_or_class_name"]
        entry = summary.setdefault(name, {"func_or_class_name": name, "type": r["type"], "state_counts": {}})
        entry["state_counts"][r["state"]] = entry["state_counts"].get(r["state"], 0) + 1
    return {
        "cluster": {
            "summary": summary,
            "total_tasks": sum(1 for r in rows if r["type"] == "NORMAL_TASK"),
            "total_actor_tasks": sum(1 for r in rows if r["type"] == "ACTOR_TASK"),
            "total_actor_scheduled": sum(1 for r in rows if r["type"] == "ACTOR_CREATION_TASK"),
            "summary_by": "func_name",
        }
    }


def summarize_actors(raise_on_missing_output: bool = True, **_ignored: Any) -> dict[str, Any]:
    """Actor counts by class and state."""
    summary: dict[str, dict[str, Any]] = {}
    rows = _cluster_rows("actors", raise_on_missing_output)
    for r in rows:
        entry = summary.setdefault(r["class_name"], {"class_name": r["class_name"], "state_counts": {}})
        entry["state_counts"][r["state"]] = entry["state_counts"].get(r["state"], 0) + 1
    return {"cluster": {"summary": summary, "total_actors": len(rows), "summary_by": "class"}}


def summarize_objects(raise_on_missing_output: bool = True, **_ignored: Any) -> dict[str, Any]:
    """Object counts and sizes by state and where they are."""
    rows = _cluster_rows("objects", raise_on_missing_output)
    summary: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = f"{r['state']}:{r['location'] or 'pending'}"
        entry = summary.setdefault(key, {"total_objects": 0, "total_size_mb": 0.0, "total_num_nodes": 0, "_nodes": set()})
        entry["total_objects"] += 1
        entry["total_size_mb"] += (r["object_size"] or 0) / 2**20
        entry["_nodes"].add(r["node_id"])
    for entry in summary.values():
        entry["total_num_nodes"] = len(entry.pop("_nodes"))
    total_mb = sum((r["object_size"] or 0) for r in rows) / 2**20
    return {
        "cluster": {
            "summary": summary,
            "total_objects": len(rows),
            "total_size_mb": total_mb,
            "callsite_enabled": False,
            "summary_by": "state",
        }
    }


def get_log(
    address: Optional[str] = None,
    node_id: Optional[str] = None,
    node_ip: Optional[str] = None,
    filename: Optional[str] = None,
    actor_id: Optional[str] = None,
    task_id: Optional[str] = None,
    pid: Optional[int] = None,
    follow: bool = False,
    tail: int = -1,
    timeout: Optional[int] = None,
    suffix: str = "out",
    _poll_s: float = 0.5,
    **_ignored: Any,
) -> Iterator[str]:
    """A log's lines, as Ray's `get_log` (same parameters, in Ray's order):
    a generator of text chunks. `address` and `node_ip` are not needed (any
    node answers; nodes are named by `node_id`); a task's log by `task_id`
    is not kept apart from its worker's: give the worker's `pid`.

    With `actor_id`, the output of the worker the actor lives in; with
    `pid`, of that worker (`node_id` says on which node; the one connected
    to by default); with `filename` `"worker-<n>.out"`/`".err"` by its file
    name; otherwise the node's own log (`node.log`). `suffix="err"` reads
    a worker's stderr. `tail` lines from the end (-1: all that is kept);
    with `follow`, then everything written after, until the caller stops.
    """
    if task_id is not None:
        raise ValueError("get_log(task_id=...) is not supported: give the worker's pid or the actor_id")
    client = _runtime.client()
    stderr = suffix == "err"
    target: Literal["node", "pid", "worker", "actor"]
    value: Optional[str]
    if actor_id is not None:
        target, value = "actor", actor_id
    elif pid is not None:
        target, value = "pid", str(pid)
    elif filename not in (None, "node.log", "raynode.log"):
        stem, _, ext = filename.partition(".")
        if not stem.startswith("worker-") or ext not in ("out", "err"):
            raise ValueError(f"unknown log file {filename!r}: worker-<n>.out, worker-<n>.err or node.log")
        target, value, stderr = "worker", stem[len("worker-"):], ext == "err"
    else:
        target, value = "node", None
    lines = 2**31 - 1 if tail is None or tail < 0 else int(tail)
    answer = json.loads(client.logs(target, value, node_id, stderr, lines, None))
    yield answer["text"]
    while follow:
        time.sleep(_poll_s)
        answer = json.loads(client.logs(target, value, node_id, stderr, 0, answer["end"]))
        if answer["text"]:
            yield answer["text"]


def list_jobs(filters: Optional[Sequence[Filter]] = None, limit: int = DEFAULT_LIMIT, **_ignored: Any) -> list[_Row]:
    """The jobs of the cluster (one per driver connection)."""
    return _select(_info("jobs"), filters, limit)


def list_cluster_events(
    filters: Optional[Sequence[Filter]] = None, limit: int = DEFAULT_LIMIT, **_ignored: Any
) -> list[_Row]:
    """The cluster's event log, oldest first."""
    return _select(_info("events"), filters, limit)


def list_nodes(
    filters: Optional[Sequence[Filter]] = None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_ignored: Any
) -> list[_Row]:
    """The nodes of the cluster, as `ray.nodes()` has them, with Ray's
    state-API names (`node_id`, `state`) added."""
    rows = []
    for n in _info("nodes"):
        row = dict(n)
        row["node_id"] = n.get("NodeID")
        row["state"] = "ALIVE" if n.get("Alive") else "DEAD"
        rows.append(row)
    return _select(rows, filters, limit)


__all__ = [
    "get_actor",
    "get_log",
    "get_task",
    "list_actors",
    "list_cluster_events",
    "list_jobs",
    "list_nodes",
    "list_objects",
    "list_placement_groups",
    "list_tasks",
    "summarize_actors",
    "summarize_objects",
    "summarize_tasks",
]
