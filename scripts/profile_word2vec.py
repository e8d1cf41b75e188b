"""Where the time of a whole ``sparsemb train`` run goes: a phase table, for issue 17's fixed costs.

A fresh process runs the command line itself (``sparsemb.cli.run``, what the ``sparsemb`` console script
runs, with ``sys.argv`` of ``sparsemb train CORPUS -o OUT.bin --quiet ...``) and marks the end of each
phase with ``time.perf_counter`` by wrapping the methods the command calls: interpreter start (from the
parent's spawn to the child's first line), importing the command line, importing what training needs
(NumPy, Numba, sparsemb.word2vec: the command imports them first thing), counting the corpus
(``scan_vocab``), choosing the vocabulary, making the tables, training (``train``: every epoch's reading,
encoding and training), saving the ``.bin``, the rest of the command (its checks and summary), and the
exit (from the command's return to the parent seeing the process end). Loading cached kernels happens
inside those phases, on each kernel's first call; it is timed apart (Numba's ``Dispatcher.compile``,
which looks in the cache) and taken out of the phase it happened in. The kernels are compiled
beforehand (a warm cache), as a user's second run finds them. Peak RSS is the process's ``ru_maxrss``.

Each checkout's package is byte-compiled first (``compileall``, as pip does when it installs), so that
no run compiles sparsemb's sources (a setting such as ``PYTHONDONTWRITEBYTECODE=1`` would otherwise make
every run do it: 0.08 s). Runs repeat; the table shows medians. ``--checkout DIR`` (repeatable) runs the same rounds with
``PYTHONPATH=DIR``, one column per checkout, alternating (a ``git worktree`` of an older commit gives the
before column).

    python scripts/profile_word2vec.py                        # the 4M-token corpus of bench_word2vec
    python scripts/profile_word2vec.py --corpus FILE --model skipgram --rounds 5 --markdown
    python scripts/profile_word2vec.py --checkout /tmp/before --checkout . --rounds 7 --kernels
"""
from __future__ import annotations

import argparse
import compileall
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
marks, argv = sys.argv[1], sys.argv[2:]
import sparsemb.cli as cli
t["import sparsemb.cli"] = time.perf_counter()
import numba.core.dispatcher
from sparsemb.word2vec import KeyedVectors, Word2Vec
t["imports"] = time.perf_counter()
loads, current = {}, ["imports"]
compile_ = numba.core.dispatcher.Dispatcher.compile
def timed_compile(self, sig):
    t0 = time.perf_counter()
    try:
        return compile_(self, sig)
    finally:
        loads.setdefault(current[0], {})[self.py_func.__name__] = time.perf_counter() - t0
numba.core.dispatcher.Dispatcher.compile = timed_compile
def phase(cls, name, label, following):
    method = getattr(cls, name)
    def wrapped(*args, **kwargs):
        result = method(*args, **kwargs)
        t[label] = time.perf_counter()
        current[0] = following
        return result
    setattr(cls, name, wrapped)
for cls, name, label, following in [(Word2Vec, "scan_vocab", "counting", "vocabulary"),
                                    (Word2Vec, "prepare_vocab", "vocabulary", "tables"),
                                    (Word2Vec, "prepare_weights", "tables", "train (all epochs)"),
                                    (Word2Vec, "train", "train (all epochs)", "save .bin"),
                                    (KeyedVectors, "save_word2vec_format", "save .bin", "rest of the command")]:
    phase(cls, name, label, following)
current[0] = "counting"
main = cli.main
def marked_main(*args, **kwargs):
    status = main(*args, **kwargs)
    t["rest of the command"] = time.perf_counter()
    with open(marks, "w") as f:
        json.dump({"marks": t, "loads": loads}, f)
    return status
cli.main = marked_main
sys.argv = ["sparsemb"] + argv
cli.run()
"""

#: The phases in the order of the table; kernel loading is a row of its own, taken out of the others.
PHASES = ["interpreter start", "import sparsemb.cli", "imports", "kernels loaded", "counting", "vocabulary",
          "tables", "train (all epochs)", "save .bin", "rest of the command", "exit"]


def run_child(cmd, env, marks):
    """One profiled process: ({phase: seconds}, {kernel: load seconds}, peak RSS MiB)."""
    spawned = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    ended = time.perf_counter()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    with open(marks) as f:
        data = json.load(f)
    # perf_counter is the same clock in parent and child on Linux (CLOCK_MONOTONIC).
    phases, previous = {}, spawned
    for name, at in data["marks"].items():
        phases["interpreter start" if name == "started" else name] = at - previous
        previous = at
    phases["exit"] = ended - previous
    kernels = {}
    for where, loaded in data["loads"].items():
        phases[where] -= sum(loaded.values())
        kernels.update(loaded)
    phases["kernels loaded"] = sum(kernels.values())
    phases["whole process"] = ended - spawned
    return phases, kernels, usage.ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="a text file (default: the repeated wiki text of bench_word2vec)")
    parser.add_argument("--model", choices=("cbow", "skipgram"), default="cbow")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkout", action="append", metavar="DIR",
                        help="profile the sparsemb of this folder (PYTHONPATH=DIR); repeat to compare checkouts "
                             "in alternating rounds (default: the sparsemb this Python imports)")
    parser.add_argument("--kernels", action="store_true", help="also the load time of each cached kernel")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "sparsemb-bench"))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    corpus = args.corpus or make_corpus(args.cache, 4_000_000)[0]
    work = tempfile.mkdtemp(prefix="sparsemb-profile-")
    flags = {"--model": args.model, "--threads": args.threads, "--dim": FLAGS["vector_size"],
             "--window": FLAGS["window"], "--negative": FLAGS["negative"], "--min-count": FLAGS["min_count"],
             "--sample": FLAGS["sample"], "--epochs": FLAGS["epochs"]}
    checkouts = args.checkout or [None]
    runs = {}
    for c in checkouts:
        env = dict(os.environ)
        if c is not None:
            env["PYTHONPATH"] = os.path.abspath(c) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        marks = os.path.join(work, f"marks-{len(runs)}.json")
        cmd = [sys.executable, "-c", CHILD, marks, "train", corpus, "-o", os.path.join(work, "v.bin"), "--quiet"]
        cmd += [str(x) for kv in flags.items() for x in kv]
        runs[c] = (cmd, env, marks, [])
        package = subprocess.run([sys.executable, "-c", "import os, sparsemb; print(os.path.dirname(sparsemb.__file__))"],
                                 env=env, capture_output=True, text=True, check=True).stdout.strip()
        compileall.compile_dir(package, quiet=1)
        run_child(cmd, env, marks)  # compiles into the cache if it is cold: the rounds are warm
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for c, (cmd, env, marks, results) in runs.items():
            results.append(run_child(cmd, env, marks))
        load.append(os.getloadavg()[0])
    names = [os.path.basename(os.path.abspath(c)) if c else "seconds" for c in checkouts]
    columns = []
    for c in checkouts:
        results = runs[c][3]
        med = {p: statistics.median(r[0][p] for r in results) for p in PHASES + ["whole process"]}
        med["outside the training loop"] = med["whole process"] - med["train (all epochs)"]
        med["peak RSS (MiB)"] = statistics.median(r[2] for r in results)
        kernels = {k: statistics.median(r[1].get(k, 0.0) for r in results) for k in results[0][1]}
        columns.append((med, kernels))
    print(f"{args.model}, {FLAGS}, {args.threads} threads, corpus {corpus}, medians of {args.rounds} runs, "
          f"1-minute load average {min(load):.1f}-{max(load):.1f}", file=sys.stderr)
    rows = PHASES + ["whole process", "outside the training loop", "peak RSS (MiB)"]
    width = max(map(len, rows)) + 2
    if args.markdown:
        print("| phase | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for name in rows:
        cells = [f"{col[0][name]:.{0 if 'RSS' in name else 2}f}" for col in columns]
        print(f"| {name} | " + " | ".join(cells) + " |" if args.markdown
              else f"{name:{width}s}" + "".join(f"{x:>12s}" for x in cells))
    if args.kernels:
        kernels = sorted({k for col in columns for k in col[1]}, key=lambda k: -columns[0][1].get(k, 0.0))
        if args.markdown:
            print("\n| kernel (first call: cache load) | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
        for k in kernels:
            cells = [f"{col[1][k] * 1e3:.1f} ms" if k in col[1] else "-" for col in columns]
            print(f"| {k} | " + " | ".join(cells) + " |" if args.markdown
                  else f"{k:{width}s}" + "".join(f"{x:>12s}" for x in cells))


if __name__ == "__main__":
    main()
