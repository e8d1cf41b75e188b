"""Numba kernels and their checked public wrappers.

The wrappers here validate and convert input once (dtype, contiguity, id range), then call
``@njit`` kernels from the submodules, which trust their arguments.
"""
from __future__ import annotations

import numpy as np

from . import bag, embedding, optim
from .embedding import aligned_empty, first_out_of_range, gather, segment_sum, segments

__all__ = ["lookup", "coalesce", "as_ids", "as_table", "aligned_empty", "bag", "embedding", "optim"]


def as_ids(ids, num_embeddings: int, name: str = "ids") -> np.ndarray:
    """Return ``ids`` as a C-contiguous int32/int64 array after checking every id is in range.

    Raises
    ------
    TypeError
        If ``ids`` is not an integer array (bool included).
    IndexError
        Naming the first id outside ``[0, num_embeddings)``.
    """
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.dtype not in (np.int32, np.int64):
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise IndexError(
                f"{name} contains {int(arr.max())}, outside [0, {num_embeddings})"
            )
        arr = arr.astype(np.int64)
    arr = np.ascontiguousarray(arr)
    bad = first_out_of_range(arr.reshape(-1), num_embeddings)
    if bad >= 0:
        raise IndexError(
            f"{name} contains {int(arr.reshape(-1)[bad])}, outside [0, {num_embeddings})"
        )
    return arr


def as_table(weight, name: str = "weight") -> np.ndarray:
    """Check ``weight`` is a 2-D float32/float64 array; return it C-contiguous (never a silent copy
    of a table the caller expects to be updated in place: layers keep their own contiguous table)."""
    w = np.asarray(weight)
    if w.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_embeddings, dim), got shape {w.shape}")
    if w.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got dtype {w.dtype}")
    return np.ascontiguousarray(w)


def lookup(weight, ids) -> np.ndarray:
    """Gather rows of an embedding table.

    Parameters
    ----------
    weight : ndarray, float32 or float64, shape (num_embeddings, dim)
    ids : array_like of int, any shape

    Returns
    -------
    ndarray, shape ``ids.shape + (dim,)``, dtype of ``weight``
        ``out[..., :] = weight[ids[...]]``.
    """
    w = as_table(weight)
    idx = as_ids(ids, w.shape[0])
    out = aligned_empty((idx.size, w.shape[1]), w.dtype)
    gather(w, idx.reshape(-1), out)
    return out.reshape(idx.shape + (w.shape[1],))


def coalesce(ids, grad):
    """Sum gradient rows that share an id: the sparse gradient of a lookup, ``Xᵀ G``.

    Parameters
    ----------
    ids : array_like of int, any shape
        Non-negative row ids.
    grad : ndarray, float32 or float64, shape ``ids.shape + (dim,)`` or ``(ids.size, dim)``

    Returns
    -------
    indices : ndarray of int64, shape (n_unique,)
        The distinct ids, sorted.
    values : ndarray, shape (n_unique, dim), dtype of ``grad``
        ``values[u]`` is the sum, in occurrence order, of the rows whose id is ``indices[u]``.
        Bitwise identical for any number of threads.
    """
    idx = np.asarray(ids)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"ids must be integers, got dtype {idx.dtype}")
    flat = np.ascontiguousarray(idx.reshape(-1)).astype(np.int64, copy=False)
    if flat.size and flat.min() < 0:
        raise IndexError(f"ids contains {int(flat.min())}, ids must be non-negative")
    g = np.asarray(grad)
    if g.dtype not in (np.float32, np.float64):
        raise TypeError(f"grad must be float32 or float64, got dtype {g.dtype}")
    if g.ndim < 1 or g.shape[:-1] not in (idx.shape, (flat.size,)):
        raise ValueError(
            f"grad has shape {g.shape}, expected {idx.shape + ('dim',)} for ids of shape {idx.shape}"
        )
    g = np.ascontiguousarray(g.reshape(flat.size, g.shape[-1]))
    indices, order, starts = segments(flat, -1)
    values = np.empty((indices.size, g.shape[1]), dtype=g.dtype)
    empty = np.empty(0, dtype=np.int64)
    segment_sum(order, starts, empty, np.empty(0, dtype=g.dtype), g, values)
    return indices, values
