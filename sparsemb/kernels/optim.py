"""Lazy optimizer kernels: each touches only the rows named in a coalesced gradient.

A gradient arrives in *segment form* (see :mod:`sparsemb.kernels.embedding`): unique row ids
``indices`` and, for each, the occurrences ``order[starts[u]:starts[u+1]]`` whose rows
``coef[i] * G[src[i]]`` sum to that row's gradient. The kernels sum each row into a small
per-thread buffer and update weight and state at once (FBGEMM's "exact" fused optimizers), so no
gradient larger than one row per thread is ever written. One thread owns each unique row, so the
result is bitwise identical for any thread count.
"""
from __future__ import annotations


import numpy as np
from numba import prange

from .._config import jit
from .embedding import _row_gradient, balanced_parts, prefetch_segment_ahead
from .prefetch import prefetch_item, prefetch_row


@jit(inline="always")
def _ratio(num, den):
    """``num / den``, or ``num`` where ``den`` is 0 (then ``num`` is 0, or too small to square).

    A denominator ``√S + eps`` is 0 only when ``eps`` is 0 (or underflows in the table's dtype) and
    the accumulator is 0, so the numerator, whose square is in it, is 0 as well: an update of
    ``num`` there is the 0 it should be, not 0/0 = NaN, and leaves every other result's bits as they
    were. Arithmetic, not a branch: the loop still vectorises, and no phi node is made (inlined
    through the word2vec kernels' typed choices, a conditional expression here trips Numba's SSA
    check). (SparseAdam needs none: its eps is > 0 and its wrapper keeps it from underflowing.)
    """
    return num / (den + (den <= 0))


@jit(inline="always")
def adagrad_row_update(weight, accum, row, grad, lr, eps):
    """Adagrad on one row: ``accum[row] += g**2; weight[row] -= lr * g / (sqrt(accum[row]) + eps)``.

    The building block shared with the word2vec trainer's ``optimizer="adagrad"``. With ``eps = 0``
    a coordinate whose ``accum`` is 0 has ``g = 0`` (or a ``g`` whose square underflows): it moves
    by ``lr * g`` instead of 0/0 = NaN (see :func:`_ratio`).
    """
    for j in range(grad.shape[0]):
        g = grad[j]
        s = accum[row, j] + g * g
        accum[row, j] = s
        weight[row, j] -= lr * _ratio(g, np.sqrt(s) + eps)


# Each step kernel: for every unique row u, sum its gradient into ``buf`` and update
# ``weight[indices[u]]`` and its state right away. Rows go to the threads in ranges of equal work
# (balanced_parts), a row weighing as much as two gradient rows per (N, dim) array it reads and
# writes (measured best: SGD 2, Adagrad 4, SparseAdam 6). Scalars arrive already cast to the table's
# dtype so float32 tables are updated in float32 arithmetic, as PyTorch does.


@jit(parallel=True)
def sgd_step(weight, indices, order, starts, src, coef, grad, lr):
    """``w -= lr * g`` on the rows of the gradient."""
    parts = balanced_parts(starts, 2)
    for p in prange(parts.size - 1):
        buf = np.empty(weight.shape[1], dtype=grad.dtype)
        for u in range(parts[p], parts[p + 1]):
            prefetch_segment_ahead(u, indices, weight)
            _row_gradient(u, order, starts, src, coef, grad, buf)
            r = indices[u]
            for j in range(buf.shape[0]):
                weight[r, j] -= lr * buf[j]


@jit(parallel=True)
def adagrad_step(weight, accum, indices, order, starts, src, coef, grad, clr, eps):
    """PyTorch's sparse Adagrad: ``S += g²; w -= clr * g / (sqrt(S) + eps)`` with g coalesced."""
    parts = balanced_parts(starts, 4)
    for p in prange(parts.size - 1):
        buf = np.empty(weight.shape[1], dtype=grad.dtype)
        for u in range(parts[p], parts[p + 1]):
            ahead = prefetch_segment_ahead(u, indices, weight)
            if ahead >= 0:
                prefetch_row(accum, ahead)
            _row_gradient(u, order, starts, src, coef, grad, buf)
            adagrad_row_update(weight, accum, indices[u], buf, clr, eps)


@jit(reassoc=True)
def _sum_squares(x):
    """``sum(x**2)``, reassociated so that it vectorises (a strict left-to-right sum of a 64-wide row
    cost as much as the rest of a row-wise Adagrad step). Not inlined into the caller, so the flag
    stays on these instructions only. The sum starts from a zero of ``x``'s dtype and runs over every
    item, so a row of 64 is whole vectors; starting from ``x[0]**2`` left 63 items, summed 32 at a
    time, then 4, then 1 (a chain of 10 dependent adds a row, which made the step 3-12% slower)."""
    s = x.dtype.type(0)
    for j in range(x.shape[0]):
        s += x[j] * x[j]
    return s


@jit(parallel=True)
def rowwise_adagrad_step(weight, accum, indices, order, starts, src, coef, grad, lr, eps, dim_f):
    """FBGEMM's exact row-wise Adagrad: ``h += mean(g²)`` (one value a row); ``w -= lr·g/(√h + eps)``.

    ``dim_f`` is the row length in the table's dtype (keeps the mean in float32 for float32 tables).
    """
    dim = weight.shape[1]
    parts = balanced_parts(starts, 2)
    for p in prange(parts.size - 1):
        buf = np.empty(dim, dtype=grad.dtype)
        for u in range(parts[p], parts[p + 1]):
            ahead = prefetch_segment_ahead(u, indices, weight)
            if ahead >= 0:
                prefetch_item(accum, ahead)
            _row_gradient(u, order, starts, src, coef, grad, buf)
            r = indices[u]
            h = accum[r] + _sum_squares(buf) / dim_f
            accum[r] = h
            den = np.sqrt(h) + eps
            # den = 0 (eps = 0 and h = 0): the row's gradient is 0, and so is its step (h, typed).
            step = lr / den if den > 0 else h
            for j in range(dim):
                weight[r, j] -= step * buf[j]


@jit(parallel=True)
def sparse_adam_step(weight, exp_avg, exp_avg_sq, indices, order, starts, src, coef, grad,
                     step_size, one_minus_beta1, one_minus_beta2, eps, grad_sign):
    """PyTorch's SparseAdam on the rows of the gradient; ``step_size`` carries the bias correction
    ``lr·√(1-β2ᵗ)/(1-β1ᵗ)``; ``grad_sign`` is -1 to maximize (torch negates g before the moments)."""
    parts = balanced_parts(starts, 6)
    for p in prange(parts.size - 1):
        buf = np.empty(weight.shape[1], dtype=grad.dtype)
        for u in range(parts[p], parts[p + 1]):
            ahead = prefetch_segment_ahead(u, indices, weight)
            if ahead >= 0:
                prefetch_row(exp_avg, ahead)
                prefetch_row(exp_avg_sq, ahead)
            _row_gradient(u, order, starts, src, coef, grad, buf)
            r = indices[u]
            for j in range(buf.shape[0]):
                g = grad_sign * buf[j]
                m = exp_avg[r, j]
                v = exp_avg_sq[r, j]
                m = m + (g - m) * one_minus_beta1
                v = v + (g * g - v) * one_minus_beta2
                exp_avg[r, j] = m
                exp_avg_sq[r, j] = v
                weight[r, j] -= step_size * (m / (np.sqrt(v) + eps))
