"""Where the time of a whole ``sparsemb train`` run goes: a phase table, for issue 17's fixed costs.

A fresh process (``python -c``) runs what ``sparsemb train CORPUS -o OUT.bin`` runs, step by step, and
times each phase with ``time.perf_counter``: interpreter start (from the parent's spawn to the first
line), importing sparsemb's word2vec (NumPy, Numba, the package), loading the cached kernels (a tiny
call of each), counting the corpus, choosing the vocabulary, making the tables, each epoch (reading,
encoding and training), and saving. The kernels are compiled beforehand (a warm cache), as a user's
second run finds them. Runs repeat; the table shows medians.

    python scripts/profile_word2vec.py                        # the 4M-token corpus of bench_word2vec
    python scripts/profile_word2vec.py --corpus FILE --model skipgram --rounds 5 --markdown
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_word2vec import FLAGS, make_corpus  # noqa: E402

CHILD = r"""
import json, sys, time
t = {"started": time.perf_counter()}
corpus, out, sg, threads, flags = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
from sparsemb.word2vec import Word2Vec
t["imports"] = time.perf_counter()
tiny = Word2Vec([["a", "b", "a", "b"]] * 4, vector_size=4, min_count=1, epochs=1, workers=1, quiet=True, sg=sg)
t["kernels loaded"] = time.perf_counter()
model = Word2Vec(sg=sg, workers=threads, quiet=True, **flags)
total_words, model.corpus_count = model.scan_vocab(corpus_file=corpus)
model.corpus_total_words = total_words
t["counting"] = time.perf_counter()
model.prepare_vocab()
t["vocabulary"] = time.perf_counter()
model.prepare_weights()
t["tables"] = time.perf_counter()
model.train(corpus_file=corpus, total_examples=model.corpus_count, epochs=model.epochs)
t["train (all epochs)"] = time.perf_counter()
model.wv.save_word2vec_format(out, binary=True)
t["save .bin"] = time.perf_counter()
print(json.dumps(t))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="a text file (default: the repeated wiki text of bench_word2vec)")
    parser.add_argument("--model", choices=("cbow", "skipgram"), default="cbow")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "sparsemb-bench"))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    corpus = args.corpus or make_corpus(args.cache, 4_000_000)[0]
    out = os.path.join(tempfile.mkdtemp(prefix="sparsemb-profile-"), "v.bin")
    cmd = [sys.executable, "-c", CHILD, corpus, out, str(int(args.model == "skipgram")), str(args.threads),
           json.dumps(FLAGS)]
    subprocess.run(cmd, check=True, capture_output=True)  # compiles into the cache: the rounds are warm
    phases = {}
    for _ in range(args.rounds):
        spawned = time.perf_counter()
        result = subprocess.run(cmd, check=True, capture_output=True, text=True)
        ended = time.perf_counter()
        marks = json.loads(result.stdout.strip().splitlines()[-1])
        # perf_counter is the same clock in parent and child on Linux (CLOCK_MONOTONIC).
        previous = spawned
        for name, at in marks.items():
            phases.setdefault("interpreter start" if name == "started" else name, []).append(at - previous)
            previous = at
        phases.setdefault("exit", []).append(ended - previous)
        phases.setdefault("whole process", []).append(ended - spawned)
    rows = [(name, statistics.median(v)) for name, v in phases.items()]
    total = dict(rows)["whole process"]
    training = dict(rows)["train (all epochs)"]
    print(f"{args.model}, {FLAGS}, {args.threads} threads, corpus {corpus}, medians of {args.rounds} runs",
          file=sys.stderr)
    if args.markdown:
        print("| phase | seconds |\n|---|---:|")
    for name, sec in rows:
        print(f"| {name} | {sec:.2f} |" if args.markdown else f"{name:22s} {sec:7.2f} s")
    label, outside = "outside the training loop", total - training
    print(f"| {label} | {outside:.2f} |" if args.markdown else f"{label:22s} {outside:7.2f} s")


if __name__ == "__main__":
    main()
