"""Whole-process word2vec throughput: ``sparsemb train`` against gensim 4, same corpus, same flags.

Each run is a fresh process, timed from spawn to exit, so start-up, imports, reading and counting the
corpus, training and writing the vectors all count, as a user sees them. The corpus is the text of the
shortened Wikipedia dump in gensim's test data (scripts/compare_gensim.py extracts it), repeated to a few
million tokens and cached outside the repository. Flags: dim 100, window 5, negative 5, sample 1e-3,
min_count 5, one epoch, 2 threads, skip-gram and CBOW. gensim runs
``Word2Vec(LineSentence(path), ...)`` then ``save_word2vec_format``.

Runs alternate (sparsemb, gensim, sparsemb, ...) so that drift in the machine hits both alike; the
reported ratio is the median over rounds of gensim's wall time divided by ours. Also reported: each
side's training-only throughput (corpus words / seconds inside ``train()``; ours from the CLI summary,
gensim's by timing its ``train()``), peak RSS of each process (``os.wait4``) and how far it is above the
same program's peak on a tiny corpus (the runtime's own memory), our first-run time with an
empty Numba cache minus the warm-cache time (compilation) and the warm-cache time of
``sparsemb train`` on a tiny corpus, and our training throughput on 1 thread against 2.

    python scripts/bench_word2vec.py                       # 3 rounds, about 4 million tokens
    python scripts/bench_word2vec.py --rounds 5 --markdown  # a BENCHMARKS.md section

Requires gensim.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchutil as bu  # noqa: E402
from compare_gensim import wiki_text  # noqa: E402

FLAGS = dict(vector_size=100, window=5, negative=5, sample=1e-3, min_count=5, epochs=1)
MODELS = {"skip-gram": 1, "CBOW": 0}

#: The gensim side, run as ``python -c GENSIM CORPUS OUT SG WORKERS``. train() is wrapped only to time
#: it; the call itself is the one a gensim user writes.
GENSIM = r"""
import json, sys, time
from gensim.models import Word2Vec
from gensim.models.word2vec import LineSentence

corpus, out, sg, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
timed = {}
train = Word2Vec.train
def timed_train(self, *args, **kwargs):
    t0 = time.perf_counter()
    result = train(self, *args, **kwargs)
    timed["seconds"] = time.perf_counter() - t0
    return result
Word2Vec.train = timed_train
model = Word2Vec(LineSentence(corpus), sg=sg, workers=workers, **FLAGS)
model.wv.save_word2vec_format(out, binary=True)
print(json.dumps({"train_seconds": timed["seconds"], "words": model.corpus_total_words * model.epochs}))
""".replace("**FLAGS", ", ".join(f"{k}={v!r}" for k, v in FLAGS.items()))

_SUMMARY = re.compile(r"trained on (\d+) words in ([0-9.]+) s")


def run(cmd, env=None):
    """Run ``cmd`` to completion; return (wall seconds, peak RSS in MiB, stdout). Raise if it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, stdout  # ru_maxrss is in KiB on Linux


def ours_cmd(corpus, out, sg, threads):
    args = {"--dim": FLAGS["vector_size"], "--window": FLAGS["window"], "--negative": FLAGS["negative"],
            "--sample": FLAGS["sample"], "--min-count": FLAGS["min_count"], "--epochs": FLAGS["epochs"],
            "--threads": threads, "--model": "skipgram" if sg else "cbow"}
    # The console script a user runs (the one installed with this Python, not a version manager's shim).
    script = os.path.join(os.path.dirname(sys.executable), "sparsemb")
    sparsemb = [script] if os.path.exists(script) else [sys.executable, "-m", "sparsemb.cli"]
    return sparsemb + ["train", corpus, "-o", out] + [str(x) for kv in args.items() for x in kv]


def run_ours(corpus, out, sg, threads, env=None):
    """One ``sparsemb train`` process: dict of wall, rss (MiB), words/s in training."""
    wall, rss, stdout = run(ours_cmd(corpus, out, sg, threads), env)
    m = _SUMMARY.search(stdout)
    if m is None:
        raise RuntimeError(f"no training summary in sparsemb's output: {stdout!r}")
    return {"wall": wall, "rss": rss, "wps": int(m.group(1)) / float(m.group(2))}


def run_gensim(corpus, out, sg, threads):
    """One gensim process: dict of wall, rss (MiB), words/s in training."""
    wall, rss, stdout = run([sys.executable, "-c", GENSIM, corpus, out, str(sg), str(threads)])
    stats = json.loads(stdout.strip().splitlines()[-1])
    return {"wall": wall, "rss": rss, "wps": stats["words"] / stats["train_seconds"]}


def make_corpus(cache, tokens):
    """The wiki text repeated to at least ``tokens`` tokens, and a tiny corpus of its first 20000 tokens."""
    os.makedirs(cache, exist_ok=True)
    base = wiki_text(os.path.join(cache, "wiki-shortened.txt"))
    with open(base, encoding="utf-8") as f:
        text = f.read()
    n_base = len(text.split())
    copies = -(-tokens // n_base)
    path = os.path.join(cache, f"wiki-x{copies}.txt")
    if not os.path.exists(path):
        with open(path + ".part", "w", encoding="utf-8") as f:
            for _ in range(copies):
                f.write(text)
        os.replace(path + ".part", path)
    tiny = os.path.join(cache, "wiki-tiny.txt")
    if not os.path.exists(tiny):
        words = text.split()[:20000]
        with open(tiny, "w", encoding="utf-8") as f:
            f.writelines(" ".join(words[i : i + 20]) + "\n" for i in range(0, len(words), 20))
    return path, n_base * copies, tiny


def median(runs, key):
    return float(np.median([r[key] for r in runs]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4_000_000, help="corpus size to reach (default 4e6)")
    parser.add_argument("--corpus", help="train on this text file instead of the repeated wiki text")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per side (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "sparsemb-bench"),
                        help="where the corpus is kept between runs")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1-thread vs 2-thread runs")
    parser.add_argument("--markdown", action="store_true", help="print a BENCHMARKS.md section")
    args = parser.parse_args(argv)

    corpus, n_tokens, tiny = make_corpus(args.cache, args.tokens)
    if args.corpus:
        corpus = args.corpus
        with open(corpus, "rb") as f:
            n_tokens = sum(len(line.split()) for line in f)
    work = tempfile.mkdtemp(prefix="sparsemb-bench-")
    say = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    try:
        # An empty Numba cache of our own: the first run compiles, every later run loads the cache.
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(work, "numba-cache"))
        out = os.path.join(work, "vectors.bin")
        cold = run_ours(tiny, out, 1, args.threads, env)["wall"]
        tiny_ours = [run_ours(tiny, out, sg, args.threads, env) for _ in range(args.rounds) for sg in (1, 0)]
        warm = [r["wall"] for r in tiny_ours]
        # The runtime's own memory (interpreter, libraries, compiled code) is what a run on the tiny
        # corpus peaks at; what a job adds above it is its data.
        floor_ours = median(tiny_ours, "rss")
        floor_gensim = median([run_gensim(tiny, out, sg, args.threads) for sg in (1, 0)], "rss")
        say(f"tiny corpus: cold {cold:.2f} s, warm {np.median(warm):.2f} s; peak RSS sparsemb {floor_ours:.0f} MiB, "
            f"gensim {floor_gensim:.0f} MiB")

        results = {}
        for name in args.models:
            sg = MODELS[name]
            ours, theirs = [], []
            for r in range(args.rounds):
                ours.append(run_ours(corpus, out, sg, args.threads, env))
                theirs.append(run_gensim(corpus, out, sg, args.threads))
                say(f"{name} round {r + 1}: sparsemb {ours[-1]['wall']:.2f} s, gensim {theirs[-1]['wall']:.2f} s")
            ratios = [g["wall"] / o["wall"] for o, g in zip(ours, theirs)]
            results[name] = (ours, theirs, float(np.median(ratios)))

        scaling = {}
        if not args.no_scaling:
            for name in args.models:
                sg = MODELS[name]
                one, two = [], []
                for r in range(args.rounds):
                    one.append(run_ours(corpus, out, sg, 1, env))
                    two.append(run_ours(corpus, out, sg, args.threads, env))
                scaling[name] = (median(one, "wps"), median(two, "wps"))
                say(f"{name} scaling: {scaling[name][1] / scaling[name][0]:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for name, (ours, theirs, ratio) in results.items():
        rows.append([name, bu.fmt(median(ours, "wall"), ".2f", " s"), bu.fmt(median(theirs, "wall"), ".2f", " s"),
                     bu.fmt(ratio, ".2f", "×"), bu.fmt(median(ours, "wps") / 1e6, ".2f", " M"),
                     bu.fmt(median(theirs, "wps") / 1e6, ".2f", " M"),
                     bu.fmt(median(ours, "rss"), ".0f", " MiB"), bu.fmt(median(theirs, "rss"), ".0f", " MiB"),
                     bu.fmt(median(ours, "rss") - floor_ours, ".0f", " MiB"),
                     bu.fmt(median(theirs, "rss") - floor_gensim, ".0f", " MiB")])
    blocks = [bu.table(["model", "sparsemb s", "gensim s", "speed-up (median)", "sparsemb train words/s",
                        "gensim train words/s", "sparsemb peak RSS", "gensim peak RSS",
                        "sparsemb above runtime", "gensim above runtime"], rows, args.markdown)]
    if scaling:
        blocks.append(bu.table(
            ["model", "1 thread words/s", f"{args.threads} threads words/s", "scaling"],
            [[name, bu.fmt(a / 1e6, ".2f", " M"), bu.fmt(b / 1e6, ".2f", " M"), bu.fmt(b / a, ".2f", "×")]
             for name, (a, b) in scaling.items()], args.markdown))
    blocks.append(
        f"Start-up on a tiny corpus (20000 tokens, both models): first run with an empty Numba cache "
        f"{cold:.2f} s, so about {cold - float(np.median(warm)):.1f} s of compilation; with a warm cache "
        f"{float(np.median(warm)):.2f} s (median of {len(warm)}).")
    blocks.append(
        f"Speed-up: gensim's whole-process wall time over ours, median of {args.rounds} alternating rounds. "
        "Training words/s: corpus words over the seconds inside train() (both re-read the file there: "
        "vocabulary counting is outside). Peak RSS: ru_maxrss of each process. Above runtime: peak RSS minus "
        f"the median peak RSS of the same program on the tiny corpus (sparsemb {floor_ours:.0f} MiB: Python, NumPy, "
        f"Numba and LLVM with the cached kernels loaded; gensim {floor_gensim:.0f} MiB), i.e. the memory the job's "
        "data takes.")
    header = [f"machine: {bu.cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}",
              f"software: {bu.versions()}, gensim {gensim_version()}",
              f"date: {datetime.date.today().isoformat()}",
              (f"corpus: {corpus}: " if args.corpus else
               "corpus: gensim's shortened English Wikipedia dump as text, repeated: ")
              + f"{n_tokens} tokens, {os.path.getsize(corpus) / 2**20:.0f} MiB",
              f"flags: dim 100, window 5, negative 5, sample 1e-3, min_count 5, 1 epoch, {args.threads} threads",
              f"other processes' CPU use during the run: {bu.other_cpu_with_children():.0%} of the machine",
              "command: python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])]
    print(bu.report("word2vec: sparsemb train vs gensim, whole process", header, blocks, args.markdown))


def gensim_version():
    import gensim

    return gensim.__version__


if __name__ == "__main__":
    main()
