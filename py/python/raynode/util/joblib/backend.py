"""The joblib backend: each `Parallel` call gets a raynode Pool of `n_jobs` workers.

Imported only by `register_ray`, once joblib is known to be installed.
"""

from typing import Any, Callable, Optional

from joblib._parallel_backends import AutoBatchingMixin, ParallelBackendBase

import raynode as ray

from ..multiprocessing import Pool
from ..multiprocessing.results import AsyncResult


class _Failed:
    """Marks what a batch raised, so a batch that returns an exception is not taken for a failure."""

    def __init__(self, error: Exception) -> None:
        self.error = error


# joblib is untyped: its base classes are Any to mypy.
class RayBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """Runs joblib's batches as `apply_async` calls on a raynode Pool.

    `parallel_backend("ray", ray_remote_args={...})` passes options to the
    Pool's actors.
    """

    supports_retrieve_callback = True
    supports_return_generator = True
    uses_threads = False
    supports_sharedmem = False

    def __init__(
        self,
        nesting_level: Optional[int] = None,
        inner_max_num_threads: Optional[int] = None,
        ray_remote_args: Optional[dict[str, Any]] = None,
        **backend_kwargs: Any,
    ) -> None:
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **backend_kwargs)
        self._ray_remote_args = ray_remote_args
        self._pool: Optional[Pool] = None

    def effective_n_jobs(self, n_jobs: Optional[int]) -> int:
        """n_jobs < 0 counts back from the cluster's CPUs (-1: all of them)."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            if not ray.is_initialized():
                ray.init()
            cpus = int(ray.cluster_resources().get("CPU", 0))
            return max(cpus + 1 + n_jobs, 1)
        return n_jobs

    def configure(
        self,
        n_jobs: Optional[int] = 1,
        parallel: Any = None,
        prefer: Optional[str] = None,
        require: Optional[str] = None,
        **_kwargs: Any,
    ) -> int:
        n = self.effective_n_jobs(n_jobs)
        self.parallel = parallel
        self._pool = Pool(processes=n, ray_remote_args=self._ray_remote_args)
        return n

    def submit(self, func: Callable[[], Any], callback: Optional[Callable[[Any], None]] = None) -> AsyncResult:
        # joblib configures a backend before it submits, and always gives a callback.
        assert self._pool is not None and callback is not None
        return self._pool.apply_async(func, callback=callback, error_callback=lambda e: callback(_Failed(e)))

    def retrieve_result_callback(self, out: Any) -> Any:
        if isinstance(out, _Failed):
            raise out.error
        return out

    def terminate(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    def abort_everything(self, ensure_ready: bool = True) -> None:
        self.terminate()
        if ensure_ready:
            self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel, **self.parallel._backend_kwargs)
