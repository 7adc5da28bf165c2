"""Values to object-layout bytes and back: pickle protocol 5 with
out-of-band buffers, so numpy arrays read from the store are zero-copy."""

from __future__ import annotations

import functools
import mmap
import os
import pickle
import threading
import weakref
from typing import Any

import cloudpickle

from . import _core, exceptions

META_PICKLE = _core.META_PICKLE
META_TASK_ERROR = _core.META_TASK_ERROR
META_SYSTEM_ERROR = _core.META_SYSTEM_ERROR

_PLAIN = frozenset([int, float, str, bytes, bool, type(None)])


_WRITE_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)

# The store reuses the files of freed objects in place. This process keeps
# its mapping of the last file it wrote, by (device, inode, size): when the
# store hands that file out again (the next put of that size, once the last
# one is freed), writing into the kept mapping costs no mmap, no page faults
# and no munmap, which for a 1 MiB object cost several times the copy. One
# mapping at most, so what it holds stays small.
_MapKey = tuple[int, int, int]
_kept_write_map: tuple[_MapKey, mmap.mmap] | None = None


def _write_map(path: str, total: int) -> tuple[_MapKey, mmap.mmap]:
    global _kept_write_map
    with open(path, "r+b") as f:
        st = os.fstat(f.fileno())
        key = (st.st_dev, st.st_ino, total)
        kept, _kept_write_map = _kept_write_map, None
        if kept is not None:
            if kept[0] == key:
                return key, kept[1]
            kept[1].close()
        # Mapping with its pages populated at once is several times faster
        # than faulting them in one by one while copying.
        return key, mmap.mmap(f.fileno(), total, flags=_WRITE_MAP_FLAGS)


def _done_with_write_map(key: _MapKey, mm: mmap.mmap) -> None:
    global _kept_write_map
    if _kept_write_map is not None:
        _kept_write_map[1].close()
    _kept_write_map = (key, mm)


class StalePath(exceptions.ObjectLostError):
    """The file the node named for a value no longer holds it: the object was
    spilled, evicted or freed since. Asking the node again may find it."""


class Serialized:
    """A value pickled: data, out-of-band buffers, and the refs inside it."""

    __slots__ = ("meta", "data", "buffers", "nested", "size")

    meta: bytes
    data: bytes
    buffers: list[memoryview]
    nested: list[bytes]
    size: int

    def __init__(self, meta: bytes, data: bytes, buffers: list[memoryview], nested: list[bytes]) -> None:
        self.meta = meta
        self.data = data
        self.buffers = buffers
        self.nested = nested
        self.size = len(data) + sum(b.nbytes for b in buffers)

    def inline(self) -> bytes:
        return _core.encode(self.meta, self.data, self.buffers)

    def write_to(self, path: str) -> None:
        """Writes the value into the store file made for it."""
        header, meta_off, data_off, buf_offs, total = _core.plan(
            len(self.meta), len(self.data), [b.nbytes for b in self.buffers]
        )
        key, mm = _write_map(path, total)
        with memoryview(mm) as view:
            view[: len(header)] = header
            view[meta_off : meta_off + len(self.meta)] = self.meta
            view[data_off : data_off + len(self.data)] = self.data
            for off, buf in zip(buf_offs, self.buffers):
                view[off : off + buf.nbytes] = buf
        _done_with_write_map(key, mm)

    def planned_size(self) -> int:
        return _core.plan(len(self.meta), len(self.data), [b.nbytes for b in self.buffers])[4]


def serialize(value: Any, meta: bytes = META_PICKLE) -> Serialized:
    if type(value) in _PLAIN:
        return Serialized(meta, pickle.dumps(value, 5), [], [])
    buffers: list[pickle.PickleBuffer] = []
    _core.begin_capture()
    try:
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    finally:
        nested = _core.end_capture()
    views = []
    for b in buffers:
        try:
            views.append(b.raw())
        except BufferError:
            # Not contiguous: pickle it in band instead.
            return _serialize_in_band(value, meta)
    return Serialized(meta, data, views, nested)


def _serialize_in_band(value: Any, meta: bytes) -> Serialized:
    _core.begin_capture()
    try:
        data = cloudpickle.dumps(value, protocol=5)
    finally:
        nested = _core.end_capture()
    return Serialized(meta, data, [], nested)


# The read mappings of stored objects, one per object while any value read
# from it lives: (path, object key) -> weak reference to the mapping. Values
# (numpy arrays) hold the mapping through their buffers; the last one to go
# unmaps it, and with it goes the shared lock that kept the file from reuse.
_read_maps: dict[tuple[str, bytes], weakref.ref[_core.MappedObject]] = {}
_read_maps_lock = threading.Lock()


def _read_map(path: str, size: int, key: bytes) -> _core.MappedObject:
    """The mapping of the stored object `key` in `path`: the one this
    process has, else a new one (StalePath if the file holds it no more)."""
    k = (path, key)
    with _read_maps_lock:
        ref = _read_maps.get(k)
        mapped = ref() if ref is not None else None
    if mapped is not None and len(mapped) == size:
        return mapped
    mapped = _core.map_object(path, key)
    if mapped is None or len(mapped) != size:
        raise StalePath(f"object file {path} no longer holds the object (spilled, evicted or reused)")
    with _read_maps_lock:
        ref = _read_maps.get(k)
        other = ref() if ref is not None else None
        if other is not None and len(other) == size:
            return other  # another thread mapped it meanwhile
        _read_maps[k] = weakref.ref(mapped, functools.partial(_forget_map, k))
    return mapped


def _forget_map(k: tuple[str, bytes], r: weakref.ref[_core.MappedObject]) -> None:
    # Runs when the mapping is freed, maybe inside a locked section of this
    # thread: a plain dict operation, no lock.
    if _read_maps.get(k) is r:
        _read_maps.pop(k, None)


def _sections(value: _core.GotValue) -> tuple[bytes, memoryview, list[memoryview]]:
    """(meta, data view, buffer views) of a value from the node."""
    if isinstance(value, bytes):
        (ms, me), (ds, de), bufs = _core.parse(value)
        view = memoryview(value)
        return value[ms:me], view[ds:de], [view[s:e] for s, e in bufs]
    path, size, key = value
    view = memoryview(_read_map(path, size, key))
    header = bytes(view[: _core.header_bytes(bytes(view[: _core.HEADER_PREFIX]))])
    (ms, me), (ds, de), bufs = _core.parse_header(header, size)
    return bytes(view[ms:me]), view[ds:de], [view[s:e] for s, e in bufs]


def deserialize(value: _core.GotValue) -> Any:
    """The Python value, or raises the error the value holds."""
    meta, data, buffers = _sections(value)
    if meta == META_PICKLE:
        return pickle.loads(data, buffers=buffers)
    raise error_of(meta, data)


def error_of(meta: bytes, data: bytes | memoryview) -> BaseException:
    if meta == META_TASK_ERROR:
        err: BaseException = pickle.loads(data)
        if isinstance(err, exceptions.RayTaskError):
            return err.as_instanceof_cause()
        return err
    if meta == META_SYSTEM_ERROR:
        kind, _, message = bytes(data).decode("utf-8", "replace").partition("\n")
        cls = getattr(exceptions, kind, exceptions.RaySystemError)
        return cls(message)
    return exceptions.RaySystemError(f"a value of unknown kind {meta!r}")


def task_error(function_name: str, traceback_str: str, exc: BaseException | None) -> Serialized:
    """A pickled RayTaskError for `exc`, even if `exc` itself will not pickle."""
    err = exceptions.RayTaskError(function_name, traceback_str, exc)
    try:
        return serialize(err, META_TASK_ERROR)
    except Exception:
        plain = exceptions.RayTaskError(function_name, traceback_str, None)
        return serialize(plain, META_TASK_ERROR)
