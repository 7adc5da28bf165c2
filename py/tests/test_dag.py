"""The DAG API: `.bind()`, InputNode, MultiOutputNode and `execute`, with
Ray 2.x semantics, on Ray's documented examples."""

import os
import time
import uuid

import pytest

from raynode.exceptions import RayActorError


def test_dag_names_import_as_in_ray(ray):
    from raynode.dag import ClassMethodNode, ClassNode, DAGNode, FunctionNode, InputNode, MultiOutputNode
    from raynode.dag.input_node import InputAttributeNode
    from raynode.dag.output_node import MultiOutputNode as Same

    assert Same is MultiOutputNode
    for cls in (ClassMethodNode, ClassNode, FunctionNode, InputNode, MultiOutputNode, InputAttributeNode):
        assert issubclass(cls, DAGNode)


def test_function_chain_with_an_input_node(ray):
    from raynode.dag import InputNode

    @ray.remote
    def a(x):
        return x + 1

    @ray.remote
    def b(x, y=10):
        return x * y

    with InputNode() as inp:
        dag = b.bind(a.bind(inp), y=inp)

    ref = dag.execute(2)
    assert isinstance(ref, ray.ObjectRef)
    assert ray.get(ref) == 6
    # The same graph runs again with other input.
    assert ray.get(dag.execute(3)) == 12
    # A node is a root too.
    assert ray.get(a.bind(5).execute()) == 6


def test_a_node_used_twice_runs_once_per_execute(ray):
    from raynode.dag import InputNode

    @ray.remote
    def token(_):
        return uuid.uuid4().hex

    @ray.remote
    def pair(x, y):
        return x, y

    with InputNode() as inp:
        t = token.bind(inp)
        dag = pair.bind(t, t)

    x1, y1 = ray.get(dag.execute(0))
    x2, y2 = ray.get(dag.execute(0))
    assert x1 == y1
    assert x2 == y2
    assert x1 != x2


def test_input_index_and_attribute_access(ray):
    from raynode.dag import InputNode

    @ray.remote
    def combine(a, b):
        return [a, b]

    with InputNode() as inp:
        by_args = combine.bind(inp[0], inp.x)
    assert ray.get(by_args.execute(1, x=2)) == [1, 2]

    with InputNode() as inp:
        by_index = combine.bind(inp[0], inp[1])
    assert ray.get(by_index.execute([3, 4])) == [3, 4]

    with InputNode() as inp:
        by_key = combine.bind(inp["m1"], inp["m2"])
    assert ray.get(by_key.execute({"m1": 5, "m2": 6})) == [5, 6]

    class UserData:
        def __init__(self, m1, m2):
            self.m1, self.m2 = m1, m2

    with InputNode() as inp:
        by_attr = combine.bind(inp.m1, inp.m2)
    assert ray.get(by_attr.execute(UserData(7, 8))) == [7, 8]
    assert ray.get(by_attr.execute(m1=9, m2=10)) == [9, 10]

    # Access on access, as on the value itself.
    with InputNode() as inp:
        deep = combine.bind(inp["pair"][1], inp["pair"][0])
    assert ray.get(deep.execute({"pair": ("p", "q")})) == ["q", "p"]


def test_input_errors_name_what_is_wrong(ray):
    from raynode.dag import InputNode

    @ray.remote
    def ident(x):
        return x

    with InputNode() as inp:
        dag = ident.bind(inp)
    with pytest.raises(TypeError, match="InputNode"):
        dag.execute()
    with pytest.raises(TypeError, match="InputNode"):
        dag.execute(1, 2)

    with InputNode() as inp:
        keyed = ident.bind(inp.missing)
    with pytest.raises(KeyError):
        keyed.execute(1, other=2)

    no_input = ident.bind(1)
    with pytest.raises(TypeError, match="no InputNode"):
        no_input.execute(5)

    with InputNode() as first:
        pass
    with InputNode() as second:
        two = ident.bind([first, second])
    with pytest.raises(ValueError, match="one InputNode"):
        two.execute(1)


def test_multi_output_node_returns_a_list_of_refs(ray):
    from raynode.dag import InputNode, MultiOutputNode

    @ray.remote
    def double(x):
        return 2 * x

    @ray.remote
    def square(x):
        return x * x

    with InputNode() as inp:
        dag = MultiOutputNode([double.bind(inp), square.bind(inp)])
    refs = dag.execute(3)
    assert isinstance(refs, list) and all(isinstance(r, ray.ObjectRef) for r in refs)
    assert ray.get(refs) == [6, 9]
    with pytest.raises(TypeError):
        MultiOutputNode(double.bind(1))


def test_ray_documented_actor_example(ray):
    @ray.remote
    class Actor:
        def __init__(self, init_value):
            self.i = init_value

        def inc(self, x):
            self.i += x

        def get(self):
            return self.i

    a1 = Actor.bind(10)
    val = a1.get.bind()
    assert ray.get(val.execute()) == 10

    @ray.remote
    def combine(x, y):
        return x + y

    a2 = Actor.bind(10)
    a1.inc.bind(2)
    a1.inc.bind(4)
    a2.inc.bind(6)
    dag = combine.bind(a1.get.bind(), a2.get.bind())
    # Method calls bound on a class node run in the order they were bound,
    # before the calls bound after them.
    assert ray.get(dag.execute()) == 32
    # Each execute creates the graph's actors anew, as Ray does.
    assert ray.get(dag.execute()) == 32


def test_ray_documented_input_node_example(ray):
    from raynode.dag import InputNode

    @ray.remote
    class Model:
        def __init__(self, val):
            self.val = val

        def forward(self, input):
            return self.val * input

    @ray.remote
    def combine(a, b):
        return a + b

    with InputNode() as dag_input:
        m1 = Model.bind(1)
        m2 = Model.bind(2)
        m1_output = m1.forward.bind(dag_input[0])
        m2_output = m2.forward.bind(dag_input.x)
        ray_dag = combine.bind(m1_output, m2_output)

    assert ray.get(ray_dag.execute(1, x=2)) == 5


def test_a_method_bound_later_sees_the_calls_bound_before_it(ray):
    from raynode.dag import InputNode

    @ray.remote
    class Acc:
        def __init__(self):
            self.total = 0

        def add(self, x):
            self.total += x

        def get(self):
            return self.total

    with InputNode() as inp:
        acc = Acc.bind()
        acc.add.bind(inp)
        acc.add.bind(inp)
        out = acc.get.bind()
    assert ray.get(out.execute(5)) == 10


def test_class_node_execute_gives_a_handle_and_handle_methods_bind(ray):
    @ray.remote
    class Box:
        def __init__(self, v):
            self.v = v

        def get(self):
            return self.v

        def put(self, v):
            self.v = v

    handle = Box.bind("made").execute()
    assert ray.get(handle.get.remote()) == "made"

    # Bound on a live actor's handle: every execute calls that actor.
    box = Box.remote(1)
    setter = box.put.bind(7)
    ray.get(setter.execute())
    assert ray.get(box.get.remote()) == 7
    assert ray.get(box.get.bind().execute()) == 7


def test_ray_documented_actor_reuse_example(ray):
    from raynode.dag import InputNode, MultiOutputNode

    @ray.remote
    class Worker:
        def __init__(self):
            self.forwarded = 0

        def forward(self, input_data: int):
            self.forwarded += 1
            return input_data + 1

        def num_forwarded(self):
            return self.forwarded

    # Made with .remote, not .bind: the graph does not create it, nor end it.
    worker = Worker.remote()
    with InputNode() as input_data:
        dag = MultiOutputNode([worker.forward.bind(input_data)])
    assert ray.get(dag.execute(1)) == [2]
    assert ray.get(dag.execute(2)) == [3]
    assert ray.get(dag.execute(3)) == [4]
    assert ray.get(worker.num_forwarded.remote()) == 3


def test_options_then_bind(ray):
    @ray.remote
    def two():
        return 1, 2

    @ray.remote
    class Pair:
        def two(self):
            return 3, 4

    refs = two.options(num_returns=2).bind().execute()
    assert ray.get(refs) == [1, 2]
    p = Pair.options(max_concurrency=2).bind()
    refs = p.two.options(num_returns=2).bind().execute()
    assert ray.get(refs) == [3, 4]


def test_nodes_inside_containers_become_refs(ray):
    from raynode.dag import InputNode

    @ray.remote
    def one():
        return 1

    @ray.remote
    def inspect_args(xs, d):
        # Refs inside containers arrive as refs, as with `.remote`.
        return [type(x).__name__ for x in xs], ray.get(d["k"]), ray.get(xs[0])

    with InputNode() as inp:
        dag = inspect_args.bind([one.bind(), inp], {"k": one.bind()})
    names, k, first = ray.get(dag.execute(5))
    assert names == ["ObjectRef", "int"]
    assert (k, first) == (1, 1)


def test_bind_checks_arguments_and_nodes_are_not_values(ray):
    @ray.remote
    def f(x):
        return x

    @ray.remote
    class A:
        def __init__(self, x):
            self.x = x

        def m(self, y):
            return y

    with pytest.raises(TypeError):
        f.bind(1, 2)
    with pytest.raises(TypeError):
        A.bind()
    node = A.bind(1)
    with pytest.raises(TypeError):
        node.m.bind()
    with pytest.raises(AttributeError):
        node.nope
    with pytest.raises(TypeError, match="execute"):
        f.remote(f.bind(1))
    with pytest.raises(TypeError):
        ray.get(f.bind(1))


def test_actors_of_finished_executions_are_ended(ray):
    @ray.remote
    class Pid:
        def pid(self):
            return os.getpid()

    dag = Pid.bind().pid.bind()
    pids = [ray.get(dag.execute(), timeout=60) for _ in range(3)]
    assert len(set(pids)) == 3
    # The actors were the graph's alone: once their calls are done they
    # end, rather than keep a worker process each.
    deadline = time.monotonic() + 30
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive.discard(pid)
        time.sleep(0.1)
    assert not alive, f"DAG actors still running: {alive}"


def test_an_execute_that_fails_midway_ends_the_actors_it_made(ray, tmp_path):
    from raynode.dag import InputNode

    @ray.remote
    class Noted:
        def __init__(self, path):
            with open(path, "a") as f:
                f.write(f"{os.getpid()}\n")

        def echo(self, x):
            return x

    @ray.remote
    def pair(x, y):
        return x, y

    path = tmp_path / "pids"
    with InputNode() as inp:
        noted = Noted.bind(str(path))
        dag = pair.bind(noted.echo.bind(inp.a), inp.b)
    # The actor is made and called before `inp.b` is found missing.
    with pytest.raises(KeyError):
        dag.execute(a=1, c=2)
    assert ray.get(dag.execute(a=1, b=2), timeout=60) == (1, 2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(path.read_text().split()) < 2:
        time.sleep(0.05)
    pids = [int(p) for p in path.read_text().split()]
    assert len(pids) == 2
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive.discard(pid)
        time.sleep(0.1)
    assert not alive, f"DAG actors still running: {alive}"


def test_an_actor_that_escapes_the_graph_lives_on(ray):
    @ray.remote
    class Counter:
        def __init__(self):
            self.n = 0

        def inc(self):
            self.n += 1
            return self.n

    @ray.remote
    def use(counter, first):
        return ray.get(counter.inc.remote()) + first * 0

    c = Counter.bind()
    dag = use.bind(c, c.inc.bind())
    assert ray.get(dag.execute(), timeout=60) == 2
    handle = c.execute()
    assert ray.get(handle.inc.remote()) == 1
    with pytest.raises(RayActorError):
        ray.kill(handle)
        ray.get(handle.inc.remote(), timeout=30)
