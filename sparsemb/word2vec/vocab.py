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

import functools
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..kernels.huffman import HuffmanTree, huffman_tree
from ..kernels.word2vec import alias_table


#: gensim's trim_rule answers (gensim.utils.RULE_*): drop the word, use min_count, keep it.
RULE_DEFAULT, RULE_DISCARD, RULE_KEEP = 0, 1, 2


def keep_word(word, count, min_count, trim_rule=None) -> bool:
    """gensim's ``keep_vocab_item``: ``trim_rule(word, count, min_count)`` decides, else ``count >= min_count``."""
    rule = RULE_DEFAULT if trim_rule is None else trim_rule(word, count, min_count)
    return rule == RULE_KEEP or (rule == RULE_DEFAULT and count >= min_count)


@dataclass
class RawCounts:
    """Every distinct word of a corpus and its count, in first-seen order.

    ``names`` is a list of str, or a :class:`~sparsemb.word2vec.corpus.WordTable` (the compiled file
    counter's, whose words are turned into str only when asked for).
    """

    names: object
    counts: np.ndarray

    def __len__(self):
        return int(self.counts.shape[0])

    def words(self, idx):
        """The words at positions ``idx``, as a list of str."""
        if isinstance(self.names, list):
            return [self.names[i] for i in idx]
        return self.names.words(idx)

    def as_dict(self):
        return dict(zip(self.words(range(len(self))), self.counts.tolist()))


def count_words(sentences, max_vocab_size=None, trim_rule=None):
    """Count words with gensim's pruning.

    Parameters
    ----------
    sentences : iterable of list of str
    max_vocab_size : int or None
        Prune while counting when more distinct words than this are held.
    trim_rule : callable, optional
        gensim's rule, also applied when pruning.

    Returns
    -------
    raw : RawCounts
        Surviving words in insertion order (a pruned word that comes back counts as new).
    n_tokens, n_sentences : int
    """
    counts = Counter()
    min_reduce = 1
    n_tokens = n_sentences = 0
    for tokens in sentences:
        counts.update(tokens)
        n_tokens += len(tokens)
        n_sentences += 1
        if max_vocab_size and len(counts) > max_vocab_size:
            for word in [w for w, c in counts.items() if not keep_word(w, c, min_reduce, trim_rule)]:
                del counts[word]
            min_reduce += 1
    raw = RawCounts(list(counts), np.fromiter(counts.values(), dtype=np.int64, count=len(counts)))
    return raw, n_tokens, n_sentences


def effective_min_count(counts, min_count, max_final_vocab=None) -> int:
    """``min_count``, raised (as gensim does) so that at most about ``max_final_vocab`` words are kept:
    to one more than the count of the word at that rank, and to at least 1 whenever it is given."""
    if max_final_vocab is None:
        return min_count
    least = 1
    if max_final_vocab < counts.shape[0]:
        least = int(np.sort(counts)[::-1][max_final_vocab]) + 1
    return max(least, min_count)


def kept(raw, min_count, trim_rule=None):
    """Positions of the words of ``raw`` that pass ``min_count`` or ``trim_rule``, in first-seen order."""
    if trim_rule is None:
        return np.flatnonzero(raw.counts >= min_count)
    words = raw.words(range(len(raw)))
    return np.array([i for i, (w, c) in enumerate(zip(words, raw.counts.tolist()))
                     if keep_word(w, c, min_count, trim_rule)], dtype=np.int64)


def by_frequency(counts):
    """The order that sorts words by descending count, equal counts in reverse first-seen order
    (gensim's ``np.lexsort((-indices, -counts))``)."""
    return np.lexsort((-np.arange(counts.shape[0]), -counts))


def downsampling(counts, sample):
    """gensim's report of subsampling ``counts`` (the words kept): (words downsampled, expected tokens left)."""
    retain_total = int(counts.sum())
    if not sample:
        threshold = retain_total
    elif sample < 1.0:
        threshold = sample * retain_total
    else:
        threshold = int(sample * (3 + math.sqrt(5)) / 2)
    c = counts.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.minimum((np.sqrt(c / threshold) + 1) * (threshold / c), 1.0)
    return int((p < 1.0).sum()), int(np.nan_to_num(p * c).sum())


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

    @functools.cached_property
    def tree(self) -> HuffmanTree:
        """Hierarchical softmax's tree of these counts (gensim's codes and points), built once."""
        return huffman_tree(self.counts)

    def noise_table(self, ns_exponent=0.75):
        """Alias table of the negative-sampling distribution ``counts**ns_exponent`` (normalised)."""
        weights = self.counts.astype(np.float64) ** ns_exponent
        return alias_table(weights)
