#!/usr/bin/env python3
"""A model of what an idle or busy raynode cluster costs each node, from 10
to 1,000 nodes: ``bench/scale_model.py`` (``--cost-us``, ``--base-ms`` to
recalibrate; ``--busy`` for a cluster whose every load changes each tick).

It counts the messages a node handles per second, from the protocol's own
parameters (as the code sets them), and turns them into CPU time with two
constants measured on this machine with ``bench/scale.py``:

* ``base``: what a node alone spends idle (its timers), 3.3 ms/s;
* ``cost``: what one message handled costs a node (a socket wake-up, the
  transport's decryption, the protocol's decoding), about 90 us: the 50-node
  run spent 9.4 ms/s per node, of which 3.3 ms/s is the base, over the 65
  messages a second the model counts for it.

Messages per node per second, idle:

* gossip: ``n / keepalive`` load reports a second in the whole cluster; a
  node receives each about once per mesh peer (``mesh``) and passes it to
  the others (``mesh - 1``), checking its signature on each receipt;
* gossip control: IHAVE to ``gossip_lazy`` peers a heartbeat, and as many
  received;
* connections: every node keeps one to every other (``n - 1``), and the
  multiplexer pings each every 10 s from each end (ping and pong, so four
  messages per connection per 10 s);
* Raft: a learner answers a heartbeat every ``learner_hb`` s, a voter every
  ``hb`` s; the leader sends all of them. One RPC is about seven segments
  each way on this transport (stream open, protocol choice, request,
  reply, closes), so it counts as seven messages.

Busy (``--busy``): every node's load changes each tick, so each publishes
once a second and the gossip term becomes ``n`` reports a second (today),
or the cluster's report budget (the 1,000-node settings).

Per node is what matters on real machines, one node each; the last column
sums the cluster, which is what this one machine carries in a testnet.

The model is a count, not a simulation: queueing, bursts and Kademlia's
discovery rounds (one every two minutes per node) are left out.
"""

import argparse

RPC_MESSAGES = 7


def per_node(n, p, busy=False):
    """Messages per second handled by a learner and by the leader."""
    reports = min(n, p["report_budget"]) if busy else n / p["keepalive"]
    gossip = reports * p["mesh"] + reports * (p["mesh"] - 1)
    control = 2 * p["gossip_lazy"] / p["gossip_heartbeat"]
    links = min(n - 1, p["max_links"]) * 4 / p["mux_ping"]
    learner_raft = RPC_MESSAGES / p["learner_hb"]
    voters = min(p["voters"], n)
    leader_raft = RPC_MESSAGES * ((voters - 1) / p["hb"] + max(n - voters, 0) / p["learner_hb"])
    learner = gossip + control + links + learner_raft
    leader = gossip + control + links + leader_raft
    return learner, leader, reports


def cpu_ms(messages, p):
    return p["base_ms"] + messages * p["cost_us"] / 1000


TODAY = {
    "keepalive": 10.0, "mesh": 4, "gossip_lazy": 3, "gossip_heartbeat": 1.0,
    "mux_ping": 10.0, "max_links": 10**9, "voters": 5, "hb": 0.1, "learner_hb": 2.0,
    "report_budget": 10**9,
}
# What a 1,000-node cluster would need (see the README's scale section):
# the keepalive grows with the cluster, connections are opened on demand and
# closed when idle (at most 64 kept), learners hear from the leader every 10 s,
# and a busy cluster shares a budget of 50 load reports a second (a node
# publishes at most every n / 50 s; placement leans on spill-back between).
AT_1000 = dict(TODAY, keepalive=60.0, max_links=64, learner_hb=10.0, report_budget=50)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench/scale_model.py", description=__doc__.split("\n")[0])
    parser.add_argument("--cost-us", type=float, default=90.0, help="CPU per message handled (us)")
    parser.add_argument("--base-ms", type=float, default=3.3, help="CPU of an idle lone node (ms/s)")
    parser.add_argument("--busy", action="store_true", help="every node's load changes each tick")
    opts = parser.parse_args(argv)
    print(("busy" if opts.busy else "idle") + f": {opts.cost_us:.0f} us per message, {opts.base_ms} ms/s base\n")
    header = (f"{'nodes':>6} {'settings':>9} {'reports/s':>10} {'msgs/s node':>12} {'msgs/s leader':>14} "
              f"{'CPU/node ms/s':>14} {'leader ms/s':>12} {'cluster % core':>15}")
    print(header)
    for n in (10, 20, 30, 50, 100, 200, 500, 1000):
        for name, params in (("today", TODAY), ("at-1000", AT_1000)):
            if name == "at-1000" and n < 200:
                continue
            p = dict(params, cost_us=opts.cost_us, base_ms=opts.base_ms)
            learner, leader, reports = per_node(n, p, busy=opts.busy)
            node_ms, leader_ms = cpu_ms(learner, p), cpu_ms(leader, p)
            cluster = ((n - 1) * node_ms + leader_ms) / 10
            print(f"{n:>6} {name:>9} {reports:>10.1f} {learner:>12.0f} {leader:>14.0f} "
                  f"{node_ms:>14.1f} {leader_ms:>12.1f} {cluster:>15.0f}")
    print("\nmembership table: about 200 bytes a node, so 1,000 nodes hold 0.2 MB of it on every node;"
          "\na node's join is one Raft entry sent to every member: 1,000 appends, once.")


if __name__ == "__main__":
    main()
