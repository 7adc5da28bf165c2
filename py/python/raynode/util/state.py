"""A first part of Ray's state API (`ray.util.state`), answered by any node
for the whole cluster from its replica of the control store.

- `list_jobs()`: one row per driver connection of the cluster, with its
  state (RUNNING, SUCCEEDED), start and end times (ms since the epoch),
  the node its driver connected to and the driver's pid.
- `list_cluster_events()`: the cluster's bounded event log, oldest first:
  nodes lost, actors restarted and dead, tasks failed for a system reason.
- `list_nodes()`: the nodes this node knows of.

Rows are dicts that also read as attributes (`row.job_id`). `filters` take
Ray's form, `[("key", "=", value)]` or `"!="`; `limit` keeps the first rows.
Jobs and events reach the control store in batches about once a second.
"""

import json

from .. import _runtime

DEFAULT_LIMIT = 100


class _Row(dict):
    """A state row: a dict whose keys also read as attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _select(rows, filters, limit):
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


def _info(what):
    return json.loads(_runtime.client().info(what))


def list_jobs(filters=None, limit=DEFAULT_LIMIT, **_ignored):
    """The jobs of the cluster (one per driver connection)."""
    return _select(_info("jobs"), filters, limit)


def list_cluster_events(filters=None, limit=DEFAULT_LIMIT, **_ignored):
    """The cluster's event log, oldest first."""
    return _select(_info("events"), filters, limit)


def list_nodes(filters=None, limit=DEFAULT_LIMIT, **_ignored):
    """The nodes of the cluster, as `ray.nodes()` has them, with Ray's
    state-API names (`node_id`, `state`) added."""
    rows = []
    for n in _info("nodes"):
        row = dict(n)
        row["node_id"] = n.get("NodeID")
        row["state"] = "ALIVE" if n.get("Alive") else "DEAD"
        rows.append(row)
    return _select(rows, filters, limit)


__all__ = ["list_cluster_events", "list_jobs", "list_nodes"]
