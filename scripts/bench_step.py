"""Benchmark a full sparse training step against PyTorch CPU (issue 3, item 7).

One step = ``opt.zero_grad(); out = emb(ids); opt.backward_step(emb, g)`` (fused backward + update)
or PyTorch's loop ``opt.zero_grad(); out = emb(ids); emb.backward(g); opt.step()`` (also timed, on the
same layer and optimizer; ``step()`` runs the same fused kernel on the gradient ``backward`` left
unsummed, so the two should be within noise) on a 1,000,000 x 64 float32 table with 65,536 Zipf(1.1) ids, 2 threads, against ``nn.Embedding(sparse=True)`` and the
same ``torch.optim`` optimizer, all interleaved in one process (round-robin, medians). The upstream
gradient ``g`` is one fixed random (n, 64) array, the same for both.

    python scripts/bench_step.py              # aligned text
    python scripts/bench_step.py --markdown   # a section for BENCHMARKS.md

Memory-traffic floor: the bytes a step cannot avoid moving (lookup: read ids, read n rows, write the
(n, dim) output; backward + update: read the (n, dim) gradient, read + write each unique row of the
weight and of each state array, a state of one value a row by the 64-byte lines it touches) divided
by the copy bandwidth: the faster of np.copyto and a copy split over the step's threads, both timed
in the same rounds. "of floor" = floor time / step time. A second table shows our step time for
100,000 to 10,000,000 rows (same ids draw).
"""
from __future__ import annotations

import argparse
import gc

import numpy as np

import sparsemb as sm
from _benchutil import (BATCH, DIM, NUM_EMBEDDINGS, THREADS, ZIPF_A, bandwidth, copy_case, fmt,
                        interleaved, machine, report, table, try_torch, zipf_ids)
from sparsemb._config import num_threads

#: name: (sparsemb optimizer, torch.optim class name or None, state arrays of shape (N, dim),
#: state arrays of shape (N,)). Hyper-parameters are the classes' defaults (SGD: lr=0.01).
OPTIMIZERS = {
    "SGD": (lambda e: sm.optim.SGD([e], lr=0.01), "SGD", 0, 0),
    "Adagrad": (lambda e: sm.optim.Adagrad([e]), "Adagrad", 1, 0),
    "RowwiseAdagrad": (lambda e: sm.optim.RowwiseAdagrad([e]), None, 0, 1),
    "SparseAdam": (lambda e: sm.optim.SparseAdam([e]), "SparseAdam", 2, 0),
}
TORCH_KW = {"SGD": {"lr": 0.01}, "Adagrad": {}, "SparseAdam": {}}


#: Bytes memory moves at a time: a state of one value a row (RowwiseAdagrad's) is read and written
#: by whole lines, 16 float32 rows to a line (the arrays sparsemb allocates start on a line).
LINE = 64


def floor_bytes(n, unique_ids, dim, itemsize, row_states, scalar_states):
    """Bytes a step must move: lookup, gradient read, read+write of the touched rows and state (a
    state of one value a row by the lines its touched rows fall in)."""
    lookup = n * 8 + 2 * n * dim * itemsize
    backward = n * dim * itemsize
    lines = np.unique(unique_ids // (LINE // itemsize)).size
    update = 2 * (unique_ids.size * itemsize * dim * (1 + row_states) + scalar_states * lines * LINE)
    return lookup + backward + update


def ours_steps(num_embeddings, name, ids, g):
    """Closures running one sparsemb training step, fused and as torch's loop, on one layer and
    optimizer (which live in them): the two are compared on the same memory, as a table's pages
    (huge or not) and its place in the caches differ from one allocation to the next."""
    emb = sm.Embedding(num_embeddings, DIM, seed=0)
    opt = OPTIMIZERS[name][0](emb)

    def fused_step():
        opt.zero_grad()  # the loop's step() leaves its gradient, as torch's does (about a microsecond)
        emb(ids)
        opt.backward_step(emb, g)

    def loop_step():
        opt.zero_grad()
        emb(ids)
        emb.backward(g)
        opt.step()
    return fused_step, loop_step


def torch_step(torch, name, ids, g):
    emb = torch.nn.Embedding(NUM_EMBEDDINGS, DIM, sparse=True)
    opt = getattr(torch.optim, name)(emb.parameters(), **TORCH_KW[name])
    ids_t, g_t = torch.from_numpy(ids), torch.from_numpy(g)

    def step():
        opt.zero_grad()
        emb(ids_t).backward(g_t)
        opt.step()
    return step


def compare(torch, ids, g, rounds, markdown):
    """Ours vs PyTorch at 1,000,000 rows, every optimizer interleaved; returns (table, targets)."""
    unique_ids = np.unique(ids)
    n_unique = unique_ids.size
    out_bytes = BATCH * DIM * 4
    emb = sm.Embedding(NUM_EMBEDDINGS, DIM, seed=0)
    cases = {  # where the time goes, for reading the step rows
        "sparsemb forward only": lambda: emb(ids),
        # backward alone leaves the rows unsummed (step() sums them in the fused kernel): read
        # .values to time the summed gradient.
        "sparsemb forward + backward (summed)": lambda: (emb(ids), emb.backward(g).values,
                                                         emb.zero_grad()),
    }
    for name, (_, torch_name, _, _) in OPTIMIZERS.items():
        cases[f"{name}: sparsemb"], cases[f"{name}: sparsemb loop"] = ours_steps(NUM_EMBEDDINGS, name, ids, g)
        if torch is not None and torch_name is not None:
            cases[f"{name}: torch"] = torch_step(torch, torch_name, ids, g)
    copies = {"copy: np.copyto (output-sized)": copy_case(out_bytes),
              f"copy: {THREADS} threads (output-sized)": copy_case(out_bytes, THREADS)}
    cases.update(copies)
    # Each case starts after the same 64 MB write, so none inherits the caches another left.
    scratch = np.zeros(1 << 24, np.float32)
    t = interleaved(cases, rounds, between=lambda: np.add(scratch, 1, out=scratch))

    bws = {k: bandwidth(2 * out_bytes, t[k]) for k in copies}
    copy_bw = max(bws.values())
    rows, targets = [], []
    goals = {"SGD": 3, "Adagrad": 6, "SparseAdam": 4}
    verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    for name, (_, _, row_states, scalar_states) in OPTIMIZERS.items():
        ours, theirs = t[f"{name}: sparsemb"], t.get(f"{name}: torch")
        loop = t[f"{name}: sparsemb loop"]
        fb = floor_bytes(BATCH, unique_ids, DIM, 4, row_states, scalar_states)
        floor_s = fb / (copy_bw * 1e9)
        speedup = theirs / ours if theirs else None
        rows.append([name, fmt(ours * 1e3, ".2f"), fmt(loop * 1e3, ".2f"),
                     fmt(theirs and theirs * 1e3, ".2f"), fmt(speedup, suffix="x"),
                     fmt(theirs and theirs / loop, suffix="x"), fmt(fb / 1e6, ".1f"),
                     fmt(floor_s * 1e3, ".2f"),
                     fmt(100 * floor_s / ours, ".0f", suffix="%"),
                     fmt(theirs and 100 * floor_s / theirs, ".0f", suffix="%")])
        if name in goals:
            targets.append([f"{name} >= {goals[name]}x PyTorch", fmt(speedup, suffix="x"),
                            "n/a" if speedup is None else verdict(speedup >= goals[name])])
        targets.append([f"{name} >= 75% of floor", fmt(100 * floor_s / ours, ".1f", suffix="%"),
                        verdict(floor_s / ours >= 0.75)])
    head = ["optimizer", "sparsemb fused ms", "sparsemb loop ms", "torch ms", "speedup fused",
            "speedup loop", "floor MB", "floor ms",
            "sparsemb of floor", "torch of floor"]
    parts = [table(head, rows, markdown)]
    extra = [[k, fmt(t[k] * 1e3, ".2f")] for k in cases if k.startswith(("sparsemb", "copy"))]
    for row in extra:
        if row[0] in bws:
            row[0] += f" ({fmt(bws[row[0]], '.1f')} GB/s)"
    parts.append(table(["breakdown / anchor", "ms"], extra, markdown))
    parts.append(table(["target", "measured", "status"], targets, markdown))
    return parts, n_unique


def flat(g, rounds, markdown, sizes=(100_000, 1_000_000, 10_000_000)):
    """Our step time for each optimizer and table size (sizes interleaved, one optimizer at a time)."""
    rows = []
    uniques = [np.unique(zipf_ids(BATCH, n)).size for n in sizes]
    for name in OPTIMIZERS:
        cases = {n: ours_steps(n, name, zipf_ids(BATCH, n), g)[0] for n in sizes}
        t = interleaved(cases, rounds)
        del cases
        gc.collect()
        rows.append([name] + [fmt(t[n] * 1e3, ".2f") for n in sizes]
                    + [fmt(t[sizes[-1]] / t[sizes[0]], suffix="x")])
    head = (["optimizer"] + [f"{n:,} rows ms ({u:,} unique)" for n, u in zip(sizes, uniques)]
            + [f"{sizes[-1] // sizes[0]:,}x rows: time ratio"])
    return table(head, rows, markdown)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20, help="timed rounds per case (default 20)")
    ap.add_argument("--flat-rounds", type=int, default=10,
                    help="timed rounds per table size; 0 skips the table-size sweep (default 10)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch anchors")
    ap.add_argument("--markdown", action="store_true", help="print a BENCHMARKS.md section")
    args = ap.parse_args(argv)

    torch = try_torch(THREADS, enabled=not args.no_torch)
    ids = zipf_ids(BATCH, NUM_EMBEDDINGS)
    g = np.random.default_rng(1).standard_normal((BATCH, DIM), dtype=np.float32)
    with num_threads(THREADS):
        parts, n_unique = compare(torch, ids, g, args.rounds, args.markdown)
        gc.collect()
        if args.flat_rounds:
            parts.append(flat(g, args.flat_rounds, args.markdown))
    blocks = [f"workload: {NUM_EMBEDDINGS:,} x {DIM} float32 table, {BATCH:,} Zipf({ZIPF_A}) ids "
              f"({n_unique:,} unique), {THREADS} threads, median of {args.rounds} interleaved rounds; "
              "fused step = zero_grad + forward + opt.backward_step; loop = zero_grad + forward + backward + step, "
              "both on one layer and optimizer"] + parts
    blocks.append("floor = (ids + n rows read + n x dim output written + n x dim gradient read + "
                  "each unique row of weight and state read and written; a state of one value a row "
                  "counted by the 64-byte lines its rows fall in, as memory moves them) / copy "
                  "bandwidth (the faster of the two copies). "
                  "RowwiseAdagrad has no PyTorch counterpart (n/a). The last table uses the same "
                  f"Zipf draw folded into each table size, {args.flat_rounds} interleaved rounds.")
    print(report("bench_step: full training step", machine(torch), blocks, args.markdown))


if __name__ == "__main__":
    main()
