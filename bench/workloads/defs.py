"""The remote functions and actor classes the workloads call, built per
system (``Defs(ray)``) so that their closures capture that system's module,
and ``kill_actors`` to stop the actors a workload created.
"""


class Defs:
    def __init__(self, ray):
        self.ray = ray

        @ray.remote
        def small_value():
            return b"ok"

        @ray.remote
        def small_value_batch(n):
            ray.get([small_value.remote() for _ in range(n)])
            return 0

        @ray.remote
        def create_object_containing_ref(n):
            return [ray.put(1) for _ in range(n)]

        @ray.remote
        def do_put_small(n):
            for _ in range(n):
                ray.put(0)

        @ray.remote
        def do_put(n, nbytes):
            import numpy as np
            for _ in range(n):
                ray.put(np.zeros(nbytes // 8, dtype=np.int64))

        @ray.remote(num_cpus=0)
        class Actor:
            def small_value(self):
                return b"ok"

            def small_value_arg(self, x):
                return b"ok"

            def small_value_batch(self, n):
                ray.get([small_value.remote() for _ in range(n)])

        @ray.remote
        class AsyncActor:
            async def small_value(self):
                return b"ok"

            async def small_value_with_arg(self, x):
                return b"ok"

        @ray.remote(num_cpus=0)
        class Client:
            def __init__(self, servers):
                if not isinstance(servers, list):
                    servers = [servers]
                self.servers = servers

            def small_value_batch(self, n):
                results = []
                for s in self.servers:
                    results.extend([s.small_value.remote() for _ in range(n)])
                ray.get(results)

            def small_value_batch_arg(self, n):
                x = ray.put(0)
                results = []
                for s in self.servers:
                    results.extend(
                        [s.small_value_arg.remote(x) for _ in range(n)])
                ray.get(results)

        @ray.remote
        def stream_items(n):
            for _ in range(n):
                yield b"ok"

        @ray.remote
        def paced_items(n, pause):
            import time
            for _ in range(n):
                time.sleep(pause)
                yield time.time()

        @ray.remote
        def actor_work(actors, n):
            k = len(actors)
            ray.get([actors[i % k].small_value.remote() for i in range(n)])

        self.small_value = small_value
        self.small_value_batch = small_value_batch
        self.create_object_containing_ref = create_object_containing_ref
        self.do_put_small = do_put_small
        self.do_put = do_put
        self.Actor = Actor
        self.AsyncActor = AsyncActor
        self.Client = Client
        self.actor_work = actor_work
        self.stream_items = stream_items
        self.paced_items = paced_items


def kill_actors(ray, actors):
    """Stop actors a workload created, so the next one has the CPUs."""
    kill = getattr(ray, "kill", None)
    for a in actors:
        if kill is not None:
            try:
                kill(a)
            except Exception:
                pass
