"""Fixtures for the cluster tests: real `raynode` processes on loopback,
started with testnet's `Cluster`, and drivers run as subprocesses of the
repo's Python. A failed test gets the log tails of its clusters' nodes in
its report."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testnet"))

from testnet import Cluster, start_healthy  # noqa: E402

HEALTHY_TIMEOUT_S = 60.0


def start_cluster(n, resources_on=None, args_on=None, **kwargs):
    """A started, healthy cluster; stopped (with its files removed) if it does not get healthy."""
    return start_healthy(n, resources_on=resources_on, args_on=args_on, timeout=HEALTHY_TIMEOUT_S, **kwargs)


@pytest.fixture(scope="module")
def cluster3():
    """Three nodes, shared by the tests of a module that leave it as they found it;
    node 3 (nodes[2]) alone has the custom resource "special"."""
    cluster = start_cluster(3, resources_on={2: {"special": 1}})
    yield cluster
    cluster.stop()


@pytest.fixture
def fresh_cluster3():
    """Three nodes for one test that breaks them; node 3 has "special"."""
    cluster = start_cluster(3, resources_on={2: {"special": 1}})
    yield cluster
    cluster.stop()


@pytest.fixture
def fresh_cluster3_shared():
    """Three nodes for one test that breaks them; nodes 2 and 3 both have "r"."""
    cluster = start_cluster(3, resources_on={1: {"r": 1}, 2: {"r": 1}})
    yield cluster
    cluster.stop()


@pytest.fixture
def fresh_cluster2():
    """Two nodes for one test that restarts one."""
    cluster = start_cluster(2)
    yield cluster
    cluster.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    clusters = [v for v in getattr(item, "funcargs", {}).values() if isinstance(v, Cluster)]
    for cluster in clusters:
        report.sections.append((f"raynode logs ({cluster.workdir})", cluster.log_tails(30)))
