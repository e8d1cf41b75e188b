"""An iterable corpus against the same text as ``corpus_file``: training time, side by side in one process.

gensim users pass ``sentences`` (a list, or ``LineSentence``-style readers that re-read a file): sparsemb
re-reads an iterable every epoch and encodes it in a producer thread while the workers train. This
measures what that costs against the compiled file reader, on the corpus of scripts/bench_word2vec.py
(gensim's shortened Wikipedia text, repeated to about 4 million tokens), for each model, in rounds
that alternate the three inputs:

* ``corpus_file``: the path;
* ``list``: the sentences as a list of token lists in memory;
* ``reader``: an object whose ``__iter__`` reads the file again and splits each line (what
  ``LineSentence`` does).

Time is that of ``train()`` alone (the vocabulary is built once, from the file); the ratio is the median
over rounds of each input's time over ``corpus_file``'s.

    python scripts/bench_iterable.py                  # 3 rounds, 1 epoch, 2 threads
    python scripts/bench_iterable.py --rounds 5 --markdown

Requires gensim (for the corpus text).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_word2vec import FLAGS, MODELS, make_corpus  # noqa: E402

from sparsemb import Word2Vec  # noqa: E402


class Reader:
    """Re-reads a text file every time it is iterated, one token list per line."""

    def __init__(self, path):
        self.path = path

    def __iter__(self):
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                yield line.split()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "sparsemb-bench"))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    corpus, n_tokens, _ = make_corpus(args.cache, args.tokens)
    with open(corpus, encoding="utf-8") as f:
        in_memory = [line.split() for line in f]
    inputs = {"corpus_file": dict(corpus_file=corpus), "list": dict(corpus_iterable=in_memory),
              "reader": dict(corpus_iterable=Reader(corpus))}
    rows = []
    for name, sg in MODELS.items():
        model = Word2Vec(sg=sg, workers=args.threads, quiet=True, **FLAGS)
        model.build_vocab(corpus_file=corpus)
        start = model.wv.vectors.copy()
        times = {k: [] for k in inputs}
        for _ in range(args.rounds):
            for key, source in inputs.items():
                model.wv.vectors[:] = start
                model.syn1neg[:] = 0
                model.min_alpha_yet_reached = model.alpha  # a fresh start each time, not a warning
                t0 = time.perf_counter()
                model.train(**source, total_examples=model.corpus_count, epochs=1)
                times[key].append(time.perf_counter() - t0)
        base = np.array(times["corpus_file"])
        for key in inputs:
            ratio = float(np.median(np.array(times[key]) / base))
            rows.append((name, key, float(np.median(times[key])), ratio))
            print(f"{name:9s} {key:12s} {np.median(times[key]):6.2f} s  {ratio:.2f}x corpus_file's time",
                  file=sys.stderr)
    if args.markdown:
        print(f"corpus: {n_tokens} tokens, 1 epoch, {args.threads} threads, {args.rounds} rounds, "
              f"flags {FLAGS}\n")
        print("| model | input | train() seconds (median) | time / corpus_file's |\n|---|---|---|---|")
        for name, key, t, ratio in rows:
            print(f"| {name} | {key} | {t:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
