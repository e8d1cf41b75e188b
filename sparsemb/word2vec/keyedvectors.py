"""KeyedVectors: words and their vectors, similarity queries, evaluation, and vectors files.

The class has gensim 4's KeyedVectors interface (names, arguments, defaults and return types), so code
written for gensim ports by changing the import; queries and evaluations follow gensim's definitions,
so scores computed here can be compared with scores computed by gensim. Files:

* the word2vec C tool's text and binary formats (:meth:`KeyedVectors.save_word2vec_format`,
  :meth:`KeyedVectors.load_word2vec_format`), read and written in blocks: memory stays near the table's
  size however large the file; text is formatted and parsed by compiled code
  (:mod:`sparsemb.kernels.textio`), with printf's digits and ``float()``'s values;
* sparsemb's own format (:meth:`KeyedVectors.save`): a JSON file of keys and settings beside one
  ``.npy`` file per array, so that ``load(path, mmap="r")`` maps the vectors without reading them;
* a KeyedVectors that gensim saved (a pickle and its ``.npy`` side files), read without gensim through
  the restricted unpickler of :mod:`sparsemb._io`.

Differences from gensim, on purpose: a zero vector has norm 0 and a normalised copy of zeros (gensim
divides by zero); a word2vec file's errors name the file and the line or byte where it broke; keys with
whitespace are refused when writing (the file could not be read back); changing vectors drops the
cached norms.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import warnings
from numbers import Integral

import numpy as np

from .. import _io
from .._io import atomic_write
from ..kernels import textio as _textio

logger = logging.getLogger(__name__)

def _row_norms(vectors):
    """Each row's L2 norm, as ``np.linalg.norm(vectors, axis=1)`` (the same numbers), a block of rows
    at a time: no temporary of the table's size (it would not fit beside a memory-mapped table)."""
    rows = max(1, CHUNK_BYTES // max(1, vectors[:1].nbytes))
    norms = np.empty(len(vectors), dtype=np.result_type(vectors.dtype, np.float32))
    for lo in range(0, len(vectors), rows):
        norms[lo:lo + rows] = np.linalg.norm(vectors[lo:lo + rows], axis=1)
    return norms


_KEY_TYPES = (str, int, np.integer)
_EXTENDED_KEY_TYPES = (str, int, np.integer, np.ndarray)

#: Bytes read from a vectors file at a time (and the size of a block of binary rows written).
CHUNK_BYTES = 1 << 20
#: Numbers formatted at a time when writing text: small enough that the work arrays stay in cache.
TEXT_BLOCK_NUMBERS = 16384
#: Name and version written in the metadata file of :meth:`KeyedVectors.save`.
FORMAT_NAME = "sparsemb.KeyedVectors"
FORMAT_VERSION = 1


class VectorsFileEOFError(EOFError, ValueError):
    """A vectors file ended before the vectors its header promised (gensim raises EOFError; code that
    catches ValueError for bad files catches this too)."""


class VectorsDecodeError(UnicodeDecodeError):
    """A key that is not valid in the file's encoding; the message names the file and the place."""

    def __init__(self, err: UnicodeDecodeError, path, where):
        super().__init__(err.encoding, err.object, err.start, err.end, err.reason)
        self.path, self.where = path, where

    def __str__(self):
        name = "UTF-8" if self.encoding.lower().replace("-", "") == "utf8" else self.encoding
        return f"{self.path}: invalid {name} at {self.where} ({super().__str__()})"


def _ensure_list(value):
    """A single key or vector as a one-element list, a 2-D array as a list of rows (gensim's rule)."""
    if value is None:
        return []
    if isinstance(value, _KEY_TYPES) or (isinstance(value, np.ndarray) and value.ndim == 1):
        return [value]
    if isinstance(value, np.ndarray) and value.ndim == 2:
        return list(value)
    return list(value)


def _unitvec(v):
    """``v`` scaled to unit length in its own float dtype (zeros stay zeros), as gensim's matutils: the
    norm and the scaling in float64, then one rounding (so ``similarity(w, w)`` is 1 exactly as there)."""
    v = np.asarray(v)
    wide = v.astype(np.float64)
    norm = np.linalg.norm(wide)
    if norm == 0:
        return v
    out = wide * (1.0 / norm)
    return out.astype(v.dtype) if np.issubdtype(v.dtype, np.floating) else out


def _check_restrict_vocab(restrict_vocab):
    if restrict_vocab is None:
        return None
    if isinstance(restrict_vocab, bool) or not isinstance(restrict_vocab, Integral):
        raise TypeError(f"restrict_vocab must be an int or None, got {restrict_vocab!r}")
    if restrict_vocab < 0:
        raise ValueError(f"restrict_vocab must be >= 0, got {restrict_vocab}")
    return int(restrict_vocab) or None


class KeyedVectors:
    """Vectors looked up by key (gensim 4's ``KeyedVectors``).

    Parameters
    ----------
    vector_size : int
        Dimensionality of the vectors.
    count : int, optional
        Rows allocated up front (zeros), to be filled by :meth:`add_vector`.
    dtype : numpy dtype, optional
        Dtype of the vectors (float32).
    mapfile_path : str, optional
        Unused (gensim's).

    Attributes
    ----------
    vectors : ndarray, shape (len(self), vector_size)
    index_to_key : list of str (or int)
        Keys in row order.
    key_to_index : dict
        Key -> row.
    norms : ndarray of shape (len(self),) or None
        Row norms, computed on demand by :meth:`fill_norms`.
    expandos : dict of str -> ndarray
        Per-key attributes (``"count"``, ``"sample_int"``...); use :meth:`get_vecattr` /
        :meth:`set_vecattr`.

    See Also
    --------
    KeyedVectors.from_arrays : build one from a table and its keys.
    """

    def __init__(self, vector_size, count=0, dtype=np.float32, mapfile_path=None):
        if isinstance(vector_size, np.ndarray):  # sparsemb's old constructor, (vectors, index_to_key, counts)
            warnings.warn("KeyedVectors(vectors, index_to_key, counts) is deprecated: use "
                          "KeyedVectors.from_arrays(vectors, index_to_key, counts=counts)", DeprecationWarning,
                          stacklevel=2)
            other = self.from_arrays(vector_size, count, None if isinstance(dtype, type) else dtype)
            self.__dict__.update(other.__dict__)
            return
        self.vector_size = int(vector_size)
        self.index_to_key = [None] * count
        self.next_index = 0
        self.key_to_index = {}
        self.vectors = np.zeros((count, self.vector_size), dtype=dtype)
        self.norms = None
        self.expandos = {}
        self.mapfile_path = mapfile_path

    @classmethod
    def from_arrays(cls, vectors, index_to_key, counts=None):
        """KeyedVectors over an existing table.

        Parameters
        ----------
        vectors : ndarray, shape (V, dim)
            One row per key (kept, not copied).
        index_to_key : sequence of str (or int)
            The keys, in row order; distinct.
        counts : array-like of int, shape (V,), optional
            Corpus counts of the keys, stored as the ``"count"`` attribute (``get_vecattr(key, "count")``).

        Returns
        -------
        KeyedVectors

        Raises
        ------
        ValueError
            If the shapes disagree or a key is repeated.
        """
        if not isinstance(vectors, np.ndarray):  # a memmap stays a memmap
            vectors = np.asarray(vectors)
        keys = list(index_to_key)
        if vectors.ndim != 2 or vectors.shape[0] != len(keys):
            raise ValueError(f"vectors must have shape ({len(keys)}, dim) for {len(keys)} keys, got {vectors.shape}")
        key_to_index = {k: i for i, k in enumerate(keys)}
        if len(key_to_index) != len(keys):
            raise ValueError("keys must be distinct")
        kv = cls._from_parts(vectors, keys, key_to_index)
        if counts is not None:
            counts = np.asarray(counts, dtype=np.int64)
            if counts.shape != (len(keys),):
                raise ValueError(f"need one count per key: {len(keys)} keys, counts of shape {counts.shape}")
            kv.expandos["count"] = counts
        return kv

    @classmethod
    def _from_parts(cls, vectors, index_to_key, key_to_index):
        """KeyedVectors holding these very objects (no copy of the keys or of their index)."""
        kv = cls(vectors.shape[1], 0, dtype=vectors.dtype)
        kv.vectors = vectors
        kv.index_to_key = index_to_key
        kv.key_to_index = key_to_index
        kv.next_index = len(index_to_key)
        return kv

    def __str__(self):
        return f"{self.__class__.__name__}<vector_size={self.vector_size}, {len(self)} keys>"

    def add_lifecycle_event(self, event_name, log_level=logging.INFO, **event):
        """Record an event in ``lifecycle_events`` (gensim's history of what made this object)."""
        event = dict(event, event=event_name)
        if not hasattr(self, "lifecycle_events") or self.lifecycle_events is None:
            self.lifecycle_events = []
        self.lifecycle_events.append(event)
        if log_level:
            logger.log(log_level, "%s lifecycle event %s", type(self).__name__, event)

    __repr__ = __str__

    # -- per-key attributes ---------------------------------------------------------------------
    def allocate_vecattrs(self, attrs=None, types=None):
        """Make an array per attribute, one entry per key (grown or created as zeros).

        With no arguments, resize every existing attribute array to ``len(self)``.

        Raises
        ------
        TypeError
            If ``types`` conflicts with an attribute's existing dtype.
        """
        if attrs is None:
            attrs = list(self.expandos)
            types = [self.expandos[a].dtype for a in attrs]
        size = len(self.index_to_key)
        for attr, t in zip(attrs, types):
            if t is int:
                t = np.int64
            elif t is str:
                t = object
            if attr not in self.expandos:
                self.expandos[attr] = np.zeros(size, dtype=t)
                continue
            prev = self.expandos[attr]
            if not np.issubdtype(t, prev.dtype):
                raise TypeError(f"Can't allocate type {t} for attribute {attr}, "
                                f"conflicts with its existing type {prev.dtype}")
            if len(prev) != size:
                grown = np.zeros(size, dtype=prev.dtype)
                keep = min(len(prev), size)
                grown[:keep] = prev[:keep]
                self.expandos[attr] = grown

    def set_vecattr(self, key, attr, val):
        """Set attribute ``attr`` of ``key`` to ``val`` (the first value set fixes the attribute's dtype)."""
        self.allocate_vecattrs(attrs=[attr], types=[type(val)])
        self.expandos[attr][self.get_index(key)] = val

    def get_vecattr(self, key, attr):
        """Attribute ``attr`` of ``key`` (e.g. ``"count"``).

        Raises
        ------
        KeyError
            If the key is unknown or the attribute was never set.
        """
        index = self.get_index(key)
        try:
            values = self.expandos[attr]
        except KeyError:
            raise KeyError(f"no attribute {attr!r} (known: {sorted(self.expandos)})") from None
        return values[index]

    # -- lookup ---------------------------------------------------------------------------------
    def __len__(self):
        return len(self.index_to_key)

    def __contains__(self, key):
        return self.has_index_for(key)

    def has_index_for(self, key) -> bool:
        """Whether ``key`` has a row (a key, or an int row number in range)."""
        return self.get_index(key, -1) >= 0

    def get_index(self, key, default=None):
        """Row of ``key``; an int that is not a key is taken as a row number.

        Raises
        ------
        KeyError
            If the key is unknown (and no ``default`` is given).
        """
        try:
            val = self.key_to_index.get(key, -1)
        except TypeError:  # unhashable, e.g. an array
            val = -1
        if val >= 0:
            return val
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and 0 <= key < len(self.index_to_key):
            return int(key)
        if default is not None:
            return default
        raise KeyError(f"Key '{key}' not present")

    def get_vector(self, key, norm=False):
        """Vector of ``key``, shape (vector_size,), read-only; unit length when ``norm``."""
        index = self.get_index(key)
        if norm:
            self.fill_norms()
            n = self.norms[index]
            result = self.vectors[index] / n if n > 0 else self.vectors[index].copy()
        else:
            result = self.vectors[index]
        result.setflags(write=False)
        return result

    def word_vec(self, *args, **kwargs):
        """Alias of :meth:`get_vector` (gensim's deprecated name)."""
        return self.get_vector(*args, **kwargs)

    def __getitem__(self, key_or_keys):
        if isinstance(key_or_keys, _KEY_TYPES):
            return self.get_vector(key_or_keys)
        return np.vstack([self.get_vector(k) for k in key_or_keys])

    def fill_norms(self, force=False):
        """Compute (and cache) the L2 norm of every row; ``force`` recomputes after the vectors changed."""
        if self.norms is None or force:
            self.norms = _row_norms(self.vectors)

    def get_normed_vectors(self):
        """All vectors scaled to unit length (zero rows stay zero), shape (V, vector_size)."""
        self.fill_norms()
        return self.vectors / np.where(self.norms > 0, self.norms, 1)[:, None]

    def unit_normalize_all(self):
        """Scale every vector to unit length, in place (training cannot sensibly continue after it)."""
        self.fill_norms()
        if not self.vectors.flags.writeable:
            self.vectors = np.array(self.vectors)
        self.vectors /= np.where(self.norms > 0, self.norms, 1)[:, None].astype(self.vectors.dtype)
        self.norms = np.where(self.norms > 0, 1.0, 0.0)

    def init_sims(self, replace=False):
        """gensim's older name: :meth:`fill_norms`, and :meth:`unit_normalize_all` when ``replace``."""
        self.fill_norms()
        if replace:
            self.unit_normalize_all()

    # -- adding keys ----------------------------------------------------------------------------
    def add_vector(self, key, vector):
        """Add one key and its vector, into the next preallocated slot if there is one.

        Returns
        -------
        int
            The row of the new vector.
        """
        target = self.next_index
        if target >= len(self) or self.index_to_key[target] is not None:
            target = len(self)
            self.add_vectors([key], [vector])
            self.allocate_vecattrs()
            self.next_index = target + 1
        else:
            self.index_to_key[target] = key
            self.key_to_index[key] = target
            self.vectors[target] = vector
            self.next_index += 1
            self.norms = None
        return target

    def add_vectors(self, keys, weights, extras=None, replace=False):
        """Append keys and their vectors; a key already present keeps its vector unless ``replace``.

        Parameters
        ----------
        keys : key or list of keys
        weights : array-like, shape (vector_size,) or (len(keys), vector_size)
        extras : dict of str -> array-like, optional
            Per-key attribute values for the keys, as ``set_vecattr`` would set them.
        replace : bool
        """
        if isinstance(keys, _KEY_TYPES):
            keys = [keys]
            weights = np.asarray(weights).reshape(1, -1)
        else:
            keys = list(keys)
            weights = np.asarray(weights)
            if weights.ndim == 1 and len(keys) == 1:
                weights = weights.reshape(1, -1)
        if weights.ndim != 2 or weights.shape != (len(keys), self.vector_size):
            raise ValueError(f"need one vector of size {self.vector_size} per key: {len(keys)} keys, "
                             f"weights of shape {weights.shape}")
        extras = {k: np.asarray(v) for k, v in (extras or {}).items()}
        self.allocate_vecattrs(list(extras), [v.dtype for v in extras.values()])
        in_vocab = np.array([k in self.key_to_index for k in keys], dtype=bool)
        new = np.flatnonzero(~in_vocab)
        # A key repeated within ``keys`` is added once, with its last vector (as assignment would).
        fresh = {}
        for i in new:
            fresh[keys[i]] = i
        start = len(self.index_to_key)
        for key in fresh:
            self.key_to_index[key] = len(self.index_to_key)
            self.index_to_key.append(key)
        rows = np.fromiter(fresh.values(), dtype=np.int64, count=len(fresh))
        self.vectors = np.vstack((self.vectors, weights[rows].astype(self.vectors.dtype)))
        self.allocate_vecattrs()
        for attr, values in extras.items():
            self.expandos[attr][start:] = values[rows]
        if replace and in_vocab.any():
            old = np.flatnonzero(in_vocab)
            idx = [self.key_to_index[keys[i]] for i in old]
            if not self.vectors.flags.writeable:
                self.vectors = np.array(self.vectors)
            self.vectors[idx] = weights[old]
            for attr, values in extras.items():
                self.expandos[attr][idx] = values[old]
        self.norms = None

    def __setitem__(self, keys, weights):
        """``kv[key] = vector`` / ``kv[keys] = vectors``: add, or replace the vectors of known keys."""
        if not isinstance(keys, list):
            keys = [keys]
            weights = np.asarray(weights).reshape(1, -1)
        self.add_vectors(keys, weights, replace=True)

    def resize_vectors(self, seed=0):
        """Make the table match ``index_to_key``: new rows uniform on [-1, 1)/vector_size, as gensim."""
        shape = (len(self.index_to_key), self.vector_size)
        if self.vectors.shape != shape:
            rng = np.random.default_rng(seed)
            grown = rng.random(shape, dtype=self.vectors.dtype)
            grown *= 2.0
            grown -= 1.0
            grown /= self.vector_size
            keep = min(len(self.vectors), shape[0])
            grown[:keep] = self.vectors[:keep]
            self.vectors = grown
        self.allocate_vecattrs()
        self.norms = None

    def sort_by_descending_frequency(self):
        """Reorder keys (and vectors, attributes) by descending ``"count"``, as gensim orders ties."""
        if not len(self):
            return
        counts = np.asarray(self.expandos["count"], dtype=np.int64)
        order = np.lexsort((-np.arange(len(counts)), -counts))
        self.index_to_key = [self.index_to_key[i] for i in order]
        self.allocate_vecattrs()
        for attr in self.expandos:
            self.expandos[attr] = self.expandos[attr][order]
        if len(self.vectors):
            self.vectors = self.vectors[order]
        self.key_to_index = {k: i for i, k in enumerate(self.index_to_key)}
        self.norms = None

    def vectors_for_all(self, keys, allow_inference=True, copy_vecattrs=False):
        """A new KeyedVectors holding the known keys among ``keys`` (deduplicated, in order).

        Its ``"count"`` attributes are gensim's stand-ins (descending from the number of keys) unless
        ``copy_vecattrs`` copies this one's attributes.
        """
        vocab, seen = [], set()
        for key in keys:
            if key not in seen:
                seen.add(key)
                if key in self.key_to_index:
                    vocab.append(key)
        rows = np.array([self.key_to_index[k] for k in vocab], dtype=np.int64)
        kv = KeyedVectors.from_arrays(self.vectors[rows], vocab,
                                      counts=np.arange(len(vocab), 0, -1, dtype=np.int64))
        if copy_vecattrs:
            for attr, values in self.expandos.items():
                kv.expandos[attr] = values[rows]
        return kv

    # -- similarity -----------------------------------------------------------------------------
    def get_mean_vector(self, keys, weights=None, pre_normalize=True, post_normalize=False, ignore_missing=True):
        """Weighted mean of the vectors of ``keys`` (keys, rows or raw vectors).

        Parameters
        ----------
        keys : list of (str, int or ndarray), or a 2-D array of vectors
        weights : list or ndarray of float, optional
            One per key (1 by default); the mean divides by the sum of their absolute values.
        pre_normalize : bool
            Use unit-length key vectors (raw ndarrays are used as given).
        post_normalize : bool
            Return the mean at unit length.
        ignore_missing : bool
            Skip unknown keys; otherwise raise KeyError.

        Returns
        -------
        ndarray, shape (vector_size,)
        """
        if len(keys) == 0:
            raise ValueError("cannot compute mean with no input")
        if isinstance(weights, list):
            weights = np.array(weights, dtype=self.vectors.dtype)
        if weights is None:
            weights = np.ones(len(keys), dtype=self.vectors.dtype)
        if len(keys) != weights.shape[0]:
            raise ValueError("keys and weights array must have same number of elements")
        mean = np.zeros(self.vector_size, self.vectors.dtype)
        total = 0
        for i, key in enumerate(keys):
            if isinstance(key, np.ndarray):
                mean += weights[i] * key
                total += abs(weights[i])
            elif key in self:
                vec = self.get_vector(key)
                if pre_normalize:  # one row's norm, not the table's (gensim's get_vector(norm=True))
                    n = self.norms[self.get_index(key)] if self.norms is not None else np.linalg.norm(vec)
                    vec = vec / n if n > 0 else vec
                mean += weights[i] * vec
                total += abs(weights[i])
            elif not ignore_missing:
                raise KeyError(f"Key '{key}' not present in vocabulary")
        if total > 0:
            mean = mean / total
        if post_normalize:
            mean = _unitvec(mean).astype(np.float32)
        return mean

    def most_similar(self, positive=None, negative=None, topn=10, clip_start=0, clip_end=None,
                     restrict_vocab=None, indexer=None):
        """Keys closest (cosine) to the weighted mean of the unit vectors of ``positive`` and ``negative``.

        Parameters
        ----------
        positive, negative : key, vector, 2-D array of vectors, (key or vector, weight), or a list of them
            Keys weigh +1 (positive) or -1 (negative) unless a weight is given.
        topn : int or None
            Number of results; None returns the similarity to every key searched, an ndarray.
        clip_start, clip_end : int
            Search rows ``clip_start:clip_end`` only.
        restrict_vocab : int, optional
            Search only the first ``restrict_vocab`` rows (overrides the clip arguments).
        indexer : object, optional
            An approximate index with ``most_similar(vector, topn)`` (as gensim's AnnoyIndexer).

        Returns
        -------
        list of (key, float), or ndarray when ``topn`` is None
            Input keys are left out.

        Raises
        ------
        KeyError
            If a key is not in the vocabulary.
        """
        if isinstance(topn, Integral) and topn < 1:
            return []
        restrict_vocab = _check_restrict_vocab(restrict_vocab)
        positive, negative = _ensure_list(positive), _ensure_list(negative)
        clip_end = clip_end or len(self.vectors)
        if restrict_vocab:
            clip_start, clip_end = 0, restrict_vocab
        if self.norms is None and clip_end - clip_start < len(self.vectors):
            # Only the rows searched are read (a memory-mapped table is not paged in whole).
            norms = _row_norms(self.vectors[clip_start:clip_end])
        else:
            self.fill_norms()
            norms = self.norms[clip_start:clip_end]
        keys = []
        weight = np.concatenate((np.ones(len(positive)), -np.ones(len(negative))))
        for i, item in enumerate(positive + negative):
            if isinstance(item, _EXTENDED_KEY_TYPES):
                keys.append(item)
            else:
                keys.append(item[0])
                weight[i] = item[1]
        if not keys:
            raise ValueError("cannot compute similarity with no input")
        mean = self.get_mean_vector(keys, weight, pre_normalize=True, post_normalize=True, ignore_missing=False)
        exclude = {self.get_index(k) for k in keys if isinstance(k, _KEY_TYPES) and self.has_index_for(k)}
        if indexer is not None and isinstance(topn, int):
            return indexer.most_similar(mean, topn)
        with np.errstate(invalid="ignore", divide="ignore"):
            dists = (self.vectors[clip_start:clip_end] @ mean) / norms
        if not topn:
            return dists
        return self._top(dists, exclude, topn, clip_start)

    def _top(self, dists, exclude, topn, offset=0):
        k = min(topn + len(exclude), len(dists))
        if k <= 0:
            return []
        if k < len(dists):
            part = np.argpartition(-np.nan_to_num(dists, nan=-np.inf), k - 1)[:k]
            best = part[np.argsort(-dists[part], kind="stable")]
        else:
            best = np.argsort(-dists, kind="stable")
        return [(self.index_to_key[i + offset], float(dists[i])) for i in best if i + offset not in exclude][:topn]

    def similar_by_key(self, key, topn=10, restrict_vocab=None):
        """``most_similar(positive=[key], topn=topn, restrict_vocab=restrict_vocab)``."""
        return self.most_similar(positive=[key], topn=topn, restrict_vocab=restrict_vocab)

    def similar_by_word(self, word, topn=10, restrict_vocab=None):
        """Alias of :meth:`similar_by_key`."""
        return self.similar_by_key(word, topn, restrict_vocab)

    def similar_by_vector(self, vector, topn=10, restrict_vocab=None):
        """Keys closest to ``vector`` (shape (vector_size,)); see :meth:`most_similar`."""
        return self.most_similar(positive=[vector], topn=topn, restrict_vocab=restrict_vocab)

    def most_similar_cosmul(self, positive=None, negative=None, topn=10, restrict_vocab=None):
        """3CosMul (Levy and Goldberg 2014): product of ``(1 + cos) / 2`` over positive keys divided by
        that over negative keys (+1e-6), as gensim defines it. Arguments as :meth:`most_similar`."""
        if isinstance(topn, Integral) and topn < 1:
            return []
        restrict_vocab = _check_restrict_vocab(restrict_vocab)
        positive, negative = _ensure_list(positive), _ensure_list(negative)
        if not positive:
            raise ValueError("cannot compute similarity with no input")
        self.fill_norms()
        end = restrict_vocab or len(self.vectors)
        exclude = {self.get_index(k) for k in positive + negative
                   if not isinstance(k, np.ndarray) and self.has_index_for(k)}

        def shifted(keys):
            vecs = [k if isinstance(k, np.ndarray) else self.get_vector(k, norm=True) for k in keys]
            with np.errstate(invalid="ignore", divide="ignore"):
                return [(1 + (self.vectors[:end] @ v) / self.norms[:end]) / 2 for v in vecs]

        dists = np.prod(shifted(positive), axis=0) / (np.prod(shifted(negative), axis=0) + 0.000001)
        if not topn:
            return dists
        return self._top(dists, exclude, topn)

    @staticmethod
    def cosine_similarities(vector_1, vectors_all):
        """Cosine similarity of ``vector_1`` (dim,) with each row of ``vectors_all`` (n, dim) -> (n,)."""
        norm = np.linalg.norm(vector_1)
        all_norms = np.linalg.norm(vectors_all, axis=1)
        return np.dot(vectors_all, vector_1) / (norm * all_norms)

    def distances(self, word_or_vector, other_words=()):
        """Cosine distances (1 - similarity) from a key or vector to ``other_words`` (all keys if empty).

        Returns
        -------
        ndarray, shape (len(other_words),) or (V,)
        """
        if isinstance(word_or_vector, _KEY_TYPES):
            vector = self.get_vector(word_or_vector)
        else:
            vector = word_or_vector
        if not other_words:
            others = self.vectors
        else:
            others = self.vectors[[self.get_index(w) for w in other_words]]
        return 1 - self.cosine_similarities(vector, others)

    def distance(self, w1, w2):
        """Cosine distance of two keys: ``1 - similarity(w1, w2)``."""
        return 1 - self.similarity(w1, w2)

    def similarity(self, w1, w2):
        """Cosine similarity of two keys (reads only their two rows)."""
        return np.dot(_unitvec(self[w1]), _unitvec(self[w2]))

    def n_similarity(self, ws1, ws2):
        """Cosine similarity of the means of two lists of keys.

        Raises
        ------
        ZeroDivisionError
            If a list is empty (as gensim).
        """
        if not (len(ws1) and len(ws2)):
            raise ZeroDivisionError("At least one of the passed list is empty.")
        mean1 = self.get_mean_vector(ws1, pre_normalize=False)
        mean2 = self.get_mean_vector(ws2, pre_normalize=False)
        return np.dot(_unitvec(mean1), _unitvec(mean2))

    def closer_than(self, key1, key2):
        """Keys closer to ``key1`` than ``key2`` is (``key1`` itself left out)."""
        all_distances = self.distances(key1)
        i1, i2 = self.get_index(key1), self.get_index(key2)
        closer = np.flatnonzero(all_distances < all_distances[i2])
        return [self.index_to_key[i] for i in closer if i != i1]

    def words_closer_than(self, word1, word2):
        """Alias of :meth:`closer_than`."""
        return self.closer_than(word1, word2)

    def rank(self, key1, key2):
        """Rank of ``key2`` among all keys by distance from ``key1`` (1 = closest)."""
        return len(self.closer_than(key1, key2)) + 1

    def most_similar_to_given(self, key1, keys_list):
        """The key of ``keys_list`` most similar to ``key1``."""
        return keys_list[int(np.argmax([self.similarity(key1, k) for k in keys_list]))]

    def relative_cosine_similarity(self, wa, wb, topn=10):
        """Relative cosine similarity (Leeuwenberg et al. 2016): ``similarity(wa, wb)`` over the sum of
        the similarities of ``wa``'s ``topn`` nearest keys."""
        sims = self.similar_by_word(wa, topn)
        if not sims:
            raise ValueError("Cannot calculate relative cosine similarity without any similar words.")
        return float(self.similarity(wa, wb)) / sum(sim for _, sim in sims)

    def rank_by_centrality(self, words, use_norm=True):
        """``(similarity, word)`` pairs, most similar to the words' centroid first (unknown words ignored)."""
        self.fill_norms()
        used = [w for w in words if w in self]
        if len(used) != len(words):
            warnings.warn(f"ignoring words not in the vocabulary: {sorted(map(str, set(words) - set(used)))}")
        if not used:
            raise ValueError("cannot select a word from an empty list")
        vectors = np.vstack([self.get_vector(w, norm=use_norm) for w in used]).astype(np.float32)
        mean = self.get_mean_vector(vectors, post_normalize=True)
        dists = vectors @ mean
        return sorted(zip(dists, used), reverse=True)

    def doesnt_match(self, words):
        """The key furthest from the mean of the unit vectors of ``words`` (unknown words are ignored)."""
        return self.rank_by_centrality(words)[-1][1]

    def wmdistance(self, document1, document2, norm=True):
        """Word Mover's Distance between two lists of keys (Kusner et al. 2015), as gensim computes it.

        Needs the optional POT package (``pip install POT``); unknown words are dropped, and a document
        left empty gives ``inf``.

        Raises
        ------
        ImportError
            If POT is not installed.
        """
        from ot import emd2  # optional extra: only this method needs it

        doc1 = [t for t in document1 if t in self]
        doc2 = [t for t in document2 if t in self]
        if not doc1 or not doc2:
            logger.warning("At least one of the documents had no words that were in the vocabulary.")
            return float("inf")
        vocab = {t: i for i, t in enumerate(dict.fromkeys(doc1 + doc2))}
        if len(vocab) == 1:
            return 0.0
        uniq1, uniq2 = list(dict.fromkeys(doc1)), list(dict.fromkeys(doc2))
        v1 = np.array([self.get_vector(t, norm=norm) for t in uniq1], dtype=np.float64)
        v2 = np.array([self.get_vector(t, norm=norm) for t in uniq2], dtype=np.float64)
        dist = np.zeros((len(vocab), len(vocab)), dtype=np.float64)
        diff = v1[:, None, :] - v2[None, :, :]
        dist[np.ix_([vocab[t] for t in uniq1], [vocab[t] for t in uniq2])] = np.sqrt((diff * diff).sum(-1))
        if abs(dist.sum()) < 1e-8:
            return float("inf")

        def nbow(doc):
            d = np.zeros(len(vocab), dtype=np.float64)
            for t in doc:
                d[vocab[t]] += 1.0
            return d / len(doc)

        return emd2(nbow(doc1), nbow(doc2), dist)

    # -- evaluation -----------------------------------------------------------------------------
    def _ok_vocab(self, restrict_vocab, case_insensitive):
        keys = self.index_to_key[:restrict_vocab]
        fold = str.upper if case_insensitive else (lambda k: k)
        # Reversed, so that the most frequent of several case variants wins, as in gensim.
        return {fold(k): i for i, k in reversed(list(enumerate(keys)))}, fold

    def evaluate_word_analogies(self, analogies, restrict_vocab=300000, case_insensitive=True,
                                dummy4unknown=False, similarity_function="most_similar"):
        """Accuracy on an analogy file ("a b c d": a is to b as c is to d), as gensim computes it.

        Each question is answered over the first ``restrict_vocab`` keys, ignoring the three question
        words; questions with a word outside them are skipped (counted wrong if ``dummy4unknown``).

        Parameters
        ----------
        analogies : str or os.PathLike
            File with ``: section`` lines followed by 4-word lines (e.g. questions-words.txt).
        restrict_vocab : int
        case_insensitive : bool
            Compare words upper-cased; a key's most frequent case variant stands for it.
        dummy4unknown : bool
        similarity_function : str
            Name of the method that answers a question: ``"most_similar"`` (3CosAdd, computed in
            batches) or another method with most_similar's arguments, e.g. ``"most_similar_cosmul"``.

        Returns
        -------
        score : float
            Overall accuracy in [0, 1] (0.0 when nothing was evaluated).
        sections : list of dict
            ``{"section": name, "correct": [...], "incorrect": [...]}`` per section, then a
            ``"Total accuracy"`` entry.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            If a question comes before any section header, ``similarity_function`` names no method, or a
            line is not valid UTF-8 (naming the file and line).
        """
        answer_with = getattr(self, similarity_function, None) if isinstance(similarity_function, str) else None
        if not callable(answer_with):
            raise ValueError(f"similarity_function={similarity_function!r} is not a method of KeyedVectors")
        restrict_vocab = _check_restrict_vocab(restrict_vocab)
        ok_vocab, fold = self._ok_vocab(restrict_vocab, case_insensitive)
        sections, questions = [], []
        for line_no, line in _lines(analogies):
            if line.startswith(": "):
                sections.append({"section": line.lstrip(": ").strip(), "correct": [], "incorrect": []})
                continue
            if not sections:
                raise ValueError(f"{analogies}: missing section header before line {line_no}")
            words = [fold(w) for w in line.split()]
            if len(words) != 4:
                continue
            if all(w in ok_vocab for w in words):
                questions.append((sections[-1], tuple(words)))
            elif dummy4unknown:
                sections[-1]["incorrect"].append(tuple(words))
        quads = [q for _, q in questions]
        if similarity_function == "most_similar":
            predicted = self._answer(quads, ok_vocab, fold, restrict_vocab)
        else:
            predicted = []
            for a, b, c, _ in quads:
                sims = answer_with(positive=[ok_vocab[b], ok_vocab[c]], negative=[ok_vocab[a]], topn=5,
                                   restrict_vocab=restrict_vocab)
                guess = None
                for key, _ in sims:
                    guess = fold(key)
                    if guess in ok_vocab and guess not in (a, b, c):
                        break
                predicted.append(guess)
        for (section, quad), guess in zip(questions, predicted):
            section["correct" if guess == quad[3] else "incorrect"].append(quad)
        total = {
            "section": "Total accuracy",
            "correct": list(itertools.chain.from_iterable(s["correct"] for s in sections)),
            "incorrect": list(itertools.chain.from_iterable(s["incorrect"] for s in sections)),
        }
        sections.append(total)
        n = len(total["correct"]) + len(total["incorrect"])
        return (len(total["correct"]) / n if n else 0.0), sections

    def _answer(self, quads, ok_vocab, fold, restrict_vocab, batch=512):
        """3CosAdd answers to (a, b, c, _) questions, in batches of matrix products."""
        if not quads:
            return []
        normed = self.get_normed_vectors()[:restrict_vocab]
        idx = np.array([[ok_vocab[w] for w in q[:3]] for q in quads], dtype=np.int64)
        answers = []
        for lo in range(0, len(quads), batch):
            a, b, c = idx[lo : lo + batch].T
            mean = (normed[b] + normed[c] - normed[a]) / 3.0
            mean /= np.linalg.norm(mean, axis=1, keepdims=True)
            sims = mean @ normed.T
            rows = np.arange(sims.shape[0])
            for col in (a, b, c):
                sims[rows, col] = -np.inf
            k = min(5, sims.shape[1] - 1)
            top = np.argpartition(-sims, k, axis=1)[:, :k] if k > 0 else np.zeros((len(rows), 0), int)
            for r, q in enumerate(quads[lo : lo + batch]):
                cand = top[r][np.argsort(-sims[r, top[r]], kind="stable")]
                guess = None
                for i in cand:
                    guess = fold(self.index_to_key[i])
                    if guess in ok_vocab and guess not in q[:3]:
                        break
                answers.append(guess)
        return answers

    def evaluate_word_pairs(self, pairs, delimiter="\t", encoding="utf8", restrict_vocab=300000,
                            case_insensitive=True, dummy4unknown=False):
        """Correlation of cosine similarities with human judgements, as gensim computes it.

        Parameters
        ----------
        pairs : str or os.PathLike
            Lines ``word1<delimiter>word2<delimiter>score``; lines starting with ``#`` are comments.
        delimiter : str
        encoding : str
        restrict_vocab : int
        case_insensitive : bool
        dummy4unknown : bool
            Give pairs with unknown words similarity 0 instead of skipping them.

        Returns
        -------
        pearson, spearman : scipy results
            ``(statistic, pvalue)`` pairs.
        oov_ratio : float
            Percentage of pairs with a word outside the first ``restrict_vocab`` keys.

        Raises
        ------
        ValueError
            If fewer than two pairs could be scored, or a line is not valid text (naming the file and
            line).
        """
        from scipy import stats  # costs most of a second to import; only evaluation needs it

        restrict_vocab = _check_restrict_vocab(restrict_vocab)
        ok_vocab, fold = self._ok_vocab(restrict_vocab, case_insensitive)
        gold, model = [], []
        oov = 0
        for _, line in _lines(pairs, encoding):
            if not line or line.startswith("#"):
                continue
            try:
                a, b, sim = [fold(w) for w in line.split(delimiter)]
                sim = float(sim)
            except ValueError:
                continue
            if a not in ok_vocab or b not in ok_vocab:
                oov += 1
                if dummy4unknown:
                    gold.append(sim)
                    model.append(0.0)
                continue
            gold.append(sim)
            model.append(self.similarity(ok_vocab[a], ok_vocab[b]))
        if len(gold) < 2:
            found = "no pair" if not gold else "only one pair"
            raise ValueError(f"{pairs}: {found} could be scored (bad format or words outside the vocabulary); "
                             f"a correlation needs at least two")
        spearman = stats.spearmanr(gold, model)
        pearson = stats.pearsonr(gold, model)
        oov_ratio = 100.0 * oov / (len(gold) if dummy4unknown else len(gold) + oov)
        return pearson, spearman, oov_ratio

    # -- word2vec C files -----------------------------------------------------------------------
    def save_word2vec_format(self, fname, fvocab=None, binary=False, total_vec=None, write_header=True,
                             prefix="", append=False, sort_attr="count"):
        """Write the word2vec C format: a ``"V dim"`` header, then one key and its vector per entry.

        Text: ``key v1 ... vdim`` per line, numbers as ``%.9g`` (float32 round-trips exactly).
        Binary: ``key`` UTF-8, a space, ``dim`` little-endian float32, a newline (as the C tool writes).
        Rows are written most frequent first when the ``sort_attr`` attribute exists (gensim's order),
        a block at a time. The file is written under a temporary name and renamed; with ``append`` it is
        extended in place and cut back to its old length if the write fails.

        Parameters
        ----------
        fname : str or os.PathLike
        fvocab : str or os.PathLike, optional
            Also write ``key count`` lines (the C tool's ``-save-vocab`` file) in the same order.
        binary : bool
        total_vec : int, optional
            The count written in the header (the number of keys by default).
        write_header : bool
            False writes no header line (GloVe's layout).
        prefix : str
            Prepended to every key.
        append : bool
            Add to the end of existing files instead of replacing them.
        sort_attr : str
            Attribute whose descending order the rows follow (``"count"``).

        Raises
        ------
        ValueError
            If a key is empty or contains whitespace (the format could not be read back), or ``fvocab``
            is given without the ``sort_attr`` attribute.
        FileNotFoundError
            If the directory does not exist.
        """
        fname = os.fspath(fname)
        if total_vec is None:
            total_vec = len(self.index_to_key)
        order = range(len(self.index_to_key))  # rows already in the order to write: no index array
        if sort_attr in self.expandos:
            attr = np.asarray(self.expandos[sort_attr])
            if not np.all(attr[:-1] >= attr[1:]):
                order = np.argsort(-attr, kind="stable")
        elif fvocab is not None:
            raise ValueError(f"Cannot store vocabulary with '{sort_attr}' because that attribute does not exist")
        # gensim writes a leading run of int keys equal to their rows (Doc2Vec's tags) first, unsorted.
        ints = 0
        for i, key in enumerate(self.index_to_key):
            if not isinstance(key, (int, np.integer)) or key != i:
                break
            ints += 1
        if ints and not isinstance(order, range):
            order = np.concatenate([np.arange(ints), order[order >= ints]])
        if (len(self.index_to_key), self.vector_size) != self.vectors.shape:
            raise ValueError(f"vectors of shape {self.vectors.shape} for {len(self.index_to_key)} keys")
        _check_keys(self.index_to_key, prefix)
        opener = _io.atomic_append if append else atomic_write
        if fvocab is not None:
            counts = np.asarray(self.expandos[sort_attr])
            with opener(fvocab) as vout:
                for rows in _row_blocks(order, 65536):
                    vout.write("".join(f"{k} {c}\n" for k, c in zip(_block_keys(self.index_to_key, rows, prefix),
                                                                     counts[rows].tolist())).encode("utf-8"))
        with opener(fname) as fout:
            if write_header:
                fout.write(f"{total_vec} {self.vector_size}\n".encode("utf-8"))
            _write_rows(fout, self.index_to_key, self.vectors, order, binary, prefix)

    @classmethod
    def load_word2vec_format(cls, fname, fvocab=None, binary=False, encoding="utf8", unicode_errors="strict",
                             limit=None, datatype=np.float32, no_header=False):
        """Read a word2vec C text or binary file (as written by the C tool, gensim or this class).

        The file is read in blocks into a table allocated once (no larger than the file can hold,
        whatever its header says); with ``limit`` reading stops after that many vectors.

        Parameters
        ----------
        fname : str or os.PathLike
        fvocab : str or os.PathLike, optional
            ``key count`` lines (the C tool's ``-save-vocab`` output): the keys' counts.
        binary : bool
        encoding : str
            Encoding of the keys.
        unicode_errors : str
            How to treat undecodable keys ("strict" raises, "replace", "ignore").
        limit : int, optional
            Read at most this many vectors.
        datatype : numpy float dtype
            Dtype of the table (float32).
        no_header : bool
            The file has no ``"V dim"`` line (GloVe's text layout): one extra pass counts its lines.

        Returns
        -------
        KeyedVectors
            A repeated key keeps its first vector (with a warning). Without ``fvocab``, counts are
            gensim's stand-ins, descending from the number of vectors read.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        EOFError
            (:class:`VectorsFileEOFError`, also a ValueError) if the file ends before its vectors do.
        UnicodeDecodeError
            (:class:`VectorsDecodeError`, a ValueError) for an undecodable key with "strict".
        ValueError
            If the file is corrupt; the message names the file and where it broke.
        NotImplementedError
            For ``no_header`` with ``binary`` (as gensim).
        """
        fname = os.fspath(fname)
        counts = None
        if fvocab is not None:
            counts = _read_vocab_file(os.fspath(fvocab), encoding, unicode_errors)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, Integral) or limit < 0):
            raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
        keys, key_to_index, vectors = _read_vectors_file(fname, binary, encoding, unicode_errors, limit,
                                                         np.dtype(datatype), no_header)
        kv = cls._from_parts(vectors, keys, key_to_index)
        if counts is None:
            kv.expandos["count"] = np.arange(len(keys), 0, -1, dtype=np.int64)
        else:
            missing = [k for k in keys if k not in counts]
            if missing:
                warnings.warn(f"{fvocab}: vocabulary file is incomplete: {len(missing)} words missing "
                              f"(e.g. {missing[0]!r}); their count is 0")
            kv.expandos["count"] = np.array([counts.get(k, 0) for k in keys], dtype=np.int64)
        return kv

    def intersect_word2vec_format(self, fname, lockf=0.0, binary=False, encoding="utf8", unicode_errors="strict"):
        """Take the vectors of a word2vec file for the keys this one already has (no keys are added).

        ``vectors_lockf`` (one factor per key, created as ones when missing) is set to ``lockf`` for the
        merged keys: 0.0 keeps them fixed in later training.

        Raises
        ------
        ValueError
            If the file's vector size differs from this one's.
        """
        fname = os.fspath(fname)
        lock = getattr(self, "vectors_lockf", None)
        if lock is None or np.ndim(lock) != 1 or len(lock) != len(self):
            self.vectors_lockf = np.ones(len(self), dtype=np.float32)
        if not self.vectors.flags.writeable:
            self.vectors = np.array(self.vectors)
        merged = 0
        for keys, block in _iter_vectors_file(fname, binary, encoding, unicode_errors, None, self.vectors.dtype,
                                              False, expect_dim=self.vector_size):
            for key, row in zip(keys, block):
                i = self.key_to_index.get(key)
                if i is not None:
                    self.vectors[i] = row
                    self.vectors_lockf[i] = lockf
                    merged += 1
        self.norms = None
        logger.info("merged %d vectors into %s matrix from %s", merged, self.vectors.shape, fname)

    # -- sparsemb's own format, and gensim's pickles --------------------------------------------
    def save(self, fname_or_handle, *args, **kwargs):
        """Save to ``fname`` in sparsemb's format: JSON metadata there, arrays beside it as ``.npy``.

        ``fname`` holds the keys, the vector size and the attribute names; ``fname.vectors.npy`` the
        table and ``fname.<attr>.npy`` each numeric per-key attribute. No pickle: the files can be read
        by any JSON and NumPy reader, and :meth:`load` with ``mmap="r"`` maps the table. Each file is
        written atomically; extra gensim arguments (``separately``, ``pickle_protocol``...) are ignored.

        Raises
        ------
        TypeError
            If a key is not a str or int (JSON could not hold it).
        """
        fname = os.fspath(fname_or_handle)
        keys = list(self.index_to_key)
        for k in keys:
            if not isinstance(k, (str, int, np.integer)) or isinstance(k, bool):
                raise TypeError(f"key {k!r} cannot be saved: keys must be str or int")
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "vector_size": self.vector_size,
                "dtype": self.vectors.dtype.str, "index_to_key": [k if isinstance(k, str) else int(k) for k in keys],
                "next_index": int(self.next_index), "arrays": {}, "object_attrs": {}}
        arrays = {"vectors": np.asarray(self.vectors)}
        lock = getattr(self, "vectors_lockf", None)
        if isinstance(lock, np.ndarray):
            arrays["vectors_lockf"] = lock
        for attr, values in self.expandos.items():
            if values.dtype == object:
                meta["object_attrs"][attr] = [v if v is None or isinstance(v, (str, int, float, bool)) else str(v)
                                              for v in values.tolist()]
            else:
                arrays["vecattr." + attr] = values
        for name, array in arrays.items():
            side = f"{fname}.{name}.npy"
            meta["arrays"][name] = os.path.basename(side)
            with atomic_write(side) as f:
                np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        with atomic_write(fname) as f:
            f.write(json.dumps(meta, ensure_ascii=False).encode("utf-8"))

    @classmethod
    def load(cls, fname, mmap=None):
        """Load a KeyedVectors saved by :meth:`save`, or by gensim (any 3.x or 4.x ``.kv`` / ``.wv`` file).

        Parameters
        ----------
        fname : str or os.PathLike
        mmap : {None, "r", "r+", "c"}
            Map the ``.npy`` arrays instead of reading them (``"r"``: read-only, pages read on demand).

        Returns
        -------
        KeyedVectors

        Raises
        ------
        FileNotFoundError
            If the file or a side file is missing.
        pickle.UnpicklingError
            (:class:`sparsemb._io.UnsafePickleError`) if a gensim file asks for anything the restricted
            unpickler does not admit.
        ValueError
            If the file is neither format, or is inconsistent.
        """
        fname = os.fspath(fname)
        with _io.open_compressed(fname) as f:
            first = f.read(1)
        if first == b"{":
            return cls._load_own(fname, mmap)
        obj = _io.load_gensim(fname, mmap=mmap)
        return cls._from_gensim(obj, fname)

    @classmethod
    def _load_own(cls, fname, mmap):
        with open(fname, "rb") as f:
            try:
                meta = json.loads(f.read().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"{fname}: not a sparsemb KeyedVectors file ({err})") from None
        if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{fname}: not a {FORMAT_NAME} file of version {FORMAT_VERSION}")
        folder = os.path.dirname(fname)
        arrays = {name: np.load(os.path.join(folder, base), mmap_mode=mmap, allow_pickle=False)
                  for name, base in meta["arrays"].items()}
        keys = meta["index_to_key"]
        vectors = arrays.pop("vectors")
        if vectors.shape != (len(keys), meta["vector_size"]):
            raise ValueError(f"{fname}: vectors of shape {vectors.shape} for {len(keys)} keys of size "
                             f"{meta['vector_size']}")
        kv = cls.from_arrays(vectors, keys)
        kv.next_index = meta.get("next_index", len(keys))
        if "vectors_lockf" in arrays:
            kv.vectors_lockf = arrays.pop("vectors_lockf")
        for name, values in arrays.items():
            attr = name[len("vecattr."):]
            if values.shape != (len(keys),):
                raise ValueError(f"{fname}: attribute {attr!r} has shape {values.shape} for {len(keys)} keys")
            kv.expandos[attr] = values
        for attr, values in meta["object_attrs"].items():
            kv.expandos[attr] = np.array(values + [None], dtype=object)[:-1]
        return kv

    @classmethod
    def _from_gensim(cls, obj, fname):
        """A KeyedVectors from the attributes of gensim's pickled KeyedVectors (3.x or 4.x layouts)."""
        state = getattr(obj, "__dict__", None)
        name = getattr(type(obj), "pickled_class", type(obj).__name__)
        if state is None or not isinstance(obj, _io.PickledObject):
            raise ValueError(f"{fname}: holds a {name}, not gensim KeyedVectors")
        if "wv" in state and "vectors" not in state and "syn0" not in state:
            raise ValueError(f"{fname}: holds a {name} model, not KeyedVectors: load it with Word2Vec.load "
                             f"and use its .wv")
        vectors = state.get("vectors", state.get("syn0"))
        if vectors is None:
            raise ValueError(f"{fname}: a {name} without vectors")
        keys = state.get("index_to_key", state.get("index2word", state.get("index2entity")))
        expandos = dict(state.get("expandos") or {})
        if "key_to_index" not in state and "vocab" in state:  # gensim < 4: a Vocab object per key
            vocab = state["vocab"]
            if keys is None:
                keys = [None] * len(vocab)
                for k, v in vocab.items():
                    keys[v.__dict__["index"]] = k
            attrs = {}
            for k, v in vocab.items():
                for attr, val in v.__dict__.items():
                    if attr != "index":
                        attrs.setdefault(attr, {})[v.__dict__["index"]] = val
            for attr, vals in attrs.items():
                arr = np.zeros(len(keys), dtype=np.uint32 if attr == "sample_int" else np.int64)
                for i, val in vals.items():
                    arr[i] = val
                expandos[attr] = arr
        if keys is None:
            raise ValueError(f"{fname}: a {name} without keys")
        vectors = np.asarray(vectors) if not isinstance(vectors, np.ndarray) else vectors
        kv = cls.from_arrays(vectors, list(keys))
        for attr, values in expandos.items():
            kv.expandos[attr] = np.asarray(values)
        kv.allocate_vecattrs()
        lock = state.get("vectors_lockf")
        if isinstance(lock, np.ndarray) and lock.shape == (len(kv),):
            kv.vectors_lockf = lock
        return kv


# -- reading and writing word2vec files ------------------------------------------------------------

def _lines(path, encoding="utf-8"):
    """Yield (line number from 1, text) of a text file; undecodable text raises ValueError naming the line."""
    path = os.fspath(path)
    with open(path, "rb") as fin:
        for line_no, raw in enumerate(fin, 1):
            yield line_no, _decode(raw, path, f"line {line_no}", "strict", encoding)


def _decode(raw, path, where, errors, encoding="utf-8"):
    try:
        return raw.decode(encoding, errors=errors)
    except UnicodeDecodeError as err:
        raise VectorsDecodeError(err, path, where) from None


def _read_vocab_file(path, encoding, errors):
    counts = {}
    for line_no, raw in enumerate(open(path, "rb"), 1):
        parts = _decode(raw, path, f"line {line_no}", errors, encoding).strip().split()
        if not parts:
            continue
        try:
            word, count = parts
            counts[word] = int(count)
        except ValueError:
            raise ValueError(f"{path}: line {line_no} is not 'word count'") from None
    return counts


#: Printable ASCII and line whitespace: a "binary" vector of 16 or more bytes made only of these is text
#: read as binary (random float bytes are all printable with odds below 1 in 10^6).
_TEXT_BYTES = frozenset(b"\t\n\r" + bytes(range(32, 127)))
#: No word has control characters: in a binary file, a word that does is float bytes read as a word,
#: because an earlier word contained a space (the format's one separator) or the file is corrupt.
_CONTROL = bytes(range(32))


def _read_header(fin, path, no_header):
    line = fin.readline(1 << 16)
    try:
        n, dim = (int(x) for x in line.split())
        if n < 0 or dim < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"{path}: bad header {line[:60]!r}, expected 'count dim'") from None
    return n, dim


def _detect_text_sizes(path, limit, encoding, errors):
    """Lines and numbers per line of a text file without header (gensim's extra pass for no_header)."""
    n, dim = 0, None
    with open(path, "rb") as fin:
        for raw in fin:
            if limit is not None and n == limit:
                break
            if dim is None:
                parts = raw.rstrip().split(b" ")
                dim = len(parts) - 1
                if dim < 1:
                    raise ValueError(f"{path}: line 1 has no numbers")
            n += 1
    if dim is None:
        raise ValueError(f"{path}: empty file")
    return n, dim


def _iter_vectors_file(path, binary, encoding, errors, limit, dtype, no_header, expect_dim=None, state=None):
    """Yield ``(keys, block)`` pieces of a word2vec file, ``block`` of shape (len(keys), dim).

    ``state``, a dict, receives ``n`` (vectors to read) and ``dim`` before the first piece.
    """
    if no_header and binary:
        raise NotImplementedError("no_header only available for text-format files")
    if no_header:
        n, dim = _detect_text_sizes(path, limit, encoding, errors)
    fin = open(path, "rb")
    with fin:
        if not no_header:
            n, dim = _read_header(fin, path, no_header)
        if expect_dim is not None and dim != expect_dim:
            raise ValueError(f"incompatible vector size {dim} in file {path}, expected {expect_dim}")
        if limit is not None:
            n = min(n, limit)
        if state is not None:
            state["n"], state["dim"] = n, dim
            state["size"] = os.fstat(fin.fileno()).st_size - fin.tell()
            yield None
        if binary:
            yield from _read_binary(fin, path, n, dim, dtype, errors, encoding, check_tail=limit is None)
        else:
            yield from _read_text(fin, path, n, dim, dtype, errors, encoding, first_line=1 if no_header else 2)


def _read_vectors_file(path, binary, encoding, errors, limit, dtype, no_header):
    """All keys and the table of a word2vec file; the table is allocated once."""
    state = {}
    pieces = _iter_vectors_file(path, binary, encoding, errors, limit, dtype, no_header, state=state)
    next(pieces)
    n, dim = state["n"], state["dim"]
    # The smallest entry is a one-byte word, a separator and the numbers (with a newline, in text):
    # no more rows are allocated than the file can hold, however many the header promises.
    smallest = dtype.itemsize * 0 + (4 * dim + 2 if binary else 2 * dim + 1)
    rows = min(n, state["size"] // smallest + 1)
    vectors = np.empty((rows, dim), dtype=dtype)
    keys, key_to_index = [], {}
    filled = 0
    duplicates = 0
    for block_keys, block in pieces:
        fresh = dict(zip(block_keys, range(filled, filled + len(block_keys))))
        if len(fresh) == len(block_keys) and key_to_index.keys().isdisjoint(fresh):  # no repeats: in C
            key_to_index.update(fresh)
            keys += block_keys
            vectors[filled : filled + len(block_keys)] = block
            filled += len(block_keys)
            continue
        take = []
        for j, key in enumerate(block_keys):
            if key in key_to_index:
                duplicates += 1
                continue
            key_to_index[key] = len(keys)
            keys.append(key)
            take.append(j)
        if len(take) == len(block_keys):
            vectors[filled : filled + len(take)] = block
        else:
            vectors[filled : filled + len(take)] = block[take]
        filled += len(take)
    if duplicates:
        warnings.warn(f"{path}: {duplicates} repeated words; keeping the first vector of each")
    if filled != rows:
        vectors.resize((filled, dim), refcheck=False)
    return keys, key_to_index, vectors


def _truncated(path, msg):
    return VectorsFileEOFError(f"{path}: {msg}")


def _read_binary(fin, path, n, dim, dtype, errors, encoding, check_tail):
    """Yield pieces of ``n`` binary entries: key bytes, a space, ``dim`` little-endian float32."""
    width = 4 * dim
    buf = b""
    pos = 0
    offset = fin.tell()  # file offset of buf[0], for messages
    i = 0
    eof = False
    while i < n:
        keys, starts = [], []
        while i < n:
            # Newlines (and the C tool's carriage returns) between entries are skipped.
            while pos < len(buf) and buf[pos] in b"\n\r":
                pos += 1
            space = buf.find(b" ", pos)
            if space < 0 or space + 1 + width > len(buf):
                if eof:
                    if space == pos:
                        raise ValueError(f"{path}: word {i + 1} of {n} (byte {offset + pos}) is empty: corrupt")
                    raise _truncated(path, f"truncated or corrupt at word {i + 1} of {n} (byte {offset + pos})")
                break
            if space == pos:
                raise ValueError(f"{path}: word {i + 1} of {n} (byte {offset + pos}) is empty: corrupt")
            if i == 0 and width >= 16 and set(buf[space + 1 : space + 1 + width]) <= _TEXT_BYTES:
                raise ValueError(f"{path}: this is a text vectors file, not binary (read it as text: name it "
                                 f".txt or .vec, or pass binary=False)")
            raw = buf[pos:space]
            if len(raw.translate(None, _CONTROL)) != len(raw):
                raise ValueError(f"{path}: word {i + 1} of {n} (byte {offset + pos}) has control characters: "
                                 f"corrupt, or an earlier word contains a space")
            keys.append(_decode(raw, path, f"byte {offset + pos}", errors, encoding))
            starts.append(space + 1)
            pos = space + 1 + width
            i += 1
        if keys:
            # Rows of a sliding window over the buffer are views: indexing them copies just the vectors.
            windows = np.lib.stride_tricks.sliding_window_view(np.frombuffer(buf, dtype=np.uint8), width)
            block = windows[np.asarray(starts, dtype=np.intp)].view("<f4")
            yield keys, block.astype(dtype, copy=False)
        if i < n:
            more = fin.read(max(CHUNK_BYTES, width + 1))
            # A word longer than the buffer makes it grow until the word's space is in it.
            offset += pos
            buf = buf[pos:] + more
            pos = 0
            eof = not more
    if check_tail:
        tail = buf[pos:] + fin.read(CHUNK_BYTES)
        extra = len(tail) + sum(len(c) for c in iter(lambda: fin.read(CHUNK_BYTES), b""))
        if tail.strip():
            raise ValueError(f"{path}: {extra} bytes after the last of the {n} vectors the header "
                             f"promises: corrupt, or a word contains a space")


def _read_text(fin, path, n, dim, dtype, errors, encoding, first_line):
    """Yield pieces of ``n`` text lines ``key v1 ... vdim``, a chunk of the file at a time.

    Plain lines (as the C tool, gensim and sparsemb write them) are parsed by compiled code
    (:func:`sparsemb.kernels.textio.parse_lines`), each value the float64 ``float()`` gives, cast to
    float32 as NumPy casts it; any other line goes through :func:`_parse_text_line`, which also says
    what is wrong with a bad one.
    """
    parse_dtype = np.dtype(np.float64 if dtype.itemsize > 4 else np.float32)
    i = 0
    rest = b""
    while i < n:
        more = fin.read(CHUNK_BYTES)
        data = rest + more
        if not more:
            if not data:
                raise _truncated(path, f"truncated at line {i + first_line}: expected {n} words, found {i}")
            if not data.endswith(b"\n"):
                data += b"\n"
        end = data.rfind(b"\n") + 1
        rest = data[end:]
        if not end:  # a line longer than the chunk: read on
            continue
        rows = min(n - i, data.count(b"\n", 0, end))
        raw = np.frombuffer(data, dtype=np.uint8, count=end)
        block = np.empty((rows, dim), parse_dtype)
        bounds = np.empty((rows, 2), np.int64)
        keys = []
        pos = filled = 0
        while filled < rows:
            got, pos = _textio.parse_lines(raw, pos, rows - filled, block[filled:], bounds[filled:])
            keys += _decode_keys(data, bounds[filled : filled + got], path, i + first_line, errors, encoding)
            filled += got
            i += got
            if filled < rows:  # a line the compiled parser leaves to Python
                stop = data.index(b"\n", pos) + 1
                key, block[filled] = _parse_text_line(data[pos:stop], path, i + first_line, n, i, dim, parse_dtype,
                                                      errors, encoding)
                keys.append(key)
                filled += 1
                i += 1
                pos = stop
        yield keys, block.astype(dtype, copy=False)


def _decode_keys(data, bounds, path, first_line, errors, encoding):
    """The keys at ``bounds`` (start, end) of ``data``; an undecodable one names its line."""
    spans = bounds.tolist()
    try:
        return [data[a:b].decode(encoding, errors) for a, b in spans]
    except UnicodeDecodeError:
        return [_decode(data[a:b], path, f"line {first_line + j}", errors, encoding) for j, (a, b) in enumerate(spans)]


def _parse_text_line(raw, path, line_no, n, found, dim, parse_dtype, errors, encoding):
    """``(key, numbers)`` of one line, read by Python, or the error that says what is wrong with it."""
    parts = raw.rstrip().split(b" ")
    if len(parts) != dim + 1:
        if not raw.strip():
            raise _truncated(path, f"truncated at line {line_no}: expected {n} words, found {found}")
        raise ValueError(f"{path}: line {line_no} has {len(parts) - 1} numbers, expected {dim} "
                         f"(corrupt, or binary?)")
    key = _decode(parts[0], path, f"line {line_no}", errors, encoding)
    try:
        return key, np.array(parts[1:], dtype=parse_dtype)
    except ValueError:
        raise ValueError(f"{path}: line {line_no} has a value that is not a number") from None


def _check_keys(index_to_key, prefix):
    """Raise ValueError naming the first key (as written, with ``prefix``) that cannot be stored: empty,
    or with whitespace."""
    for lo in range(0, len(index_to_key), 16384):
        block = _as_written(index_to_key[lo : lo + 16384], prefix)
        text = "\n".join(block)
        tokens = text.split()
        # Each key is one token exactly when the token count and the non-whitespace length agree.
        if len(tokens) != len(block) or sum(map(len, tokens)) != len(text) - len(block) + 1:
            for key in block:
                if not key or len(key.split()) != 1 or key.split()[0] != key:
                    raise ValueError(f"key {key!r} cannot be stored in a word2vec file (empty or has whitespace)")


def _row_blocks(order, size):
    """Blocks of ``order`` (a range or an index array), each a slice where its rows are consecutive."""
    for lo in range(0, len(order), size):
        idx = order[lo : lo + size]
        if isinstance(idx, range):
            yield slice(idx.start, idx.stop)
        elif len(idx) and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
            yield slice(int(idx[0]), int(idx[-1]) + 1)
        else:
            yield idx


def _block_keys(index_to_key, rows, prefix):
    """The keys of ``rows`` (a slice or an index array) as written: ``prefix`` and the key as text."""
    keys = index_to_key[rows] if isinstance(rows, slice) else [index_to_key[i] for i in rows.tolist()]
    return _as_written(keys, prefix)


def _as_written(keys, prefix):
    if not set(map(type, keys)) <= {str}:
        keys = [str(k) for k in keys]
    return [prefix + k for k in keys] if prefix else keys


def _write_rows(fout, index_to_key, vectors, order, binary, prefix):
    """Write rows ``order`` (a range or an index array) of ``vectors`` with their keys (``prefix``
    prepended), a block at a time."""
    dim = max(1, vectors.shape[1])
    rows = max(1, (CHUNK_BYTES // (4 * dim)) if binary else TEXT_BLOCK_NUMBERS // dim)
    for sel in _row_blocks(order, rows):
        block = vectors[sel]
        keys = _block_keys(index_to_key, sel, prefix)
        if binary:
            data = np.ascontiguousarray(block, dtype="<f4")
            width = 4 * data.shape[1]
            raw = data.tobytes()
            fout.write(b"".join(k.encode("utf-8") + b" " + raw[j * width : (j + 1) * width] + b"\n"
                                for j, k in enumerate(keys)))
        else:
            fout.write(format_rows(keys, block))


def format_rows(keys, block):
    """Text lines ``key v1 ... vdim`` of a block of rows, each number as ``"%.9g"`` writes it (so
    float32 round-trips exactly).

    Compiled (:mod:`sparsemb.kernels.textio`): digits in float64 with the rare number too close to a
    rounding boundary settled by Python's own formatting, so the text is printf's byte for byte.

    Parameters
    ----------
    keys : list of str, one per row
        Without whitespace (not checked here).
    block : ndarray, shape (rows, dim), float

    Returns
    -------
    ndarray of uint8
        The UTF-8 lines, each ending with a newline (a buffer ``write`` accepts).
    """
    block = np.asarray(block)
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float64)
    block = np.ascontiguousarray(block)
    key_bytes = np.frombuffer(("\n".join(keys) + "\n").encode("utf-8"), dtype=np.uint8)
    digits = np.empty(block.shape, np.int64)
    exps = np.empty(block.shape, np.int64)
    if _textio.decimal_digits(block, digits, exps):
        for r, j in zip(*np.nonzero(digits == _textio.UNSETTLED)):
            text = "%.8e" % abs(float(block[r, j]))  # d.dddddddde+XX, correctly rounded
            digits[r, j] = int(text[0] + text[2:10])
            exps[r, j] = int(text[11:])
    out = np.empty(_textio.buffer_size(key_bytes.size, *block.shape), np.uint8)
    return out[: _textio.write_lines(key_bytes, block, digits, exps, out)]
