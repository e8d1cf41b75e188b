"""The vocabulary: which words are kept, their order and counts, and the sampling tables built from them.

The rules are gensim 4's, so the same corpus and settings give the same words, counts and order:

* counting with ``max_vocab_size`` prunes, after any sentence that takes the number of distinct words past
  it, every word seen fewer than ``min_reduce`` times, with ``min_reduce`` starting at 1 and growing by one
  per pruning (so the first pruning removes nothing, as in gensim);
* ``max_final_vocab`` raises the effective min_count to one more than the count of the word at that rank;
* kept words are sorted by descending count; equal counts come in *reverse* order of first appearance
  (gensim's ``np.lexsort((-indices, -counts))``).
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ..kernels.word2vec import alias_table


def count_words(sentences, max_vocab_size=None):
    """Count words with gensim's pruning.

    Parameters
    ----------
    sentences : iterable of list of str
    max_vocab_size : int or None
        Prune while counting when more distinct words than this are held.

    Returns
    -------
    words : list of str
        Surviving words in insertion order (a pruned word that comes back counts as new).
    counts : ndarray of int64
    """
    counts = Counter()
    min_reduce = 1
    for tokens in sentences:
        counts.update(tokens)
        if max_vocab_size and len(counts) > max_vocab_size:
            for word in [w for w, c in counts.items() if c < min_reduce]:
                del counts[word]
            min_reduce += 1
    return list(counts), np.fromiter(counts.values(), dtype=np.int64, count=len(counts))


def select(counts, min_count=5, max_final_vocab=None):
    """Choose and order the vocabulary from raw counts.

    Parameters
    ----------
    counts : ndarray of int64, shape (n_raw,)
        Counts of the raw words in first-seen order.
    min_count : int
        Words seen fewer times are dropped.
    max_final_vocab : int or None
        Keep at most about this many words by raising the effective min_count.

    Returns
    -------
    order : ndarray of int64
        Positions (into ``counts``) of the kept words, most frequent first.
    effective_min_count : int
    """
    effective = min_count
    if max_final_vocab is not None and max_final_vocab < counts.shape[0]:
        descending = np.sort(counts)[::-1]
        effective = max(int(descending[max_final_vocab]) + 1, min_count)
    kept = np.flatnonzero(counts >= effective)
    order = np.lexsort((-np.arange(kept.shape[0]), -counts[kept]))
    return kept[order], effective


class Vocabulary:
    """Words, their counts and lookup, most frequent first.

    Parameters
    ----------
    words : list of str
        Sorted by descending count.
    counts : array-like of int, shape (len(words),)
    """

    def __init__(self, words, counts):
        self.index_to_key = list(words)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.key_to_index = {w: i for i, w in enumerate(self.index_to_key)}
        if len(self.key_to_index) != len(self.index_to_key):
            raise ValueError("vocabulary words must be distinct")
        if self.counts.shape != (len(self.index_to_key),):
            raise ValueError(
                f"need one count per word: {len(self.index_to_key)} words, counts of shape {self.counts.shape}"
            )

    def __len__(self):
        return len(self.index_to_key)

    @property
    def total(self) -> int:
        """Number of corpus tokens covered by the vocabulary."""
        return int(self.counts.sum())

    def keep_probabilities(self, sample):
        """Probability that each word survives subsampling: ``min(1, (sqrt(c/t) + 1) * t / c)``.

        ``t = sample * total`` for ``0 < sample < 1``; for ``sample >= 1``, gensim's shorthand
        ``t = int(sample * (3 + sqrt(5)) / 2)``; ``sample = 0`` keeps everything.

        Returns
        -------
        ndarray of float64, shape (V,)
        """
        c = self.counts.astype(np.float64)
        if not sample:
            return np.ones_like(c)
        t = sample * self.total if sample < 1.0 else float(int(sample * (3 + math.sqrt(5)) / 2))
        return np.minimum((np.sqrt(c / t) + 1.0) * t / c, 1.0)

    def keep_thresholds(self, sample):
        """:meth:`keep_probabilities` as gensim's 32-bit thresholds (int64, kept when ``rand32 <= value``)."""
        return (self.keep_probabilities(sample) * (2**32 - 1)).astype(np.uint32).astype(np.int64)

    def noise_table(self, ns_exponent=0.75):
        """Alias table of the negative-sampling distribution ``counts**ns_exponent`` (normalised)."""
        weights = self.counts.astype(np.float64) ** ns_exponent
        return alias_table(weights)
