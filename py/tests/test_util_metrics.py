"""User metrics (raynode.util.metrics) recorded in a driver and in workers,
scraped from the node's Prometheus endpoint (--metrics-export-port)."""

import json
import socket
import urllib.request

import pytest

from standalone_node import StandaloneNode

pytestmark = pytest.mark.timeout(120)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def metrics_node():
    port = free_port()
    node = StandaloneNode(num_cpus=2, extra=("--metrics-export-port", str(port)))
    node.metrics_port = port
    yield node
    node.stop()


def scrape(node):
    with urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def test_counters_gauges_and_histograms_reach_the_endpoint(metrics_node):
    res = metrics_node.run_driver("""
import raynode as ray
from raynode.util.metrics import Counter, Gauge, Histogram
ray.init()
requests = Counter("app_requests", description="Requests served", tag_keys=("route",))
requests.set_default_tags({"route": "/home"})
depth = Gauge("app_depth", description="Queue depth")
latency = Histogram("app_latency", description="Latency", boundaries=[0.1, 1.0], tag_keys=("route",))

@ray.remote
def work(i, counter, hist):
    counter.inc(1, tags={"route": "/task"})
    hist.observe(0.05 * i, tags={"route": "/task"})
    return i

assert ray.get([work.remote(i, requests, latency) for i in range(4)]) == list(range(4))
requests.inc()
requests.inc(2.0)
depth.set(7)
depth.set(3)
ray.get(work.remote(0, requests, latency))
print("ok")
""")
    assert res.returncode == 0, res.stderr
    text = scrape(metrics_node)
    assert "# TYPE ray_app_requests counter" in text
    assert 'ray_app_requests{route="/home"} 3' in text
    assert 'ray_app_requests{route="/task"} 5' in text
    assert "ray_app_depth 3" in text
    assert 'ray_app_latency_bucket{route="/task",le="0.1"} 4' in text
    assert 'ray_app_latency_count{route="/task"} 5' in text
    # The node's own gauges come first.
    assert "# TYPE raynode_workers gauge" in text
    assert "raynode_busy_workers{node=" in text


def test_bad_metrics_are_refused_in_python(metrics_node):
    res = metrics_node.run_driver("""
import json
import raynode as ray
from raynode.util.metrics import Counter, Gauge, Histogram
ray.init()
errors = []
for make in (
    lambda: Counter(""),
    lambda: Counter("bad name"),
    lambda: Counter("c", tag_keys=["not", "a", "tuple"]),
    lambda: Histogram("h"),
    lambda: Histogram("h", boundaries=[-1.0]),
    lambda: Counter("c").inc(-1),
    lambda: Gauge("g", tag_keys=("k",)).set(1),
    lambda: Gauge("g", tag_keys=("k",)).set(1, tags={"other": "v"}),
    lambda: Gauge("g").set_default_tags({"k": "v"}),
):
    try:
        make()
        errors.append(None)
    except (ValueError, TypeError) as e:
        errors.append(type(e).__name__)
print(json.dumps(errors))
""")
    assert res.returncode == 0, res.stderr
    assert None not in json.loads(res.stdout.strip().splitlines()[-1])


def test_the_endpoint_answers_only_metrics(metrics_node):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_node.metrics_port}/other", timeout=10)
    assert e.value.code == 404


def test_a_histogram_subclass_records_in_a_task(metrics_node):
    res = metrics_node.run_driver("""
import raynode as ray
from raynode.util.metrics import Histogram
ray.init()

class Latency(Histogram):
    pass

h = Latency("app_sub_latency", description="Latency", boundaries=[1.0])

@ray.remote
def work(hist):
    hist.observe(0.5)
    return True

assert ray.get(work.remote(h))
print("ok")
""")
    assert res.returncode == 0, res.stderr
    text = scrape(metrics_node)
    assert 'ray_app_sub_latency_bucket{le="1"} 1' in text
    assert 'ray_app_sub_latency_count 1' in text
