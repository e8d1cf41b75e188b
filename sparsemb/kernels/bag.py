"""EmbeddingBag kernels: reduce the rows of each bag by sum, mean or max.

Bags are runs of a flat id array delimited by ``starts`` (``len = bags + 1``). Occurrences equal to
``padding_idx`` (-1 for none) take no part: they are not summed, not counted for the mean and never
win a max. An empty bag gives zeros.
"""
from __future__ import annotations

from numba import prange

from .._config import jit
from .prefetch import prefetch_ahead

SUM, MEAN, MAX = 0, 1, 2


@jit(parallel=True)
def bag_forward(weight, ids, starts, psw, mode, padding_idx, out, counts, argmax):
    """Fill ``out`` (bags, dim), ``counts`` (bags,) and, for max, ``argmax`` (bags, dim).

    ``psw`` are per-sample weights (empty for none; sum mode only). ``argmax[b, j]`` is the
    *occurrence* that supplied ``out[b, j]`` (-1 in an empty bag), so the backward pass can route
    each column's gradient to one row.
    """
    dim = weight.shape[1]
    for b in prange(starts.size - 1):
        for j in range(dim):
            out[b, j] = 0
        n = 0
        for k in range(starts[b], starts[b + 1]):
            prefetch_ahead(weight, ids, k)
            r = ids[k]
            if r == padding_idx:
                continue
            if mode == MAX:
                for j in range(dim):
                    if n == 0 or weight[r, j] > out[b, j]:
                        out[b, j] = weight[r, j]
                        argmax[b, j] = k
            elif psw.size:
                c = psw[k]
                for j in range(dim):
                    out[b, j] += c * weight[r, j]
            else:
                for j in range(dim):
                    out[b, j] += weight[r, j]
            n += 1
        counts[b] = n
        if mode == MAX and n == 0:
            for j in range(dim):
                argmax[b, j] = -1
        if mode == MEAN and n > 0:
            for j in range(dim):
                out[b, j] /= n


@jit()
def bag_occurrence_coef(ids, starts, psw, mode, padding_idx, counts, coef, bag_of):
    """Per occurrence: the bag it belongs to and the factor its bag's gradient is scaled by."""
    for b in range(starts.size - 1):
        for k in range(starts[b], starts[b + 1]):
            bag_of[k] = b
            if ids[k] == padding_idx:
                coef[k] = 0
            elif mode == MEAN:
                coef[k] = 1.0 / counts[b]
            elif psw.size:
                coef[k] = psw[k]
            else:
                coef[k] = 1


@jit(parallel=True)
def bag_max_scatter(argmax, grad_out, occ_grad):
    """Send each column's gradient to the occurrence that won the max (zeros elsewhere)."""
    dim = grad_out.shape[1]
    for b in prange(argmax.shape[0]):
        for j in range(dim):
            k = argmax[b, j]
            if k >= 0:
                occ_grad[k, j] = grad_out[b, j]
