"""The definition of right: embedding lookups as sparse matrix products (SciPy and NumPy, no Numba).

A lookup of ids ``x`` in a table ``E`` is ``X @ E`` where ``X`` is the one-hot matrix with one row
per id. Its gradient is ``Xᵀ @ G``: zero except on the rows looked up, with repeated ids summed. An
EmbeddingBag is the same product with a *bag matrix* ``B`` (one row per bag) in place of ``X``.
Slow and obvious on purpose; every kernel test compares against these functions.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _flat_ids(ids, num_embeddings):
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
    flat = ids.reshape(-1).astype(np.int64)
    bad = (flat < 0) | (flat >= num_embeddings)
    if bad.any():
        raise IndexError(f"ids contains {int(flat[bad][0])}, outside [0, {num_embeddings})")
    return ids.shape, flat


def one_hot(ids, num_embeddings: int) -> sp.csr_matrix:
    """The one-hot matrix ``X``, CSR of shape ``(ids.size, num_embeddings)``, float64.

    Row ``i`` has a single 1 in column ``ids.flat[i]``.
    """
    _, flat = _flat_ids(ids, num_embeddings)
    n = flat.size
    return sp.csr_matrix(
        (np.ones(n), flat, np.arange(n + 1)), shape=(n, num_embeddings)
    )


def lookup(weight, ids) -> np.ndarray:
    """``X @ weight`` reshaped to ``ids.shape + (dim,)``, in the dtype of ``weight``."""
    weight = np.asarray(weight)
    shape, _ = _flat_ids(ids, weight.shape[0])
    out = one_hot(ids, weight.shape[0]) @ weight.astype(np.float64)
    return np.asarray(out, dtype=weight.dtype).reshape(shape + (weight.shape[1],))


def grad(ids, grad_out, num_embeddings: int) -> np.ndarray:
    """Dense ``Xᵀ G``, shape ``(num_embeddings, dim)``, in the dtype of ``grad_out``.

    ``grad_out`` has shape ``ids.shape + (dim,)``. Computed in float64 and rounded once.
    """
    grad_out = np.asarray(grad_out)
    shape, flat = _flat_ids(ids, num_embeddings)
    g = grad_out.reshape(flat.size, grad_out.shape[-1]).astype(np.float64)
    out = one_hot(ids, num_embeddings).T @ g
    return np.asarray(out, dtype=grad_out.dtype)


def bag_starts(ids, offsets=None, include_last_offset=False):
    """Bag boundaries (``bags + 1`` positions into the flat ids) for 1-D ids with offsets or 2-D ids."""
    ids = np.asarray(ids)
    if offsets is None:
        if ids.ndim != 2:
            raise ValueError("ids without offsets must be 2-D (bags, bag_size)")
        return np.arange(ids.shape[0] + 1) * ids.shape[1]
    offsets = np.asarray(offsets, dtype=np.int64)
    return offsets if include_last_offset else np.append(offsets, ids.size)


def bag_matrix(ids, num_embeddings, offsets=None, mode="mean", per_sample_weights=None,
               padding_idx=None, include_last_offset=False) -> sp.csr_matrix:
    """The bag matrix ``B`` (bags × num_embeddings) with ``B @ E`` the sum/mean bag embeddings.

    Entry ``(b, id)`` accumulates 1 (sum), the sample's weight (sum with ``per_sample_weights``) or
    ``1 / n_b`` (mean, ``n_b`` counting the non-padding ids of bag ``b``). Padding ids get no entry.
    """
    _, flat = _flat_ids(ids, num_embeddings)
    starts = bag_starts(ids, offsets, include_last_offset)
    n_bags = starts.size - 1
    bag_of = np.repeat(np.arange(n_bags), np.diff(starts))
    flat = flat[: bag_of.size]
    w = np.ones(flat.size)
    if per_sample_weights is not None:
        w = np.asarray(per_sample_weights, dtype=np.float64).reshape(-1)[: flat.size].copy()
    keep = np.ones(flat.size, bool) if padding_idx is None else flat != padding_idx
    if mode == "mean":
        counts = np.bincount(bag_of[keep], minlength=n_bags)
        w = 1.0 / np.maximum(counts[bag_of], 1)
    m = sp.coo_matrix((w[keep], (bag_of[keep], flat[keep])), shape=(n_bags, num_embeddings))
    return m.tocsr()  # duplicates within a bag are summed


def bag_lookup(weight, ids, offsets=None, mode="mean", per_sample_weights=None, padding_idx=None,
               include_last_offset=False) -> np.ndarray:
    """EmbeddingBag forward: ``B @ weight`` for sum and mean, a per-column max over each bag for max."""
    weight = np.asarray(weight)
    if mode in ("sum", "mean"):
        b = bag_matrix(ids, weight.shape[0], offsets, mode, per_sample_weights, padding_idx,
                       include_last_offset)
        return np.asarray(b @ weight.astype(np.float64), dtype=weight.dtype)
    _, flat = _flat_ids(ids, weight.shape[0])
    starts = bag_starts(ids, offsets, include_last_offset)
    out = np.zeros((starts.size - 1, weight.shape[1]), dtype=weight.dtype)
    for b in range(starts.size - 1):
        rows = [r for r in flat[starts[b]:starts[b + 1]] if r != padding_idx]
        if rows:
            out[b] = weight[rows].max(axis=0)
    return out


def bag_grad(weight, ids, grad_out, offsets=None, mode="mean", per_sample_weights=None,
             padding_idx=None, include_last_offset=False) -> np.ndarray:
    """Dense gradient of the bag forward with respect to ``weight``: ``Bᵀ G`` (sum, mean), or each
    column's gradient sent to the first row that attains the bag's max in that column (max)."""
    weight = np.asarray(weight)
    grad_out = np.asarray(grad_out)
    n = weight.shape[0]
    if mode in ("sum", "mean"):
        b = bag_matrix(ids, n, offsets, mode, per_sample_weights, padding_idx, include_last_offset)
        return np.asarray(b.T @ grad_out.astype(np.float64), dtype=grad_out.dtype)
    _, flat = _flat_ids(ids, n)
    starts = bag_starts(ids, offsets, include_last_offset)
    out = np.zeros((n, weight.shape[1]), dtype=np.float64)
    for b in range(starts.size - 1):
        rows = np.array([r for r in flat[starts[b]:starts[b + 1]] if r != padding_idx], np.int64)
        if rows.size:
            winners = rows[np.argmax(weight[rows], axis=0)]
            out[winners, np.arange(weight.shape[1])] += grad_out[b]
    return out.astype(grad_out.dtype)
