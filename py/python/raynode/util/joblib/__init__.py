"""raynode.util.joblib: a joblib backend that runs `Parallel` work on the cluster.

    from raynode.util.joblib import register_ray
    register_ray()
    with joblib.parallel_backend("ray"):
        Parallel(n_jobs=4)(delayed(f)(i) for i in range(100))

joblib is needed only once `register_ray` is called.
"""


def register_ray() -> None:
    """Registers the "ray" joblib backend, backed by raynode.util.multiprocessing.Pool."""
    try:
        from joblib import register_parallel_backend
    except ImportError:
        raise ImportError("register_ray needs joblib: pip install joblib") from None
    from .backend import RayBackend

    register_parallel_backend("ray", RayBackend)


__all__ = ["register_ray"]
