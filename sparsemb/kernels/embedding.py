"""Gather, segment and scatter kernels for embedding tables.

A sparse gradient is kept in *segment form* until something needs it dense: ``indices`` (sorted
unique row ids), ``order`` (the occurrences sorted stably by id) and ``starts`` (where each id's run
begins in ``order``). Occurrence ``i`` contributes ``coef[i] * G[src[i]]`` to its row. An empty
``order``, ``src`` or ``coef`` stands for the identity / all ones, so plain ``coalesce(ids, grad)``
passes no extra arrays.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._config import jit
from .prefetch import AHEAD, prefetch_ahead, prefetch_row, store_fence, stream_row, streams, wide_rows

#: Ranges of equal work that unique rows are cut into for the threads (see :func:`balanced_parts`).
#: Fixed, not per thread (Numba cannot cache a kernel that asks for the thread count): cut points
#: follow the running total of work, so any run of consecutive ranges a thread is given is balanced
#: to within one row, for any thread count up to this number.
_PARTS = 256


@jit()
def first_out_of_range(ids, n):
    """Position of the first id outside ``[0, n)``, or -1."""
    for i in range(ids.size):
        v = ids[i]
        if v < 0 or v >= n:
            return i
    return -1


@jit(parallel=True)
def gather(weight, ids, out):
    """``out[i] = weight[ids[i]]`` for a flat ``ids``; rows copied in parallel, each asked for
    :data:`~sparsemb.kernels.prefetch.AHEAD` rows ahead (:func:`~sparsemb.kernels.prefetch.prefetch_ahead`),
    and written with streaming stores when ``out`` is large and aligned for them
    (:func:`~sparsemb.kernels.prefetch.streams`; allocate it with :func:`aligned_empty`)."""
    dim = weight.shape[1]
    stream = streams(out)
    for p in prange(_PARTS):
        for i in range(ids.size * p // _PARTS, ids.size * (p + 1) // _PARTS):
            prefetch_ahead(weight, ids, i)
            r = ids[i]
            if stream:
                stream_row(out, i, weight, r)
            else:
                for j in range(dim):
                    out[i, j] = weight[r, j]
        if stream:
            store_fence()


#: Alignment of the tables and outputs sparsemb allocates: a cache line, so that a row whose size is a
#: multiple of it (64 float32, 8 float64, ...) spans no more lines than it must.
ALIGN = 64


def aligned_empty(shape, dtype, align=ALIGN):
    """``np.empty(shape, dtype)`` whose data starts on an ``align``-byte boundary (a cache line by
    default; ``O_DIRECT`` buffers ask for a page) and has its cache lines to itself (no other
    allocation shares one).

    NumPy's own arrays start 16 bytes past a line: a 256-byte row then spans 5 lines instead of 4, and
    random row reads and updates move a quarter more memory. Small arrays of two threads may share a
    line, and writing both makes the line bounce between the cores. An empty array has no data."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes == 0:
        return np.empty(shape, dtype)
    raw = np.empty(-(-nbytes // align) * align + align, dtype=np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + nbytes].view(dtype).reshape(shape)


@jit(inline="always")
def _bit_length(x):
    """Bits needed to write the non-negative int ``x`` (at least 1)."""
    n = 1
    while (x >> n) > 0:
        n += 1
    return n


@jit()
def _radix_sort_packed(keys, nbits, ibits):
    """``(key << ibits) | position`` for every key, sorted by key, positions ascending within a key
    (LSD radix on the key's ``nbits`` bits, 11 a pass, so stable). Keys and positions travel as one
    int64: every pass reads its input in order, with no look-up of a key by position.

    The histograms of every pass are counted in one read of the keys.
    """
    n = keys.size
    passes = max((nbits + 10) // 11, 1)
    count = np.zeros((passes, 2049), dtype=np.int64)
    for i in range(n):
        k = keys[i]
        for p in range(passes):
            count[p, ((k >> (11 * p)) & 2047) + 1] += 1
    out = np.empty(n, dtype=np.int64)
    tmp = np.empty(n, dtype=np.int64)
    for p in range(passes):
        c = count[p]
        for b in range(2048):
            c[b + 1] += c[b]
        if p == 0:
            for i in range(n):
                k = keys[i]
                d = k & 2047
                out[c[d]] = (k << ibits) | i
                c[d] += 1
        else:
            shift = 11 * p + ibits
            for i in range(n):
                v = out[i]
                d = (v >> shift) & 2047
                tmp[c[d]] = v
                c[d] += 1
            out, tmp = tmp, out
    return out


@jit()
def segments(ids, skip):
    """Group a flat id array by value.

    Returns ``(indices, order, starts)``: sorted unique ids (int64), the stable argsort of ``ids``
    with occurrences of ``skip`` left out, and run boundaries (``len(indices) + 1``). ``skip = -1``
    keeps every id. Costs O(n) (radix) while an id and a position fit in 63 bits together (ids
    below 2**47 for a batch of 65,536), O(n log n) beyond.
    """
    n = ids.size
    top = 0
    for i in range(n):
        if ids[i] > top:
            top = ids[i]
    nbits = _bit_length(top)
    ibits = _bit_length(max(n - 1, 0))
    if nbits + ibits <= 63:
        sorted_ = _radix_sort_packed(ids, nbits, ibits)
    else:  # holds positions only
        sorted_ = np.argsort(ids, kind="mergesort")
        ibits = 0
    mask = (1 << ibits) - 1
    kept = np.empty(n, dtype=np.int64)
    starts = np.empty(n + 1, dtype=np.int64)
    indices = np.empty(n, dtype=np.int64)
    m = 0
    u = 0
    prev = -1
    for k in range(n):
        if ibits:
            v = sorted_[k] >> ibits
            i = sorted_[k] & mask
        else:
            i = sorted_[k]
            v = ids[i]
        if v == skip:
            continue
        if v != prev:
            indices[u] = v
            starts[u] = m
            u += 1
            prev = v
        kept[m] = i
        m += 1
    starts[u] = m
    return indices[:u], kept[:m], starts[: u + 1]


@jit(inline="always")
def _row_gradient(u, order, starts, src, coef, grad, buf):
    """Sum occurrence rows of unique row ``u`` into ``buf`` in occurrence order (deterministic),
    asking for the gradient row :data:`~sparsemb.kernels.prefetch.AHEAD` occurrences ahead (in the
    sorted order, so across rows too: a frequent row's occurrences are scattered over the batch)."""
    dim = buf.shape[0]
    end = starts[starts.size - 1]
    for j in range(dim):
        buf[j] = 0
    for k in range(starts[u], starts[u + 1]):
        if k + AHEAD < end:
            prefetch_gradient(k + AHEAD, order, src, grad)
        i = order[k] if order.size else k
        r = src[i] if src.size else i
        if coef.size:
            c = coef[i]
            for j in range(dim):
                buf[j] += c * grad[r, j]
        else:
            for j in range(dim):
                buf[j] += grad[r, j]


@jit(inline="always")
def prefetch_gradient(k, order, src, grad):
    """Ask for the gradient row of occurrence ``k`` in sorted order."""
    if wide_rows(grad):
        i = order[k] if order.size else k
        prefetch_row(grad, src[i] if src.size else i)


@jit(inline="always")
def prefetch_segment_ahead(u, indices, weight):
    """Ask for the weight row of unique row ``u + AHEAD``; return that row's id (for the caller to
    ask for its state rows too), or -1 past the last unique row."""
    a = u + AHEAD
    if a >= indices.size:
        return -1
    prefetch_row(weight, indices[a])
    return indices[a]


@jit()
def balanced_parts(starts, row_cost):
    """Cut the unique rows of a segment-form gradient into consecutive ranges of about equal work,
    ``parts[p]:parts[p + 1]``, a row's work being its occurrences (gradient rows read) plus
    ``row_cost`` (what the caller does with the row once summed, in gradient-row reads).

    Rows sorted by id put a Zipf batch's frequent rows first, so equal row counts would give the
    first thread most of the occurrences (about 78% of them in the step benchmark). A row is never
    split, so each is still summed by one thread in occurrence order, whatever the cut.
    """
    n_unique = starts.size - 1
    n_parts = max(min(n_unique, _PARTS), 1)
    total = starts[n_unique] - starts[0] + n_unique * row_cost
    parts = np.empty(n_parts + 1, dtype=np.int64)
    parts[0] = 0
    u = 0
    for p in range(1, n_parts):
        target = total * p // n_parts
        # The last u whose rows [0, u) weigh at most target (work starts[u] - starts[0] + u * row_cost
        # never decreases in u), by bisection from the previous cut: this runs before the threads
        # start, and a scan of every row cost 2.5x as much (16 against 6 us on the step benchmark).
        hi = n_unique
        while u < hi:
            mid = (u + hi + 1) // 2
            if starts[mid] - starts[0] + mid * row_cost <= target:
                u = mid
            else:
                hi = mid - 1
        parts[p] = u
    parts[n_parts] = n_unique
    return parts


@jit(parallel=True)
def segment_sum(order, starts, src, coef, grad, out):
    """``out[u] = sum over occurrences of row u of coef[i] * grad[src[i]]``; one thread per row."""
    parts = balanced_parts(starts, 1)
    for p in prange(parts.size - 1):
        for u in range(parts[p], parts[p + 1]):
            _row_gradient(u, order, starts, src, coef, grad, out[u])


@jit()
def occurrence_counts(starts, order, n):
    """For each occurrence, how often its id occurs (for scale_grad_by_freq); 0 for skipped ones."""
    counts = np.zeros(n, dtype=np.int64)
    for u in range(starts.size - 1):
        c = starts[u + 1] - starts[u]
        for k in range(starts[u], starts[u + 1]):
            counts[order[k]] = c
    return counts


@jit()
def renorm(weight, rows, max_norm, norm_type):
    """Scale each listed row whose ``norm_type``-norm exceeds ``max_norm`` to ``max_norm`` in place.

    ``rows`` must be unique. The scale is ``max_norm / (norm + 1e-7)``, as in PyTorch.
    """
    dim = weight.shape[1]
    # The scale is rounded to the table's dtype before multiplying, as PyTorch's ``row *= scale`` does.
    scale = np.empty(1, dtype=weight.dtype)
    for r in rows:
        norm = 0.0
        if norm_type == np.inf:
            for j in range(dim):
                norm = max(norm, abs(weight[r, j]))
        elif norm_type == 1.0:
            for j in range(dim):
                norm += abs(weight[r, j])
        elif norm_type == 2.0:
            for j in range(dim):
                norm += float(weight[r, j]) * float(weight[r, j])
            norm = np.sqrt(norm)
        else:
            for j in range(dim):
                norm += abs(float(weight[r, j])) ** norm_type
            norm = norm ** (1.0 / norm_type)
        if norm > max_norm:
            scale[0] = max_norm / (norm + 1e-7)
            for j in range(dim):
                weight[r, j] = weight[r, j] * scale[0]
