"""`raynode.experimental.tqdm_ray.tqdm`: progress bars for tasks and actors,
drawn by the driver, as Ray's `ray.experimental.tqdm_ray`.

In a task or actor a bar prints its state as one marked line of the
worker's stdout (at most once per `flush_interval_s`, and when it closes);
that line reaches the driver with the rest of the worker's output, and the
driver draws one live bar per task bar below its other output (on a
terminal) or prints each update as a line (elsewhere). In the driver a bar
is drawn there at once.
"""

import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from .. import _core, _runtime

DEFAULT_FLUSH_INTERVAL_S = 1.0


class tqdm:
    """A progress bar: `tqdm(iterable)` or `tqdm(total=N)` with `update(n)`.

    Takes the subset of tqdm's arguments Ray's takes: `iterable`, `desc`,
    `total`, `unit`, `position` (accepted, positions are the driver's),
    `flush_interval_s`."""

    def __init__(
        self,
        iterable: Optional[Iterable[Any]] = None,
        desc: Optional[str] = None,
        total: Optional[int] = None,
        unit: Optional[str] = None,
        position: Optional[int] = None,
        flush_interval_s: Optional[float] = None,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]  # a sized iterable, else TypeError
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or "it"
        self._n = 0
        self._closed = False
        self._id = uuid.uuid4().hex[:12]
        self._interval = DEFAULT_FLUSH_INTERVAL_S if flush_interval_s is None else flush_interval_s
        self._last = 0.0
        self._lock = threading.Lock()
        self._show(force=True)

    def set_description(self, desc: Optional[str]) -> None:
        self._desc = desc or ""
        self._show()

    def update(self, n: int = 1) -> None:
        self._n += n
        self._show()

    def refresh(self) -> None:
        self._show(force=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._show(force=True)

    @property
    def total(self) -> Optional[int]:
        return self._total

    @total.setter
    def total(self, total: Optional[int]) -> None:
        self._total = total

    @property
    def n(self) -> int:
        return self._n

    @n.setter
    def n(self, n: int) -> None:
        self._n = n

    def __iter__(self) -> Iterator[Any]:
        if self._iterable is None:
            raise ValueError("No iterable provided")
        for x in self._iterable:
            yield x
            self.update(1)
        self.close()

    def __enter__(self) -> "tqdm":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _state_line(self) -> str:
        total = "" if self._total is None else str(int(self._total))
        desc = " ".join(str(self._desc).splitlines())
        unit = " ".join(str(self._unit).split())
        return f"{_core.PROGRESS_MARK}{self._id}\t{int(self._n)}\t{total}\t{int(self._closed)}\t{unit}\t{desc}"

    def _show(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < self._interval:
                return
            self._last = now
            line = self._state_line()
        if _runtime.is_worker():
            out = sys.stdout
            out.write(line + "\n")
            out.flush()
        else:
            _core.show_progress("driver", [line])
