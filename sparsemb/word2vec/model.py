"""The Word2Vec model: vocabulary, training loop, and model files.

Parameter names and defaults are gensim 4's, so code ports by changing an import. The epoch loop, the
learning-rate schedule, the progress bar and callbacks live here; each call into
:func:`sparsemb.kernels.word2vec.train_stretch` trains a piece of one thread's stretch of the corpus,
with the GIL released, so one Python thread per worker runs them in parallel.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import pickle
import logging
import math
import os
import queue
import sys
import threading
import time
import zipfile
from numbers import Integral, Real
import types
from typing import Callable, NamedTuple, Optional

import numpy as np
from tqdm import tqdm

from .. import _config
from .. import _io
from .._io import atomic_write
from .._limits import MAX_NEGATIVE, MAX_SENTENCE_LENGTH, MAX_WINDOW
from ..kernels import tokenizer as _tok
from ..kernels import word2vec as _k
from ..kernels.huffman import HuffmanTree, score_sentences
from . import corpus as _corpus
from . import replicas as _replicas
from .keyedvectors import KeyedVectors
from .vocab import RawCounts, Vocabulary, by_frequency, count_words, downsampling, effective_min_count, kept

logger = logging.getLogger(__name__)

#: Tokens per kernel call of one thread: big enough that the call's overhead is noise, small enough
#: for a lively progress bar and a smooth learning-rate schedule.
PIECE_TOKENS = 1 << 18
#: Bytes of a corpus file a thread takes at a time (the file in one piece with one thread).
FEED_PIECE_BYTES = 1 << 20
#: Rows of the most frequent words each worker thread updates in a copy of its own, merged into the
#: shared tables every few thousand words (:attr:`sparsemb.kernels.word2vec.Config.private`).
PRIVATE_ROWS = 128

_OPTIMIZERS = ("sgd", "adagrad")
_PARAMS = ("vector_size", "window", "min_count", "sg", "hs", "negative", "sample", "alpha", "min_alpha", "epochs",
           "workers", "seed", "ns_exponent", "cbow_mean", "null_word", "sorted_vocab", "batch_words",
           "compute_loss", "comment", "max_vocab_size", "max_final_vocab", "shrink_windows", "optimizer",
           "adagrad_eps", "shared_negatives", "deterministic", "sync_words")
#: State saved beside the parameters (a file without it, from an earlier version, takes the default).
_STATE = ("epoch_losses", "corpus_count", "corpus_total_words", "effective_min_count", "min_alpha_yet_reached",
          "train_count", "running_training_loss")


def _piece_cuts(size, workers):
    """Where :meth:`Word2Vec._file_feed` cuts a corpus file of ``size`` bytes (before moving each cut to
    a line start): pieces of ``FEED_PIECE_BYTES`` while the rest is large, then each a ``2 * workers``-th
    of the rest, down to a sixteenth of ``FEED_PIECE_BYTES``, so that a thread taking the last piece
    while the others are busy keeps them waiting for a small piece only; no cut with one worker."""
    cuts, pos, smallest = [], 0, max(FEED_PIECE_BYTES // 16, 1)
    while workers > 1:
        piece = max(min(FEED_PIECE_BYTES, (size - pos) // (2 * workers)), smallest)
        if pos + piece >= size:
            break
        pos += piece
        cuts.append(pos)
    return cuts


def _seed_states(seed, n):
    """Distinct 48-bit LCG states for ``n`` threads from one seed (splitmix64 of seed and thread)."""
    mask = (1 << 64) - 1
    states = []
    for t in range(n):
        z = (seed * 0x9E3779B97F4A7C15 + (t + 1) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        states.append((z ^ (z >> 31)) & ((1 << 48) - 1))
    return np.array(states, dtype=np.uint64)


class _Job(NamedTuple):
    """One kernel call: sentences ``lo:hi`` of ``(ids, starts)``, the learning rate going from ``alpha0``
    to ``alpha1`` as the call's tokens run from ``done`` to ``total``."""

    ids: np.ndarray
    starts: np.ndarray
    lo: int
    hi: int
    alpha0: np.float32
    alpha1: np.float32
    done: int
    total: int
    tokens: int
    raw: int = 0
    #: The generator state to start from, when the job's (not its thread's): a job of a queue may run on
    #: any thread, and its numbers must not depend on which.
    state: Optional[np.uint64] = None


class _Feed(NamedTuple):
    """Where an epoch's jobs come from: ``jobs(thread, epoch, stop)`` yields a thread's jobs; with a
    ``producer`` ``(produce(epoch, stop), queue)`` one thread reads the corpus for all of them.
    ``tokens`` (words in the vocabulary) and ``raw`` (all words) per epoch, None where not known ahead."""

    tokens: Optional[int]
    raw: Optional[int]
    jobs: Callable
    producer: Optional[tuple]


class _EpochResult(NamedTuple):
    tokens: int
    loss: float
    examples: int
    kept: int
    raw: int


def _one_corpus(corpus_iterable, sentences):
    """gensim 4's ``corpus_iterable=`` and the older ``sentences=``: the one given."""
    if corpus_iterable is not None and sentences is not None:
        raise TypeError("give corpus_iterable or sentences, not both")
    return sentences if corpus_iterable is None else corpus_iterable


def _check_corpus(corpus_iterable, corpus_file, passes):
    """gensim's ``_check_corpus_sanity``: exactly one corpus; a generator cannot serve several passes."""
    if corpus_file is None and corpus_iterable is None:
        raise TypeError("Either one of corpus_file or corpus_iterable value must be provided")
    if corpus_file is not None and corpus_iterable is not None:
        raise TypeError("Both corpus_file and corpus_iterable must not be provided at the same time")
    if corpus_iterable is not None and isinstance(corpus_iterable, types.GeneratorType) and passes > 1:
        raise TypeError(f"Using a generator as corpus_iterable can't support {passes} passes. Try a "
                        f"re-iterable sequence.")
    if corpus_file is not None and os.path.splitext(os.fspath(corpus_file))[1].lower() in _COMPRESSED:
        raise TypeError(f"Training from compressed files is not supported with the `corpus_path` argument. "
                        f"Please decompress {corpus_file} or use `corpus_iterable` instead.")


#: Extensions gensim's smart_open decompresses: a corpus_file must be plain text.
_COMPRESSED = (".bz2", ".gz", ".xz", ".zst", ".lzma", ".zip")


class ModelTypeError(ValueError, AttributeError):
    """:meth:`Word2Vec.load` of a file that holds something else (KeyedVectors, say): the AttributeError
    gensim raises there, and a ValueError like every other unreadable file."""


_NOTICED = []


def _notice_compiling(quiet, *kernels):
    """Say, once per process and unless ``quiet``, that the first run compiles: a progress bar frozen
    for 10-20 s with no word of why looks like a hang."""
    if quiet or _NOTICED or not _config.cache_is_cold(*kernels):
        return
    _NOTICED.append(True)
    where = _config.cache_dir()
    print("sparsemb: compiling kernels (first run only, about 10-20 s"
          + (f"; cached in {where})" if where else ")"), file=sys.stderr, flush=True)


def _load_on_instance(*args, **kwargs):
    raise AttributeError("This method should be called on a class object: model = Word2Vec.load(path)")


class VocabularyError(ValueError, RuntimeError):
    """No usable vocabulary: the corpus is empty, or no word reaches ``min_count``.

    Raised when training is asked for (:meth:`Word2Vec.build_vocab` only warns, as gensim does). A
    ValueError, and the RuntimeError gensim raises in that case.

    Attributes
    ----------
    source : str
        The corpus (file name, or "sentences").
    min_count : int or None
        The effective min_count when words existed but none reached it; None for an empty corpus.
    max_count : int
        Count of the most frequent word.
    """

    def __init__(self, source, min_count=None, max_count=0):
        self.source, self.min_count, self.max_count = source, min_count, max_count
        if min_count is None:
            msg = f"corpus {source} is empty"
        else:
            msg = (f"no word in {source} occurs at least min_count={min_count} times (the most frequent "
                   f"occurs {max_count} times); lower min_count")
        super().__init__(msg)


def _check(name, value, ok, what):
    if not ok:
        raise ValueError(f"{name} must be {what}, got {value!r}")


def _check_int(name, value, low, high=None, why=""):
    """``value`` must be an int (not a bool) in [low, high]; ``why`` explains the upper bound."""
    what = f"an int >= {low}" + ("" if high is None else f" and <= {high}")
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    _check(name, value, ok and value >= low and (high is None or value <= high), what + why)


def _check_float(name, value, low=None, strict=False):
    """``value`` must be a finite real number, > low (strict) or >= low."""
    what = "a finite number" + ("" if low is None else f" {'>' if strict else '>='} {low:g}")
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    _check(name, value, ok and (low is None or value > low or (not strict and value == low)), what)


class Word2Vec:
    """word2vec: skip-gram (``sg=1``) or CBOW (``sg=0``), with negative sampling and/or hierarchical softmax.

    Parameters are gensim 4's, in gensim's order, with gensim's defaults (but ``workers``: all cores).

    Parameters
    ----------
    sentences : iterable of list of str, optional
        The corpus, read again every epoch (so it must be re-iterable: a generator is refused, as in
        gensim). Give this or ``corpus_file`` to build the vocabulary and train at once.
    corpus_file : str or os.PathLike, optional
        A UTF-8 text file, one sentence per line, tokens separated by whitespace (read by compiled code,
        in pieces the threads share out: the fast way in).
    vector_size : int
        Dimension of the vectors.
    alpha, min_alpha : float
        Learning rate, decaying linearly from ``alpha`` to ``min_alpha`` over all epochs.
    window : int
        Largest distance between centre and context word (shrunk uniformly per centre word unless
        ``shrink_windows=False``).
    min_count : int
        Words seen fewer times are ignored.
    max_vocab_size : int, optional
        Prune rare words while counting whenever more than this many are held (as gensim).
    sample : float
        Subsampling threshold for frequent words (0 disables).
    seed : int
        Seeds the initial vectors and each thread's random state.
    workers : int, optional
        Threads (Hogwild, lock-free); default all cores. With 1 and a seed a run is reproducible bit
        for bit.
    sg : {0, 1}
        1 for skip-gram, 0 for CBOW.
    hs : {0, 1}
        1 for hierarchical softmax (gensim's Huffman tree, output table ``syn1``).
    negative : int
        Noise words per example (0: no negative sampling; then ``hs`` must be 1).
    ns_exponent : float
        Noise distribution is counts**ns_exponent.
    cbow_mean : {0, 1}
        CBOW uses the mean (1) or the sum (0) of the context vectors.
    hashfxn : callable
        Accepted for gensim's signature; vectors are seeded by ``seed`` alone.
    epochs : int
    null_word : {0, 1}
        Add gensim's padding word ``"\\0"`` to the vocabulary.
    trim_rule : callable, optional
        ``trim_rule(word, count, min_count)`` returning gensim's RULE_DISCARD, RULE_KEEP or
        RULE_DEFAULT (:mod:`sparsemb.word2vec.vocab` has the same constants); used while building the
        vocabulary, not stored.
    sorted_vocab : {0, 1}
        Sort the vocabulary by descending count.
    batch_words : int
        Accepted for gensim's signature (batches here are sized for the kernels).
    compute_loss : bool
        Keep gensim's running loss, read with :meth:`get_latest_training_loss`. (The loss is always
        computed: ``epoch_losses`` holds each epoch's mean.)
    callbacks : sequence, optional
        Objects with any of ``on_train_begin``, ``on_epoch_begin``, ``on_epoch_end``, ``on_train_end``,
        each called with the model, for the training the constructor runs.
    comment : str, optional
    max_final_vocab : int, optional
        Raise min_count so that at most about this many words are kept.
    shrink_windows : bool
        Shrink each centre word's window uniformly at random (gensim's and word2vec's default).
    optimizer : {"sgd", "adagrad"}
        "sgd" is classic word2vec. "adagrad" applies lazy Adagrad (learning rate ``alpha`` with the
        same schedule) to exactly the rows each example touches.
    adagrad_eps : float
        Adagrad's epsilon.
    shared_negatives : bool
        Skip-gram only: draw one set of ``negative`` noise words per centre word, shared by all its
        context words, and update the two small blocks of vectors at once (Ji et al. 2016, "Parallelizing
        Word2Vec in Shared and Distributed Memory"). Faster, with scores no worse than gensim's on
        scripts/compare_gensim.py; False samples per pair as gensim and the C tool do.
    quiet : bool
        No progress bar.
    deterministic : bool
        Bit-identical vectors for any ``workers`` and any number of Dask workers: the corpus file is
        cut into a fixed number of pieces, each trained on its own copy of the tables, and the copies'
        changes are merged every ``sync_words`` tokens in a fixed order
        (:mod:`sparsemb.word2vec.replicas` states the rule). Needs ``corpus_file``.
    sync_words : int
        Corpus tokens (over all pieces) between two merges, with ``deterministic`` or ``client``: fewer
        train as a single thread does, more spend less time merging (and, on a cluster, sending).
    client : dask.distributed.Client, optional
        Train data-parallel on the cluster's workers (threads): each trains its share of
        ``corpus_file`` on its own copy of the tables, merged as with ``deterministic``. The corpus
        file must be readable at the same path on every worker (a shared filesystem); it is checked.
        Not saved with the model.
    storage : str or os.PathLike, optional
        A directory for the tables (``syn0.npy``, ``syn1neg.npy``, ... mapped into memory with
        :func:`numpy.load`'s ``mmap_mode="r+"``), so that a vocabulary whose tables do not fit in
        memory still trains: the page cache keeps the frequent words' rows. Created when the
        vocabulary is built (after checking the disk space); files already there are refused, never
        overwritten. A mapped file is written in place and is not a consistent snapshot after a crash:
        :meth:`save` is. ``deterministic`` and ``client`` runs train on copies in memory.

    Attributes
    ----------
    wv : KeyedVectors
        The word vectors (the input table, shared, not copied).
    syn1neg : ndarray of float32, shape (V, vector_size)
        The output table of negative sampling (zero rows when ``negative=0``).
    syn1 : ndarray of float32, shape (V, vector_size)
        The output table of hierarchical softmax, one row per inner node of the tree (zero rows when
        ``hs=0``).
    epoch_losses : list of float
        Mean loss per predicted example for every epoch trained so far (float64, always kept).
    running_training_loss : float
        gensim's: the summed loss of the current (or last) :meth:`train` call, when ``compute_loss``.
    effective_words : int
        Tokens that survived subsampling in the last epoch.
    train_seconds : float
        Wall time of the last :meth:`train` call.
    train_words : int
        Corpus tokens (in the vocabulary) trained on by that call, over all its epochs.
    corpus_count, corpus_total_words : int
        Sentences and raw tokens of the corpus the vocabulary was built from.
    """

    def __init__(self, sentences=None, corpus_file=None, vector_size=100, alpha=0.025, window=5, min_count=5,
                 max_vocab_size=None, sample=1e-3, seed=1, workers=None, min_alpha=0.0001, sg=0, hs=0,
                 negative=5, ns_exponent=0.75, cbow_mean=1, hashfxn=hash, epochs=5, null_word=0, trim_rule=None,
                 sorted_vocab=1, batch_words=MAX_SENTENCE_LENGTH, compute_loss=False, callbacks=(), comment=None,
                 max_final_vocab=None, shrink_windows=True, *, optimizer="sgd", adagrad_eps=1e-10,
                 shared_negatives=True, quiet=False, deterministic=False, sync_words=_replicas.SYNC_WORDS,
                 client=None, storage=None):
        _check_int("vector_size", vector_size, 1)
        _check_int("window", window, 1, MAX_WINDOW, f" (sentences are cut at {MAX_SENTENCE_LENGTH} tokens)")
        _check_int("min_count", min_count, 0)
        _check_int("negative", negative, 0, MAX_NEGATIVE, " (each costs a row update; word2vec uses 5-20)")
        _check_int("epochs", epochs, 1)
        _check_int("seed", seed, 0)
        _check_float("sample", sample, 0)
        _check_float("alpha", alpha, 0, strict=True)
        _check_float("min_alpha", min_alpha, 0)
        _check_float("ns_exponent", ns_exponent)
        _check_float("adagrad_eps", adagrad_eps, 0, strict=True)
        _check_int("sync_words", sync_words, 1)
        _check("hs", hs, hs in (0, 1), "0 or 1")
        _check("optimizer", optimizer, optimizer in _OPTIMIZERS, f"one of {_OPTIMIZERS}")
        _check("optimizer", optimizer, not (hs and optimizer == "adagrad"), "'sgd' with hs=1")
        if workers is not None:
            _check_int("workers", workers, 1)
        if max_vocab_size is not None:
            _check_int("max_vocab_size", max_vocab_size, 1)
        if max_final_vocab is not None:
            _check_int("max_final_vocab", max_final_vocab, 1)
        self.vector_size = self.layer1_size = int(vector_size)
        self.window = int(window)
        self.min_count = int(min_count)
        self.sg = int(bool(sg))
        self.hs = int(hs)
        self.negative = int(negative)
        self.sample = float(sample)
        self.alpha = float(alpha)
        self.min_alpha = float(min_alpha)
        self.min_alpha_yet_reached = float(alpha)
        self.epochs = int(epochs)
        self.workers = int(workers) if workers is not None else _config.max_threads()
        self.seed = int(seed)
        self.ns_exponent = float(ns_exponent)
        self.cbow_mean = int(bool(cbow_mean))
        self.hashfxn = hashfxn
        self.null_word = int(bool(null_word))
        self.sorted_vocab = int(bool(sorted_vocab))
        self.batch_words = batch_words
        self.compute_loss = bool(compute_loss)
        self.comment = comment
        self.max_vocab_size = max_vocab_size
        self.max_final_vocab = max_final_vocab
        self.shrink_windows = bool(shrink_windows)
        self.optimizer = optimizer
        self.adagrad_eps = float(adagrad_eps)
        self.shared_negatives = bool(shared_negatives)
        self.quiet = bool(quiet)
        self.deterministic = bool(deterministic)
        self.sync_words = int(sync_words)
        self.client = client
        self.storage = None if storage is None else _storage_dir(storage)
        self._storage_files = set()  # the files this model made there (build_vocab again remakes them)
        if self.storage is not None:
            _check_storage_free(self.storage, self._storage_files)
        self.vocab = None
        self.wv = None
        self.syn1neg = self.syn1 = None
        self.epoch_losses = []
        self.running_training_loss = 0.0
        self.effective_words = 0
        self.train_seconds = 0.0
        self.train_words = 0
        self.train_count = 0
        self.corpus_count = 0
        self.corpus_total_words = 0
        self.effective_min_count = self.min_count
        self._raw = None
        self._raw_source = None
        self._vocab_source = None
        self._empty = None  # why the vocabulary is empty, raised when training is asked for
        # As gensim: ``model.load(...)`` is a mistake (it returns a new model, not this one) and raises.
        self.load = _load_on_instance
        if sentences is not None or corpus_file is not None:
            _check_corpus(sentences, corpus_file, passes=self.epochs + 1)
            self.build_vocab(sentences, corpus_file, trim_rule=trim_rule)
            self.train(sentences, corpus_file, total_examples=self.corpus_count,
                       total_words=self.corpus_total_words, epochs=self.epochs, start_alpha=self.alpha,
                       end_alpha=self.min_alpha, compute_loss=self.compute_loss, callbacks=callbacks)
        else:
            if trim_rule is not None:
                logger.warning("The rule, if given, is only used to prune vocabulary during build_vocab() and is "
                               "not stored as part of the model. Model initialized without sentences. trim_rule "
                               "provided, if any, will be ignored.")
            if callbacks:
                logger.warning("Callbacks are no longer retained by the model, so must be provided whenever "
                               "training is triggered, as in initialization with a corpus or calling `train()`. "
                               "The callbacks provided in this initialization without triggering train will "
                               "be ignored.")

    def __str__(self):
        size = 0 if self.vocab is None else len(self.vocab)
        return f"{type(self).__name__}<vocab={size}, vector_size={self.vector_size}, alpha={self.alpha}>"

    # -- vocabulary -----------------------------------------------------------------------------
    @staticmethod
    def _source(sentences, corpus_file):
        """(key, token lists) of a corpus; the key identifies it (a file by path, size and time)."""
        if corpus_file is not None:
            path = _corpus.check_corpus_file(corpus_file)
            st = os.stat(path)
            return ("file", os.path.abspath(path), st.st_size, st.st_mtime_ns), _corpus.file_sentences(path)
        # The object itself (not its id, which a new object may reuse) identifies an iterable corpus.
        return ("iterable", sentences), _corpus.iterable_sentences(sentences)

    @property
    def raw_vocab(self):
        """gensim's raw counts ``{word: count}`` of the last scan (emptied by :meth:`prepare_vocab`
        unless ``keep_raw_vocab``)."""
        return {} if self._raw is None else self._raw.as_dict()

    @raw_vocab.setter
    def raw_vocab(self, word_freq):
        words = list(word_freq)
        self._raw = RawCounts(words, np.array([word_freq[w] for w in words], dtype=np.int64))
        self._raw_source = None

    def build_vocab(self, corpus_iterable=None, corpus_file=None, update=False, progress_per=10000,
                    keep_raw_vocab=False, trim_rule=None, *, sentences=None, **kwargs):
        """Count the corpus and choose the vocabulary (gensim's rules); make or grow the tables.

        Parameters
        ----------
        corpus_iterable, corpus_file
            The corpus (``sentences=`` is accepted for ``corpus_iterable``).
        update : bool
            Add the corpus's new words (those reaching ``min_count`` in it) to the vocabulary, after
            the old ones, and add its counts to the old words'; the old vectors are kept and the tables
            grown, as gensim does.
        progress_per : int
            Accepted for gensim's signature.
        keep_raw_vocab : bool
            Keep :attr:`raw_vocab` after the vocabulary is chosen.
        trim_rule : callable, optional
            See the constructor.
        **kwargs
            ``min_count``, ``sample``, ``dry_run`` for :meth:`prepare_vocab`.

        Raises
        ------
        VocabularyError
            (a ValueError) If the corpus is empty or no word occurs ``min_count`` times.
        FileNotFoundError
            If ``corpus_file`` does not exist.
        TypeError
            If both or neither corpus is given, or the iterable is a generator.
        """
        corpus_iterable = _one_corpus(corpus_iterable, sentences)
        _check_corpus(corpus_iterable, corpus_file, passes=1)
        total_words, corpus_count = self.scan_vocab(corpus_iterable, corpus_file, trim_rule=trim_rule)
        self.corpus_count, self.corpus_total_words = corpus_count, total_words
        self.prepare_vocab(update=update, keep_raw_vocab=keep_raw_vocab, trim_rule=trim_rule, **kwargs)
        if not kwargs.get("dry_run"):
            self.prepare_weights(update=update)

    def scan_vocab(self, corpus_iterable=None, corpus_file=None, progress_per=10000, workers=None, trim_rule=None):
        """Count every word of the corpus (gensim's first step of :meth:`build_vocab`).

        Returns
        -------
        total_words, corpus_count : int
            Raw tokens and sentences.
        """
        corpus_iterable = _one_corpus(corpus_iterable, None)
        _check_corpus(corpus_iterable, corpus_file, passes=1)
        key, stream = self._source(corpus_iterable, corpus_file)
        _notice_compiling(self.quiet, _tok.count_block, _tok.encode_block, self._train_kernel())
        if key[0] == "file" and not self.max_vocab_size and trim_rule is None:
            table, total_words, corpus_count = _corpus.count_file(key[1], workers or self.workers)
            raw = RawCounts(table, table.counts)
        else:
            raw, total_words, corpus_count = count_words(stream, self.max_vocab_size, trim_rule)
        self._raw = raw
        # Counts pruned while counting are not the corpus's: a training pass then counts again.
        self._raw_source = key if not self.max_vocab_size else None
        logger.info("collected %d word types from a corpus of %d raw words and %d sentences", len(raw),
                    total_words, corpus_count)
        return total_words, corpus_count

    def prepare_vocab(self, update=False, keep_raw_vocab=False, trim_rule=None, min_count=None, sample=None,
                      dry_run=False):
        """Choose the vocabulary from the scanned counts (gensim's second step of :meth:`build_vocab`).

        Returns
        -------
        dict
            gensim's report: ``drop_unique``, ``retain_total``, ``downsample_unique``, ``downsample_total``,
            ``num_retained_words``.

        Raises
        ------
        RuntimeError
            Before a scan, or with ``update`` before a vocabulary exists.
        VocabularyError
            If no word would be kept (nothing is changed).
        """
        raw = self._raw
        if raw is None:
            raise RuntimeError("scan a corpus first: build_vocab(), scan_vocab() or build_vocab_from_freq()")
        if update and self.storage is not None:
            raise ValueError(f"an online vocabulary update grows the tables, which live in files of {self.storage}: "
                             f"not supported with storage= (train a new model on the whole corpus)")
        if update and self.vocab is None:
            raise RuntimeError("You cannot do an online vocabulary-update of a model which has no prior vocabulary. "
                               "First build the vocabulary of your model with a corpus before doing an online update.")
        min_count = min_count or self.min_count
        sample = sample or self.sample
        effective = effective_min_count(raw.counts, min_count, self.max_final_vocab)
        keep = kept(raw, effective, trim_rule)
        kept_words, kept_counts = raw.words(keep), raw.counts[keep]
        if update:
            old = self.vocab
            new = [i for i, w in enumerate(kept_words) if w not in old.key_to_index]
            words = old.index_to_key + [kept_words[i] for i in new]
            counts = np.concatenate([old.counts, kept_counts[new]])
            for w, c in zip(raw.words(range(len(raw))), raw.counts.tolist()):  # gensim adds every old word's
                i = old.key_to_index.get(w)
                if i is not None:
                    counts[i] += c
        else:
            words, counts = kept_words, kept_counts
            if self.null_word:
                words, counts = words + ["\0"], np.append(counts, 1)
            if self.sorted_vocab:
                order = by_frequency(counts)
                words, counts = [words[i] for i in order], counts[order]
        down_unique, down_total = downsampling(kept_counts, sample)
        report = {"drop_unique": len(raw) - len(keep), "retain_total": int(kept_counts.sum()),
                  "downsample_unique": down_unique, "downsample_total": down_total,
                  "num_retained_words": len(keep)}
        if dry_run:
            return report
        self._empty = None
        if not words:
            source = "sentences" if self._raw_source is None or self._raw_source[0] == "iterable" \
                else self._raw_source[1]
            self._empty = VocabularyError(source, effective if len(raw) else None, int(raw.counts.max(initial=0)))
            logger.warning("%s", self._empty)
        self.effective_min_count = effective
        if not update:
            self.min_count, self.sample = min_count, sample
        self.vocab = Vocabulary(words, counts)
        self._vocab_source = None if update else self._raw_source
        if not keep_raw_vocab:
            self._raw = None
        logger.info("vocabulary: %d words (effective min_count %d), %d of %d distinct words dropped", len(words),
                    effective, report["drop_unique"], len(raw))
        return report

    def build_vocab_from_freq(self, word_freq, keep_raw_vocab=False, corpus_count=None, trim_rule=None,
                              update=False):
        """Build (or with ``update`` grow) the vocabulary from ``{word: count}`` instead of a corpus."""
        self.raw_vocab = word_freq
        self.corpus_count = corpus_count or 0
        self.prepare_vocab(update=update, keep_raw_vocab=keep_raw_vocab, trim_rule=trim_rule)
        self.prepare_weights(update=update)

    def prepare_weights(self, update=False):
        """Make the tables for the vocabulary, or with ``update`` grow them for its new words."""
        if update and self.wv is not None and len(self.wv) < len(self.vocab):
            self._grow_tables()
        elif not update:
            self._init_tables()

    def reset_from(self, other_model):
        """Take ``other_model``'s vocabulary and corpus counts, and make fresh tables for it."""
        self.vocab = other_model.vocab
        self.corpus_count, self.corpus_total_words = other_model.corpus_count, other_model.corpus_total_words
        self._vocab_source = other_model._vocab_source
        self._init_tables()

    def _new_vectors(self, rows, start, out=None):
        """Rows ``start:start + rows`` of the input table: gensim 4's uniform [-1, 1) / dim (into
        ``out``, e.g. a mapped file, when given), drawn a block at a time: the same numbers as at once."""
        rng = np.random.default_rng(self.seed if start == 0 else [self.seed, start])
        vec = np.empty((rows, self.vector_size), dtype=np.float32) if out is None else out
        for lo in range(0, rows, _INIT_ROWS):
            block = vec[lo:lo + _INIT_ROWS]
            rng.random(block.shape, dtype=np.float32, out=block)
            # In place (the same float32 operations as one expression): no table-sized temporaries.
            block *= np.float32(2.0)
            block -= np.float32(1.0)
            block /= np.float32(self.vector_size)
        return vec

    def _init_tables(self):
        v, dim = len(self.vocab), self.vector_size
        adagrad = self.optimizer == "adagrad"
        shapes = {"syn0": (v, dim), "syn1neg": (v if self.negative else 0, dim), "syn1": (v if self.hs else 0, dim),
                  "accum0": (v if adagrad else 0, dim), "accum1": (v if adagrad else 0, dim)}
        if self.storage is None:
            _check_memory(v, dim, (1 + bool(self.negative) + bool(self.hs)) * (2 if adagrad else 1))
            tables = {name: np.zeros(shape, dtype=np.float32) for name, shape in shapes.items()}
        else:
            tables = _mapped_tables(self.storage, shapes, self._storage_files)
        # gensim 4's initialisation (twice the C tool's spread): with the C tool's, scores on small
        # corpora were measurably below gensim's (scripts/compare_gensim.py).
        syn0 = self._new_vectors(v, 0, out=tables["syn0"])
        if self.storage is not None:
            syn0.flush()
        self.syn1neg, self.syn1 = tables["syn1neg"], tables["syn1"]
        self.accum0, self.accum1 = tables["accum0"], tables["accum1"]
        self.rng_state = _seed_states(self.seed, self.workers)
        self.wv = self._make_wv(syn0)

    def _make_wv(self, syn0):
        """The KeyedVectors of the input table, with gensim's vector attributes: counts and, with
        hierarchical softmax, each word's ``code`` and ``point`` (views into the tree's arrays)."""
        wv = KeyedVectors.from_arrays(syn0, self.vocab.index_to_key, counts=self.vocab.counts)
        wv.vectors_lockf = np.ones(1, dtype=np.float32)  # gensim 4's: no row is locked (nor can be, here)
        if self.hs:
            codes, points, offsets = self.vocab.tree
            for name, flat in (("code", codes), ("point", points)):
                paths = np.empty(len(self.vocab), dtype=object)
                for i, (a, b) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist())):
                    paths[i] = flat[a:b]  # one by one: a list of equal-length views would become 2-D
                wv.expandos[name] = paths
        return wv

    @property
    def cum_table(self):
        """gensim's cumulative noise distribution, ``round(cumsum(counts**ns_exponent) / total * (2**31 - 1))``
        as uint32 (sparsemb draws from an alias table of the same distribution)."""
        if self.vocab is None:
            return None
        weights = np.cumsum(self.vocab.counts.astype(np.float64) ** self.ns_exponent)
        return np.round(weights / weights[-1] * (2**31 - 1)).astype(np.uint32)

    def _grow_tables(self):
        old, v, dim = len(self.wv), len(self.vocab), self.vector_size  # (not with storage: build_vocab refused)
        _check_memory(v - old, dim, 4)

        def grow(a, fill):
            if a.shape[0] == 0:
                return a
            return np.concatenate([a, fill if fill is not None else np.zeros((v - old, dim), a.dtype)])

        syn0 = grow(self.wv.vectors, self._new_vectors(v - old, old))
        self.syn1neg, self.syn1 = grow(self.syn1neg, None), grow(self.syn1, None)
        self.accum0, self.accum1 = grow(self.accum0, None), grow(self.accum1, None)
        self.wv = self._make_wv(syn0)

    # -- training -------------------------------------------------------------------------------
    def train(self, corpus_iterable=None, corpus_file=None, total_examples=None, total_words=None, epochs=None,
              start_alpha=None, end_alpha=None, word_count=0, queue_factor=2, report_delay=1.0,
              compute_loss=False, callbacks=(), *, sentences=None, quiet=None, **kwargs):
        """Train on a corpus, as gensim's ``train``: a file is read again every epoch (in pieces, each
        taken by the next free thread), an iterable re-iterated every epoch (batches handed to the
        threads as it is read).

        Parameters
        ----------
        corpus_iterable, corpus_file
            As in the constructor (``sentences=`` is accepted for ``corpus_iterable``); words outside
            the vocabulary are skipped.
        total_examples, total_words : int
            One is required, as in gensim: the corpus's sentences or raw words, for the learning-rate
            schedule of an iterable (a file's is exact: its words are counted).
        epochs : int
            Required, as in gensim.
        start_alpha, end_alpha : float, optional
            Replace ``alpha`` and ``min_alpha`` (gensim's semantics: they are stored).
        word_count, queue_factor, report_delay, **kwargs
            Accepted for gensim's signature.
        compute_loss : bool
            Keep the running loss (:meth:`get_latest_training_loss`).
        callbacks : sequence
        quiet : bool, optional
            No progress bar; default the constructor's.

        Returns
        -------
        (int, int)
            gensim's ``(effective_words, raw_words)``: tokens trained on after subsampling, and tokens
            read, over all epochs.

        Raises
        ------
        ValueError
            If neither ``hs`` nor ``negative`` is set, a count or ``epochs`` is missing, or a
            hyper-parameter is out of range.
        RuntimeError
            If there is no vocabulary.
        """
        corpus_iterable = _one_corpus(corpus_iterable, sentences)
        for name, value in (("start_alpha", start_alpha), ("end_alpha", end_alpha)):
            if value is not None:
                _check_float(name, value, 0, strict=name == "start_alpha")
        alpha, min_alpha = start_alpha or self.alpha, end_alpha or self.min_alpha
        self._check_training_sanity(epochs, total_examples, total_words, alpha)
        _check_corpus(corpus_iterable, corpus_file, passes=epochs)
        self.alpha, self.min_alpha, self.epochs = float(alpha), float(min_alpha), int(epochs)
        self.compute_loss = bool(compute_loss)
        self.running_training_loss = 0.0
        quiet = self.quiet if quiet is None else quiet
        key, stream = self._source(corpus_iterable, corpus_file)
        replicated = self.deterministic or self.client is not None
        if replicated and key[0] != "file":
            raise ValueError("deterministic=True and client= train from corpus_file= (a file each worker reads "
                             "its pieces of), not from an iterable")
        _notice_compiling(quiet, self._train_kernel())
        tables = self._tables(hogwild=not replicated and self.workers > 1)
        if replicated:
            runner, feed = self._runner(key, tables)
        elif key[0] == "file":
            feed = self._file_feed(key)
        else:
            feed = self._iterable_feed(key, stream, corpus_iterable, total_examples, total_words)
        if not replicated and self.rng_state.shape[0] != self.workers:
            self.rng_state = _seed_states(self.seed, self.workers)
        started = time.perf_counter()
        _call(callbacks, "on_train_begin", self)
        bar = tqdm(total=None if feed.tokens is None else feed.tokens * epochs, unit="word", unit_scale=True,
                   disable=quiet, file=sys.stderr, dynamic_ncols=True, desc="training")
        trained = raw = tokens = 0
        try:
            for epoch in range(epochs):
                _call(callbacks, "on_epoch_begin", self)
                t0 = time.perf_counter()
                if replicated:
                    result = self._replicated_epoch(runner, feed, epoch, bar)
                else:
                    result = self._epoch(feed, epoch, tables, bar, f"{epoch + 1}/{epochs}")
                self.epoch_losses.append(result.loss / max(result.examples, 1))
                if self.compute_loss:
                    self.running_training_loss += result.loss
                self.effective_words = result.kept
                trained, raw, tokens = trained + result.kept, raw + result.raw, tokens + result.tokens
                logger.info("epoch %d: loss %.4f, %d of %d words kept by subsampling, %.0f words/s", epoch + 1,
                            self.epoch_losses[-1], result.kept, result.tokens,
                            result.tokens / max(time.perf_counter() - t0, 1e-9))
                _call(callbacks, "on_epoch_end", self)
        finally:
            bar.close()
            if replicated:
                runner.close()
            # Computed again when a query needs them, as gensim does (not here: np.linalg.norm would
            # briefly hold a table-sized temporary at the end of every train()).
            self.wv.norms = None
        self.train_seconds = time.perf_counter() - started
        self.train_words = tokens
        self.train_count += 1
        self.min_alpha_yet_reached = self.min_alpha
        if tokens == 0:
            logger.warning("no word of the corpus is in the vocabulary: nothing was trained (%d raw words read)",
                           raw)
        logger.info("trained on %d words in %.2f s, %.0f words/s", tokens, self.train_seconds,
                    tokens / max(self.train_seconds, 1e-9))
        _call(callbacks, "on_train_end", self)
        return trained, raw

    def _check_training_sanity(self, epochs, total_examples, total_words, alpha):
        """gensim's checks before training, in gensim's order, with its messages."""
        if not self.hs and not self.negative:
            raise ValueError("You must set either 'hs' or 'negative' to be positive for proper training. "
                             "When both 'hs=0' and 'negative=0', there will be no training.")
        if self.hs and self.negative:
            logger.warning("Both hierarchical softmax and negative sampling are activated. This is probably a "
                           "mistake. You should set either 'hs=0' or 'negative=0' to disable one of them. ")
        if alpha > self.min_alpha_yet_reached:
            logger.warning("Effective 'alpha' higher than previous training cycles")
        if self.wv is None or not len(self.wv):
            raise self._empty or RuntimeError("you must first build vocabulary before training the model")
        if total_words is None and total_examples is None:
            raise ValueError("You must specify either total_examples or total_words, for proper learning-rate "
                             "and progress calculations. If you've just built the vocabulary using the same "
                             "corpus, using the count cached in the model is sufficient: "
                             "total_examples=model.corpus_count.")
        if epochs is None or not isinstance(epochs, Integral) or epochs <= 0:
            raise ValueError("You must specify an explicit epochs count. The usual value is epochs=model.epochs.")
        if self.vocab is None or len(self.vocab) != len(self.wv):
            raise RuntimeError("the model's vectors were replaced without their vocabulary counts; "
                               "build_vocab() before training")

    def _file_counts(self, key, table):
        """(tokens in the vocabulary, raw tokens) of a file."""
        known = _same_source(key, self._vocab_source) if self._vocab_source else False
        if known:
            return self.vocab.total, self.corpus_total_words
        total = 0  # a new file, or counts pruned while counting: count the words to train on first
        for ids, _ in _corpus.encode_file(key[1], table):
            total += ids.shape[0]
        return total, total  # words outside the vocabulary are not counted by the encoder

    def _file_feed(self, key):
        """The file in pieces of about ``FEED_PIECE_BYTES``, each read, encoded and trained by whichever
        thread is free next (one piece, the whole file, with one thread).

        Pieces handed out as threads free up, rather than one equal byte range per thread, keep both
        busy to the end of an epoch: a range's speed depends on its text (sentence lengths, how many
        words subsampling drops), and the thread with the faster range used to idle for the rest of the
        other's. The last pieces are smaller (:func:`_piece_cuts`), so the threads finish together. The
        learning rate follows the epoch's progress: a piece's runs from the rate at its
        first byte's share of the file to the rate at its last's.
        """
        path = key[1]
        table = _corpus.WordTable.from_words(self.vocab.index_to_key)
        total, raw = self._file_counts(key, table)
        size = os.path.getsize(path)
        offsets = _corpus.line_ranges(path, _piece_cuts(size, self.workers))
        pieces = len(offsets) - 1
        size = max(size, 1)
        # Tokens per piece are known only after reading it; the schedule uses the byte share (exact
        # with one thread).
        shares = [round(total * (hi - lo) / size) for lo, hi in zip(offsets[:-1], offsets[1:])]
        lock, taken = threading.Lock(), {}

        def take(epoch):
            """The next piece of ``epoch`` nobody has taken, or None."""
            with lock:
                p = taken.get(epoch, 0)
                taken[epoch] = p + 1
            return p if p < pieces else None

        def jobs(t, epoch, stop):
            while (p := take(epoch)) is not None:
                lo, hi = offsets[p], offsets[p + 1]
                alpha0, alpha1 = self._alphas(epoch, lo / size), self._alphas(epoch, hi / size)
                done = 0
                # No warnings of invalid UTF-8: counting the file (for the vocabulary or above) gave them.
                for ids, starts in _corpus.encode_file(path, table, lo, hi, warn=False):
                    if stop.is_set():
                        return
                    n = int(starts[-1])
                    yield _Job(ids, starts, 0, starts.shape[0] - 1, alpha0, alpha1, done, shares[p], n)
                    done += n

        return _Feed(tokens=total, raw=raw, jobs=jobs, producer=None)

    def _iterable_feed(self, key, stream, corpus, total_examples, total_words):
        """Batches of the iterable, read again every epoch by one producer thread and shared by all
        workers through a queue.

        The schedule: over the vocabulary's tokens when the iterable is the one the vocabulary was
        counted from (exactly as a file's, so a list and its file train alike), else over the sentences
        or raw words read against ``total_examples`` / ``total_words`` (gensim's). With several workers a
        batch brings its own generator state, so its numbers do not depend on the thread that takes it.
        """
        known = _same_source(key, self._vocab_source) if self._vocab_source else False
        jobs = queue.Queue(maxsize=2 * self.workers)
        by_examples = bool(total_examples)
        expected = self.vocab.total if known else (total_examples if by_examples else total_words)
        # A count of 0 (build_vocab_from_freq leaves corpus_count at 0) says nothing of the corpus: the
        # rate then moves from epoch to epoch only.
        expected = expected or math.inf

        def produce(epoch, stop):
            span = self._alphas(epoch, 0.0), self._alphas(epoch, 1.0)
            done = 0
            batches = _corpus.encode_batches(_corpus.iterable_sentences(corpus), self.vocab.key_to_index,
                                             PIECE_TOKENS)
            for number, (batch, raw, n_sent) in enumerate(batches):
                state = None
                if self.workers > 1:
                    # A tuple of ints hashes the same in every process (PYTHONHASHSEED salts str only).
                    state = _seed_states(hash((self.seed, self.train_count, epoch, number)) & (2**63 - 1), 1)[0]
                if known:
                    job = _Job(batch.ids, batch.starts, 0, batch.n_sentences, span[0], span[1], done, expected,
                               batch.n_tokens, raw, state)
                    done += batch.n_tokens
                else:
                    after = done + (n_sent if by_examples else raw)
                    job = _Job(batch.ids, batch.starts, 0, batch.n_sentences, self._alphas(epoch, done / expected),
                               self._alphas(epoch, after / expected), 0, batch.n_tokens, batch.n_tokens, raw, state)
                    done = after
                while not stop.is_set():
                    try:
                        jobs.put(job, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return

        def take(t, epoch, stop):
            while True:
                job = jobs.get()
                if job is None:
                    return
                if not stop.is_set():
                    yield job

        return _Feed(tokens=self.vocab.total if known else None, raw=None, jobs=take,
                     producer=(produce, jobs))

    def _runner(self, key, tables):
        """The :class:`~sparsemb.word2vec.replicas.Runner` of a deterministic or data-parallel run, and
        the feed's counts."""
        total, raw = self._file_counts(key, _corpus.WordTable.from_words(self.vocab.index_to_key))
        tables, sampling, config = tables
        training = _replicas.Training(self.vocab.index_to_key, sampling, config, list(tables[:len(_replicas.TRAINED)]),
                                      tables.lockf)
        if self.client is not None:
            from ..distributed import word2vec as _distributed
            runner = _distributed.runner(self.client, key, total, training, self._replica_plan, self._replica_states)
        else:
            plan = self._replica_plan(key[1], _replicas.DETERMINISTIC_PIECES, total)
            states = self._replica_states(plan.pieces)
            group = _replicas.ReplicaGroup(plan, training, range(plan.pieces), states, self.workers)
            runner = _replicas.Runner([_replicas.Local(group)], plan, training.base, states)
        return runner, _Feed(tokens=total, raw=raw, jobs=None, producer=None)

    def _replica_plan(self, path, pieces, total):
        """The plan of a run with ``pieces`` (``deterministic`` fixes them: pieces ignored then)."""
        if self.deterministic:
            pieces = _replicas.DETERMINISTIC_PIECES
        return _replicas.make_plan(path, pieces, total, self.sync_words)

    def _replica_states(self, pieces):
        """Each piece's random state: the model's, continued, when it has one per piece."""
        if self.rng_state.shape[0] == pieces:
            return self.rng_state.copy()
        return _seed_states(self.seed, pieces)

    def _replicated_epoch(self, runner, feed, epoch, bar):
        counts = runner.epoch((self._alphas(epoch, 0.0), self._alphas(epoch, 1.0)), bar.update)
        self.rng_state = runner.states.copy()
        tokens, loss, examples, kept = counts
        return _EpochResult(int(tokens), float(loss), int(examples), int(kept), int(feed.raw))

    def _alphas(self, epoch, progress):
        """The learning rate at ``progress`` (a fraction, clipped to 1) of epoch ``epoch``, as float32."""
        p = (epoch + min(max(progress, 0.0), 1.0)) / self.epochs
        return np.float32(max(self.alpha - (self.alpha - self.min_alpha) * p, self.min_alpha))

    def _train_kernel(self):
        """The compiled training kernel this model's runs use (for the first-run notice)."""
        return _k.train_kernel(self.sg, self.shared_negatives, self.negative)

    def _tables(self, hogwild=False):
        """The kernel's bundles for this run: (Tables, Sampling, Config); with ``hogwild`` (threads
        sharing the tables) each thread keeps the :data:`PRIVATE_ROWS` most frequent words' rows."""
        # Empty arrays of the same dtypes stand for what the run does not use: one compiled signature.
        neg_prob, neg_alias = (self.vocab.noise_table(self.ns_exponent) if self.negative
                               else (np.zeros(0, np.int64), np.zeros(0, np.int32)))
        codes, points, offsets = self.vocab.tree if self.hs else (np.zeros(0, np.uint8), np.zeros(0, np.int32),
                                                                   np.zeros(len(self.vocab) + 1, np.int64))
        sigmoid, logsig = _k.sigmoid_tables(np.float32)
        lockf = getattr(self.wv, "vectors_lockf", None)
        lockf = np.ones(1, np.float32) if lockf is None else np.ascontiguousarray(lockf, dtype=np.float32)
        if lockf.ndim != 1 or lockf.shape[0] not in (1, len(self.wv)):
            raise ValueError(f"wv.vectors_lockf must have 1 or {len(self.wv)} values, got shape {lockf.shape}")
        tables = _k.Tables(self.wv.vectors, self.syn1neg, self.syn1, self.accum0, self.accum1, lockf)
        sampling = _k.Sampling(self.vocab.keep_thresholds(self.sample), neg_prob, neg_alias, codes, points, offsets,
                               sigmoid, logsig)
        config = _k.Config(self.window, self.negative, bool(self.hs), bool(self.sg), self.shared_negatives,
                           bool(self.cbow_mean), self.optimizer == "adagrad", self.shrink_windows,
                           np.float32(self.adagrad_eps), PRIVATE_ROWS if hogwild else 0)
        return tables, sampling, config

    def _epoch(self, feed, epoch, tables, bar, label):
        """One epoch over ``feed``; returns an :class:`_EpochResult`.

        The kernel releases the GIL, so the threads run in parallel (reading the file too) while this
        thread only moves the progress bar. Ctrl-C stops every thread after its current batch.
        """
        n = self.workers
        totals = np.zeros((n, 5))  # per thread: tokens, loss, examples, kept, raw (float64: exact here)
        errors = []
        stop = threading.Event()

        def work(t):
            try:
                state = self.rng_state[t]
                for job in feed.jobs(t, epoch, stop):
                    start = state if job.state is None else job.state
                    state, loss, examples, kept = self._call_kernel(job, tables, start)
                    state = np.uint64(state)
                    totals[t] += (job.tokens, loss, examples, kept, job.raw)
                self.rng_state[t] = state
            except BaseException as err:  # re-raised in the calling thread
                errors.append(err)
                stop.set()

        def produce():
            try:
                feed.producer[0](epoch, stop)
            except BaseException as err:
                errors.append(err)
                stop.set()
            finally:
                jobs = feed.producer[1]
                for _ in range(n):  # one end mark per worker; after a failure the batches left don't matter
                    while True:
                        try:
                            jobs.put(None, timeout=0.1)
                            break
                        except queue.Full:
                            if stop.is_set():
                                with contextlib.suppress(queue.Empty):
                                    while jobs.get_nowait() is not None:
                                        pass

        threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(n)]
        if feed.producer is not None:
            threads.append(threading.Thread(target=produce, daemon=True))
        shown = 0
        try:
            for t, th in enumerate(threads):
                try:
                    th.start()
                except RuntimeError as err:  # a process or memory limit on threads
                    raise OSError(f"could not start worker thread {t + 1} of {n} ({err}); use fewer "
                                  f"workers") from None
            for th in threads:
                while th.is_alive():
                    th.join(0.1)
                    done = int(totals[:, 0].sum())
                    bar.update(done - shown)
                    bar.set_postfix(epoch=label, loss=f"{totals[:, 1].sum() / max(totals[:, 2].sum(), 1):.4f}",
                                    refresh=False)
                    shown = done
        except BaseException:
            stop.set()
            if feed.producer is not None:  # free workers waiting for a batch
                for _ in range(n):
                    with contextlib.suppress(queue.Full):
                        feed.producer[1].put_nowait(None)
            for th in threads:
                if th.ident is not None:  # started
                    th.join()
            raise
        if errors:
            raise errors[0]
        tokens, loss, examples, kept, raw = totals.sum(axis=0)
        if feed.raw is not None:
            raw = feed.raw
        return _EpochResult(int(tokens), float(loss), int(examples), int(kept), int(raw))

    def _call_kernel(self, job, tables, state):
        span = _k.Span(job.ids, job.starts, job.lo, job.hi, job.alpha0, job.alpha1, job.done, job.total)
        return _k.train_stretch(*tables, span, state)

    def get_latest_training_loss(self) -> float:
        """gensim's running loss: the summed loss (``-log sigmoid`` of the true word and of each noise
        word, per example) of the current or last :meth:`train` call so far; 0.0 unless that call had
        ``compute_loss=True``. Each epoch's mean is in :attr:`epoch_losses` either way."""
        return self.running_training_loss

    def predict_output_word(self, context_words_list, topn=10):
        """gensim's: the ``topn`` most probable centre words (softmax over ``syn1neg``) for a context of
        words or indices; None when none of them is in the vocabulary.

        Raises
        ------
        RuntimeError
            Without negative sampling, or when the output table is missing.
        """
        if not self.negative:
            raise RuntimeError("We have currently only implemented predict_output_word for the negative sampling "
                               "scheme, so you need to have run word2vec with negative > 0 for this to work.")
        if self.wv is None or self.syn1neg is None or self.syn1neg.shape[0] != len(self.wv):
            raise RuntimeError("Parameters required for predicting the output words not found.")
        rows = [self.wv.get_index(w) for w in context_words_list if self.wv.has_index_for(w)]
        if not rows:
            logger.warning("All the input context words are out-of-vocabulary for the current model.")
            return None
        h = self.wv.vectors[rows].sum(axis=0)
        if self.cbow_mean:
            h /= len(rows)
        scores = self.syn1neg @ h
        prob = np.exp(scores - scores.max())
        prob /= prob.sum()
        top = np.argsort(-prob, kind="stable")[:topn]
        return [(self.wv.index_to_key[i], prob[i]) for i in top]

    def score(self, sentences, total_sentences=int(1e6), chunksize=100, queue_factor=2, report_delay=1):
        """gensim's ``score``: the log-probability of each sentence under hierarchical softmax (full
        window, no subsampling; words outside the vocabulary left out; at most
        :data:`~sparsemb._limits.MAX_SENTENCE_LENGTH` words of a sentence, as gensim).

        Parameters
        ----------
        sentences : iterable of list of str
        total_sentences : int
            Score at most this many.
        chunksize, queue_factor, report_delay
            Accepted for gensim's signature.

        Returns
        -------
        ndarray of float32, shape (n_sentences,)

        Raises
        ------
        RuntimeError
            If the model was not trained with ``hs=1``.
        """
        if not self.hs or self.syn1 is None or self.syn1.shape[0] != len(self.wv):
            raise RuntimeError("We have currently only implemented score for the hierarchical softmax scheme, so "
                               "you need to have run word2vec with hs=1 and negative=0 for this to work.")
        head = (list(s)[:MAX_SENTENCE_LENGTH] for s in itertools.islice(sentences, int(total_sentences)))
        encoded = _corpus.encode(head, self.wv.key_to_index)
        _, logsig = _k.sigmoid_tables(np.float32)
        return score_sentences(encoded.ids, encoded.starts, self.wv.vectors, self.syn1, self.vocab.tree,
                               self.window, bool(self.sg), bool(self.cbow_mean), logsig)

    # -- model files ----------------------------------------------------------------------------
    def save(self, path, separately=None, sep_limit=None, ignore=frozenset(), pickle_protocol=None):
        """Save everything needed to continue training to one ``.npz`` file (no pickle).

        Arrays: the tables, counts, Adagrad state and random states; vocabulary and parameters are
        JSON in the array ``meta``. Written under a temporary name, then renamed. gensim's
        ``separately``, ``sep_limit``, ``ignore`` and ``pickle_protocol`` are accepted and have nothing
        to do here (no pickle; every array is stored apart).
        """
        if self.vocab is None:
            raise RuntimeError("nothing to save: the model has no vocabulary yet")
        meta = {name: getattr(self, name) for name in _PARAMS + _STATE}
        meta.update(format="sparsemb.Word2Vec", version=2, words=self.vocab.index_to_key)
        blob = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
        with atomic_write(path) as fout:
            np.savez(fout, meta=blob, syn0=self.wv.vectors, syn1neg=self.syn1neg, syn1=self.syn1,
                     counts=self.vocab.counts, accum0=self.accum0, accum1=self.accum1, rng_state=self.rng_state)

    @classmethod
    def load(cls, path, mmap=None):
        """Load a model written by :meth:`save`, or by gensim (1.x to 4.x: its pickle and ``.npy`` side
        files), without gensim: through :func:`sparsemb._io.load_gensim`, which admits gensim's classes
        only and never runs code from the file.

        Every array is checked against the model's parameters (shape, dtype, values the kernels rely
        on) before anything is built: a damaged or hand-made file is refused, never trained on.
        ``mmap`` maps a gensim model's side files; the arrays of sparsemb's ``.npz`` are read.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            If it is not a sparsemb model file, or is corrupt or inconsistent (the message names the file
            and, for an inconsistency, the array or field).
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"model file not found: {path}")
        with open(path, "rb") as f:
            head = f.read(6)
        if head == b"\x93NUMPY":
            raise ValueError(f"{path}: a single .npy array, not a model (.npz archive or gensim pickle)")
        if head.startswith(b"{"):  # KeyedVectors.save's JSON
            raise ModelTypeError(f"{path}: holds KeyedVectors, not a Word2Vec model: load it with KeyedVectors.load")
        if not zipfile.is_zipfile(path):
            return cls._load_gensim(path, mmap)
        try:
            npz = np.load(path, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with npz:
                arrays = {k: npz[k] for k in _ARRAYS}
                # Files of version 1 have no hierarchical softmax table.
                arrays["syn1"] = npz["syn1"] if "syn1" in npz.files else np.zeros((0, arrays["syn0"].shape[-1]),
                                                                                     np.float32)
            meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != "sparsemb.Word2Vec":
                raise ValueError("not a sparsemb Word2Vec model")
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, AttributeError) as err:
            message = f"no array {err.args[0]!r}" if isinstance(err, KeyError) else err
            raise ValueError(f"{path}: not a readable sparsemb model file ({message})") from None
        try:
            # Files written before a parameter existed take its default; the constructor checks the rest.
            model = cls(**{name: meta[name] for name in _PARAMS if name in meta})
            _check_model_arrays(meta, arrays, model)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: inconsistent model file: {err}") from None
        model.vocab = Vocabulary(meta["words"], arrays["counts"])
        model.syn1neg, model.syn1 = arrays["syn1neg"], arrays["syn1"]
        model.accum0, model.accum1 = arrays["accum0"], arrays["accum1"]
        model.rng_state = arrays["rng_state"]
        model.wv = model._make_wv(arrays["syn0"])
        for name in _STATE:
            if name in meta:
                setattr(model, name, meta[name])
        model.epoch_losses = [float(x) for x in model.epoch_losses]
        return model


    @classmethod
    def _load_gensim(cls, path, mmap):
        try:
            obj = _io.load_gensim(path, mmap=mmap)
        except _io.UnsafePickleError as err:
            raise ValueError(f"{path}: refused: {err}") from None
        except (OSError, EOFError, ValueError, pickle.UnpicklingError, AttributeError, IndexError) as err:
            if isinstance(err, FileNotFoundError) and err.filename != path:
                raise
            raise ValueError(f"{path}: not a readable sparsemb or gensim model file ({err})") from None
        if getattr(type(obj), "pickled_class", "").rsplit(".", 1)[-1] != "Word2Vec":
            name = getattr(type(obj), "pickled_class", type(obj).__name__)
            raise ModelTypeError(f"{path}: holds a {name}, not a Word2Vec model")
        try:
            return cls._from_gensim(obj.__dict__)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ValueError(f"{path}: inconsistent gensim model: {err}") from None

    @classmethod
    def _from_gensim(cls, state):
        """A model from the attributes of gensim's pickled Word2Vec (1.x-4.x layouts)."""
        parts = [state] + [state[k].__dict__ for k in ("vocabulary", "trainables") if state.get(k) is not None]

        def get(name, default=None):
            for part in parts:
                if part.get(name) is not None:
                    return part[name]
            return default

        params = {name: get(name) for name in ("vector_size", "window", "min_count", "sg", "hs", "negative",
                                                "sample", "alpha", "min_alpha", "workers", "seed", "ns_exponent",
                                                "cbow_mean", "null_word", "sorted_vocab", "max_vocab_size",
                                                "max_final_vocab", "compute_loss", "shrink_windows")}
        params["vector_size"] = params["vector_size"] or get("layer1_size")
        params["epochs"] = get("epochs", get("iter"))
        model = cls(**{k: (int(v) if isinstance(v, (bool, np.integer)) else v) for k, v in params.items()
                       if v is not None})
        wv_state = state["wv"].__dict__
        # The tree is the model's: gensim 4 keeps codes and points as vector attributes, older versions
        # on each word's Vocab object.
        expandos = wv_state.get("expandos") or {}
        paths = {attr: expandos.pop(attr, None) for attr in ("code", "point")}
        for entry in (wv_state.get("vocab") or {}).values():
            for attr in ("code", "point"):
                value = entry.__dict__.pop(attr, None)
                if value is not None:
                    paths[attr] = paths[attr] if isinstance(paths[attr], dict) else {}
                    paths[attr][entry.__dict__["index"]] = value
        kv = KeyedVectors._from_gensim(state["wv"], "the model's wv")
        counts = kv.expandos.get("count")
        model.vocab = Vocabulary(kv.index_to_key, np.ones(len(kv), np.int64) if counts is None else counts)
        v, dim = len(kv), model.vector_size
        if model.hs and paths["code"] is not None:
            codes = [np.asarray(paths["code"][i], np.uint8) for i in range(v)]
            points = [np.asarray(paths["point"][i], np.int32) for i in range(v)]
            offsets = np.concatenate([[0], np.cumsum([len(c) for c in codes])]).astype(np.int64)
            model.vocab.tree = HuffmanTree(np.concatenate(codes), np.concatenate(points), offsets)
        vectors = np.ascontiguousarray(kv.vectors, dtype=np.float32)
        model.syn1neg = np.ascontiguousarray(get("syn1neg", np.zeros((0, dim))), dtype=np.float32)
        model.syn1 = np.ascontiguousarray(get("syn1", np.zeros((0, dim))), dtype=np.float32)
        for name, table, rows in (("vectors", vectors, v), ("syn1neg", model.syn1neg, v if model.negative else 0),
                                  ("syn1", model.syn1, v if model.hs else 0)):
            if table.shape != (rows, dim) or not np.isfinite(table).all():
                raise ValueError(f"{name} is {table.shape}, expected ({rows}, {dim}) of finite values")
        model.accum0 = model.accum1 = np.zeros((0, dim), np.float32)
        model.rng_state = _seed_states(model.seed, model.workers)
        model.wv = model._make_wv(vectors)
        model.corpus_count = int(get("corpus_count", 0))
        model.corpus_total_words = get("corpus_total_words")  # None in files before gensim 3.5, as gensim
        for name in ("min_alpha_yet_reached", "train_count", "running_training_loss", "effective_min_count"):
            if get(name) is not None:
                setattr(model, name, get(name))
        return model


_ARRAYS = ("meta", "syn0", "syn1neg", "counts", "accum0", "accum1", "rng_state")


def _check_model_arrays(meta, arrays, model):
    """Raise ValueError naming the first array or field of a loaded model that does not fit the others."""
    words = meta.get("words")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ValueError("'words' must be a list of strings")
    if len(set(words)) != len(words):
        raise ValueError("'words' has repeated words")
    _check_int("corpus_count", meta.get("corpus_count"), 0)
    if meta.get("corpus_total_words") is not None:  # None for a model gensim saved before 3.5
        _check_int("corpus_total_words", meta["corpus_total_words"], 0)
    losses = meta.get("epoch_losses")
    if not isinstance(losses, list) or not all(isinstance(x, Real) for x in losses):
        raise ValueError("'epoch_losses' must be a list of numbers")
    v, dim = len(words), model.vector_size
    rows = v if model.optimizer == "adagrad" else 0
    expected = {"syn0": ((v, dim), np.float32), "syn1neg": ((v if model.negative else 0, dim), np.float32),
                "syn1": ((v if model.hs else 0, dim), np.float32), "counts": ((v,), np.int64),
                "accum0": ((rows, dim), np.float32), "accum1": ((rows, dim), np.float32),
                "rng_state": ((arrays["rng_state"].size,), np.uint64)}  # any length: train() re-seeds
    for name, (shape, dtype) in expected.items():
        a = arrays[name]
        if a.dtype != dtype or a.shape != shape:
            raise ValueError(f"array {name!r} is {a.dtype} of shape {a.shape}, expected {np.dtype(dtype)} of "
                             f"shape {shape} for {v} words of dimension {dim}")
    if v == 0:
        raise ValueError("the vocabulary is empty")
    if (arrays["counts"] < 0).any():
        raise ValueError("array 'counts' has negative counts")
    if (arrays["rng_state"] >> np.uint64(48)).any():
        raise ValueError("array 'rng_state' has states outside the 48-bit generator's range")
    for name in ("syn0", "syn1neg", "syn1", "accum0", "accum1"):
        if not np.isfinite(arrays[name]).all():
            raise ValueError(f"array {name!r} has values that are not finite")
    for name in ("accum0", "accum1"):
        if (arrays[name] < 0).any():
            raise ValueError(f"array {name!r} (an Adagrad accumulator) has negative values")


#: Rows of the input table drawn at a time.
_INIT_ROWS = 1 << 16
_TABLE_NAMES = ("syn0", "syn1neg", "syn1", "accum0", "accum1")


def _storage_dir(storage):
    path = os.fspath(storage)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"storage must be a directory for the tables' files, got a file: {path}")
    return path


def _check_storage_free(directory, ours):
    """Refuse a storage directory holding table files this model did not make."""
    there = [name + ".npy" for name in _TABLE_NAMES
             if os.path.lexists(os.path.join(directory, name + ".npy")) and os.path.join(directory, name + ".npy")
             not in ours]
    if there:
        raise FileExistsError(f"storage {directory} already holds {', '.join(there)}, from another model: remove "
                              f"them or choose another directory")


def _mapped_tables(directory, shapes, ours):
    """The tables as new ``.npy`` files mapped from ``directory`` (tables without rows stay in memory),
    replacing those of ``ours`` (the model's own, a set updated here); every check first, and a
    failure removes what this call created."""
    from .. import _storage

    _check_storage_free(directory, ours)
    files = {name: os.path.join(directory, name + ".npy") for name, shape in shapes.items() if shape[0]}
    os.makedirs(directory, exist_ok=True)
    for p in ours:
        os.remove(p)
    ours.clear()
    _storage.check_space([(files[name], shapes[name], np.float32) for name in files])
    tables = {}
    try:
        for name, shape in shapes.items():
            if name in files:
                tables[name] = _storage.open_array(files[name], shape, np.float32)
                ours.add(files[name])
            else:
                tables[name] = np.zeros(shape, dtype=np.float32)
    except BaseException:
        tables.clear()
        for p in ours:
            with contextlib.suppress(OSError):
                os.remove(p)
        ours.clear()
        raise
    return tables


def _available_memory() -> int:
    """Bytes of memory a new allocation can get: MemAvailable on Linux, else all physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 1 << 62


def _check_memory(words, dim, tables):
    """Refuse, before allocating, ``tables`` float32 tables of ``words`` x ``dim`` that cannot fit."""
    need = words * dim * 4 * tables
    have = _available_memory()
    if need > have:
        raise MemoryError(f"{tables} tables of {words} words x {dim} dimensions need {need / 2**30:.2f} GiB, "
                          f"more than the {have / 2**30:.2f} GiB of memory available; lower vector_size "
                          f"or the vocabulary (min_count, max_final_vocab)")


def _same_source(a, b):
    if a[0] == "iterable" or b[0] == "iterable":
        return a[0] == b[0] and a[1] is b[1]
    return a == b


def _call(callbacks, method, model):
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            fn(model)

