"""Whole-process word2vec throughput: ``sparsemb train`` against gensim 4 and fastText, same corpus, same flags.

Each run is a fresh process, timed from spawn to exit, so start-up, imports, reading and counting the
corpus, training and writing the vectors all count, as a user sees them. The corpus is the text of the
shortened Wikipedia dump in gensim's test data (scripts/compare_gensim.py extracts it), repeated to a few
million tokens and cached outside the repository. Flags: dim 100, window 5, negative 5, sample 1e-3,
min_count 5, one epoch, 2 threads, skip-gram and CBOW. The anchors:

- gensim, ``LineSentence``: ``Word2Vec(LineSentence(path), ...)`` then ``save_word2vec_format``;
- gensim, ``corpus_file``: ``Word2Vec(corpus_file=path, ...)`` (its C-level reader), then the same save;
- fastText (the ``fasttext-wheel`` or ``fasttext`` package, optional: skipped with a note when absent):
  ``train_unsupervised(path, minn=0, maxn=0, bucket=0, loss="ns", lr=0.025, ...)``, which without
  character n-grams is plain word2vec, then its words and input vectors written as a word2vec ``.bin``.

Runs alternate (sparsemb, then each anchor, round after round) so that drift in the machine hits all
alike; each anchor's ratio is the median over rounds of its wall time divided by ours in the same round.
Also reported: each process's CPU time (user + system, ``os.wait4``), each side's training-only
throughput (corpus words / seconds inside ``train()``; ours from the CLI summary, gensim's by timing
its ``train()``; fastText's ``train_unsupervised`` also reads and counts the corpus, so its figure
includes counting), peak RSS of each process and how far it is above the same program's peak on a tiny
corpus (the runtime's own memory), our first-run time with an empty Numba cache minus the warm-cache
time (compilation) and the warm-cache time of ``sparsemb train`` on a tiny corpus, and our training
throughput on 1 thread against 2.

    python scripts/bench_word2vec.py                       # 3 rounds, about 4 million tokens
    python scripts/bench_word2vec.py --rounds 5 --markdown  # a BENCHMARKS.md section
    python scripts/bench_word2vec.py --anchors fasttext gensim-corpus-file --no-scaling

Requires gensim; fastText is optional.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
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

#: The gensim side, run as ``python -c GENSIM CORPUS OUT SG WORKERS MODE`` (MODE: line-sentence or
#: corpus-file). train() is wrapped only to time it; the call itself is the one a gensim user writes.
GENSIM = r"""
import json, sys, time
from gensim.models import Word2Vec
from gensim.models.word2vec import LineSentence

corpus, out, sg, workers, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
timed = {}
train = Word2Vec.train
def timed_train(self, *args, **kwargs):
    t0 = time.perf_counter()
    result = train(self, *args, **kwargs)
    timed["seconds"] = time.perf_counter() - t0
    return result
Word2Vec.train = timed_train
if mode == "corpus-file":
    model = Word2Vec(corpus_file=corpus, sg=sg, workers=workers, **FLAGS)
else:
    model = Word2Vec(LineSentence(corpus), sg=sg, workers=workers, **FLAGS)
model.wv.save_word2vec_format(out, binary=True)
print(json.dumps({"train_seconds": timed["seconds"], "words": model.corpus_total_words * model.epochs}))
""".replace("**FLAGS", ", ".join(f"{k}={v!r}" for k, v in FLAGS.items()))

#: The fastText side, run as ``python -c FASTTEXT CORPUS OUT SG THREADS``: word2vec's flags under
#: fastText's names; no character n-grams (minn = maxn = 0) and so no n-gram buckets (bucket=0, as its
#: command line sets by itself in that case; the Python call would otherwise allocate 2M unused rows).
#: The vectors are written as gensim's are, a word2vec binary file of the input vectors.
FASTTEXT = r"""
import json, sys, time
import fasttext

corpus, out, sg, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t0 = time.perf_counter()
model = fasttext.train_unsupervised(
    corpus, model="skipgram" if sg else "cbow", loss="ns", lr=0.025, dim=%(vector_size)d, ws=%(window)d,
    neg=%(negative)d, minCount=%(min_count)d, t=%(sample)r, epoch=%(epochs)d, thread=threads,
    minn=0, maxn=0, wordNgrams=1, bucket=0, verbose=0)
seconds = time.perf_counter() - t0
words, vectors = model.get_words(), model.get_input_matrix()
with open(out, "wb") as f:
    f.write(b"%%d %%d\n" %% vectors.shape)
    for word, row in zip(words, vectors):
        f.write(word.encode() + b" " + row.astype("<f4").tobytes() + b"\n")
print(json.dumps({"train_seconds": seconds}))
""" % FLAGS

_SUMMARY = re.compile(r"trained on (\d+) words in ([0-9.]+) s")


def have_fasttext():
    """True when the ``fasttext`` module (from ``fasttext-wheel`` or ``fasttext``) can be imported."""
    return importlib.util.find_spec("fasttext") is not None


def run(cmd, env=None):
    """Run ``cmd`` to completion; return (wall s, CPU s, peak RSS in MiB, stdout). Raise if it fails."""
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
    # ru_maxrss is in KiB on Linux
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, stdout


def ours_cmd(corpus, out, sg, threads):
    args = {"--dim": FLAGS["vector_size"], "--window": FLAGS["window"], "--negative": FLAGS["negative"],
            "--sample": FLAGS["sample"], "--min-count": FLAGS["min_count"], "--epochs": FLAGS["epochs"],
            "--threads": threads, "--model": "skipgram" if sg else "cbow"}
    # The console script a user runs (the one installed with this Python, not a version manager's shim).
    script = os.path.join(os.path.dirname(sys.executable), "sparsemb")
    sparsemb = [script] if os.path.exists(script) else [sys.executable, "-m", "sparsemb.cli"]
    return sparsemb + ["train", corpus, "-o", out] + [str(x) for kv in args.items() for x in kv]


def run_ours(corpus, out, sg, threads, env=None):
    """One ``sparsemb train`` process: dict of wall, cpu (s), rss (MiB), words/s in training."""
    wall, cpu, rss, stdout = run(ours_cmd(corpus, out, sg, threads), env)
    m = _SUMMARY.search(stdout)
    if m is None:
        raise RuntimeError(f"no training summary in sparsemb's output: {stdout!r}")
    return {"wall": wall, "cpu": cpu, "rss": rss, "wps": int(m.group(1)) / float(m.group(2))}


def run_gensim(corpus, out, sg, threads, mode="line-sentence"):
    """One gensim process (``mode``: line-sentence or corpus-file): dict of wall, cpu, rss, words/s."""
    wall, cpu, rss, stdout = run([sys.executable, "-c", GENSIM, corpus, out, str(sg), str(threads), mode])
    stats = json.loads(stdout.strip().splitlines()[-1])
    return {"wall": wall, "cpu": cpu, "rss": rss, "wps": stats["words"] / stats["train_seconds"]}


def run_fasttext(corpus, out, sg, threads, n_tokens):
    """One fastText process: dict of wall, cpu, rss, words/s (``n_tokens`` corpus words over the
    seconds in ``train_unsupervised``, which includes its reading and counting the corpus)."""
    wall, cpu, rss, stdout = run([sys.executable, "-c", FASTTEXT, corpus, out, str(sg), str(threads)])
    stats = json.loads(stdout.strip().splitlines()[-1])
    return {"wall": wall, "cpu": cpu, "rss": rss, "wps": n_tokens * FLAGS["epochs"] / stats["train_seconds"]}


#: The anchors, by command-line name: (label in the tables, runner(corpus, out, sg, threads, n_tokens)).
ANCHORS = {
    "gensim-line-sentence": ("gensim LineSentence",
                             lambda c, o, sg, t, n: run_gensim(c, o, sg, t, "line-sentence")),
    "gensim-corpus-file": ("gensim corpus_file", lambda c, o, sg, t, n: run_gensim(c, o, sg, t, "corpus-file")),
    "fasttext": ("fastText", run_fasttext),
}


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


def ratio(theirs, ours, key):
    """Per round, their ``key`` over ours in the same round; the median of those ratios."""
    return float(np.median([t[key] / o[key] for o, t in zip(ours, theirs)]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4_000_000, help="corpus size to reach (default 4e6)")
    parser.add_argument("--corpus", help="train on this text file instead of the repeated wiki text")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per side (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--anchors", nargs="+", choices=list(ANCHORS), default=list(ANCHORS),
                        help="what to time sparsemb against (default: all; fasttext is skipped when the "
                             "package is not installed)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "sparsemb-bench"),
                        help="where the corpus is kept between runs")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1-thread vs 2-thread runs")
    parser.add_argument("--markdown", action="store_true", help="print a BENCHMARKS.md section")
    args = parser.parse_args(argv)

    notes = []
    anchors = list(dict.fromkeys(args.anchors))
    if "fasttext" in anchors and not have_fasttext():
        anchors.remove("fasttext")
        notes.append("fastText: not installed (`pip install fasttext-wheel`), so not measured.")
    corpus, n_tokens, tiny = make_corpus(args.cache, args.tokens)
    if args.corpus:
        corpus = args.corpus
        with open(corpus, "rb") as f:
            n_tokens = sum(len(line.split()) for line in f)
    with open(tiny, "rb") as f:
        n_tiny = sum(len(line.split()) for line in f)
    work = tempfile.mkdtemp(prefix="sparsemb-bench-")
    say = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    load = [os.getloadavg()[0]]
    try:
        # An empty Numba cache of our own: the first run compiles, every later run loads the cache.
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(work, "numba-cache"))
        out = os.path.join(work, "vectors.bin")
        cold = run_ours(tiny, out, 1, args.threads, env)["wall"]
        tiny_ours = [run_ours(tiny, out, sg, args.threads, env) for _ in range(args.rounds) for sg in (1, 0)]
        warm = [r["wall"] for r in tiny_ours]
        # The runtime's own memory (interpreter, libraries, compiled code) is what a run on the tiny
        # corpus peaks at; what a job adds above it is its data.
        floor = {"sparsemb": median(tiny_ours, "rss")}
        for a in anchors:
            floor[a] = median([ANCHORS[a][1](tiny, out, sg, args.threads, n_tiny) for sg in (1, 0)], "rss")
        say(f"tiny corpus: cold {cold:.2f} s, warm {np.median(warm):.2f} s; peak RSS "
            + ", ".join(f"{k} {v:.0f} MiB" for k, v in floor.items()))

        results = {}
        for name in args.models:
            sg = MODELS[name]
            runs = {k: [] for k in ["sparsemb"] + anchors}
            for r in range(args.rounds):
                runs["sparsemb"].append(run_ours(corpus, out, sg, args.threads, env))
                for a in anchors:
                    runs[a].append(ANCHORS[a][1](corpus, out, sg, args.threads, n_tokens))
                load.append(os.getloadavg()[0])
                say(f"{name} round {r + 1}: " + ", ".join(f"{k} {v[-1]['wall']:.2f} s" for k, v in runs.items())
                    + f" (load {load[-1]:.1f})")
            results[name] = runs

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
        load.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for name, runs in results.items():
        ours = runs["sparsemb"]
        for k, rs in runs.items():
            label = "sparsemb" if k == "sparsemb" else ANCHORS[k][0]
            rows.append([name, label, bu.fmt(median(rs, "wall"), ".2f", " s"), bu.fmt(median(rs, "cpu"), ".2f", " s"),
                         "" if k == "sparsemb" else bu.fmt(ratio(rs, ours, "wall"), ".2f", "×"),
                         "" if k == "sparsemb" else bu.fmt(ratio(rs, ours, "cpu"), ".2f", "×"),
                         bu.fmt(median(rs, "wps") / 1e6, ".2f", " M"), bu.fmt(median(rs, "rss"), ".0f", " MiB"),
                         bu.fmt(median(rs, "rss") - floor[k], ".0f", " MiB")])
    blocks = [bu.table(["model", "program", "wall", "CPU", "sparsemb speed-up (wall)", "sparsemb speed-up (CPU)",
                        "train words/s", "peak RSS", "above runtime"], rows, args.markdown)]
    if scaling:
        blocks.append(bu.table(
            ["model", "1 thread words/s", f"{args.threads} threads words/s", "scaling"],
            [[name, bu.fmt(a / 1e6, ".2f", " M"), bu.fmt(b / 1e6, ".2f", " M"), bu.fmt(b / a, ".2f", "×")]
             for name, (a, b) in scaling.items()], args.markdown))
    blocks.append(
        f"Start-up on a tiny corpus ({n_tiny} tokens, both models): first run with an empty Numba cache "
        f"{cold:.2f} s, so about {cold - float(np.median(warm)):.1f} s of compilation; with a warm cache "
        f"{float(np.median(warm)):.2f} s (median of {len(warm)}).")
    blocks.append(
        f"Wall and CPU (user + system): whole process, median of {args.rounds} alternating rounds. Speed-up: "
        "the program's time over ours in the same round, median over rounds. Training words/s: corpus words "
        "over the seconds inside train() (sparsemb and gensim re-read the file there: vocabulary counting is "
        "outside; fastText's train_unsupervised also reads and counts the corpus, so its figure includes "
        "that). Peak RSS: ru_maxrss of each process. Above runtime: peak RSS minus the median peak RSS of the "
        "same program on the tiny corpus ("
        + ", ".join(f"{'sparsemb' if k == 'sparsemb' else ANCHORS[k][0]} {v:.0f} MiB" for k, v in floor.items())
        + "; sparsemb's is Python, NumPy, Numba and LLVM with the cached kernels loaded), i.e. the memory the "
        "job's data takes.")
    blocks += notes
    header = [f"machine: {bu.cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}",
              f"software: {bu.versions()}, gensim {gensim_version()}"
              + (f", fastText {fasttext_version()} (minn 0, maxn 0, bucket 0, lr 0.025, loss ns)"
                 if "fasttext" in anchors else ""),
              f"date: {datetime.date.today().isoformat()}",
              (f"corpus: {corpus}: " if args.corpus else
               "corpus: gensim's shortened English Wikipedia dump as text, repeated: ")
              + f"{n_tokens} tokens, {os.path.getsize(corpus) / 2**20:.0f} MiB",
              f"flags: dim 100, window 5, negative 5, sample 1e-3, min_count 5, 1 epoch, {args.threads} threads",
              f"other processes' CPU use during the run: {bu.other_cpu_with_children():.0%} of the machine; "
              f"1-minute load average {min(load):.1f}-{max(load):.1f} (sampled after each round)",
              "command: python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])]
    print(bu.report("word2vec: sparsemb train vs gensim and fastText, whole process", header, blocks, args.markdown))


def gensim_version():
    import gensim

    return gensim.__version__


def fasttext_version():
    from importlib import metadata

    for dist in ("fasttext-wheel", "fasttext"):
        try:
            return f"{metadata.version(dist)} ({dist})"
        except metadata.PackageNotFoundError:
            pass
    return "unknown version"


if __name__ == "__main__":
    main()
