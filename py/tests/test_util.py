"""raynode.util's helpers and its layout as Ray's ray.util."""

import io
import threading

import raynode
from raynode.util import get_node_ip_address, inspect_serializability


def test_layout_matches_ray_util():
    import raynode.util.joblib
    import raynode.util.multiprocessing
    import raynode.util.queue

    assert raynode.util.ActorPool
    assert raynode.util.queue.Queue and raynode.util.queue.Empty and raynode.util.queue.Full
    assert raynode.util.multiprocessing.Pool
    assert callable(raynode.util.joblib.register_ray)


def test_node_ip_address_is_the_nodes(ray):
    me = ray.get_runtime_context().get_node_id()
    (node,) = [n for n in ray.nodes() if n["NodeID"] == me]
    assert get_node_ip_address() == node["NodeManagerAddress"]

    @ray.remote
    def remote_ip():
        return raynode.util.get_node_ip_address()

    assert ray.get(remote_ip.remote()) == node["NodeManagerAddress"]


def test_serializable_object():
    out = io.StringIO()
    ok, failures = inspect_serializability(lambda x: x + 1, name="adder", print_file=out)
    assert ok and failures == set()
    assert "adder is serializable" in out.getvalue()


def test_unserializable_closure_names_the_culprit():
    lock = threading.Lock()

    def uses_lock():
        with lock:
            return 1

    out = io.StringIO()
    ok, failures = inspect_serializability(uses_lock, print_file=out)
    assert not ok
    (failure,) = failures
    assert failure.obj is lock and failure.name == "lock" and failure.parent is uses_lock
    assert "uses_lock is not serializable" in out.getvalue()


def test_unserializable_attribute_names_the_culprit():
    class Holder:
        def __init__(self):
            self.fine = [1, 2]
            self.bad = threading.Lock()

    holder = Holder()
    ok, failures = inspect_serializability(holder, name="holder", print_file=io.StringIO())
    assert not ok
    assert [(f.name, f.parent) for f in failures] == [("bad", holder)]
