"""Quality of sparsemb's word2vec against gensim's and fastText's, trained with the same flags on the same corpus.

All models are scored by the SAME evaluator (sparsemb.word2vec.KeyedVectors, whose definitions are
gensim's, built from each program's words and input vectors): WordSim353 and SimLex-999 Spearman, questions-words accuracy (gensim's test data). The
default corpus is the text of the shortened Wikipedia dump in gensim's test data, extracted with
gensim's WikiCorpus (lower-cased tokens, one article per line); ``--corpus`` takes any text file with
one sentence per line, such as the 5.9M-token dictionary corpus that scripts/real_corpus.py writes from
Debian's dict-gcide and dict-wn packages.

gensim is trained in both its modes: ``Word2Vec(LineSentence(path))`` (the Python reader; "gensim" in
``--impls``) and ``Word2Vec(corpus_file=path)`` (its C-level reader, "gensim-file"). They differ: each
corpus_file worker reads its own byte range of the file, and the learning rate decays per worker.

fastText (the ``fasttext-wheel`` or ``fasttext`` package) is optional and left out, with a note, when
it is not installed. It runs without character n-grams (``minn=0, maxn=0, bucket=0``: plain word2vec)
at gensim's learning rate (``lr=0.025``) and the same flags under its own names.

    python scripts/compare_gensim.py                      # skip-gram and CBOW, seeds 1 2 3
    python scripts/compare_gensim.py --models sg --output results.md
    python scripts/compare_gensim.py --hs 1 --negative 0          # hierarchical softmax
    python scripts/compare_gensim.py --impls gensim sparsemb      # without fastText
    python scripts/real_corpus.py /tmp/dict-corpus.txt            # a real corpus of 5.9M tokens
    nice -n 19 python scripts/compare_gensim.py --corpus /tmp/dict-corpus.txt --fasttext-seeds 1 \
        --output results.md --runs results.json

Requires gensim (``pip install sparsemb[compare]``); fastText optional (``pip install fasttext-wheel``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time

import numpy as np


def test_data():
    import gensim

    return os.path.join(os.path.dirname(gensim.__file__), "test", "test_data")


def wiki_text(path):
    """Extract the shortened Wikipedia dump to ``path`` (one article per line) unless it exists."""
    if os.path.exists(path):
        return path
    from gensim.corpora import WikiCorpus

    dump = os.path.join(test_data(), "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    wiki = WikiCorpus(dump, dictionary={}, processes=1)
    with open(path + ".part", "w", encoding="utf-8") as f:
        for tokens in wiki.get_texts():
            f.write(" ".join(tokens) + "\n")
    os.replace(path + ".part", path)
    return path


def score(wv):
    """WordSim353 and SimLex-999 Spearman, questions-words accuracy (percent), with sparsemb's evaluator."""
    d = test_data()
    ws = wv.evaluate_word_pairs(os.path.join(d, "wordsim353.tsv"))[1][0]
    sl = wv.evaluate_word_pairs(os.path.join(d, "simlex999.txt"))[1][0]
    acc = wv.evaluate_word_analogies(os.path.join(d, "questions-words.txt"))[0]
    return {"wordsim353": float(ws), "simlex999": float(sl), "analogy": 100.0 * float(acc)}


def train_gensim(corpus, flags, seed, corpus_file=False):
    """gensim's Word2Vec on ``LineSentence(corpus)``, or with ``corpus_file=corpus`` (its C-level reader)."""
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    from sparsemb.word2vec import KeyedVectors

    t0 = time.perf_counter()
    if corpus_file:
        model = Word2Vec(corpus_file=corpus, seed=seed, **flags)
    else:
        model = Word2Vec(LineSentence(corpus), seed=seed, **flags)
    seconds = time.perf_counter() - t0
    return KeyedVectors.from_arrays(model.wv.vectors, model.wv.index_to_key), seconds


def train_sparsemb(corpus, flags, seed, **options):
    from sparsemb.word2vec import Word2Vec

    t0 = time.perf_counter()
    model = Word2Vec(corpus_file=corpus, seed=seed, quiet=True, **flags, **options)
    return model.wv, time.perf_counter() - t0


def train_sparsemb_cf_alpha(corpus, flags, seed, **options):
    """sparsemb with the learning rate of gensim's ``corpus_file`` mode (a diagnostic, not a default).

    In that mode each of gensim's W workers reads 1/W of the file but measures its progress against
    the whole corpus (word2vec_corpusfile.pyx, ``get_next_alpha``): in epoch ``e`` of ``E`` the rate
    falls from its value at ``e / E`` of the run to its value at ``(e + 1/W) / E`` only, and jumps back
    up at the next epoch. Here that schedule is one ``train(epochs=1, start_alpha, end_alpha)`` call
    per epoch.
    """
    from sparsemb.word2vec import Word2Vec

    epochs, workers = flags["epochs"], flags["workers"]
    alpha, min_alpha = 0.025, 0.0001

    def rate(progress):
        return max(min_alpha, alpha - (alpha - min_alpha) * progress)

    t0 = time.perf_counter()
    model = Word2Vec(seed=seed, quiet=True, **flags, **options)
    model.build_vocab(corpus_file=corpus)
    for e in range(epochs):
        model.train(corpus_file=corpus, total_words=model.corpus_total_words, epochs=1,
                    start_alpha=rate(e / epochs), end_alpha=rate((e + 1 / workers) / epochs))
    return model.wv, time.perf_counter() - t0


#: Set when the installed fastText ignored the seed (its own fixed seed was used; runs then differ only
#: by thread timing).
FASTTEXT_UNSEEDED = [False]


def train_fasttext(corpus, flags, seed):
    import fasttext

    from sparsemb.word2vec import KeyedVectors

    kwargs = dict(model="skipgram" if flags["sg"] else "cbow", loss="hs" if flags["hs"] else "ns", lr=0.025,
                  dim=flags["vector_size"], ws=flags["window"], neg=flags["negative"], minCount=flags["min_count"],
                  t=flags["sample"], epoch=flags["epochs"], thread=flags["workers"],
                  minn=0, maxn=0, wordNgrams=1, bucket=0, verbose=0)
    t0 = time.perf_counter()
    try:
        model = fasttext.train_unsupervised(corpus, seed=seed, **kwargs)
    except TypeError as e:  # fasttext 0.9.2's train_unsupervised takes no seed (it checks before training)
        if "seed" not in str(e):
            raise
        FASTTEXT_UNSEEDED[0] = True
        t0 = time.perf_counter()
        model = fasttext.train_unsupervised(corpus, **kwargs)
    seconds = time.perf_counter() - t0
    return KeyedVectors.from_arrays(model.get_input_matrix(), model.get_words()), seconds


METRICS = ("wordsim353", "simlex999", "analogy")
IMPLS = ("gensim", "gensim-file", "sparsemb", "fasttext", "sparsemb-cf-alpha")
LABELS = {"gensim": "gensim LineSentence", "gensim-file": "gensim corpus_file", "sparsemb": "sparsemb",
          "fasttext": "fastText", "sparsemb-cf-alpha": "sparsemb, corpus_file's alpha"}
#: Trained unless --impls says otherwise (the last is a diagnostic).
DEFAULT_IMPLS = IMPLS[:4]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="text file, one sentence per line (default: gensim's shortened wiki)")
    parser.add_argument("--models", nargs="+", choices=("sg", "cbow"), default=["sg", "cbow"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--negative", type=int, default=5, help="noise words (0: none, with --hs 1)")
    parser.add_argument("--hs", type=int, choices=(0, 1), default=0, help="1: hierarchical softmax")
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--sample", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shared-negatives", action=argparse.BooleanOptionalAction, default=True,
                        help="sparsemb skip-gram with one set of noise words per centre word (sparsemb's "
                             "default); --no-shared-negatives samples per pair as gensim does")
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(DEFAULT_IMPLS),
                        help="what to train (default: all but sparsemb-cf-alpha; fasttext is left out when not "
                             "installed; gensim is its LineSentence mode, gensim-file its corpus_file mode; "
                             "sparsemb-cf-alpha is sparsemb with the learning rate of gensim's corpus_file mode)")
    parser.add_argument("--fasttext-seeds", nargs="+", type=int,
                        help="fastText's seeds (default: --seeds); fastText 0.9.2 ignores the seed, so one run "
                             "saves time on a large corpus")
    parser.add_argument("--output", help="also write the results: .json (all runs) or .md (the tables)")
    parser.add_argument("--runs", help="a .json file rewritten after every run with the runs so far "
                                       "(partial results of a long run)")
    args = parser.parse_args(argv)

    impls = [i for i in IMPLS if i in args.impls]
    notes = []
    if "fasttext" in impls and importlib.util.find_spec("fasttext") is None:
        impls.remove("fasttext")
        notes.append("fastText: not installed (`pip install fasttext-wheel`), so not measured.")
        print(notes[-1], file=sys.stderr)
    if not impls:
        parser.error("nothing to train: fastText is not installed")
    trainers = {"gensim": train_gensim, "fasttext": train_fasttext,
                "gensim-file": lambda *a: train_gensim(*a, corpus_file=True),
                "sparsemb": lambda *a: train_sparsemb(*a, shared_negatives=args.shared_negatives),
                "sparsemb-cf-alpha": lambda *a: train_sparsemb_cf_alpha(*a, shared_negatives=args.shared_negatives)}
    corpus = args.corpus or wiki_text(os.path.join(tempfile.gettempdir(), "sparsemb-wiki-shortened.txt"))
    n_tokens = sum(len(line.split()) for line in open(corpus, encoding="utf-8"))
    print(f"corpus {corpus}: {n_tokens} tokens", file=sys.stderr)
    runs = []
    for name in args.models:
        flags = dict(sg=int(name == "sg"), vector_size=args.dim, window=args.window, hs=args.hs, negative=args.negative,
                     min_count=args.min_count, sample=args.sample, epochs=args.epochs, workers=args.workers)
        for seed in args.seeds:
            for impl in impls:
                if impl == "fasttext" and args.fasttext_seeds is not None and seed not in args.fasttext_seeds:
                    continue
                wv, seconds = trainers[impl](corpus, flags, seed)
                run = dict(model=name, impl=impl, seed=seed, seconds=seconds, vocabulary=len(wv), **score(wv))
                runs.append(run)
                print(json.dumps(run), file=sys.stderr)
                if args.runs:
                    write_runs(args.runs, runs)

    if FASTTEXT_UNSEEDED[0]:
        notes.append("fastText: this version's train_unsupervised takes no seed, so every fastText run used "
                     "its fixed seed 0; with more than one thread its runs still differ (thread timing).")
    vocab = sorted({r["vocabulary"] for r in runs if r["impl"] != "fasttext"})
    lines = [f"corpus: {os.path.basename(corpus)} ({n_tokens} tokens; vocabulary {'/'.join(map(str, vocab))} at "
             f"min_count {args.min_count}); dim {args.dim}, window {args.window}, "
             f"hs {args.hs}, negative {args.negative}, min_count {args.min_count}, sample {args.sample}, epochs {args.epochs}, "
             f"workers {args.workers}; sparsemb skip-gram {'shared' if args.shared_negatives else 'per-pair'} negatives; seeds {' '.join(map(str, args.seeds))}"
             + (f" (fastText {' '.join(map(str, args.fasttext_seeds))})" if args.fasttext_seeds and "fasttext" in impls else "")
             + "; mean of seeds",
             ""] + [n + "\n" for n in notes] + [
             "| model | implementation | WordSim353 ρ | SimLex-999 ρ | analogy % | train s |",
             "|---|---|---|---|---|---|"]
    for name in args.models:
        means = {}
        for impl in impls:
            sel = [r for r in runs if r["model"] == name and r["impl"] == impl]
            means[impl] = {k: float(np.mean([r[k] for r in sel])) for k in METRICS + ("seconds",)}
            m = means[impl]
            lines.append(f"| {name} | {LABELS[impl]} | {m['wordsim353']:.4f} | {m['simlex999']:.4f} | "
                         f"{m['analogy']:.2f} | {m['seconds']:.1f} |")
        for ours in [i for i in ("sparsemb", "sparsemb-cf-alpha") if i in impls]:
            for other in [i for i in impls if not i.startswith("sparsemb")]:
                diff = {k: means[ours][k] - means[other][k] for k in METRICS}
                lines.append(f"| {name} | {LABELS[ours]} − {LABELS[other]} | {diff['wordsim353']:+.4f} | "
                             f"{diff['simlex999']:+.4f} | {diff['analogy']:+.2f} | |")
    lines += ["", "Per seed (spread): WordSim353 ρ / SimLex-999 ρ / analogy %", "",
              "| model | implementation | " + " | ".join(f"seed {s}" for s in args.seeds) + " |",
              "|---|---|" + "---|" * len(args.seeds)]
    for name in args.models:
        for impl in impls:
            cells = []
            for seed in args.seeds:
                sel = [r for r in runs if r["model"] == name and r["impl"] == impl and r["seed"] == seed]
                cells.append(" / ".join(f"{sel[0][k]:.{2 if k == 'analogy' else 3}f}" for k in METRICS) if sel else "")
            lines.append(f"| {name} | {LABELS[impl]} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            if args.output.endswith(".json"):
                json.dump({"argv": sys.argv[1:], "runs": runs}, f, indent=1)
            else:
                f.write(table + "\n")


def write_runs(path, runs):
    with open(path + ".part", "w", encoding="utf-8") as f:
        json.dump({"argv": sys.argv[1:], "runs": runs}, f, indent=1)
    os.replace(path + ".part", path)


if __name__ == "__main__":
    main()
