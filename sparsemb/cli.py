"""The ``sparsemb`` command line: train, similar, analogy, evaluate, demo, plot, export.

Bad input ends with one line on stderr and a non-zero exit, never a traceback: usage errors (a bad
number, a missing argument) exit 2 naming the flag, bad files or words exit 1 naming them. Output files
are written under a temporary name and renamed, so a failed run leaves nothing behind.
"""
from __future__ import annotations

import argparse
import contextlib
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
    limit = "" if high is None else f" and <= {high if kind is int else format(high, 'g')}"
    if high is not None and high < _BIG:  # a bound no one reaches is named only to whoever passes it
        what, limit = what + limit, ""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}{why}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be {what}{limit}, got {text!r}{why}")
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
_WORKERS = _number(int, 1, high=1024)
_SYNC_WORDS = _number(int, 1, high=_BIG)
_SAMPLE = _number(float, 0)
_ALPHA = _number(float, 0, strict=True)
_MIN_ALPHA = _number(float, 0)


def _pixels(text):
    """argparse type: WxH, each between 100 and 10000 pixels."""
    parts = text.lower().split("x")
    try:
        width, height = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        width = height = None
    if width is None or not (100 <= width <= 10000 and 100 <= height <= 10000):
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT in pixels, each 100 to 10000, got {text!r}")
    return width, height


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
    train.add_argument("--deterministic", action="store_true",
                       help="the same vectors bit for bit for any --threads or Dask cluster")
    train.add_argument("--sync-words", type=_SYNC_WORDS, default=None, metavar="N",
                       help="with --deterministic or a cluster: corpus tokens between merges "
                            f"(default {1 << 14})")
    train.add_argument("--storage", metavar="DIR",
                       help="keep the tables in memory-mapped files in DIR (for a vocabulary whose tables do "
                            "not fit in memory); DIR must not hold another model's")
    cluster = train.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="train data-parallel on this Dask cluster; the corpus must be at the same path on "
                              "every worker (needs sparsemb[distributed])")
    cluster.add_argument("--local-cluster", type=_WORKERS, metavar="N",
                         help="start a Dask LocalCluster of N worker processes (--threads each) and train on it")
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

    plot = sub.add_parser("plot", help="draw a labelled 2-D map of vectors, or a model's loss curve",
                          description="Draw the most frequent words (or given words and their neighbours) "
                                      "on a 2-D map (t-SNE of the cosine similarities), or with --loss a "
                                      "model's per-epoch loss. Needs the plot extra (matplotlib).")
    plot.add_argument("vectors", metavar="VECTORS", nargs="?", help="a .bin, .txt/.vec or .npz file")
    plot.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT.png, OUT.svg or OUT.pdf")
    plot.add_argument("--loss", metavar="MODEL", help="draw the per-epoch loss of MODEL (.npz) instead")
    plot.add_argument("--top", type=_TOPN, default=None, metavar="N",
                      help="the N most frequent words (default 300)")
    plot.add_argument("--words", metavar="A,B,C", help="these words, each with its --neighbours nearest")
    plot.add_argument("--neighbours", type=_COUNT, default=None, metavar="K",
                      help="neighbours drawn with each of --words (default 10)")
    plot.add_argument("--projection", choices=("tsne", "pca"), default="tsne",
                      help="tsne (default: keeps neighbours together) or pca (linear, global shape)")
    plot.add_argument("--size", type=_pixels, default=None, metavar="WxH",
                      help="image size in pixels (default: grows with the words; 900x540 for --loss)")

    export = sub.add_parser("export", help="write vectors for the TensorFlow Embedding Projector",
                            description="Write DIR/vectors.tsv and DIR/metadata.tsv, the pair "
                                        "projector.tensorflow.org loads (Load, then choose both files). "
                                        "metadata.tsv has the words' counts when VECTORS is a full model "
                                        "(.npz).")
    export.add_argument("vectors", metavar="VECTORS", help="a .bin, .txt/.vec or .npz file")
    export.add_argument("--projector", required=True, metavar="DIR",
                        help="directory for vectors.tsv and metadata.tsv (made if missing)")
    export.add_argument("--top", type=_TOPN, default=None, metavar="N", help="only the N most frequent words")
    export.add_argument("--force", action="store_true", help="replace vectors.tsv and metadata.tsv if DIR has them")
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
    replicas = {} if args.sync_words is None else {"sync_words": args.sync_words}
    try:
        with _dask_client(args) as client:
            model = Word2Vec(corpus_file=args.corpus, sg=int(args.model == "skipgram"), vector_size=args.dim,
                             window=args.window, negative=args.negative, min_count=args.min_count,
                             sample=args.sample, epochs=args.epochs, alpha=args.alpha, min_alpha=args.min_alpha,
                             workers=args.threads, optimizer=args.optimizer, seed=args.seed,
                             max_vocab_size=args.max_vocab, shared_negatives=args.shared_negatives,
                             quiet=args.quiet, deterministic=args.deterministic, client=client,
                             storage=args.storage, **replicas)
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
        from .word2vec.viz import loss_lines

        print("mean loss per epoch:")
        print("\n".join(loss_lines(model.epoch_losses)))
        print(f"wrote {len(model.wv)} vectors of dimension {model.vector_size} to {args.output} "
              f"(last epoch loss {model.epoch_losses[-1]:.4f}; trained on {model.train_words} words "
              f"in {model.train_seconds:.2f} s, {model.train_words / model.train_seconds:.0f} words/s)")


@contextlib.contextmanager
def _dask_client(args):
    """The Dask client of ``--scheduler`` or ``--local-cluster`` (closed after), or None."""
    if args.scheduler is None and args.local_cluster is None:
        yield None
        return
    flag = "--scheduler" if args.scheduler is not None else "--local-cluster"
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # the extra is not installed
        raise ValueError(f"{flag} needs Dask: pip install 'sparsemb[distributed]'") from None
    quiet = logging.ERROR if args.quiet else logging.WARNING
    logging.getLogger("distributed").setLevel(quiet)  # Dask's loggers are at INFO: a line per event
    if args.scheduler is not None:
        from distributed.comm import get_address_host_port

        try:  # before Client, which would spend its whole timeout on an address it cannot parse
            get_address_host_port(args.scheduler)
        except ValueError as err:
            raise ValueError(f"--scheduler {args.scheduler!r}: {err} (give HOST:PORT or tcp://HOST:PORT)") from None
        try:
            client = Client(args.scheduler, timeout=_CONNECT_SECONDS, set_as_default=False)
        except (OSError, ValueError, TypeError) as err:
            raise ConnectionError(f"cannot reach the Dask scheduler at {args.scheduler!r} ({err})") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=args.local_cluster, threads_per_worker=args.threads or 1, processes=True,
                      dashboard_address=None, silence_logs=quiet) as local, \
            Client(local, set_as_default=False) as client:
        yield client


#: How long ``--scheduler`` tries to reach the scheduler.
_CONNECT_SECONDS = 10


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
    import time

    from .word2vec.demo import compile_kernels, run_demo

    if args.dir and not os.path.isdir(args.dir):
        raise FileNotFoundError(f"directory does not exist: {args.dir}")
    models = {"cbow": [0], "skipgram": [1], "both": [1, 0]}[args.model]
    helper = _compile_ahead(models[1:], args.dim, args.seed)
    try:
        if helper is not None:
            deadline = time.monotonic() + _COMPILE_AHEAD_WAIT
            # The first model's kernel here, from sentences in memory, while the helper compiles the
            # kernels that count a corpus file; then wait for those rather than compile them a second
            # time. The encoder (encode_block, half a second) is left to this process, which otherwise
            # waits longer for the helper than the helper for it.
            compile_kernels(sg=models[0], vector_size=args.dim, seed=args.seed, quiet=args.quiet)
            _wait_for_counting(helper, deadline)
        for sg in models:
            if helper is not None and sg != models[0]:
                _finish(helper, deadline - time.monotonic())
            run_demo(sg=sg, vector_size=args.dim, epochs=args.epochs, workers=args.threads, seed=args.seed,
                     directory=args.dir, quiet=args.quiet, overwrite=args.force or sg != models[0])
    finally:
        if helper is not None:
            _finish(helper, 0)


#: Seconds the demo waits for the helper of :func:`_compile_ahead`, in all, before compiling what the
#: helper has not compiled itself.
_COMPILE_AHEAD_WAIT = 300


def _compile_ahead(later, dim, seed):
    """Start a process that compiles, into the on-disk cache, the kernels that count the demo's corpus
    and the training kernel of its second model while this one compiles the first model's kernel;
    return it, or None when there is nothing to gain (one model, one core, a kernel already compiled,
    no cache to share it through).

    A first demo on a cold cache spends most of its time compiling, one kernel after another on one
    core. The first model's training kernel needs none of the tokenizer's kernels to be compiled
    (:func:`~sparsemb.word2vec.demo.compile_kernels` trains on sentences in memory), the second
    model's kernel none of the first's, so with a second core free the demo waits for about the
    longer of the two processes' shares, not for their sum. The machine does the same work, plus the
    helper's start (about a second of CPU). The helper counts a small corpus and trains the second
    model on sentences in memory (:func:`_compile_for_demo`), through the functions the real run
    calls, so it compiles the very signatures that run asks for; whatever it fails to do, this
    process compiles as it would have.
    """
    from . import _config

    if not later or _config.max_threads() < 2:
        return None
    import subprocess

    from .kernels import word2vec

    kernel = word2vec.train_kernel(later[0], True, True)
    if _config.cache_dir() is None or not _config.cache_is_cold(kernel):
        return None
    # This very sparsemb (a checkout or an installed one), whatever the helper's working directory holds.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # Left with os._exit once done (its cache files are written and closed): tearing Numba and LLVM down
    # is half a second that the demo would wait for.
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); from sparsemb.cli import _compile_for_demo; "
            "_compile_for_demo(*map(int, sys.argv[2:])); os._exit(0)")
    try:
        return subprocess.Popen([sys.executable, "-c", code, root, str(later[0]), str(dim), str(seed)],
                                env=dict(os.environ, NUMBA_NUM_THREADS="1"), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def _compile_for_demo(sg, dim, seed):
    """The helper process of :func:`_compile_ahead`: compile the tokenizer's kernels that count the
    demo's corpus (the demo needs them first), then the training kernel of its model ``sg``."""
    from .word2vec.demo import compile_counting, compile_kernels

    compile_counting(seed)
    compile_kernels(sg=sg, vector_size=dim, seed=seed, quiet=True)


def _wait_for_counting(helper, deadline):
    """Wait until the kernels that count a corpus are in the on-disk cache, the helper has ended, or
    ``deadline`` (``time.monotonic()``) has passed."""
    import time

    from . import _config
    from .kernels import tokenizer

    while (_config.cache_is_cold(tokenizer.count_block, tokenizer.insert_words) and helper.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.05)


def _finish(helper, timeout):
    """Wait up to ``timeout`` seconds for the helper process, then stop it if it still runs."""
    import subprocess

    try:
        helper.wait(max(timeout, 0))
    except subprocess.TimeoutExpired:
        helper.kill()
        helper.wait()


def _plot(args, parser):
    from .word2vec import viz

    try:
        viz.require_matplotlib()  # before any work: the one thing a user without the extra must hear
    except viz.MissingExtraError as err:
        parser.exit(2, f"sparsemb plot: error: {err}\n")
    try:
        viz.figure_format(args.output)
    except ValueError as err:
        parser.error(f"argument -o/--output: {err}")
    if args.loss is not None:
        if args.vectors is not None or args.top is not None or args.words is not None or args.neighbours is not None:
            parser.error("--loss MODEL draws the loss alone: give no VECTORS, --top, --words or --neighbours")
        if _vector_format(args.loss) != "model":
            parser.error(f"argument --loss: needs a full model saved as .npz (sparsemb train -o model.npz), "
                         f"got {args.loss!r}: word2vec vectors files keep no losses")
        if not os.path.isfile(args.loss):
            raise FileNotFoundError(f"model file not found: {args.loss}")
        _io_check(args.output, [args.loss])
        from .word2vec import Word2Vec

        losses = Word2Vec.load(args.loss).epoch_losses
        if not losses:
            raise ValueError(f"{args.loss} records no epoch losses (was it trained by sparsemb?)")
        viz.plot_loss(losses, args.output, size=args.size or (900, 540), inputs=[args.loss],
                      title=f"{os.path.basename(args.loss)}: {len(losses)} epochs, "
                            f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        print(f"wrote the loss of {len(losses)} epochs to {args.output}")
        return
    if args.vectors is None:
        parser.error("give VECTORS to map, or --loss MODEL")
    if args.top is not None and args.words is not None:
        parser.error("give --top N or --words A,B,C, not both")
    if args.neighbours is not None and args.words is None:
        parser.error("--neighbours K goes with --words")
    if args.top is not None and args.top > viz.MAX_MAP_WORDS:
        parser.error(f"argument --top: at most {viz.MAX_MAP_WORDS} words make a readable map, got {args.top} "
                     f"(sparsemb export --projector explores more)")
    words = None
    if args.words is not None:
        words = [w for w in args.words.split(",") if w]
        if not words:
            parser.error(f"argument --words: no words in {args.words!r}")
    _io_check(args.output, [args.vectors])
    wv = _load_vectors(args.vectors)
    counts = wv.expandos.get("count") if _vector_format(args.vectors) == "model" else None
    chosen, groups = viz.select_words(wv, top=300 if words is None and args.top is None else args.top,
                                      words=words, counts=counts, source=args.vectors,
                                      neighbours=10 if args.neighbours is None else args.neighbours)
    if len(chosen) > viz.MAX_MAP_WORDS:
        raise ValueError(f"--words with --neighbours {args.neighbours} makes {len(chosen)} words, more than a "
                         f"readable map holds ({viz.MAX_MAP_WORDS}); ask for fewer")
    how = "t-SNE" if args.projection == "tsne" else "PCA"
    result = viz.plot_map(wv, args.output, chosen, groups=groups if words else None, projection=args.projection,
                          size=args.size, inputs=[args.vectors],
                          title=f"{os.path.basename(args.vectors)}: {len(chosen)} words, {how} of cosine similarity")
    labelled = int(result["labelled"].sum())
    note = "" if labelled == len(chosen) else (f" ({len(chosen) - labelled} left unlabelled for want of room: "
                                               f"use a larger --size or fewer words)")
    print(f"wrote a map of {len(chosen)} words to {args.output}{note}")


def _io_check(output, inputs):
    from . import _io

    _io.check_output(output, inputs=inputs)


def _export(args, parser):
    from .word2vec import viz

    wv = _load_vectors(args.vectors)
    counts = wv.expandos.get("count") if _vector_format(args.vectors) == "model" else None
    try:
        paths = viz.export_projector(wv, args.projector, top=args.top, counts=counts, overwrite=args.force,
                                     inputs=[args.vectors])
    except FileExistsError as err:
        raise FileExistsError(f"{err} (--force replaces them)") from None
    n = len(wv) if args.top is None else min(args.top, len(wv))
    print(f"wrote {n} vectors of dimension {wv.vector_size} to {paths[0]} and their words"
          f"{' and counts' if counts is not None else ''} to {paths[1]}: load both at "
          f"projector.tensorflow.org (Load)")


_COMMANDS = {"train": _train, "similar": _similar, "analogy": _analogy, "evaluate": _evaluate, "demo": _demo,
             "plot": _plot, "export": _export}


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
    """The console script: :func:`main`, with Ctrl-C while Python loads the package still one line, and
    without the interpreter's teardown once everything is written (:func:`_leave`)."""
    try:
        status = main()
    except KeyboardInterrupt:
        sys.stderr.write("sparsemb: interrupted\n")
        status = 130
    _leave(status)


def _leave(status):
    """Exit with ``status`` now: the command has written and closed its files, so what the interpreter
    would still do (free every object and module, unload Numba and LLVM, 0.2-0.3 s after a training run)
    changes nothing. Standard streams and logging are flushed first; a flush that fails (a closed pipe)
    gives status 120, as the interpreter's own exit would. With Dask imported, the interpreter's exit runs
    as usual (its atexit handlers stop clients and loop threads)."""
    if "distributed" in sys.modules:
        sys.exit(status)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            status = status or 120
    os._exit(status)


if __name__ == "__main__":
    run()
