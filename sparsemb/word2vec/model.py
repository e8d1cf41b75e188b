"""The Word2Vec model: vocabulary, training loop, and model files.

Parameter names and defaults are gensim 4's, so code ports by changing an import. The epoch loop, the
learning-rate schedule, the progress bar and callbacks live here; each call into
:func:`sparsemb.kernels.word2vec.train_stretch` trains a piece of one thread's stretch of the corpus,
with the GIL released, so one Python thread per worker runs them in parallel.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import zipfile
import math
from numbers import Integral, Real

import numpy as np
from tqdm import tqdm

from .. import _config
from .._limits import MAX_NEGATIVE, MAX_SENTENCE_LENGTH, MAX_WINDOW
from ..kernels import word2vec as _k
from . import corpus as _corpus
from .._io import atomic_write
from .keyedvectors import KeyedVectors
from .vocab import Vocabulary, count_words, select

logger = logging.getLogger(__name__)

#: Tokens per kernel call of one thread: big enough that the call's overhead is noise, small enough
#: for a lively progress bar and a smooth learning-rate schedule.
PIECE_TOKENS = 1 << 18

_OPTIMIZERS = ("sgd", "adagrad")
_PARAMS = ("vector_size", "window", "min_count", "sg", "negative", "sample", "alpha", "min_alpha", "epochs",
           "workers", "seed", "ns_exponent", "cbow_mean", "max_vocab_size", "max_final_vocab", "optimizer",
           "adagrad_eps", "shared_negatives")


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


class VocabularyError(ValueError):
    """No usable vocabulary: the corpus is empty, or no word reaches ``min_count``.

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
    """word2vec with negative sampling: skip-gram (``sg=1``) or CBOW (``sg=0``).

    Parameters
    ----------
    sentences : iterable of list of str, optional
        The corpus; read once. Give this or ``corpus_file`` to build the vocabulary and train at once.
    corpus_file : str or os.PathLike, optional
        A UTF-8 text file, one sentence per line, tokens separated by whitespace.
    vector_size : int
        Dimension of the vectors.
    window : int
        Largest distance between centre and context word (shrunk uniformly per centre word).
    min_count : int
        Words seen fewer times are ignored.
    sg : {0, 1}
        1 for skip-gram, 0 for CBOW.
    negative : int
        Noise words per example.
    sample : float
        Subsampling threshold for frequent words (0 disables).
    alpha, min_alpha : float
        Learning rate, decaying linearly from ``alpha`` to ``min_alpha`` over all epochs.
    epochs : int
    workers : int, optional
        Threads (Hogwild, lock-free); default all cores. With 1 and a seed a run is reproducible bit
        for bit.
    seed : int
        Seeds the initial vectors and each thread's random state.
    ns_exponent : float
        Noise distribution is counts**ns_exponent.
    cbow_mean : {0, 1}
        CBOW uses the mean (1) or the sum (0) of the context vectors.
    max_vocab_size : int, optional
        Prune rare words while counting whenever more than this many are held (as gensim).
    max_final_vocab : int, optional
        Raise min_count so that at most about this many words are kept.
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
    callbacks : sequence, optional
        Objects with any of ``on_train_begin``, ``on_epoch_begin``, ``on_epoch_end``, ``on_train_end``,
        each called with the model.
    quiet : bool
        No progress bar.

    Attributes
    ----------
    wv : KeyedVectors
        The word vectors (the input table, shared, not copied).
    syn1neg : ndarray of float32, shape (V, vector_size)
        The output table.
    epoch_losses : list of float
        Mean loss per predicted example for every epoch trained so far.
    effective_words : int
        Tokens that survived subsampling in the last epoch.
    train_seconds : float
        Wall time of the last :meth:`train` call (training only: the corpus was read before).
    train_words : int
        Corpus tokens (in the vocabulary) trained on by that call, over all its epochs.
    """

    def __init__(self, sentences=None, corpus_file=None, vector_size=100, window=5, min_count=5, sg=0,
                 negative=5, sample=1e-3, alpha=0.025, min_alpha=1e-4, epochs=5, workers=None, seed=1,
                 ns_exponent=0.75, cbow_mean=1, max_vocab_size=None, max_final_vocab=None,
                 optimizer="sgd", adagrad_eps=1e-10, shared_negatives=True, callbacks=(), quiet=False):
        _check_int("vector_size", vector_size, 1)
        _check_int("window", window, 1, MAX_WINDOW, f" (sentences are cut at {MAX_SENTENCE_LENGTH} tokens)")
        _check_int("min_count", min_count, 0)
        _check_int("negative", negative, 1, MAX_NEGATIVE, " (each costs a row update; word2vec uses 5-20)")
        _check_int("epochs", epochs, 1)
        _check_int("seed", seed, 0)
        _check_float("sample", sample, 0)
        _check_float("alpha", alpha, 0, strict=True)
        _check_float("min_alpha", min_alpha, 0)
        _check_float("ns_exponent", ns_exponent)
        _check_float("adagrad_eps", adagrad_eps, 0, strict=True)
        _check("optimizer", optimizer, optimizer in _OPTIMIZERS, f"one of {_OPTIMIZERS}")
        if workers is not None:
            _check_int("workers", workers, 1)
        if max_vocab_size is not None:
            _check_int("max_vocab_size", max_vocab_size, 1)
        if max_final_vocab is not None:
            _check_int("max_final_vocab", max_final_vocab, 1)
        self.vector_size = int(vector_size)
        self.window = int(window)
        self.min_count = int(min_count)
        self.sg = int(bool(sg))
        self.negative = int(negative)
        self.sample = float(sample)
        self.alpha = float(alpha)
        self.min_alpha = float(min_alpha)
        self.epochs = int(epochs)
        self.workers = int(workers) if workers is not None else _config.max_threads()
        self.seed = int(seed)
        self.ns_exponent = float(ns_exponent)
        self.cbow_mean = int(bool(cbow_mean))
        self.max_vocab_size = max_vocab_size
        self.max_final_vocab = max_final_vocab
        self.optimizer = optimizer
        self.adagrad_eps = float(adagrad_eps)
        self.shared_negatives = bool(shared_negatives)
        self.callbacks = tuple(callbacks)
        self.quiet = bool(quiet)
        self.vocab = None
        self.wv = None
        self.syn1neg = None
        self.epoch_losses = []
        self.effective_words = 0
        self.train_seconds = 0.0
        self.train_words = 0
        self.corpus_count = 0
        self.corpus_total_words = 0
        self._cached = None
        self._vocab_source = None
        if sentences is not None or corpus_file is not None:
            self.build_vocab(sentences=sentences, corpus_file=corpus_file)
            self.train(sentences=sentences, corpus_file=corpus_file)

    # -- vocabulary -----------------------------------------------------------------------------
    @staticmethod
    def _source(sentences, corpus_file):
        if (sentences is None) == (corpus_file is None):
            raise TypeError("give exactly one of sentences or corpus_file")
        if corpus_file is not None:
            path = _corpus.check_corpus_file(corpus_file)
            st = os.stat(path)
            return ("file", os.path.abspath(path), st.st_size, st.st_mtime_ns), _corpus.file_sentences(path)
        # The object itself (not its id, which a new object may reuse) identifies an iterable corpus.
        return ("iterable", sentences), _corpus.iterable_sentences(sentences)

    def build_vocab(self, sentences=None, corpus_file=None):
        """Count the corpus and choose the vocabulary (gensim's rules); initialise the tables.

        Raises
        ------
        VocabularyError
            (a ValueError) If the corpus is empty or no word occurs ``min_count`` times.
        FileNotFoundError
            If ``corpus_file`` does not exist.
        """
        key, stream = self._source(sentences, corpus_file)
        name = corpus_file if corpus_file is not None else "sentences"
        encoded = table = None
        if self.max_vocab_size:
            words, counts = count_words(stream, self.max_vocab_size)
        elif key[0] == "file":
            table, _, self.corpus_count = _corpus.count_file(key[1], self.workers)
            counts = table.counts
        else:
            words, counts, encoded = _corpus.scan(stream)
        if counts.shape[0] == 0:
            raise VocabularyError(name)
        order, effective = select(counts, self.min_count, self.max_final_vocab)
        if order.shape[0] == 0:
            raise VocabularyError(name, effective, int(counts.max()))
        kept = table.words(order) if table is not None else [words[i] for i in order]
        self.vocab = Vocabulary(kept, counts[order])
        self.corpus_total_words = int(counts.sum())
        self._vocab_source = key if self.max_vocab_size is None else None
        if encoded is not None:
            remap = np.full(counts.shape[0], -1, dtype=np.int32)
            remap[order] = np.arange(order.shape[0], dtype=np.int32)
            self.corpus_count = encoded.n_sentences
            self._cached = (key, encoded.keep(remap))
        logger.info("vocabulary: %d words of %d distinct, %d tokens", len(self.vocab), counts.shape[0],
                    self.corpus_total_words)
        # Every distinct word of the corpus is in the counting table: let it go before the tables exist.
        table = counts = words = None
        self._init_tables()

    def _init_tables(self):
        v, dim = len(self.vocab), self.vector_size
        _check_memory(v, dim, 4 if self.optimizer == "adagrad" else 2)
        rng = np.random.default_rng(self.seed)
        # gensim 4's initialisation, uniform on [-1, 1) / dim (twice the C tool's spread): with the C
        # tool's, scores on small corpora were measurably below gensim's (scripts/compare_gensim.py).
        syn0 = rng.random((v, dim), dtype=np.float32)
        # In place (the same float32 operations as one expression): no table-sized temporaries.
        syn0 *= np.float32(2.0)
        syn0 -= np.float32(1.0)
        syn0 /= np.float32(dim)
        self.syn1neg = np.zeros((v, dim), dtype=np.float32)
        shape = (v, dim) if self.optimizer == "adagrad" else (0, dim)
        self.accum0 = np.zeros(shape, dtype=np.float32)
        self.accum1 = np.zeros(shape, dtype=np.float32)
        self.rng_state = _seed_states(self.seed, self.workers)
        self.wv = KeyedVectors(syn0, self.vocab.index_to_key, self.vocab.counts)

    # -- training -------------------------------------------------------------------------------
    def _stretches(self, sentences, corpus_file):
        """One stretch of the corpus per thread: a list of (batches, tokens), where ``batches()`` yields
        ``(ids, starts, first sentence, end sentence)`` and ``tokens`` counts the stretch's ids."""
        key, stream = self._source(sentences, corpus_file)
        if key[0] == "file":
            self._cached = None
            return self._file_stretches(key)
        if self._cached is not None and _same_source(self._cached[0], key):
            encoded = self._cached[1]
        else:
            encoded = _corpus.encode(stream, self.vocab.key_to_index)
            self.corpus_count = encoded.n_sentences
        self._cached = None  # the id array can be large; keep it no longer than one train() call
        out = []
        for pieces in _plan(encoded.starts, self.workers):
            def batches(pieces=pieces):
                for lo, hi, _ in pieces:
                    yield encoded.ids, encoded.starts, lo, hi
            out.append((batches, sum(n for _, _, n in pieces)))
        return out

    def _file_stretches(self, key):
        """Stretches of a corpus file: equal byte ranges, read and encoded by each thread as it trains."""
        path = key[1]
        table = _corpus.WordTable.from_words(self.vocab.index_to_key)
        known = _same_source(key, self._vocab_source) if self._vocab_source else False
        if known:
            total = self.vocab.total
        else:  # a new file, or counts pruned while counting: count the words to train on first
            total, self.corpus_count = 0, 0
            for ids, starts in _corpus.encode_file(path, table):
                total += ids.shape[0]
                self.corpus_count += starts.shape[0] - 1
        offsets = _corpus.byte_ranges(path, self.workers)
        size = max(offsets[-1], 1)
        out = []
        for lo, hi in zip(offsets[:-1], offsets[1:]):
            def batches(lo=lo, hi=hi):
                for ids, starts in _corpus.encode_file(path, table, lo, hi, warn=not known):
                    yield ids, starts, 0, starts.shape[0] - 1
            # Tokens per stretch are known only after reading it; the schedule uses the byte share (exact
            # with one thread).
            out.append((batches, round(total * (hi - lo) / size)))
        return out

    def train(self, sentences=None, corpus_file=None, epochs=None, start_alpha=None, end_alpha=None,
              callbacks=None, total_examples=None, total_words=None, compute_loss=True, quiet=None):
        """Train on a corpus: a file is read again every epoch (each thread its own part), an iterable
        once, then held as int32 ids.

        Parameters
        ----------
        sentences, corpus_file
            As in the constructor; words outside the vocabulary are skipped.
        epochs : int, optional
            Default: ``self.epochs``.
        start_alpha, end_alpha : float, optional
            Default: ``self.alpha`` and ``self.min_alpha``.
        callbacks : sequence, optional
            Default: the constructor's.
        total_examples, total_words, compute_loss
            Accepted so gensim calls port unchanged; the corpus is counted exactly and the loss is
            always computed.
        quiet : bool, optional
            Default: the constructor's.

        Returns
        -------
        float
            Mean loss per predicted example over the last epoch.
        """
        if self.vocab is None:
            raise RuntimeError("build_vocab() must be called before train()")
        epochs = self.epochs if epochs is None else epochs
        _check("epochs", epochs, isinstance(epochs, Integral) and epochs >= 1, "an int >= 1")
        start_alpha = self.alpha if start_alpha is None else start_alpha
        end_alpha = self.min_alpha if end_alpha is None else end_alpha
        _check_float("start_alpha", start_alpha, 0, strict=True)
        _check_float("end_alpha", end_alpha, 0)
        start_alpha, end_alpha = float(start_alpha), float(end_alpha)
        callbacks = self.callbacks if callbacks is None else tuple(callbacks)
        quiet = self.quiet if quiet is None else quiet
        stretches = self._stretches(sentences, corpus_file)
        n_tokens = sum(n for _, n in stretches)
        if n_tokens == 0:
            raise ValueError("no word of the corpus is in the vocabulary; nothing to train on")
        if self.rng_state.shape[0] != self.workers:
            self.rng_state = _seed_states(self.seed, self.workers)
        tables = self._tables()
        total = n_tokens * epochs
        started = time.perf_counter()
        _call(callbacks, "on_train_begin", self)
        bar = tqdm(total=total, unit="word", unit_scale=True, disable=quiet, file=sys.stderr,
                   dynamic_ncols=True, desc="training")
        try:
            for epoch in range(epochs):
                _call(callbacks, "on_epoch_begin", self)
                t0 = time.perf_counter()

                # Linear over all epochs; each thread goes through this epoch's span over its stretch.
                alphas = [np.float32(max(start_alpha - (start_alpha - end_alpha) * e / epochs, end_alpha))
                          for e in (epoch, epoch + 1)]
                loss, examples, kept = self._epoch(stretches, tables, alphas, bar, f"{epoch + 1}/{epochs}")
                self.epoch_losses.append(loss / max(examples, 1))
                self.effective_words = kept
                logger.info("epoch %d: loss %.4f, %d of %d words kept by subsampling, %.0f words/s",
                            epoch + 1, self.epoch_losses[-1], kept, n_tokens,
                            n_tokens / (time.perf_counter() - t0))
                _call(callbacks, "on_epoch_end", self)
        finally:
            bar.close()
            # Computed again when a query needs them, as gensim does (not here: np.linalg.norm would
            # briefly hold a table-sized temporary at the end of every train()).
            self.wv.norms = None
        self.train_seconds = time.perf_counter() - started
        self.train_words = total
        logger.info("trained on %d words in %.2f s, %.0f words/s", total, self.train_seconds,
                    total / self.train_seconds)
        _call(callbacks, "on_train_end", self)
        return self.epoch_losses[-1]

    def _tables(self):
        neg_prob, neg_alias = self.vocab.noise_table(self.ns_exponent)
        sigmoid, logsig = _k.sigmoid_tables(np.float32)
        return dict(keep=self.vocab.keep_thresholds(self.sample), neg_prob=neg_prob, neg_alias=neg_alias,
                    sigmoid=sigmoid, logsig=logsig)

    def _epoch(self, stretches, tables, alphas, bar, label):
        """One epoch: thread ``t`` trains ``stretches[t]``; return (loss, examples, kept).

        The kernel releases the GIL, so the threads run in parallel (reading the file too) while this
        thread only moves the progress bar. Ctrl-C stops every thread after its current batch.
        """
        n = len(stretches)
        totals = np.zeros((n, 4))  # per thread: tokens done, loss, examples, kept (float64: exact here)
        errors = []
        stop = threading.Event()

        def work(t):
            try:
                batches, size = stretches[t]
                state = self.rng_state[t]
                for ids, starts, lo, hi in batches():
                    if stop.is_set():
                        return
                    state, loss, examples, kept = self._call_kernel(ids, starts, lo, hi, tables, alphas,
                                                                    int(totals[t, 0]), size, state)
                    state = np.uint64(state)
                    totals[t] += (starts[hi] - starts[lo], loss, examples, kept)
                self.rng_state[t] = state
            except BaseException as err:  # re-raised in the calling thread
                errors.append(err)
                stop.set()

        threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(n)]
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
            for th in threads:
                if th.ident is not None:  # started
                    th.join()
            raise
        if errors:
            raise errors[0]
        return float(totals[:, 1].sum()), int(totals[:, 2].sum()), int(totals[:, 3].sum())

    def _call_kernel(self, ids, starts, lo, hi, tables, alphas, done, size, state):
        return _k.train_stretch(ids, starts, lo, hi, self.wv.vectors, self.syn1neg, self.accum0, self.accum1,
                                tables["keep"], tables["neg_prob"], tables["neg_alias"], tables["sigmoid"],
                                tables["logsig"], self.window, self.negative, bool(self.sg), self.shared_negatives,
                                bool(self.cbow_mean), self.optimizer == "adagrad", alphas[0], alphas[1], done,
                                size, np.float32(self.adagrad_eps), state)

    def get_latest_training_loss(self) -> float:
        """Mean loss per predicted example (``-log sigmoid`` of the true word plus the noise words) of
        the last epoch trained; 0.0 before training."""
        return self.epoch_losses[-1] if self.epoch_losses else 0.0

    # -- model files ----------------------------------------------------------------------------
    def save(self, path):
        """Save everything needed to continue training to one ``.npz`` file (no pickle).

        Arrays: both tables, counts, Adagrad state and random states; vocabulary and parameters are
        JSON in the array ``meta``. Written under a temporary name, then renamed.
        """
        if self.vocab is None:
            raise RuntimeError("nothing to save: the model has no vocabulary yet")
        meta = {name: getattr(self, name) for name in _PARAMS}
        meta.update(format="sparsemb.Word2Vec", version=1, words=self.vocab.index_to_key,
                    epoch_losses=self.epoch_losses, corpus_count=self.corpus_count,
                    corpus_total_words=self.corpus_total_words)
        blob = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
        with atomic_write(path) as fout:
            np.savez(fout, meta=blob, syn0=self.wv.vectors, syn1neg=self.syn1neg, counts=self.vocab.counts,
                     accum0=self.accum0, accum1=self.accum1, rng_state=self.rng_state)

    @classmethod
    def load(cls, path):
        """Load a model written by :meth:`save`.

        Every array is checked against the model's parameters (shape, dtype, values the kernels rely
        on) before anything is built: a damaged or hand-made file is refused, never trained on.

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
        try:
            npz = np.load(path, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with npz:
                arrays = {k: npz[k] for k in _ARRAYS}
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
        model.syn1neg = arrays["syn1neg"]
        model.accum0, model.accum1 = arrays["accum0"], arrays["accum1"]
        model.rng_state = arrays["rng_state"]
        model.wv = KeyedVectors(arrays["syn0"], model.vocab.index_to_key, model.vocab.counts)
        model.epoch_losses = [float(x) for x in meta["epoch_losses"]]
        model.corpus_count = meta["corpus_count"]
        model.corpus_total_words = meta["corpus_total_words"]
        return model


_ARRAYS = ("meta", "syn0", "syn1neg", "counts", "accum0", "accum1", "rng_state")


def _check_model_arrays(meta, arrays, model):
    """Raise ValueError naming the first array or field of a loaded model that does not fit the others."""
    words = meta.get("words")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ValueError("'words' must be a list of strings")
    if len(set(words)) != len(words):
        raise ValueError("'words' has repeated words")
    for name in ("corpus_count", "corpus_total_words"):
        _check_int(name, meta.get(name), 0)
    losses = meta.get("epoch_losses")
    if not isinstance(losses, list) or not all(isinstance(x, Real) for x in losses):
        raise ValueError("'epoch_losses' must be a list of numbers")
    v, dim = len(words), model.vector_size
    rows = v if model.optimizer == "adagrad" else 0
    expected = {"syn0": ((v, dim), np.float32), "syn1neg": ((v, dim), np.float32), "counts": ((v,), np.int64),
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
    for name in ("syn0", "syn1neg", "accum0", "accum1"):
        if not np.isfinite(arrays[name]).all():
            raise ValueError(f"array {name!r} has values that are not finite")
    for name in ("accum0", "accum1"):
        if (arrays[name] < 0).any():
            raise ValueError(f"array {name!r} (an Adagrad accumulator) has negative values")


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


def _plan(starts, workers):
    """Cut sentences into one stretch per thread (about equal tokens), each into pieces of about
    PIECE_TOKENS tokens; return, per thread, a list of (first sentence, end sentence, tokens)."""
    n_sent = starts.shape[0] - 1
    bounds = np.searchsorted(starts, np.linspace(starts[0], starts[-1], workers + 1)).astype(np.int64)
    bounds[0], bounds[-1] = 0, n_sent
    plan = []
    for t in range(workers):
        pieces = []
        lo, end = int(bounds[t]), int(max(bounds[t + 1], bounds[t]))
        while lo < end:
            hi = int(np.searchsorted(starts, starts[lo] + PIECE_TOKENS, side="right")) - 1
            hi = min(max(hi, lo + 1), end)
            pieces.append((lo, hi, int(starts[hi] - starts[lo])))
            lo = hi
        plan.append(pieces)
    return plan


def _same_source(a, b):
    if a[0] == "iterable" or b[0] == "iterable":
        return a[0] == b[0] and a[1] is b[1]
    return a == b


def _call(callbacks, method, model):
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            fn(model)

