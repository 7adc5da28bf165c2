"""Scheduling strategies and placement groups on one node (4 CPUs), as Ray's
`ray.util.scheduling_strategies` and `ray.util.placement_group`."""

import pytest

from raynode.exceptions import ActorDiedError, ActorUnschedulableError, RaySystemError, TaskUnschedulableError
from raynode.util.placement_group import (
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from raynode.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

pytestmark = pytest.mark.timeout(120)

UNKNOWN_NODE = "ab" * 16


@pytest.fixture
def node_id(ray):
    return ray.get_runtime_context().get_node_id()


def where(ray):
    @ray.remote
    def f():
        ctx = ray.get_runtime_context()
        return ctx.get_node_id(), ctx.get_placement_group_id(), ctx.get_assigned_resources()

    return f


# -- scheduling strategies ------------------------------------------------------


def test_default_and_spread_run_tasks_and_actors(ray, node_id):
    f = where(ray)
    for strategy in ("DEFAULT", "SPREAD", None):
        assert ray.get(f.options(scheduling_strategy=strategy).remote(), timeout=30)[0] == node_id

    @ray.remote
    class A:
        def node(self):
            return ray.get_runtime_context().get_node_id()

    a = A.options(scheduling_strategy="SPREAD").remote()
    assert ray.get(a.node.remote(), timeout=30) == node_id


def test_node_affinity_runs_on_that_node(ray, node_id):
    f = where(ray)
    hard = NodeAffinitySchedulingStrategy(node_id, soft=False)
    assert ray.get(f.options(scheduling_strategy=hard).remote(), timeout=30)[0] == node_id


def test_hard_affinity_to_an_unknown_node_fails_and_soft_runs_here(ray, node_id):
    f = where(ray)
    hard = NodeAffinitySchedulingStrategy(UNKNOWN_NODE, soft=False)
    with pytest.raises(TaskUnschedulableError, match="soft=False"):
        ray.get(f.options(scheduling_strategy=hard).remote(), timeout=30)
    soft = NodeAffinitySchedulingStrategy(UNKNOWN_NODE, soft=True)
    assert ray.get(f.options(scheduling_strategy=soft).remote(), timeout=30)[0] == node_id


def test_hard_affinity_of_an_actor_to_an_unknown_node_fails(ray):
    @ray.remote
    class A:
        def ping(self):
            return 1

    a = A.options(scheduling_strategy=NodeAffinitySchedulingStrategy(UNKNOWN_NODE, soft=False)).remote()
    with pytest.raises(ActorUnschedulableError):
        ray.get(a.ping.remote(), timeout=30)


def test_bad_strategies_are_refused_at_the_call(ray):
    f = where(ray)
    with pytest.raises(ValueError, match="scheduling_strategy"):
        f.options(scheduling_strategy="NEAREST").remote()
    with pytest.raises(ValueError, match="not a node id"):
        f.options(scheduling_strategy=NodeAffinitySchedulingStrategy("nope", soft=False)).remote()
    with pytest.raises(TypeError):
        NodeAffinitySchedulingStrategy(12, soft=False)


# -- placement groups ------------------------------------------------------------


def test_a_group_reserves_its_bundles_and_runs_tasks_in_them(ray, node_id):
    before = ray.available_resources()["CPU"]
    pg = placement_group([{"CPU": 1}, {"CPU": 0.5}], strategy="PACK", name="test-pack")
    try:
        assert ray.get(pg.ready(), timeout=30) == pg
        assert pg.wait(10)
        assert pg.bundle_specs == [{"CPU": 1.0}, {"CPU": 0.5}]
        assert pg.bundle_count == 2
        row = placement_group_table(pg)
        assert row["state"] == "CREATED" and row["strategy"] == "PACK" and row["name"] == "test-pack"
        assert row["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 0.5}}
        assert row["bundles_to_node_id"] == {0: node_id, 1: node_id}
        assert pg.id.hex() in placement_group_table()
        assert ray.available_resources()["CPU"] == pytest.approx(before - 1.5)
        assert get_placement_group("test-pack") == pg

        f = where(ray)
        strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=1)
        node, group, res = ray.get(f.options(scheduling_strategy=strategy, num_cpus=0.5).remote(), timeout=30)
        assert (node, group, res) == (node_id, pg.id.hex(), {"CPU": 0.5})
        any_bundle = PlacementGroupSchedulingStrategy(pg)
        assert ray.get(f.options(scheduling_strategy=any_bundle, num_cpus=1).remote(), timeout=30)[1] == pg.id.hex()
    finally:
        remove_placement_group(pg)
    assert placement_group_table(pg)["state"] == "REMOVED"
    with pytest.raises(ValueError, match="Failed to look up placement group with name: test-pack"):
        get_placement_group("test-pack")


def test_tasks_in_a_bundle_share_only_its_resources(ray):
    pg = placement_group([{"CPU": 1}])
    try:
        assert pg.wait(30)

        @ray.remote
        class Holder:
            def ping(self):
                return "ok"

        strategy = PlacementGroupSchedulingStrategy(pg, 0)
        holder = Holder.options(num_cpus=1, scheduling_strategy=strategy).remote()
        assert ray.get(holder.ping.remote(), timeout=30) == "ok"
        f = where(ray)
        blocked = f.options(num_cpus=1, scheduling_strategy=strategy).remote()
        ready, _ = ray.wait([blocked], timeout=1.0)
        assert ready == [], "the bundle's one CPU is the actor's"
        # A task outside the group still runs on the node's other CPUs.
        assert ray.get(f.remote(), timeout=30)[1] is None
        ray.kill(holder)
        assert ray.get(blocked, timeout=30)[1] == pg.id.hex()
    finally:
        remove_placement_group(pg)


def test_an_infeasible_group_stays_pending(ray):
    pg = placement_group([{"CPU": 100}])
    try:
        assert not pg.wait(1.0)
        ready, _ = ray.wait([pg.ready()], timeout=0.5)
        assert ready == []
        assert placement_group_table(pg)["state"] == "PENDING"
    finally:
        remove_placement_group(pg)


def test_removing_a_group_kills_its_actors_and_frees_its_resources(ray):
    before = ray.available_resources()["CPU"]
    pg = placement_group([{"CPU": 2}], strategy="STRICT_PACK")
    assert pg.wait(30)

    @ray.remote
    class A:
        def where(self):
            return ray.get_runtime_context().get_placement_group_id()

    a = A.options(num_cpus=1, scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    assert ray.get(a.where.remote(), timeout=30) == pg.id.hex()
    remove_placement_group(pg)
    with pytest.raises(ActorDiedError):
        ray.get(a.where.remote(), timeout=30)
    assert ray.available_resources()["CPU"] == pytest.approx(before)
    remove_placement_group(pg)  # removing twice is fine, as in Ray


def test_child_tasks_are_captured_only_when_asked(ray):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    try:
        assert pg.wait(30)

        @ray.remote
        def child():
            return ray.get_runtime_context().get_placement_group_id()

        @ray.remote
        def parent():
            current = get_current_placement_group()
            return current.id.hex() if current else None, ray.get(child.options(num_cpus=0.5).remote())

        capture = PlacementGroupSchedulingStrategy(pg, 0, placement_group_capture_child_tasks=True)
        assert ray.get(parent.options(num_cpus=0.5, scheduling_strategy=capture).remote(), timeout=30) == (
            pg.id.hex(),
            pg.id.hex(),
        )
        plain = PlacementGroupSchedulingStrategy(pg, 0)
        assert ray.get(parent.options(num_cpus=0.5, scheduling_strategy=plain).remote(), timeout=30) == (
            pg.id.hex(),
            None,
        )
        assert get_current_placement_group() is None, "a driver is in no group"
    finally:
        remove_placement_group(pg)


def test_bad_groups_are_refused(ray):
    with pytest.raises(ValueError, match="non-empty list"):
        placement_group([])
    with pytest.raises(ValueError, match="must be a list"):
        placement_group("CPU")
    with pytest.raises(ValueError, match="empty dictionary or resources with only 0"):
        placement_group([{"CPU": 0}])
    with pytest.raises(ValueError, match="empty dictionary"):
        placement_group([{}])
    with pytest.raises(ValueError, match="non-negative"):
        placement_group([{"CPU": -1}])
    with pytest.raises(ValueError, match="Invalid placement group strategy"):
        placement_group([{"CPU": 1}], strategy="FOO")
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")
    with pytest.raises(ValueError, match="Failed to look up"):
        get_placement_group("no-such-group")
    with pytest.raises(TypeError):
        remove_placement_group("not a group")


def test_bad_bundle_requests_are_refused_at_the_call(ray):
    pg = placement_group([{"CPU": 1}], name="test-dup")
    try:
        with pytest.raises(RaySystemError, match="already exists"):
            placement_group([{"CPU": 1}], name="test-dup")
        f = where(ray)
        for index in (1, -2):
            with pytest.raises(ValueError, match=f"bundle index {index} is invalid"):
                f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, index)).remote()
        with pytest.raises(ValueError, match="cannot fit into any bundles"):
            f.options(num_cpus=2, scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    finally:
        remove_placement_group(pg)
