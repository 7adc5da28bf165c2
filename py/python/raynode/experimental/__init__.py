"""Experimental parts of Ray's API: `tqdm_ray`."""

from . import tqdm_ray

__all__ = ["tqdm_ray"]
