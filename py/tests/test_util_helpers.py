"""`raynode.util.as_completed` and `map_unordered`, as Ray's."""

import pytest


def test_as_completed_yields_every_value_or_ref(ray):
    @ray.remote
    def square(x):
        return x * x

    refs = [square.remote(i) for i in range(25)]
    assert sorted(ray.util.as_completed(refs, chunk_size=4)) == [i * i for i in range(25)]
    got = list(ray.util.as_completed(refs, yield_obj_refs=True))
    assert sorted(got, key=lambda r: r.hex()) == sorted(refs, key=lambda r: r.hex())
    assert list(ray.util.as_completed([])) == []
    with pytest.raises(ValueError, match="chunk_size"):
        list(ray.util.as_completed(refs, chunk_size=0))


def test_map_unordered_keeps_at_most_backpressure_size_in_flight(ray):
    @ray.remote
    def square(x):
        return x * x

    pulled = []

    def items():
        for i in range(12):
            pulled.append(i)
            yield i

    got = []
    for v in ray.util.map_unordered(square, items(), backpressure_size=2, chunk_size=1):
        got.append(v)
        # Two in flight, and the item that waits for room.
        assert len(pulled) <= len(got) + 2
    assert sorted(got) == [i * i for i in range(12)]
    assert sorted(ray.util.map_unordered(square, range(30), backpressure_size=None)) == [i * i for i in range(30)]


def test_map_unordered_refuses_what_is_not_a_remote_function(ray):
    with pytest.raises(TypeError, match="remote function"):
        list(ray.util.map_unordered(lambda x: x, [1]))
    with pytest.raises(ValueError, match="backpressure_size"):
        list(ray.util.map_unordered(ray.remote(lambda x: x), [1], backpressure_size=0))
