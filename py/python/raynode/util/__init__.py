"""raynode.util: the helpers Ray programs import from ``ray.util``."""
