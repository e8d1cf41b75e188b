"""The ``sparsemb`` command line: train, similar, analogy, evaluate, demo.

Bad input ends with one line on stderr and a non-zero exit, never a traceback: usage errors (a bad
number, a missing argument) exit 2 naming the flag, bad files or words exit 1 naming them. Output files
are written under a temporary name and renamed, so a failed run leaves nothing behind.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__

_FORMATS = {".bin": "binary", ".txt": "text", ".vec": "text", ".npz": "model"}


def _number(kind, low, strict):
    """argparse type: ``kind`` (int or float) that is > low (strict) or >= low."""
    what = f"{'an integer' if kind is int else 'a number'} {'>' if strict else '>='} {low:g}"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


_POS_INT = _number(int, 1, strict=False)
_NONNEG_INT = _number(int, 0, strict=False)
_POS_FLOAT = _number(float, 0, strict=True)
_NONNEG_FLOAT = _number(float, 0, strict=False)


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
    train.add_argument("--dim", type=_POS_INT, default=100, help="vector size (default 100)")
    train.add_argument("--window", type=_POS_INT, default=5, help="context window (default 5)")
    train.add_argument("--negative", type=_POS_INT, default=5, help="noise words per example (default 5)")
    train.add_argument("--min-count", type=_NONNEG_INT, default=5, help="ignore rarer words (default 5)")
    train.add_argument("--sample", type=_NONNEG_FLOAT, default=1e-3, help="subsampling threshold (default 1e-3)")
    train.add_argument("--epochs", type=_POS_INT, default=5, help="passes over the corpus (default 5)")
    train.add_argument("--alpha", type=_POS_FLOAT, default=0.025, help="initial learning rate (default 0.025)")
    train.add_argument("--min-alpha", type=_NONNEG_FLOAT, default=1e-4, help="final learning rate (default 1e-4)")
    train.add_argument("--threads", type=_POS_INT, default=None, help="worker threads (default: all cores)")
    train.add_argument("--optimizer", choices=("sgd", "adagrad"), default="sgd")
    train.add_argument("--seed", type=int, default=1)
    train.add_argument("--shared-negatives", action=argparse.BooleanOptionalAction, default=True,
                       help="skip-gram: one set of noise words per centre word, shared by its context words "
                            "(faster; Ji et al. 2016); --no-shared-negatives samples per pair as gensim")
    train.add_argument("--max-vocab", type=_POS_INT, default=None, metavar="N",
                       help="prune rare words while counting beyond N distinct words (gensim's max_vocab_size)")
    train.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    similar = sub.add_parser("similar", help="nearest neighbours of words")
    similar.add_argument("vectors", metavar="VECTORS", help="a .bin, .txt/.vec or .npz file")
    similar.add_argument("words", metavar="WORD", nargs="+")
    similar.add_argument("-n", "--topn", type=_POS_INT, default=10, help="neighbours per word (default 10)")

    analogy = sub.add_parser("analogy", help="A is to B as C is to ?")
    analogy.add_argument("vectors", metavar="VECTORS")
    analogy.add_argument("a", metavar="A")
    analogy.add_argument("b", metavar="B")
    analogy.add_argument("c", metavar="C")
    analogy.add_argument("-n", "--topn", type=_POS_INT, default=5, help="answers to show (default 5)")

    evaluate = sub.add_parser("evaluate", help="score vectors on analogy and word-pair benchmarks")
    evaluate.add_argument("vectors", metavar="VECTORS")
    evaluate.add_argument("--analogies", metavar="FILE", help="questions-words format")
    evaluate.add_argument("--pairs", metavar="FILE", help="tab-separated: word, word, human score")

    demo = sub.add_parser("demo", help="train on a generated language and check its planted analogies")
    demo.add_argument("--model", choices=("cbow", "skipgram", "both"), default="both")
    demo.add_argument("--dim", type=_POS_INT, default=50)
    demo.add_argument("--epochs", type=_POS_INT, default=10)
    demo.add_argument("--threads", type=_POS_INT, default=None)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--dir", default=None, help="keep the corpus, analogies and vectors in this directory")
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
    from .word2vec import Word2Vec
    from .word2vec.model import VocabularyError

    kind = _FORMATS.get(os.path.splitext(args.output)[1].lower())
    if kind is None:
        parser.error(f"argument -o/--output: must end in .bin, .txt, .vec or .npz, got {args.output!r}")
    directory = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"output directory does not exist: {directory}")
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
    if kind == "model":
        model.save(args.output)
    else:
        model.wv.save_word2vec_format(args.output, binary=kind == "binary")
    if not args.quiet:
        print(f"wrote {len(model.wv)} vectors of dimension {model.vector_size} to {args.output} "
              f"(last epoch loss {model.get_latest_training_loss():.4f}; trained on {model.train_words} words "
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
        for s in sections:
            right, n = len(s["correct"]), len(s["correct"]) + len(s["incorrect"])
            if n:
                print(f"{s['section']}: {100 * right / n:.1f}% ({right}/{n})")
        print(f"analogy accuracy: {100 * score:.2f}%")
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
                 directory=args.dir, quiet=args.quiet)


_COMMANDS = {"train": _train, "similar": _similar, "analogy": _analogy, "evaluate": _evaluate, "demo": _demo}


def main(argv=None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    sub = parser._subparsers._group_actions[0].choices[args.command]
    try:
        _COMMANDS[args.command](args, sub)
    except (OSError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        if isinstance(err, OSError) and err.filename and str(err.filename) not in str(message):
            message = f"{err.strerror}: {err.filename}"
        print(f"sparsemb {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sparsemb {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
