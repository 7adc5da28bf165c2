"""raynode.util.joblib: joblib's Parallel run on the cluster through the "ray" backend."""

import os

import pytest

from raynode.util.joblib import register_ray

joblib = pytest.importorskip("joblib")


def square_and_pid(x):
    return x * x, os.getpid()


def fail_on_three(x):
    if x == 3:
        raise KeyError("three")
    return x


@pytest.fixture(scope="module")
def backend(ray):
    register_ray()


def test_parallel_runs_on_the_cluster(backend):
    with joblib.parallel_backend("ray"):
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(square_and_pid)(i) for i in range(50))
    assert [v for v, _ in out] == [i * i for i in range(50)]
    assert os.getpid() not in {pid for _, pid in out}


def test_errors_are_re_raised(backend):
    with joblib.parallel_backend("ray"):
        with pytest.raises(KeyError, match="three"):
            joblib.Parallel(n_jobs=2)(joblib.delayed(fail_on_three)(i) for i in range(10))


def test_n_jobs_minus_one_means_every_cluster_cpu(backend, ray):
    with joblib.parallel_backend("ray"):
        assert joblib.effective_n_jobs(-1) == int(ray.cluster_resources()["CPU"])
        assert joblib.effective_n_jobs(-2) == int(ray.cluster_resources()["CPU"]) - 1


def test_results_as_a_generator(backend):
    with joblib.parallel_backend("ray"):
        out = joblib.Parallel(n_jobs=2, return_as="generator")(joblib.delayed(square_and_pid)(i) for i in range(5))
        assert [v for v, _ in out] == [0, 1, 4, 9, 16]
