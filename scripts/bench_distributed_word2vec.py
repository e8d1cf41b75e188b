"""Data-parallel and deterministic word2vec against the single-process (Hogwild) run: quality and speed.

For every seed and model: sparsemb's usual run (``workers`` threads, Hogwild), ``deterministic=True``
in one process, and the data-parallel run on a Dask ``LocalCluster`` of 2 worker processes (one
thread each), for each ``--sync-words``. Quality with scripts/compare_gensim.py's evaluator and
corpus (WordSim353 and SimLex-999 Spearman, analogy accuracy); speed as training words/s of each
run (whole ``train()``; on the cluster that includes the merges and their transfers).

    python scripts/bench_distributed_word2vec.py                       # sg and cbow, seeds 1 2 3
    python scripts/bench_distributed_word2vec.py --sync-words 4096 16384 65536 --models sg

Requires gensim (test data) and dask[distributed]: ``pip install "sparsemb[compare]"``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_gensim  # noqa: E402


def run(corpus, flags, seed, **options):
    from sparsemb.word2vec import Word2Vec

    t0 = time.perf_counter()
    model = Word2Vec(corpus_file=corpus, seed=seed, quiet=True, **flags, **options)
    seconds = time.perf_counter() - t0
    return compare_gensim.score(model.wv), model.train_words / model.train_seconds, seconds


def speed(corpus, flags, rounds, client, sync_words):
    """Interleaved rounds of train() alone (vocabulary built once): wall and CPU seconds of this
    process for Hogwild, deterministic and the 2-worker cluster (whose CPU is in the workers)."""
    from sparsemb.word2vec import Word2Vec

    kinds = {"hogwild": {}, "deterministic": {"deterministic": True}, "2 Dask workers": {"client": client}}
    models = {}
    for name, options in kinds.items():
        m = Word2Vec(seed=1, quiet=True, sync_words=sync_words, workers=1 if "client" in options else 2,
                     **flags, **options)
        m.build_vocab(corpus_file=corpus)
        models[name] = m
    times = {name: [] for name in kinds}
    for _ in range(rounds):
        for name, m in models.items():
            w0, c0 = time.perf_counter(), time.process_time()
            m.train(corpus_file=corpus, total_examples=m.corpus_count, epochs=1)
            times[name].append((time.perf_counter() - w0, time.process_time() - c0))
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="text file, one sentence per line (default: gensim's shortened wiki)")
    parser.add_argument("--models", nargs="+", choices=("sg", "cbow"), default=["sg", "cbow"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--sync-words", nargs="+", type=int, default=[1 << 14])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="threads of the one-process runs")
    parser.add_argument("--speed-rounds", type=int, default=0,
                        help="then this many interleaved rounds of one epoch each, for speed (skip-gram)")
    parser.add_argument("--no-quality", action="store_true", help="only the speed rounds")
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    corpus = args.corpus or compare_gensim.wiki_text(os.path.join(tempfile.gettempdir(), "sparsemb-wiki-shortened.txt"))
    base = dict(vector_size=100, window=5, negative=5, min_count=5, sample=1e-3, epochs=args.epochs)
    print(f"corpus {corpus}; dim 100, window 5, negative 5, min_count 5, epochs {args.epochs}; seeds {args.seeds}; "
          f"one process: {args.workers} threads; cluster: LocalCluster(n_workers=2, threads_per_worker=1)")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        rows = []
        for model in [] if args.no_quality else args.models:
            flags = dict(base, sg=int(model == "sg"))
            runs = {"hogwild": dict(workers=args.workers)}
            for sw in args.sync_words:
                runs[f"deterministic, sync {sw}"] = dict(workers=args.workers, deterministic=True, sync_words=sw)
                runs[f"2 Dask workers, sync {sw}"] = dict(workers=1, client=client, sync_words=sw)
            results = {name: [] for name in runs}
            for seed in args.seeds:
                for name, options in runs.items():  # interleaved: one seed of every kind, then the next
                    results[name].append(run(corpus, flags, seed, **options))
                    print(f"  {model} seed {seed} {name}: {results[name][-1]}", file=sys.stderr)
            ref = results["hogwild"]
            for name, res in results.items():
                mean = {m: statistics.mean(r[0][m] for r in res) for m in compare_gensim.METRICS}
                gap = {m: mean[m] - statistics.mean(r[0][m] for r in ref) for m in compare_gensim.METRICS}
                ratio = statistics.median(r[1] for r in res) / statistics.median(r[1] for r in ref)
                rows.append((model, name, mean, gap, statistics.median(r[1] for r in res), ratio))
        if args.speed_rounds:
            times = speed(corpus, dict(base, sg=1), args.speed_rounds, client, args.sync_words[0])
    if args.speed_rounds:
        print(f"speed: skip-gram, one epoch, {args.speed_rounds} interleaved rounds, sync_words {args.sync_words[0]}; "
              "median seconds of train(); CPU of this process (the cluster's work is in its workers)")
        print("| run | wall s | vs hogwild | CPU s (this process) | CPU vs hogwild |")
        print("|---|---:|---:|---:|---:|")
        ref = [statistics.median(t[i] for t in times["hogwild"]) for i in (0, 1)]
        for name, ts in times.items():
            wall, cpu = (statistics.median(t[i] for t in ts) for i in (0, 1))
            print(f"| {name} | {wall:.2f} | {wall / ref[0]:.2f}x | {cpu:.2f} | {cpu / ref[1]:.2f}x |")
    if not rows:
        return
    print("| model | run | WS353 | SL999 | analogy % | vs hogwild WS / SL / analogy | train words/s "
          "| speed vs hogwild |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    for model, name, mean, gap, wps, ratio in rows:
        print(f"| {model} | {name} | {mean['wordsim353']:.3f} | {mean['simlex999']:.3f} | {mean['analogy']:.2f} | "
              f"{gap['wordsim353']:+.3f} / {gap['simlex999']:+.3f} / {gap['analogy']:+.2f} | {wps:,.0f} | "
              f"{ratio:.2f}x |")


if __name__ == "__main__":
    main()
