"""Benchmark a small DLRM-like model: torch's ``nn.EmbeddingBag(sparse=True)`` against the same
model on :mod:`sparsemb.torch` (issue 15 §4).

Model: three ``EmbeddingBag(1,000,000, 64, mode="sum")`` tables, each fed a batch of 4,096 bags of 16
Zipf(1.1) ids, whose outputs are concatenated with 13 dense features and go through a two-layer MLP
(205 -> 256 -> ReLU -> 1) and a logistic loss. Per optimizer (SparseAdam, Adagrad; the MLP is trained
by ``torch.optim.Adam`` / ``Adagrad`` in every variant), three variants of one model:

- torch: ``torch.nn.EmbeddingBag(sparse=True)`` and ``torch.optim.SparseAdam`` / ``Adagrad``;
- sparsemb fused: ``sparsemb.torch.EmbeddingBag(..., optimizer="sparse_adam" / "adagrad")``, the
  rows updated during backward (no gradient tensor);
- sparsemb + torch.optim: ``sparsemb.torch.EmbeddingBag(sparse=True)`` and torch's optimizer on the
  sparse gradient it returns.

Two steps are timed for each: the embedding part (forward of the three bags, backward of a fixed
upstream gradient, the tables' update) and the whole training step (``zero_grad``, forward, loss,
backward, both optimizers' ``step``). Every case runs interleaved in one process (round-robin,
medians); each cycles through the same pre-drawn batches. All variants start from the same weights
(same torch seed) and see the same batches, so after two steps of each kind (before timing) their
tables must agree to float32 rounding: the largest difference is printed (and checked) as a sanity
test.

    python scripts/bench_dlrm.py              # aligned text
    python scripts/bench_dlrm.py --markdown   # a section for BENCHMARKS.md

Memory: about 2.3 GB per model with SparseAdam (tables and two moments), 7 GB for the three at once.
"""
from __future__ import annotations

import argparse
import gc
import itertools

import numpy as np

from _benchutil import (DIM, THREADS, ZIPF_A, fmt, interleaved, machine, report, table, try_torch,
                        zipf_ids)
from sparsemb._config import num_threads

TABLES = 3
ROWS = 1_000_000
BAGS = 4096
BAG_SIZE = 16
DENSE = 13
HIDDEN = 256
BATCHES = 4  # pre-drawn batches every case cycles through

#: name: (torch.optim class for the tables, sparsemb.torch optimizer= name, torch.optim class for the
#: MLP). Hyper-parameters are torch's defaults, the same in every variant.
OPTIMIZERS = {
    "SparseAdam": ("SparseAdam", "sparse_adam", "Adam"),
    "Adagrad": ("Adagrad", "adagrad", "Adagrad"),
}
FUSED_KW = {"SparseAdam": {"lr": 1e-3}, "Adagrad": {"lr": 1e-2}}
VARIANTS = ("torch", "sparsemb fused", "sparsemb + torch.optim")


def batches(torch, rows):
    """``BATCHES`` batches of (dense features, [ids of each table], labels, [upstream gradients])."""
    rng = np.random.default_rng(1)
    out = []
    for b in range(BATCHES):
        ids = [torch.from_numpy(zipf_ids(BAGS * BAG_SIZE, rows, seed=100 * b + t).reshape(BAGS, BAG_SIZE))
               for t in range(TABLES)]
        dense = torch.from_numpy(rng.standard_normal((BAGS, DENSE), dtype=np.float32))
        labels = torch.from_numpy((rng.random(BAGS) < 0.25).astype(np.float32))
        grads = [torch.from_numpy(rng.standard_normal((BAGS, DIM), dtype=np.float32))
                 for _ in range(TABLES)]
        out.append((dense, ids, labels, grads))
    return out


def model(torch, variant, opt_name, rows):
    """(model, table optimizer or None, MLP optimizer) for one variant, from torch seed 0."""
    import sparsemb.torch as st

    emb_opt, fused_name, mlp_opt = OPTIMIZERS[opt_name]
    torch.manual_seed(0)
    if variant == "torch":
        bags = [torch.nn.EmbeddingBag(rows, DIM, mode="sum", sparse=True) for _ in range(TABLES)]
    elif variant == "sparsemb fused":
        bags = [st.EmbeddingBag(rows, DIM, mode="sum", optimizer=fused_name, **FUSED_KW[opt_name])
                for _ in range(TABLES)]
    else:
        bags = [st.EmbeddingBag(rows, DIM, mode="sum", sparse=True) for _ in range(TABLES)]

    class DLRM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bags = torch.nn.ModuleList(bags)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(TABLES * DIM + DENSE, HIDDEN),
                                           torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1))

        def forward(self, dense, ids):
            return self.mlp(torch.cat([dense] + [b(i) for b, i in zip(self.bags, ids)], 1)).squeeze(1)

    m = DLRM()
    tables = None
    if variant != "sparsemb fused":
        tables = getattr(torch.optim, emb_opt)([b.weight for b in m.bags], **FUSED_KW[opt_name])
    return m, tables, getattr(torch.optim, mlp_opt)(m.mlp.parameters())


def steps(torch, m, tables, mlp_opt, data):
    """(embedding-part step, whole step): closures, each cycling through ``data`` on its own."""
    loss_fn = torch.nn.BCEWithLogitsLoss()
    emb_batches, whole_batches = itertools.cycle(data), itertools.cycle(data)

    def emb_step():
        _, ids, _, grads = next(emb_batches)
        if tables is not None:
            tables.zero_grad()
        outs = [b(i) for b, i in zip(m.bags, ids)]
        torch.autograd.backward(outs, grads)
        if tables is not None:
            tables.step()

    def whole_step():
        dense, ids, labels, _ = next(whole_batches)
        if tables is not None:
            tables.zero_grad()
        mlp_opt.zero_grad()
        loss_fn(m(dense, ids), labels).backward()
        if tables is not None:
            tables.step()
        mlp_opt.step()
    return emb_step, whole_step


def run(torch, opt_name, data, rows, rounds):
    """Median seconds of each variant's two steps, and the largest table difference to torch's."""
    models, cases = {}, {}
    for variant in VARIANTS:
        models[variant] = model(torch, variant, opt_name, rows)
        emb_step, whole_step = steps(torch, *models[variant], data)
        cases[f"{variant}: embedding part"] = emb_step
        cases[f"{variant}: whole step"] = whole_step
    # Two steps of each kind first (they also warm up), then the tables are compared: over a long
    # run the MLP and tables feed float32 rounding back into each other, so only a short one says
    # whether the variants train the same model.
    for _ in range(2):
        for fn in cases.values():
            fn()
    ref = models["torch"][0]
    diff = 0.0
    for variant in VARIANTS[1:]:
        for a, b in zip(ref.bags, models[variant][0].bags):
            diff = max(diff, float((a.weight.detach() - b.weight.detach()).abs().max()))
    t = interleaved(cases, rounds)
    del models, cases
    gc.collect()
    return t, diff


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20, help="timed rounds per case (default 20)")
    ap.add_argument("--rows", type=int, default=ROWS, help=f"rows per table (default {ROWS:,})")
    ap.add_argument("--optimizer", choices=list(OPTIMIZERS), action="append",
                    help="run only this optimizer (repeatable; default all)")
    ap.add_argument("--markdown", action="store_true", help="print a BENCHMARKS.md section")
    args = ap.parse_args(argv)

    torch = try_torch(THREADS)
    if torch is None:
        raise SystemExit("bench_dlrm needs torch (pip install -e '.[compare]')")
    torch.set_grad_enabled(True)
    data = batches(torch, args.rows)
    n_unique = np.mean([np.unique(ids.numpy()).size for _, batch, _, _ in data for ids in batch])
    rows, targets, sanity = [], [], []
    verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    with num_threads(THREADS):
        for opt_name in args.optimizer or OPTIMIZERS:
            t, diff = run(torch, opt_name, data, args.rows, args.rounds)
            # Diverging tables would mean the variants did not train the same model.
            assert diff < 1e-3, f"{opt_name}: tables differ from torch's by {diff}"
            sanity.append([opt_name, f"{diff:.1e}"])
            te, tw = t["torch: embedding part"], t["torch: whole step"]
            for variant in VARIANTS:
                e, w = t[f"{variant}: embedding part"], t[f"{variant}: whole step"]
                rows.append([opt_name, variant, fmt(e * 1e3, ".2f"), fmt(w * 1e3, ".2f"),
                             fmt(te / e, suffix="x"), fmt(tw / w, suffix="x")])
            fused = t["sparsemb fused: embedding part"]
            targets.append([f"{opt_name}: embedding part >= 3x torch (fused)",
                            fmt(te / fused, suffix="x"), verdict(te / fused >= 3)])
    head = ["optimizer", "variant", "embedding part ms", "whole step ms", "embedding part: speedup",
            "whole step: speedup"]
    blocks = [f"workload: {TABLES} EmbeddingBag tables of {args.rows:,} x {DIM} float32 (mode sum), "
              f"batch {BAGS:,} bags x {BAG_SIZE} Zipf({ZIPF_A}) ids per table (~{n_unique:,.0f} unique "
              f"per table), {DENSE} dense features, MLP {TABLES * DIM + DENSE} -> {HIDDEN} -> 1, "
              f"{THREADS} threads, median of {args.rounds} interleaved rounds over {BATCHES} batches",
              table(head, rows, args.markdown),
              table(["target", "measured", "status"], targets, args.markdown),
              table(["optimizer", "largest table difference to torch after 2 steps of each kind"], sanity,
                    args.markdown),
              "embedding part = forward of the three bags + backward of a fixed upstream gradient + "
              "the tables' update; whole step = zero_grad + forward + BCE loss + backward + both "
              "optimizers' step (the MLP trained by torch.optim.Adam / Adagrad in every variant). "
              "speedup = torch's time / the variant's."]
    print(report("bench_dlrm: DLRM-like model, torch vs sparsemb.torch", machine(torch), blocks,
                 args.markdown))


if __name__ == "__main__":
    main()
