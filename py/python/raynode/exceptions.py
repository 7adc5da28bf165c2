"""The exceptions raynode raises, with Ray's names and hierarchy.

Every one is an `Exception`: none is a `SystemExit` or `KeyboardInterrupt`,
which would end a driver that did not catch it.
"""

import pickle
import traceback
from typing import Any

import cloudpickle


class RayError(Exception):
    """Base of every raynode error."""


class RaySystemError(RayError):
    """The runtime itself failed."""


class GetTimeoutError(RayError, TimeoutError):
    """`get` timed out before every object was ready."""


class RayTaskError(RayError):
    """A task raised. `get` raises an instance that is also of the cause's class.

    Its text is Ray's: ``ray::<task>() (pid=<pid>, ip=<ip>)`` and the
    remote traceback. The cause travels pickled on its own, so a cause that
    cannot be pickled on the worker, or rebuilt where it is raised, still
    arrives as a `RayError` holding the cause's text.
    """

    function_name: str
    traceback_str: str
    cause: BaseException | None
    proctitle: str | None
    pid: int | None
    ip: str | None
    actor_repr: str | None
    actor_id: str | None

    def __init__(
        self,
        function_name: str,
        traceback_str: str,
        cause: BaseException | None = None,
        proctitle: str | None = None,
        pid: int | None = None,
        ip: str | None = None,
        actor_repr: str | None = None,
        actor_id: str | None = None,
    ) -> None:
        super().__init__(function_name, traceback_str, cause)
        _set_fields(self, function_name, traceback_str, cause, proctitle, pid, ip, actor_repr, actor_id)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_task_error, (self._fields(), *_pickled_cause(self)))

    def _fields(self) -> tuple[Any, ...]:
        return (self.function_name, self.traceback_str, self.proctitle, self.pid, self.ip, self.actor_repr,
                self.actor_id)

    def __str__(self) -> str:
        name = self.proctitle or f"ray::{_short_name(self.function_name)}"
        where = [f"pid={self.pid}", f"ip={self.ip}"]
        if self.actor_id:
            where.append(f"actor_id={self.actor_id}")
        if self.actor_repr:
            where.append(f"repr={self.actor_repr}")
        header = f"{name}() ({', '.join(where)})" if self.pid is not None else f"{name}()"
        return f"{header}\n{self.traceback_str.rstrip()}"

    def as_instanceof_cause(self) -> "RayTaskError":
        """An exception of class `RayTaskError(<cause class>)`, so `except
        CauseClass` catches it. Never for causes that are not `Exception`s
        (`SystemExit`, `KeyboardInterrupt`, ...): an error that reaches the
        driver must not end it as those would."""
        cause = self.cause
        if cause is None or isinstance(cause, RayTaskError) or not isinstance(cause, Exception):
            return self
        cause_cls = type(cause)
        try:
            cls = _dual_classes.get(cause_cls)
            if cls is None:
                cls = type(
                    f"RayTaskError({cause_cls.__name__})",
                    (RayTaskError, cause_cls),
                    {"__init__": _dual_init, "__getattr__": _dual_getattr, "__str__": RayTaskError.__str__},
                )
                _dual_classes[cause_cls] = cls
            err: RayTaskError = cls(*self._fields(), cause)
        except TypeError:
            return self  # the cause's class cannot be a base (e.g. final or layout conflicts)
        return err


_dual_classes: dict[type, type] = {}


def _set_fields(
    err: RayTaskError,
    function_name: str,
    traceback_str: str,
    cause: BaseException | None,
    proctitle: str | None,
    pid: int | None,
    ip: str | None,
    actor_repr: str | None,
    actor_id: str | None,
) -> None:
    err.function_name = function_name
    err.traceback_str = traceback_str
    err.cause = cause
    err.proctitle = proctitle
    err.pid = pid
    err.ip = ip
    err.actor_repr = actor_repr
    err.actor_id = actor_id


def _dual_init(
    self: RayTaskError,
    function_name: str,
    traceback_str: str,
    proctitle: str | None,
    pid: int | None,
    ip: str | None,
    actor_repr: str | None,
    actor_id: str | None,
    cause: BaseException | None,
) -> None:
    _set_fields(self, function_name, traceback_str, cause, proctitle, pid, ip, actor_repr, actor_id)
    self.args = (function_name, traceback_str, cause)


def _dual_getattr(self: RayTaskError, name: str) -> Any:
    cause = self.__dict__.get("cause")
    if cause is None:
        raise AttributeError(name)
    return getattr(cause, name)


def _short_name(function_name: object) -> str:
    """`f` of a task named `test.<locals>.f`; `A.m` stays `A.m`."""
    return str(function_name).rpartition(".<locals>.")[2]


def _cause_text(cause: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(cause), cause)).strip()


def _pickled_cause(err: RayTaskError) -> tuple[bytes | None, str | None, str | None, str | None]:
    """(pickled cause or None, its class name, its text, why it would not pickle)."""
    cause = err.cause
    if cause is None:
        return (None, None, None, None)
    name = f"{type(cause).__module__}.{type(cause).__qualname__}"
    text = _cause_text(cause)
    try:
        return (cloudpickle.dumps(cause), name, text, None)
    except Exception as e:  # noqa: BLE001 - any failure to pickle leaves the text
        return (None, name, text, f"{type(e).__name__}: {e}")


def _rebuild_task_error(
    fields: tuple[Any, ...],
    cause_bytes: bytes | None,
    cause_class: str | None,
    cause_text: str | None,
    unpicklable: str | None,
) -> RayTaskError:
    function_name = fields[0]
    cause: BaseException | None
    if cause_bytes is None and cause_class is None:
        cause = None
    elif cause_bytes is None:
        cause = RayError(
            f"The exception {cause_class} raised by {function_name} could not be pickled ({unpicklable}). "
            f"Its text:\n{cause_text}"
        )
    else:
        try:
            cause = pickle.loads(cause_bytes)
        except Exception as e:  # noqa: BLE001 - a class that cannot be rebuilt here leaves its text
            cause = RayError(
                f"The exception {cause_class} raised by {function_name} could not be rebuilt here "
                f"({type(e).__name__}: {e}). Its text:\n{cause_text}"
            )
    err = RayTaskError.__new__(RayTaskError)
    Exception.__init__(err, function_name, fields[1], cause)
    _set_fields(err, fields[0], fields[1], cause, *fields[2:])
    return err


class RayActorError(RayError):
    """An actor died or cannot be reached."""


class ActorDiedError(RayActorError):
    """The actor is dead: killed, its constructor raised, or its restarts are used up."""


class ActorUnavailableError(RayActorError):
    """The actor is restarting or unreachable for now."""


class WorkerCrashedError(RayError):
    """The worker running a task died and its retries are used up."""


class TaskCancelledError(RayError):
    """The task was cancelled with `cancel`."""


class ObjectLostError(RayError):
    """The object's value is gone and cannot be rebuilt."""


class OwnerDiedError(ObjectLostError):
    """The object's owner (the node of the driver or worker that made the
    reference) died, so its value is gone."""


class ObjectReconstructionFailedError(ObjectLostError):
    """The object was lost and could not be made again."""


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectReconstructionFailedError):
    """The object was lost, and its task's retries (`max_retries`) are used up."""


class ObjectReconstructionFailedLineageEvictedError(ObjectReconstructionFailedError):
    """The object was lost, and its task's lineage was dropped to bound memory."""


class OutOfMemoryError(RayError):
    """The task was stopped because memory ran out."""


class TaskUnschedulableError(RayError):
    """No node may run the task: its strategy pins it to a node that is
    gone or can never run it (`NodeAffinitySchedulingStrategy(soft=False)`)."""


class ActorUnschedulableError(RayError):
    """No node may host the actor (as `TaskUnschedulableError`)."""


class ObjectStoreFullError(RayError):
    """The object store has no room for the object."""


class ControlStoreUnavailableError(RaySystemError):
    """The cluster's control store has no quorum (too many of its voters are
    down, or this node is cut off from them), so control state such as an
    actor's name could not be recorded. Retry once the cluster has healed."""


__all__ = [
    "RayError",
    "RaySystemError",
    "GetTimeoutError",
    "RayTaskError",
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "WorkerCrashedError",
    "TaskCancelledError",
    "ObjectLostError",
    "OwnerDiedError",
    "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectReconstructionFailedLineageEvictedError",
    "OutOfMemoryError",
    "ObjectStoreFullError",
    "TaskUnschedulableError",
    "ActorUnschedulableError",
    "ControlStoreUnavailableError",
]
