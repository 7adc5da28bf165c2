"""raynode.util.multiprocessing: Python's multiprocessing.Pool run on the cluster."""

from multiprocessing import TimeoutError

from .pool import Pool
from .results import AsyncResult, IMapIterator

__all__ = ["AsyncResult", "IMapIterator", "Pool", "TimeoutError"]
