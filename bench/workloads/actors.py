"""Workloads of the "actors" group: calls to plain, concurrent and async
actors, 1:1, 1:n and n:n, with and without an object argument.
"""

from .base import n_servers, timeit
from .defs import kill_actors


def w_actor_sync(ray, d, p):
    a = d.Actor.remote()
    try:
        return timeit(lambda: ray.get(a.small_value.remote()), 1, p)
    finally:
        kill_actors(ray, [a])


def w_actor_async(ray, d, p):
    n = p["batch"]
    a = d.Actor.remote()
    try:
        return timeit(
            lambda: ray.get([a.small_value.remote() for _ in range(n)]), n, p)
    finally:
        kill_actors(ray, [a])


def w_actor_concurrent(ray, d, p):
    n = p["batch"]
    a = d.Actor.options(max_concurrency=16).remote()
    try:
        return timeit(
            lambda: ray.get([a.small_value.remote() for _ in range(n)]), n, p)
    finally:
        kill_actors(ray, [a])


def w_one_to_n(ray, d, p):
    n = p["one_to_n"]
    servers = [d.Actor.remote() for _ in range(n_servers())]
    client = d.Client.remote(servers)
    try:
        return timeit(lambda: ray.get(client.small_value_batch.remote(n)),
                      n * len(servers), p)
    finally:
        kill_actors(ray, [client] + servers)


def w_n_to_n(ray, d, p):
    m, n = p["n_to_n"]
    servers = [d.Actor.remote() for _ in range(n_servers())]
    try:
        return timeit(
            lambda: ray.get([d.actor_work.remote(servers, n)
                             for _ in range(m)]),
            m * n, p)
    finally:
        kill_actors(ray, servers)


def w_n_to_n_arg(ray, d, p):
    n = p["n_to_n_arg"]
    servers = [d.Actor.remote() for _ in range(n_servers())]
    clients = [d.Client.remote(s) for s in servers]
    try:
        return timeit(
            lambda: ray.get([c.small_value_batch_arg.remote(n)
                             for c in clients]),
            n * len(clients), p)
    finally:
        kill_actors(ray, clients + servers)


def w_async_actor_sync(ray, d, p):
    a = d.AsyncActor.remote()
    try:
        return timeit(lambda: ray.get(a.small_value.remote()), 1, p)
    finally:
        kill_actors(ray, [a])


def w_async_actor_async(ray, d, p):
    n = p["batch"]
    a = d.AsyncActor.remote()
    try:
        return timeit(
            lambda: ray.get([a.small_value.remote() for _ in range(n)]), n, p)
    finally:
        kill_actors(ray, [a])
