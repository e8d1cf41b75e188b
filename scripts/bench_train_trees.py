"""Training time of two checkouts of sparsemb, alternated: a kernel change measured against its parent.

Each run is a fresh process with that checkout first on ``sys.path`` (``git worktree add /tmp/old
<commit>`` makes one) and its own Numba cache; it builds the vocabulary of the corpus of
scripts/bench_word2vec.py (gensim's shortened Wikipedia text, repeated to about 4 million tokens),
then times one epoch of ``train()`` alone, in CPU seconds of the process (less disturbed by other
work on the machine than wall time). Rounds alternate the checkouts, CBOW and skip-gram; the first
round of each compiles. Reported: each round's times and the median of the paired ratios.

    python scripts/bench_train_trees.py /tmp/old .              # 4 rounds, 1 thread
    python scripts/bench_train_trees.py /tmp/old . --rounds 6 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_word2vec import FLAGS, make_corpus  # noqa: E402

CHILD = r"""
import inspect, json, sys, time
sys.path.insert(0, sys.argv[1])
from sparsemb import Word2Vec
sg, corpus, threads, flags = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
model = Word2Vec(sg=sg, workers=threads, quiet=True, **flags)
model.build_vocab(corpus_file=corpus)
# Checkouts from before gensim's train() contract take neither count.
takes_counts = "total_examples" in inspect.signature(model.train).parameters
counts = dict(total_examples=model.corpus_count, epochs=1) if takes_counts else {}
t0 = time.process_time()
model.train(corpus_file=corpus, **counts)
print(json.dumps(time.process_time() - t0))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, metavar="TREE", help="two checkouts: the reference, then the change")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=4_000_000)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "sparsemb-bench"))
    args = parser.parse_args(argv)
    corpus, _, _ = make_corpus(args.cache, args.tokens)
    work = tempfile.mkdtemp(prefix="sparsemb-trees-")
    times = {}
    for _ in range(args.rounds):
        for t, tree in enumerate(args.trees):
            env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(work, f"cache{t}"))
            for sg in (0, 1):
                out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(tree), str(sg), corpus,
                                      str(args.threads), json.dumps(FLAGS)], capture_output=True, text=True,
                                     env=env, check=True)
                times.setdefault((t, sg), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    for sg, name in ((0, "CBOW"), (1, "skip-gram")):
        ref, new = times[(0, sg)], times[(1, sg)]
        paired = [b / a for a, b in zip(ref[1:], new[1:])]  # the first round compiles
        print(f"{name}: reference {[round(x, 2) for x in ref]} s, change {[round(x, 2) for x in new]} s, "
              f"change/reference median {statistics.median(paired):.3f} (rounds 2-{args.rounds}: "
              f"{[round(p, 3) for p in paired]})")


if __name__ == "__main__":
    main()
