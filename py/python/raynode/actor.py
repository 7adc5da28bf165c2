"""raynode.actor: Ray's ``ray.actor`` module."""

from typing import NoReturn

from ._actor import ActorClass, ActorHandle, ActorMethod


def exit_actor() -> NoReturn:
    """Ends the actor this is called in, as Ray's: the running call raises
    ActorDiedError at its caller, and so do the calls after it; the actor is
    not restarted, whatever its max_restarts. Raises TypeError outside an
    actor."""
    from . import _worker

    if _worker.current_actor_id() is None:
        raise TypeError("exit_actor() was called outside an actor; call it inside an actor's method")
    raise _worker.ActorExit()


__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "exit_actor"]
