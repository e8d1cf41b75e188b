"""Benchmark sparsemb.distributed on a LocalCluster (issue 13 §7).

    python scripts/bench_distributed.py --part sharded              # aligned text
    python scripts/bench_distributed.py --part sharded --markdown   # a section for BENCHMARKS.md
    python scripts/bench_distributed.py --part word2vec --sync-words 4096 16384 65536

Part ``sharded``: one training step ``out = emb(ids); opt.backward_step(emb, g)`` (Adagrad, a
1,000,000 x 64 float32 table, 4,096 Zipf(1.1) ids a step, several batches in turn) on the local layer
and on ``ShardedEmbedding`` with 1, 2 and 4 shards over a 2-worker LocalCluster (processes, one thread
each), through the scheduler (Dask's default for a Client) and with ``direct_to_workers=True``; all
interleaved in one process, medians of rounds. Bytes per step are the table's own count of ids, rows
and gradients sent and received (``emb.traffic``). Then the same with 20 ms of other work a step (a
sleep: the dense part of a model on an accelerator, or I/O), with and without ``prefetch``. Then a
table (with its Adagrad state) larger than one worker's ``memory_limit``, trained across two workers
of that limit, and the same table refused by one such worker.

This machine has 2 cores shared by the client, both workers and other processes: the figures are the
*overhead* of going through Dask, not a speed-up. The report extrapolates a step to a network from the
measured bytes per step with the model stated there.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import sparsemb as sm
from _benchutil import DIM, fmt, interleaved, machine, report, table, zipf_ids
from sparsemb._config import num_threads

PARTS = {}


def part(fn):
    PARTS[fn.__name__.removeprefix("part_")] = fn
    return fn


ROWS = 1_000_000
BATCH = 4096
N_BATCHES = 8
STEPS = 8           # steps per timed call
WORK = 0.020        # seconds of other work a step, in the prefetch comparison
BATCH_SWEEP = (512, 4096, 32768)
LR = 0.1


def _loop(emb, opt, batches, g, work=0.0, prefetch=False):
    """A callable running STEPS training steps, cycling through ``batches``."""
    state = {"t": 0}

    def run():
        for _ in range(STEPS):
            t = state["t"]
            ids = batches[t % len(batches)]
            emb(ids)
            if prefetch:
                emb.prefetch(batches[(t + 1) % len(batches)])
            opt.backward_step(emb, g)
            if work:
                time.sleep(work)
            state["t"] = t + 1
    return run


def _serial(run):
    """``run`` on one Numba thread (the anchor for the shards and the client, which run a step's
    kernels on one thread each: see sparsemb.distributed.sharded.SERIAL_BELOW)."""
    def serial():
        with num_threads(1):
            run()
    return serial


def _per_step_traffic(emb, run):
    """(messages, bytes sent, bytes received) per step, over one call of ``run`` after another (a
    step's push leaves with the next step's pull: the first call's first message has none)."""
    run()
    a = emb.traffic
    run()
    b = emb.traffic
    return [(y - x) / STEPS for x, y in zip(a, b)]


def _bare_rtt(emb, rounds=30):
    """Median seconds of an empty actor call (a size query) to shard 0: Dask's round trip."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        emb._actors[0].nbytes().result()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


@part
def part_word2vec(args):
    """Data-parallel and deterministic word2vec against Hogwild: quality and words/s against the sync
    period; scripts/bench_distributed_word2vec.py, given the flags after ``--part word2vec``."""
    import bench_distributed_word2vec

    bench_distributed_word2vec.main(args.rest)


@part
def part_sharded(args):
    from distributed import Client, LocalCluster

    import sparsemb.distributed as smd

    rows = args.rows
    batches = [zipf_ids(BATCH, rows, seed=s) for s in range(N_BATCHES)]
    g = np.random.default_rng(1).standard_normal((BATCH, DIM)).astype(np.float32)
    unique = np.mean([np.unique(b).size for b in batches])
    blocks = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, \
            Client(cluster) as proxied, Client(cluster, direct_to_workers=True) as direct:
        local = sm.Embedding(rows, DIM, seed=0)
        local1 = sm.Embedding(rows, DIM, seed=0)
        tables = {"local": (local, sm.optim.Adagrad([local], lr=LR)),
                  "local, 1 thread": (local1, sm.optim.Adagrad([local1], lr=LR))}
        configs = [("1 shard", proxied, 1), ("2 shards", proxied, 2), ("4 shards", proxied, 4),
                   ("2 shards, direct", direct, 2)]
        for name, client, n in configs:
            emb = smd.ShardedEmbedding(rows, DIM, seed=0, client=client, num_shards=n)
            tables[name] = (emb, smd.Adagrad([emb], lr=LR))
        loops = {name: _loop(emb, opt, batches, g) for name, (emb, opt) in tables.items()}
        loops["local, 1 thread"] = _serial(loops["local, 1 thread"])
        traffic = {name: _per_step_traffic(tables[name][0], loops[name]) for name in tables
                   if not name.startswith("local")}
        rtt = {name: _bare_rtt(tables[name][0]) for name in traffic}
        times = interleaved(loops, args.rounds, max_wait=float("inf"))
        base = min(times["local"], times["local, 1 thread"]) / STEPS   # the faster local loop
        out = []
        for name in tables:
            t = times[name] / STEPS
            m, sent, recv = traffic.get(name, (0, 0, 0))
            out.append([name, fmt(t * 1e3, ".2f"), fmt(t / base, ".1f", "x"),
                        fmt(rtt[name] * 1e3, ".1f") if name in rtt else "-", fmt(m, ".1f"),
                        fmt(sent / 1e3, ".0f"), fmt(recv / 1e3, ".0f")])
        blocks.append(f"One step, {rows:,} x {DIM} float32, Adagrad, {BATCH:,} Zipf(1.1) ids "
                      f"({unique:,.0f} unique on average), {args.rounds} rounds of {STEPS} steps; "
                      "'vs local' against the faster of the two local loops (Numba's pool, or one "
                      "thread as the client and each shard use for a step of this size):")
        blocks.append(table(["table", "ms/step", "vs local", "bare RTT ms", "messages/step",
                             "kB sent/step", "kB received/step"], out, args.markdown))
        # Bytes per step and the network model
        t_direct = times["2 shards, direct"] / STEPS
        _, sent2, recv2 = traffic["2 shards, direct"]
        per_shard = (sent2 + recv2) / 2
        rows_net = []
        for net, lat, bw in [("1 Gb/s, 0.1 ms", 1e-4, 125e6), ("10 Gb/s, 0.05 ms", 5e-5, 1.25e9),
                             ("25 Gb/s, 0.02 ms", 2e-5, 3.125e9)]:
            wire = 2 * lat + per_shard / bw
            rows_net.append([net, fmt(wire * 1e3, ".2f"), fmt((t_direct + wire) * 1e3, ".1f"),
                             fmt((t_direct + wire) / base, ".1f", "x")])
        blocks.append(
            "Extrapolated to a network (each shard on its own machine, the client on another): "
            "t_step = t_here + 2 * latency + bytes_per_shard / bandwidth, where t_here is the step "
            "measured above with 2 shards and direct_to_workers (client kernels, shard kernels, Dask's "
            "serialisation and event loops: what a network does not remove) and bytes_per_shard a "
            f"shard's payload a step, measured ({per_shard / 1e3:.0f} kB: its unique ids, their rows "
            "back, their summed gradients out; shards are sent to at once, so the slowest counts, "
            "and the hash keeps them even):")
        blocks.append(table(["network", "wire ms", "step ms", "step vs local"], rows_net,
                            args.markdown))
        # Batch size: the per-message cost amortised
        emb, opt = tables["2 shards, direct"]
        sweep = {}
        for n in BATCH_SWEEP:
            bs = [zipf_ids(n, rows, seed=100 + s) for s in range(N_BATCHES)]
            gn = np.random.default_rng(2).standard_normal((n, DIM)).astype(np.float32)
            sweep[f"local, 1 thread, {n:,}"] = _serial(_loop(local1, tables["local, 1 thread"][1], bs, gn))
            sweep[f"2 shards, direct, {n:,}"] = _loop(emb, opt, bs, gn)
        times = interleaved(sweep, args.rounds, max_wait=float("inf"))
        blocks.append("The per-message cost against the batch size (ids a step; 2 shards, direct):")
        blocks.append(table(["ids a step", "local, 1 thread ms", "2 shards ms", "ratio"],
                            [[f"{n:,}", fmt(times[f"local, 1 thread, {n:,}"] / STEPS * 1e3, ".2f"),
                              fmt(times[f"2 shards, direct, {n:,}"] / STEPS * 1e3, ".2f"),
                              fmt(times[f"2 shards, direct, {n:,}"] / times[f"local, 1 thread, {n:,}"],
                                  ".1f", "x")] for n in BATCH_SWEEP], args.markdown))
        # Prefetch: other work between the step and the next forward
        cases = {"local": _loop(local, tables["local"][1], batches, g, WORK),
                 "local, 1 thread": _serial(_loop(local1, tables["local, 1 thread"][1], batches, g,
                                                  WORK))}
        emb, opt = tables["2 shards, direct"]
        cases["2 shards, direct"] = _loop(emb, opt, batches, g, WORK)
        cases["2 shards, direct, prefetch"] = _loop(emb, opt, batches, g, WORK, prefetch=True)
        times = interleaved(cases, args.rounds, max_wait=float("inf"))
        base = min(times["local"], times["local, 1 thread"]) / STEPS
        blocks.append(f"With {WORK * 1e3:.0f} ms of other work a step (a sleep) between "
                      "backward_step and the next forward; prefetch sends the step's push and the "
                      "next pull at once, before that work:")
        blocks.append(table(["table", "ms/step", "minus the work", "vs local"],
                            [[k, fmt(v / STEPS * 1e3, ".2f"), fmt((v / STEPS - WORK) * 1e3, ".2f"),
                              fmt(v / STEPS / base, ".2f", "x")] for k, v in times.items()],
                            args.markdown))
        for emb, _ in tables.values():
            if isinstance(emb, smd.ShardedEmbedding):
                emb.close()
    if not args.no_capacity:
        blocks += _capacity(args)
    return blocks


def _capacity(args):
    """A table with Adagrad state larger than one worker's memory_limit, across two such workers."""
    import dask
    from distributed import Client, LocalCluster

    import sparsemb.distributed as smd

    limit = args.memory_limit
    rows = args.big_rows
    table_bytes = rows * DIM * 4 * 2   # weights and Adagrad's sum, float32
    batches = [zipf_ids(BATCH, rows, seed=s) for s in range(N_BATCHES)]
    g = np.random.default_rng(1).standard_normal((BATCH, DIM)).astype(np.float32)
    blocks = []
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=limit,
                          dashboard_address=":0") as cluster, \
                Client(cluster, direct_to_workers=True) as client:
            t0 = time.perf_counter()
            emb = smd.ShardedEmbedding(rows, DIM, seed=0, client=client, num_shards=2)
            opt = smd.Adagrad([emb], lr=LR)
            start = time.perf_counter() - t0
            run = _loop(emb, opt, batches, g)
            run()
            t0 = time.perf_counter()
            for _ in range(3):
                run()
            step = (time.perf_counter() - t0) / (3 * STEPS)
            held = emb.shard_nbytes()
            rss = client.run(lambda: __import__("psutil").Process().memory_info().rss)
            emb.close()
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit=limit,
                          dashboard_address=":0") as cluster, \
                Client(cluster, direct_to_workers=True) as client:
            try:
                one = smd.ShardedEmbedding(rows, DIM, seed=0, client=client, num_shards=1)
                run = _loop(one, smd.Adagrad([one], lr=LR), batches, g)
                for _ in range(10):   # the nanny checks the worker's memory every 100 ms
                    run()
                    time.sleep(0.2)
                refused = "it fitted (the limit is not below the table)"
            except smd.ShardLostError as err:
                refused = f"{type(err).__name__}: {str(err).split('. ')[0]} (the nanny killed it)"
    blocks.append(
        f"Capacity: {rows:,} x {DIM} float32 with Adagrad state = {table_bytes / 2**30:.2f} GiB, on 2 "
        f"workers of memory_limit {limit / 2**30:.2f} GiB each (a worker is killed past 95% of it). "
        f"Start (each shard draws the seeded stream): {start:.1f} s; a step: {step * 1e3:.1f} ms. "
        f"Held per shard: {', '.join(f'{b / 2**30:.2f} GiB' for b in held)}; worker RSS: "
        f"{', '.join(f'{r / 2**30:.2f} GiB' for r in rss.values())}. The same table on one worker "
        f"of that limit: {refused}")
    return blocks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=sorted(PARTS), required=True)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=ROWS)
    ap.add_argument("--big-rows", type=int, default=2_200_000,
                    help="rows of the capacity table (with Adagrad: 512 bytes a row)")
    ap.add_argument("--memory-limit", type=int, default=1 << 30, help="bytes, per worker")
    ap.add_argument("--no-capacity", action="store_true", help="skip the capacity run")
    args, args.rest = ap.parse_known_args()
    blocks = PARTS[args.part](args)
    if blocks is None:  # the part printed its own report
        return
    title = f"sparsemb.distributed: {args.part}"
    print(report(title, machine(), blocks, args.markdown))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
