"""The map of a row cache: which rows of a table in a file are held in RAM, in which slot, and which
slot a row that is missing takes.

A row cache (:class:`sparsemb._storage.RowCache`) holds a fixed number of a table's rows, with their
optimizer state, in arrays of ``capacity`` slots; the kernels of the layers and optimizers run on
those arrays with the batch's ids replaced by slots. Here is the bookkeeping only (reading and
writing rows is the caller's). Eviction is a generalised CLOCK: a slot's count goes up (to
:data:`MAX_COUNT`) each call that uses its row, and the hand, looking for a slot to take, lowers the
counts it passes and takes the first slot at 0. Rows used in many steps (the head of a Zipf
stream) keep their slots; a tail row read once leaves at the hand's next pass: an approximation of
least-frequently-used, for the price of one byte a slot.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._config import jit

#: The largest count a slot holds: a row unused for this many passes of the hand is evicted.
MAX_COUNT = 3


class CacheMap(NamedTuple):
    """What :func:`assign` reads and updates in place.

    slot_of : (num_rows,) int32
        A row's slot, or -1 when the row is not in the cache.
    id_of : (capacity,) int64
        A slot's row, or -1 for a free slot.
    count : (capacity,) uint8
        Uses, saturating at :data:`MAX_COUNT`; lowered by the passing hand.
    stamp : (capacity,) int64
        The number of the last :func:`assign` call that used the slot (its rows cannot be evicted
        by that call).
    dirty : (capacity,) bool
        The slot's row changed since it was read from (or last written to) the file.
    clock : (2,) int64
        The hand's position, and how many calls :func:`assign` has had.
    """

    slot_of: np.ndarray
    id_of: np.ndarray
    count: np.ndarray
    stamp: np.ndarray
    dirty: np.ndarray
    clock: np.ndarray


@jit()
def assign(m, ids, write, slots):
    """Give every row of ``ids`` a slot: ``slots[i]`` is the slot of ``ids[i]``.

    Rows in the cache keep their slot; each missing row takes a slot from the hand, whose row (not
    one of ``ids``) is evicted. With ``write`` the rows are marked changed.

    Parameters
    ----------
    m : CacheMap
    ids : int64 (n,)
        Rows, in range, repeats allowed.
    write : bool
    slots : int64 (n,)
        Filled.

    Returns
    -------
    load_slots, load_ids : int64 (k,)
        The slots given to missing rows and those rows, distinct: the caller reads them in.
    evict_slots, evict_ids : int64 (e,)
        The slots whose changed rows were evicted and those rows: the caller writes them out
        before reading new rows into the slots.
    distinct : int
        The number of distinct rows in ``ids``. If it exceeds the capacity nothing is assigned
        (``slots`` is left unfilled, the arrays are empty) and the map is as it was, bar the counts
        and stamps of the rows present.
    """
    gen = m.clock[1] + 1
    m.clock[1] = gen
    cap = m.id_of.size
    n = ids.size
    missing = np.empty(n, dtype=np.int64)
    hits = 0
    k = 0
    for i in range(n):  # rows present: stamped first, so no missing row evicts them
        r = ids[i]
        s = m.slot_of[r]
        if s >= 0:
            if m.stamp[s] != gen:
                m.stamp[s] = gen
                hits += 1
                if m.count[s] < MAX_COUNT:
                    m.count[s] += 1
            if write:
                m.dirty[s] = True
        elif s == -1:
            m.slot_of[r] = -2  # seen: counted once
            missing[k] = r
            k += 1
    empty = np.empty(0, dtype=np.int64)
    if hits + k > cap:
        for j in range(k):
            m.slot_of[missing[j]] = -1
        return empty, empty, empty, empty, hits + k
    load_slots = np.empty(k, dtype=np.int64)
    evict_slots = np.empty(k, dtype=np.int64)
    evict_ids = np.empty(k, dtype=np.int64)
    e = 0
    hand = m.clock[0]
    for j in range(k):
        while True:  # ends: fewer than cap slots are stamped by this call
            s = hand
            hand += 1
            if hand == cap:
                hand = 0
            if m.stamp[s] == gen:
                continue
            if m.count[s] > 0:
                m.count[s] -= 1
                continue
            break
        old = m.id_of[s]
        if old >= 0:
            m.slot_of[old] = -1
            if m.dirty[s]:
                evict_slots[e] = s
                evict_ids[e] = old
                e += 1
        r = missing[j]
        m.id_of[s] = r
        m.slot_of[r] = s
        m.stamp[s] = gen
        m.count[s] = 0
        m.dirty[s] = write
        load_slots[j] = s
    m.clock[0] = hand
    for i in range(n):
        slots[i] = m.slot_of[ids[i]]
    return load_slots, missing[:k], evict_slots[:e], evict_ids[:e], hits + k
