"""raynode.actor: Ray's ``ray.actor`` module."""

from ._actor import ActorClass, ActorHandle

__all__ = ["ActorClass", "ActorHandle"]
