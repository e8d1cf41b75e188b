"""The ``sparsemb`` command line: train, similar, analogy, evaluate, demo.

Bad input ends with one line on stderr and a non-zero exit, never a traceback: usage errors (a bad
number, a missing argument) exit 2 naming the flag, bad files or words exit 1 naming them. Output files
are written under a temporary name and renamed, so a failed run leaves nothing behind.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys

from . import __version__
from ._limits import MAX_NEGATIVE, MAX_SENTENCE_LENGTH, MAX_WINDOW

_FORMATS = {".bin": "binary", ".txt": "text", ".vec": "text", ".npz": "model"}


def _number(kind, low, strict=False, high=None, why=""):
    """argparse type: a finite ``kind`` (int or float) > low (strict) or >= low, and <= high if given.

    ``why`` says why the upper bound is there; it ends the error message.
    """
    what = f"{'an integer' if kind is int else 'a number'} {'>' if strict else '>='} {low:g}"
    if high is not None:
        what += f" and <= {high:g}"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low) or (
                high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}{why}")
        return value

    return parse


#: Above any count a run could reach: keeps integers inside the kernels' 64-bit arithmetic.
_BIG = 2**62
_COUNT = _number(int, 0, high=_BIG)
_SEED = _number(int, 0, high=2**64 - 1)
_DIM = _number(int, 1, high=_BIG)
_WINDOW = _number(int, 1, high=MAX_WINDOW, why=f" (sentences are cut at {MAX_SENTENCE_LENGTH} tokens)")
_NEGATIVE = _number(int, 1, high=MAX_NEGATIVE, why=" (each costs a row update; word2vec uses 5-20)")
_EPOCHS = _number(int, 1, high=1_000_000)
_TOPN = _number(int, 1, high=_BIG)
_MAX_VOCAB = _number(int, 1, high=_BIG)
_THREADS = _number(int, 1, high=1024)
_SAMPLE = _number(float, 0)
_ALPHA = _number(float, 0, strict=True)
_MIN_ALPHA = _number(float, 0)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit status 2), not the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sparsemb",
        description="Train embedding tables with sparse, lazy updates on the CPU.",
    )
    parser.add_argument("--version", action="version", version=f"sparsemb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train word2vec on a text file",
                           description="Train word2vec (negative sampling) on a text file with one "
                                       "sentence per line. Defaults are gensim's.")
    train.add_argument("corpus", metavar="CORPUS", help="UTF-8 text, one sentence per line")
    train.add_argument("-o", "--output", required=True, metavar="OUT",
                       help="OUT.bin: word2vec binary; OUT.txt or OUT.vec: word2vec text; OUT.npz: full model")
    train.add_argument("--model", choices=("cbow", "skipgram"), default="cbow")
    train.add_argument("--dim", type=_DIM, default=100, help="vector size (default 100)")
    train.add_argument("--window", type=_WINDOW, default=5, help="context window (default 5)")
    train.add_argument("--negative", type=_NEGATIVE, default=5, help="noise words per example (default 5)")
    train.add_argument("--min-count", type=_COUNT, default=5, help="ignore rarer words (default 5)")
    train.add_argument("--sample", type=_SAMPLE, default=1e-3, help="subsampling threshold (default 1e-3)")
    train.add_argument("--epochs", type=_EPOCHS, default=5, help="passes over the corpus (default 5)")
    train.add_argument("--alpha", type=_ALPHA, default=0.025, help="initial learning rate (default 0.025)")
    train.add_argument("--min-alpha", type=_MIN_ALPHA, default=1e-4, help="final learning rate (default 1e-4)")
    train.add_argument("--threads", type=_THREADS, default=None, help="worker threads (default: all cores)")
    train.add_argument("--optimizer", choices=("sgd", "adagrad"), default="sgd")
    train.add_argument("--seed", type=_SEED, default=1)
    train.add_argument("--shared-negatives", action=argparse.BooleanOptionalAction, default=True,
                       help="skip-gram: one set of noise words per centre word, shared by its context words "
                            "(faster; Ji et al. 2016); --no-shared-negatives samples per pair as gensim")
    train.add_argument("--max-vocab", type=_MAX_VOCAB, default=None, metavar="N",
                       help="prune rare words while counting beyond N distinct words (gensim's max_vocab_size)")
    train.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    similar = sub.add_parser("similar", help="nearest neighbours of words")
    similar.add_argument("vectors", metavar="VECTORS", help="a .bin, .txt/.vec or .npz file")
    similar.add_argument("words", metavar="WORD", nargs="+")
    similar.add_argument("-n", "--topn", type=_TOPN, default=10, help="neighbours per word (default 10)")

    analogy = sub.add_parser("analogy", help="A is to B as C is to ?")
    analogy.add_argument("vectors", metavar="VECTORS")
    analogy.add_argument("a", metavar="A")
    analogy.add_argument("b", metavar="B")
    analogy.add_argument("c", metavar="C")
    analogy.add_argument("-n", "--topn", type=_TOPN, default=5, help="answers to show (default 5)")

    evaluate = sub.add_parser("evaluate", help="score vectors on analogy and word-pair benchmarks")
    evaluate.add_argument("vectors", metavar="VECTORS")
    evaluate.add_argument("--analogies", metavar="FILE", help="questions-words format")
    evaluate.add_argument("--pairs", metavar="FILE", help="tab-separated: word, word, human score")

    demo = sub.add_parser("demo", help="train on a generated language and check its planted analogies")
    demo.add_argument("--model", choices=("cbow", "skipgram", "both"), default="both")
    demo.add_argument("--dim", type=_DIM, default=50)
    demo.add_argument("--epochs", type=_EPOCHS, default=10)
    demo.add_argument("--threads", type=_THREADS, default=None)
    demo.add_argument("--seed", type=_SEED, default=1)
    demo.add_argument("--dir", default=None, help="keep the corpus, analogies and vectors in this directory")
    demo.add_argument("--force", action="store_true",
                      help="replace corpus.txt, analogies.txt and vectors.bin if --dir has them")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _vector_format(path):
    return _FORMATS.get(os.path.splitext(path)[1].lower(), "text")


def _load_vectors(path):
    from .word2vec import KeyedVectors, Word2Vec

    if not os.path.isfile(path):
        raise FileNotFoundError(f"vectors file not found: {path}")
    kind = _vector_format(path)
    if kind == "model":
        return Word2Vec.load(path).wv
    return KeyedVectors.load_word2vec_format(path, binary=kind == "binary")


def _check_words(wv, path, words):
    for word in words:
        if word not in wv:
            raise KeyError(f"word {word!r} is not in the vocabulary of {path}")


def _train(args, parser):
    import numpy as np

    from . import _io
    from .word2vec import Word2Vec
    from .word2vec.model import VocabularyError

    kind = _FORMATS.get(os.path.splitext(args.output)[1].lower())
    if kind is None:
        parser.error(f"argument -o/--output: must end in .bin, .txt, .vec or .npz, got {args.output!r}")
    # Before the corpus is read: a run must not end in an output it cannot write.
    _io.check_output(args.output, inputs=[args.corpus])
    try:
        model = Word2Vec(corpus_file=args.corpus, sg=int(args.model == "skipgram"), vector_size=args.dim,
                         window=args.window, negative=args.negative, min_count=args.min_count,
                         sample=args.sample, epochs=args.epochs, alpha=args.alpha, min_alpha=args.min_alpha,
                         workers=args.threads, optimizer=args.optimizer, seed=args.seed,
                         max_vocab_size=args.max_vocab, shared_negatives=args.shared_negatives, quiet=args.quiet)
    except VocabularyError as err:
        if err.min_count is None:
            raise ValueError(f"corpus {args.corpus} is empty") from None
        raise ValueError(f"no word in {args.corpus} occurs --min-count={err.min_count} times (the most "
                         f"frequent occurs {err.max_count}); lower --min-count") from None
    if not np.isfinite(model.epoch_losses[-1]) or not np.isfinite(model.wv.vectors).all():
        raise ValueError(f"training diverged (the vectors are not finite) with --alpha {args.alpha}; "
                         f"lower it; nothing was written")
    if kind == "model":
        model.save(args.output)
    else:
        model.wv.save_word2vec_format(args.output, binary=kind == "binary")
    if not args.quiet:
        print(f"wrote {len(model.wv)} vectors of dimension {model.vector_size} to {args.output} "
              f"(last epoch loss {model.epoch_losses[-1]:.4f}; trained on {model.train_words} words "
              f"in {model.train_seconds:.2f} s, {model.train_words / model.train_seconds:.0f} words/s)")


def _similar(args, parser):
    wv = _load_vectors(args.vectors)
    _check_words(wv, args.vectors, args.words)
    for word in args.words:
        print(f"{word}:")
        for other, sim in wv.most_similar(word, topn=args.topn):
            print(f"  {other}\t{sim:.4f}")


def _analogy(args, parser):
    wv = _load_vectors(args.vectors)
    _check_words(wv, args.vectors, (args.a, args.b, args.c))
    print(f"{args.a} is to {args.b} as {args.c} is to:")
    for word, sim in wv.most_similar(positive=[args.b, args.c], negative=[args.a], topn=args.topn):
        print(f"  {word}\t{sim:.4f}")


def _evaluate(args, parser):
    if not args.analogies and not args.pairs:
        parser.error("give --analogies FILE and/or --pairs FILE")
    for path in (args.analogies, args.pairs):
        if path and not os.path.isfile(path):
            raise FileNotFoundError(f"evaluation file not found: {path}")
    wv = _load_vectors(args.vectors)
    if args.analogies:
        score, sections = wv.evaluate_word_analogies(args.analogies)
        total = sections[-1]
        if not total["correct"] and not total["incorrect"]:
            raise ValueError(f"no analogy in {args.analogies} could be scored: every question has a word "
                             f"outside the vocabulary of {args.vectors}")
        for s in sections[:-1]:
            right, n = len(s["correct"]), len(s["correct"]) + len(s["incorrect"])
            if n:
                print(f"{s['section']}: {100 * right / n:.1f}% ({right}/{n})")
        print(f"analogy accuracy: {100 * score:.2f}% ({len(total['correct'])}/"
              f"{len(total['correct']) + len(total['incorrect'])})")
    if args.pairs:
        pearson, spearman, oov = wv.evaluate_word_pairs(args.pairs)
        print(f"pairs: Spearman {spearman[0]:.4f}, Pearson {pearson[0]:.4f}, out of vocabulary {oov:.1f}%")


def _demo(args, parser):
    from .word2vec.demo import run_demo

    if args.dir and not os.path.isdir(args.dir):
        raise FileNotFoundError(f"directory does not exist: {args.dir}")
    models = {"cbow": [0], "skipgram": [1], "both": [1, 0]}[args.model]
    for sg in models:
        run_demo(sg=sg, vector_size=args.dim, epochs=args.epochs, workers=args.threads, seed=args.seed,
                 directory=args.dir, quiet=args.quiet, overwrite=args.force or sg != models[0])


_COMMANDS = {"train": _train, "similar": _similar, "analogy": _analogy, "evaluate": _evaluate, "demo": _demo}


class _Terminated(Exception):
    """SIGTERM, raised in the main thread so that a write in progress cleans up as on Ctrl-C."""


def _terminate(signum, frame):
    raise _Terminated()


def main(argv=None) -> int:
    """Run the command line; return the exit status."""
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (an embedding program): leave its handlers alone
        pass
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    sub = parser._subparsers._group_actions[0].choices[args.command]
    try:
        _COMMANDS[args.command](args, sub)
    except (OSError, ValueError, KeyError, MemoryError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        if isinstance(err, OSError) and err.strerror and err.filename:
            message = f"{err.strerror}: {err.filename}"
        print(f"sparsemb {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sparsemb {args.command}: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"sparsemb {args.command}: terminated", file=sys.stderr)
        return 143
    return 0


def run():
    """The console script: :func:`main`, with Ctrl-C while Python loads the package still one line."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.stderr.write("sparsemb: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    run()
