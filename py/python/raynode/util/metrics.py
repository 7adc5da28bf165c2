"""User metrics, as Ray's `ray.util.metrics`: `Counter`, `Gauge` and
`Histogram`, recorded in any driver or worker and exported by that
process's node in the Prometheus text format on its `--metrics-export-port`
(`GET /metrics`), named `ray_<name>` with their tags as labels.

Each record is one message to the node, pipelined with the process's
other traffic (nothing waits for an answer). The node keeps the values:
counters add, gauges keep the last value, histograms count into their
buckets.
"""

import math
import re
from collections.abc import Sequence
from typing import Any, Optional, Union

from .. import _core, _runtime

#: Tags of one record: {tag key: value}.
Tags = dict[str, str]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Metric:
    """What the three kinds share: name, description, tag keys, default tags."""

    _kind: str | None = None

    def __init__(self, name: str, description: str = "", tag_keys: Optional[tuple[str, ...]] = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("Empty name is not allowed. Please provide a metric name.")
        if not _NAME.match(name):
            raise ValueError(
                f"Invalid metric name {name!r}: use letters, digits and underscores, not starting with a digit"
            )
        if tag_keys is None:
            tag_keys = ()
        if not isinstance(tag_keys, tuple):
            raise TypeError(f"tag_keys should be a tuple type, got: {type(tag_keys)}")
        for key in tag_keys:
            if not isinstance(key, str):
                raise TypeError(f"Tag keys must be str, got {type(key)}.")
            if not _NAME.match(key):
                raise ValueError(f"Invalid tag key {key!r}: use letters, digits and underscores")
        self._name = name
        self._description = description or ""
        self._tag_keys = tag_keys
        self._default_tags: Tags = {}
        self._client: Optional[_core.Client] = None

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self._name, "description": self._description, "tag_keys": self._tag_keys,
                "default_tags": dict(self._default_tags)}

    def set_default_tags(self, default_tags: Tags) -> "Metric":
        """Tags used by every record that does not give them; returns self."""
        for key, value in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key}.")
            if not isinstance(value, str):
                raise TypeError(f"Tag values must be str, got {type(value)}.")
        self._default_tags = dict(default_tags)
        return self

    def _boundaries(self) -> list[float]:
        return []

    def _record(self, value: Union[int, float], tags: Optional[Tags] = None) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise TypeError(f"value must be a finite number, got {value!r}")
        merged = dict(self._default_tags)
        for key, v in (tags or {}).items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key}.")
            if not isinstance(v, str):
                raise TypeError(f"Tag values must be str, got {type(v)}.")
            merged[key] = v
        missing = [k for k in self._tag_keys if k not in merged]
        if missing:
            raise ValueError(f"Missing value for tag key(s): {','.join(missing)}.")
        client = _runtime.client()
        if self._client is not client:
            if self._kind is None:
                raise TypeError("Metric is the base of Counter, Gauge and Histogram: record with one of those")
            client.define_metric(self._name, self._kind, self._description, self._boundaries())
            self._client = client
        client.record_metric(self._name, sorted(merged.items()), float(value))

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy in another process defines the metric on its own node.
        return (_rebuild, (type(self), self._name, self._description, self._tag_keys,
                           self._boundaries(), self._default_tags))


def _rebuild(
    cls: type[Metric],
    name: str,
    description: str,
    tag_keys: tuple[str, ...],
    boundaries: list[float],
    default_tags: Tags,
) -> Metric:
    m = cls.__new__(cls)
    Metric.__init__(m, name, description, tag_keys)
    if isinstance(m, Histogram):
        m.boundaries = list(boundaries)
    m._default_tags = dict(default_tags)
    return m


class Counter(Metric):
    """A cumulative count: `inc(value=1.0, tags=None)`."""

    _kind = "counter"

    def inc(self, value: Union[int, float] = 1.0, tags: Optional[Tags] = None) -> None:
        if isinstance(value, (int, float)) and value <= 0:
            raise ValueError(f"value must be >0, got {value}")
        self._record(value, tags)


class Gauge(Metric):
    """A value that goes up and down: `set(value, tags=None)`."""

    _kind = "gauge"

    def set(self, value: Union[int, float], tags: Optional[Tags] = None) -> None:
        self._record(value, tags)


class Histogram(Metric):
    """Counts of observed values in buckets: `observe(value, tags=None)`."""

    _kind = "histogram"

    def __init__(
        self,
        name: str,
        description: str = "",
        boundaries: Optional[Sequence[float]] = None,
        tag_keys: Optional[tuple[str, ...]] = None,
    ) -> None:
        super().__init__(name, description, tag_keys)
        if not boundaries:
            raise ValueError("boundaries argument should be provided when using the Histogram class. e.g., Histogram(\"name\", boundaries=[1.0, 2.0])")
        for b in boundaries:
            if not isinstance(b, (int, float)) or isinstance(b, bool) or b <= 0:
                raise ValueError(f"Invalid `boundaries` argument at index {list(boundaries).index(b)}, {boundaries}. "
                                 "Use positive values for the argument `boundaries`.")
        if list(boundaries) != sorted(set(boundaries)):
            raise ValueError(f"boundaries must be increasing, got {boundaries}")
        self.boundaries = [float(b) for b in boundaries]

    def _boundaries(self) -> list[float]:
        return self.boundaries

    def observe(self, value: Union[int, float], tags: Optional[Tags] = None) -> None:
        self._record(value, tags)

    @property
    def info(self) -> dict[str, Any]:
        info = super().info
        info["boundaries"] = self.boundaries
        return info


__all__ = ["Counter", "Gauge", "Histogram"]
