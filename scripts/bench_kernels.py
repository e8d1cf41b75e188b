"""Benchmark sparsemb's lookup and coalesce kernels against NumPy and PyTorch CPU (issue 2, item 8).

Workload: a 1,000,000 x 64 float32 table, 65,536 Zipf(1.1) ids per batch, 2 threads. All cases
run interleaved in one process (round-robin, medians). Speedup = anchor time / sparsemb time.

    python scripts/bench_kernels.py              # aligned text
    python scripts/bench_kernels.py --markdown   # a section for BENCHMARKS.md

Lookup bandwidth counts the bytes a lookup must move, read n rows + write the (n, dim) output, and
is compared with np.copyto of a buffer the size of that output (read + write, the same bytes).
"""
from __future__ import annotations

import argparse

import numpy as np

import sparsemb as sm
from _benchutil import (BATCH, DIM, NUM_EMBEDDINGS, THREADS, ZIPF_A, bandwidth, copy_case, fmt,
                        interleaved, machine, report, table, try_torch, zipf_ids)
from sparsemb._config import num_threads


def cases(weight, ids, grad, torch):
    """{name: callable}; NumPy and PyTorch anchors next to ours. Outputs are checked once here."""
    n_rows = weight.shape[0]
    dense = np.zeros_like(weight)  # np.add.at target, allocated once (its zeroing is not timed)

    def unique_add_at():
        uniq, inv = np.unique(ids, return_inverse=True)
        vals = np.zeros((uniq.size, grad.shape[1]), dtype=grad.dtype)
        np.add.at(vals, inv, grad)
        return uniq, vals

    out = {
        "lookup: sparsemb": lambda: sm.kernels.lookup(weight, ids),
        "lookup: numpy w[ids]": lambda: weight[ids],
        "coalesce: sparsemb": lambda: sm.kernels.coalesce(ids, grad),
        "coalesce: numpy add.at (N, dim)": lambda: np.add.at(dense, ids, grad),
        "coalesce: numpy unique + add.at": unique_add_at,
    }
    assert np.array_equal(out["lookup: sparsemb"](), weight[ids])
    idx, val = out["coalesce: sparsemb"]()
    uniq, ref = unique_add_at()
    assert np.array_equal(idx, uniq) and np.allclose(val, ref, rtol=1e-5, atol=1e-4)
    if torch is not None:
        import torch.nn.functional as F

        w_t, ids_t, g_t = torch.from_numpy(weight), torch.from_numpy(ids), torch.from_numpy(grad)
        out["lookup: torch F.embedding"] = lambda: F.embedding(ids_t, w_t)
        out["coalesce: torch sparse_coo.coalesce"] = lambda: torch.sparse_coo_tensor(
            ids_t[None], g_t, (n_rows, grad.shape[1])).coalesce()
        c = out["coalesce: torch sparse_coo.coalesce"]()
        assert np.array_equal(c.indices()[0].numpy(), idx)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=30, help="timed rounds per case (default 30)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch anchors")
    ap.add_argument("--markdown", action="store_true", help="print a BENCHMARKS.md section")
    args = ap.parse_args(argv)

    torch = try_torch(THREADS, enabled=not args.no_torch)
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((NUM_EMBEDDINGS, DIM), dtype=np.float32)
    grad = rng.standard_normal((BATCH, DIM), dtype=np.float32)
    ids = zipf_ids(BATCH, NUM_EMBEDDINGS)
    out_bytes = BATCH * DIM * weight.itemsize
    with num_threads(THREADS):
        fns = cases(weight, ids, grad, torch)  # also compiles (or loads) the kernels
        fns["copy: np.copyto (output-sized)"] = copy_case(out_bytes)
        t = interleaved(fns, args.rounds)

    copy_s = t["copy: np.copyto (output-sized)"]
    copy_bw = bandwidth(2 * out_bytes, copy_s)
    ours = {"lookup": t["lookup: sparsemb"], "coalesce": t["coalesce: sparsemb"]}
    rows = []
    for name, s in t.items():
        op = name.split(":")[0]
        row = [name, fmt(s * 1e3, ".3f")]
        row.append(fmt(s / ours[op], suffix="x") if op in ours else "")
        if op in ("lookup", "copy"):
            gbs = bandwidth(2 * out_bytes, s)
            row += [fmt(gbs, ".1f"), fmt(100 * gbs / copy_bw, ".0f", suffix="%")]
        else:
            row += ["", ""]
        rows.append(row)

    def speedup(anchor):
        return t[anchor] / ours[anchor.split(":")[0]] if anchor in t else None

    look_frac = copy_s / ours["lookup"]
    s_torch = speedup("lookup: torch F.embedding")
    s_addat = speedup("coalesce: numpy add.at (N, dim)")
    s_uniq = speedup("coalesce: numpy unique + add.at")
    verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    targets = [
        ["lookup >= PyTorch speed", fmt(s_torch, suffix="x"),
         "n/a" if s_torch is None else verdict(s_torch >= 1.0)],
        ["lookup >= 60% of copy bandwidth", fmt(100 * look_frac, ".1f", suffix="%"),
         verdict(look_frac >= 0.6)],
        ["coalesce >= 5x np.add.at (N, dim)", fmt(s_addat, suffix="x"), verdict(s_addat >= 5)],
        ["coalesce >= 5x np.unique + np.add.at", fmt(s_uniq, suffix="x"), verdict(s_uniq >= 5)],
    ]
    n_unique = np.unique(ids).size
    blocks = [
        f"workload: {NUM_EMBEDDINGS:,} x {DIM} float32 table, {BATCH:,} Zipf({ZIPF_A}) ids "
        f"({n_unique:,} unique), {THREADS} threads, median of {args.rounds} interleaved rounds",
        table(["case", "ms", "speedup of sparsemb", "GB/s", "of copy"], rows, args.markdown),
        table(["target", "measured", "status"], targets, args.markdown),
        "GB/s = (read n rows + write n x dim output) / time for lookups; (read + write) / time for "
        "the copy. 'numpy add.at (N, dim)' scatters into a preallocated dense table and yields no "
        "index list (favours NumPy); 'unique + add.at' produces coalesce's exact output.",
    ]
    print(report("bench_kernels: lookup and coalesce", machine(torch), blocks, args.markdown))


if __name__ == "__main__":
    main()
