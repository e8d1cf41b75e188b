"""The Huffman tree of hierarchical softmax, built from word counts exactly as gensim builds it.

gensim puts every word on a ``heapq`` heap whose items compare by count alone, and repeatedly joins the
two smallest into an inner node with the next index (``V, V+1, ...``): the first popped is the left child
(bit 0), the second the right (bit 1). Which of several equal counts comes out first depends on where the
heap's sift operations left them, so the same tree needs the same heap: :func:`_tree` runs CPython's
heapify / heappop / heappush on node numbers, comparing counts with ``<`` as gensim's ``Heapitem`` does.

A word's *code* is the bits on the path from the root to it, its *points* the inner nodes on that path
(``index - V``, the rows of ``syn1``), root first.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._config import jit
from .word2vec import MAX_EXP, TABLE_SCALE


class HuffmanTree(NamedTuple):
    """Codes and points of every word, concatenated: word ``w``'s are ``[offsets[w]:offsets[w + 1]]``.

    Attributes
    ----------
    codes : ndarray of uint8, shape (total_length,)
    points : ndarray of int32, shape (total_length,)
        Rows of ``syn1`` (inner nodes), root first.
    offsets : ndarray of int64, shape (V + 1,)
    """

    codes: np.ndarray
    points: np.ndarray
    offsets: np.ndarray


@jit(inline="always")
def _sift_down(heap, weight, start, pos):
    item = heap[pos]
    while pos > start:
        up = (pos - 1) >> 1
        if weight[item] < weight[heap[up]]:
            heap[pos] = heap[up]
            pos = up
            continue
        break
    heap[pos] = item


@jit(inline="always")
def _sift_up(heap, weight, end, pos):
    start, item = pos, heap[pos]
    child = 2 * pos + 1
    while child < end:
        if child + 1 < end and not weight[heap[child]] < weight[heap[child + 1]]:
            child += 1
        heap[pos] = heap[child]
        pos = child
        child = 2 * pos + 1
    heap[pos] = item
    _sift_down(heap, weight, start, pos)


@jit(inline="always")
def _pop(heap, weight, end):
    """heapq.heappop of ``heap[:end]``; returns the node (the heap is now ``heap[:end - 1]``)."""
    last = heap[end - 1]
    if end == 1:
        return last
    top = heap[0]
    heap[0] = last
    _sift_up(heap, weight, end - 1, 0)
    return top


@jit()
def _tree(counts):
    v = counts.shape[0]
    n = max(2 * v - 1, v)
    weight = np.zeros(n, dtype=np.int64)
    weight[:v] = counts
    heap = np.arange(v, dtype=np.int64)
    for i in range(v // 2 - 1, -1, -1):  # heapify
        _sift_up(heap, weight, v, i)
    parent = np.full(n, -1, dtype=np.int64)
    bit = np.zeros(n, dtype=np.uint8)
    size = v
    for made in range(v, n):
        left = _pop(heap, weight, size)
        right = _pop(heap, weight, size - 1)
        weight[made] = weight[left] + weight[right]
        parent[left], parent[right] = made, made
        bit[right] = 1
        heap[size - 2] = made  # heappush
        _sift_down(heap, weight, 0, size - 2)
        size -= 1
    depth = np.zeros(n, dtype=np.int64)
    for node in range(n - 2, -1, -1):  # a parent is made after its children: root first
        depth[node] = depth[parent[node]] + 1
    offsets = np.zeros(v + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(depth[:v])
    codes = np.empty(offsets[v], dtype=np.uint8)
    points = np.empty(offsets[v], dtype=np.int32)
    for w in range(v):
        pos, node = offsets[w + 1], w
        while parent[node] >= 0:  # walking up fills the path from its end
            pos -= 1
            codes[pos] = bit[node]
            points[pos] = parent[node] - v
            node = parent[node]
    return codes, points, offsets


def huffman_tree(counts) -> HuffmanTree:
    """Build the tree of ``counts`` (int, shape (V,), any order; the index breaks ties as in gensim).

    Raises
    ------
    ValueError
        If a count is negative.
    """
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("counts must be a 1-D array of non-negative integers")
    return HuffmanTree(*_tree(counts))


@jit(inline="always", fastmath=True)
def _path_logprob(h, hrow, tree, word, syn1, logsig):
    """gensim's ``score_pair_*_hs``: sum over the word's path of ``log sigmoid(±h·syn1[point])``, with
    the terms whose score lies outside the table left out, as gensim leaves them out."""
    codes, points, offsets = tree
    total = np.float32(0.0)
    for b in range(offsets[word], offsets[word + 1]):
        p = points[b]
        f = np.float32(0.0)
        for d in range(h.shape[1]):
            f += h[hrow, d] * syn1[p, d]
        if codes[b]:
            f = -f
        if -MAX_EXP < f < MAX_EXP:
            total += logsig[int((f + MAX_EXP) * TABLE_SCALE)]
    return total


@jit(fastmath=True)
def score_sentences(ids, starts, syn0, syn1, tree, window, sg, cbow_mean, logsig):
    """Log-probability of each sentence under hierarchical softmax, as gensim's ``score`` computes it.

    Parameters
    ----------
    ids, starts : ndarray of int32, int64
        The sentences as vocabulary ids (words outside it already left out).
    syn0, syn1 : ndarray of float32, shape (V, dim)
    tree : HuffmanTree
    window : int
        Full window, not shrunk.
    sg, cbow_mean : bool
    logsig : ndarray of float32
        The log-sigmoid table (:func:`sparsemb.kernels.word2vec.sigmoid_tables`).

    Returns
    -------
    ndarray of float32, shape (n_sentences,)
    """
    n_sent = starts.shape[0] - 1
    out = np.zeros(n_sent, dtype=np.float32)
    h = np.empty((1, syn0.shape[1]), dtype=np.float32)
    offsets = tree[2]
    for s in range(n_sent):
        lo, hi = starts[s], starts[s + 1]
        total = np.float32(0.0)
        for i in range(lo, hi):
            word = ids[i]
            if offsets[word + 1] == offsets[word]:
                continue
            j0, j1 = max(lo, i - window), min(hi, i + window + 1)
            if sg:
                for j in range(j0, j1):
                    if j != i and offsets[ids[j] + 1] > offsets[ids[j]]:
                        total += _path_logprob(syn0, ids[j], tree, word, syn1, logsig)
            else:
                h[0, :] = 0.0
                count = 0
                for j in range(j0, j1):
                    if j != i and offsets[ids[j] + 1] > offsets[ids[j]]:
                        h[0, :] += syn0[ids[j]]
                        count += 1
                if cbow_mean and count:
                    h[0, :] *= np.float32(1.0) / np.float32(count)
                total += _path_logprob(h, 0, tree, word, syn1, logsig)
        out[s] = total
    return out
