"""`as_completed` and `map_unordered`: results in the order they are ready,
as Ray's `ray.util` has them.

Both wait for a chunk of ready refs at a time (`chunk_size`, passed to
`wait` as its `num_returns`) rather than one, and `map_unordered` keeps at
most `backpressure_size` tasks in flight, submitting more as results come.
Extra keyword arguments go to `wait` (e.g. `timeout`).
"""

from collections.abc import Iterable, Iterator
from typing import Any

import raynode as ray
from raynode import ObjectRef

DEFAULT_CHUNK_SIZE = 10
DEFAULT_BACKPRESSURE_SIZE = 100


def _ready_chunk(
    pending: list[ObjectRef], chunk_size: int, yield_obj_refs: bool, wait_kwargs: dict[str, Any]
) -> tuple[list[Any], list[ObjectRef]]:
    """Waits for up to `chunk_size` of `pending`; returns (what to yield,
    the refs still pending)."""
    if chunk_size < 1:
        raise ValueError("`chunk_size` must be >= 1")
    ready, rest = ray.wait(pending, num_returns=min(chunk_size, len(pending)), **wait_kwargs)
    return (ready if yield_obj_refs else ray.get(ready)), rest


def as_completed(
    refs: list[ObjectRef], *, chunk_size: int = DEFAULT_CHUNK_SIZE, yield_obj_refs: bool = False, **kwargs: Any
) -> Iterator[Any]:
    """Yields the values of `refs` (or the refs, with `yield_obj_refs`) as
    they become ready, a chunk at a time."""
    pending = list(refs)
    if chunk_size < 1:
        raise ValueError("`chunk_size` must be >= 1")
    while pending:
        out, pending = _ready_chunk(pending, chunk_size, yield_obj_refs, kwargs)
        yield from out


def map_unordered(
    fn: Any,
    items: Iterable[Any],
    *,
    backpressure_size: int | None = DEFAULT_BACKPRESSURE_SIZE,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    yield_obj_refs: bool = False,
    **kwargs: Any,
) -> Iterator[Any]:
    """Runs the remote function `fn` on each of `items` and yields the
    results as they are ready, with at most `backpressure_size` tasks in
    flight (None: no limit)."""
    if not hasattr(fn, "remote"):
        raise TypeError(f"map_unordered() needs a remote function, got {type(fn).__name__}")
    if chunk_size < 1:
        raise ValueError("`chunk_size` must be >= 1")
    if backpressure_size is not None and backpressure_size < 1:
        raise ValueError("`backpressure_size` must be >= 1 or None")
    pending: list[ObjectRef] = []
    for item in items:
        if backpressure_size is not None and len(pending) >= backpressure_size:
            out, pending = _ready_chunk(pending, chunk_size, yield_obj_refs, kwargs)
            yield from out
        pending.append(fn.remote(item))
    while pending:
        out, pending = _ready_chunk(pending, chunk_size, yield_obj_refs, kwargs)
        yield from out
