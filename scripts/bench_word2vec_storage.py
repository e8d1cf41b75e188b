"""Word2Vec whose tables do not fit in memory: ``storage=dir`` under a memory cgroup, against in RAM.

A vocabulary of ``--words`` words (dimension ``--dim``: ``syn0`` + ``syn1neg`` are ``2 * words * dim *
4`` bytes) is trained for one epoch of CBOW on a Zipf corpus of ``--tokens`` tokens over it, three ways,
each in a fresh process:

- ``in RAM``: the usual tables, no memory limit (the speed to compare with);
- ``mapped, limited``: ``storage=`` files, the process in a memory cgroup of ``--limit`` MiB (page cache
  included, so at most that much of the tables is ever resident);
- ``in RAM, limited``: the usual tables under the same limit (expected: killed by the OOM killer).

The cgroup is scripts/bench_storage.py's (v1 or v2; needs root).

    python scripts/bench_word2vec_storage.py --words 2000000 --dim 128 --tokens 5000000 --limit 1024
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_storage import MemoryLimit  # noqa: E402


def make_corpus(path, words, tokens, seed=0):
    """A Zipf(1.05) corpus over ``words`` words, 20 tokens a line; returns each word's count + 1."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, words + 1) ** 1.05
    ids = rng.choice(words, size=tokens, p=p / p.sum())
    with open(path, "w") as f:
        for lo in range(0, tokens, 20000):
            block = ids[lo:lo + 20000].reshape(-1, 20)
            f.write("\n".join(" ".join(f"w{i}" for i in row) for row in block) + "\n")
    return np.bincount(ids, minlength=words) + 1


def child(args):
    from sparsemb import Word2Vec

    counts = np.load(os.path.join(args.work, "counts.npy"))
    freq = {f"w{i}": int(c) for i, c in enumerate(counts)}
    storage = os.path.join(args.work, "tables") if args.mapped else None
    model = Word2Vec(vector_size=args.dim, min_count=1, workers=2, sg=0, epochs=1, quiet=True, storage=storage)
    model.build_vocab_from_freq(freq)
    del freq
    t0 = time.perf_counter()
    model.train(corpus_file=os.path.join(args.work, "corpus.txt"), total_words=args.tokens, epochs=1)
    seconds = time.perf_counter() - t0
    near = [w for w, _ in model.wv.most_similar("w1", topn=3)] if args.query else []
    print(json.dumps({"words_per_s": model.train_words / model.train_seconds, "train_s": seconds,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "near": near}))


def run(args, mapped, limit):
    cmd = [sys.executable, __file__, "--child", "--work", args.work, "--dim", str(args.dim), "--tokens",
           str(args.tokens)] + (["--mapped"] if mapped else []) + (["--query"] if args.query else [])
    shutil.rmtree(os.path.join(args.work, "tables"), ignore_errors=True)
    if limit is None:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    else:
        with limit:
            proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit.join)
    if proc.returncode:
        return {"error": f"exit {proc.returncode}" + (" (killed: out of memory)" if proc.returncode < 0 else
                                                      f": {proc.stderr.strip().splitlines()[-1:]}")}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=2_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=5_000_000)
    parser.add_argument("--limit", type=int, default=1024, help="MiB for the limited runs")
    parser.add_argument("--query", action="store_true", help="also a most_similar on the trained table")
    parser.add_argument("--work", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mapped", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    own = args.work is None
    args.work = args.work or tempfile.mkdtemp(prefix="sparsemb-w2v-storage-")
    try:
        counts = make_corpus(os.path.join(args.work, "corpus.txt"), args.words, args.tokens)
        np.save(os.path.join(args.work, "counts.npy"), counts)
        tables = 2 * args.words * args.dim * 4
        limit = MemoryLimit(args.limit << 20)
        print(f"{args.words:,} words x {args.dim}: syn0 + syn1neg {tables / 2**20:,.0f} MiB; limit {args.limit} MiB "
              f"({tables / (args.limit << 20):.1f}x the tables' size; {limit.how}); {args.tokens:,} tokens, CBOW, "
              f"1 epoch, 2 threads")
        ram = run(args, False, None)
        mapped = run(args, True, limit)
        ram_limited = run(args, False, limit)
        print("| run | train words/s | vs in RAM | peak RSS MiB |")
        print("|---|---:|---:|---:|")
        for name, r in (("in RAM, no limit", ram), (f"mapped, {args.limit} MiB limit", mapped),
                        (f"in RAM, {args.limit} MiB limit", ram_limited)):
            if "error" in r:
                print(f"| {name} | {r['error']} | | |")
            else:
                ratio = r["words_per_s"] / ram["words_per_s"] if "words_per_s" in ram else float("nan")
                print(f"| {name} | {r['words_per_s']:,.0f} | {ratio:.2f} | {r['peak_rss_mib']:,.0f} |")
    finally:
        if own:
            shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
