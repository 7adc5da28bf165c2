"""The exceptions raynode raises, with Ray's names and hierarchy."""


class RayError(Exception):
    """Base of every raynode error."""


class RaySystemError(RayError):
    """The runtime itself failed."""


class GetTimeoutError(RayError, TimeoutError):
    """`get` timed out before every object was ready."""


class RayTaskError(RayError):
    """A task raised. `get` raises an instance that is also of the cause's class."""

    def __init__(self, function_name, traceback_str, cause=None):
        super().__init__(function_name, traceback_str, cause)
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause

    def __reduce__(self):
        return (RayTaskError, (self.function_name, self.traceback_str, self.cause))

    def __str__(self):
        return f"{self.function_name} failed on a raynode worker:\n{self.traceback_str}"

    def as_instanceof_cause(self):
        """An exception of class `RayTaskError(<cause class>)`, so `except
        CauseClass` catches it."""
        cause = self.cause
        if cause is None or isinstance(cause, RayTaskError):
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
            err = cls(self.function_name, self.traceback_str, cause)
        except TypeError:
            return self  # the cause's class cannot be a base (e.g. final or layout conflicts)
        return err


_dual_classes = {}


def _dual_init(self, function_name, traceback_str, cause):
    self.function_name = function_name
    self.traceback_str = traceback_str
    self.cause = cause
    self.args = (function_name, traceback_str, cause)


def _dual_getattr(self, name):
    cause = self.__dict__.get("cause")
    if cause is None:
        raise AttributeError(name)
    return getattr(cause, name)


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


class OutOfMemoryError(RayError):
    """The task was stopped because memory ran out."""


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
    "OutOfMemoryError",
    "ObjectStoreFullError",
    "ControlStoreUnavailableError",
]
