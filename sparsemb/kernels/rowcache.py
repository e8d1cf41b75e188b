"""The map of a row cache: which rows of a table in a file are held in RAM, in which slot, and which
slot a row that is missing takes.

A row cache (:class:`sparsemb._storage.RowCache`) holds a fixed number of a table's rows, with their
optimizer state, in arrays of ``capacity`` slots; the kernels of the layers and optimizers run on
those arrays with the batch's ids replaced by slots. Here is the bookkeeping only (reading and
writing rows is the caller's).

The policy keeps the rows used most often, counted over many steps, as TinyLFU does: every row of
the table has a use count (one byte, saturating; all halved each time they have been raised
:data:`AGEING` times the capacity, so that the counts follow a workload that drifts). A missing row
enters a small *window* of slots (:func:`window_slots`: about 1/:data:`WINDOW_SHARE` of them), a
ring; the row it pushes out of the window is compared with the victim of the main slots' CLOCK and
stays only if it was used more often than that victim, which then leaves. So a row read once in a
while (the long tail of a Zipf stream, a scan) passes through the window and leaves again without
displacing a row used more often; with one-pass counts alone (CLOCK) it would stay for a whole pass
of the hand. Main slots are evicted by a generalised CLOCK: a slot's count goes up (to
:data:`MAX_COUNT`) each call that uses its row, and the hand, looking for a victim, lowers the
counts it passes and stops at the first slot at 0.

On bench_storage's truncated Zipf(1.1) draws (65,536 ids a step, 4,194,304 rows, ~1,525,000 slots)
the misses a step after 1,400 steps were 2,493 with CLOCK alone and 2,239 with the counts
(simulated), 1,898 after 12,000 steps (measured); the most frequent rows would miss 1,798. The
counts learn slowly: a row at the edge of the cache is used about once in 800 steps there (see
BENCHMARKS.md).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._config import jit

#: The largest count a main slot holds: a row unused for this many passes of the hand is evicted.
MAX_COUNT = 3
#: The count that marks a slot of the window (the hand passes it by).
WINDOW = 255
#: The window holds about one slot in this many.
WINDOW_SHARE = 64
#: The use counts are halved each time they have been raised this many times the capacity.
AGEING = 64


class CacheMap(NamedTuple):
    """What :func:`assign` reads and updates in place (made by :func:`new_map`).

    slot_of : (num_rows,) int32
        A row's slot, or -1 when the row is not in the cache.
    uses : (num_rows,) uint8
        How many calls have used each row of the table (saturating at 255, halved now and then).
    id_of : (capacity,) int64
        A slot's row, or -1 for a free slot.
    count : (capacity,) uint8
        Main slots: uses, saturating at :data:`MAX_COUNT`, lowered by the passing hand;
        :data:`WINDOW` for the slots of the window.
    stamp : (capacity,) int64
        The number of the last :func:`assign` call that used the slot (its rows cannot be evicted
        by that call).
    dirty : (capacity,) bool
        The slot's row changed since it was read from (or last written to) the file.
    window : (w,) int64
        The window's slots, a ring.
    clock : (4,) int64
        The hand's position, how many calls :func:`assign` has had, the window's position, and
        the counts raised since they were last halved.
    """

    slot_of: np.ndarray
    uses: np.ndarray
    id_of: np.ndarray
    count: np.ndarray
    stamp: np.ndarray
    dirty: np.ndarray
    window: np.ndarray
    clock: np.ndarray


def window_slots(capacity: int) -> int:
    """Slots of the window of a cache of ``capacity`` slots: one in :data:`WINDOW_SHARE`, at least
    one, and none when there is a single slot."""
    return min(max(1, capacity // WINDOW_SHARE), capacity - 1)


def new_map(num_rows: int, capacity: int) -> CacheMap:
    """An empty map of ``capacity`` slots for a table of ``num_rows`` rows: the window its last
    slots."""
    w = window_slots(capacity)
    count = np.zeros(capacity, np.uint8)
    count[capacity - w:] = WINDOW
    return CacheMap(np.full(num_rows, -1, np.int32), np.zeros(num_rows, np.uint8),
                    np.full(capacity, -1, np.int64), count, np.zeros(capacity, np.int64),
                    np.zeros(capacity, np.bool_), np.arange(capacity - w, capacity, dtype=np.int64),
                    np.zeros(4, np.int64))


@jit()
def clear(m):
    """Empty the cache (every slot free, the use counts kept)."""
    for s in range(m.id_of.size):
        if m.id_of[s] >= 0:
            m.slot_of[m.id_of[s]] = -1
            m.id_of[s] = -1
        if m.count[s] != WINDOW:
            m.count[s] = 0


@jit()
def _victim(m, gen):
    """The main slot the hand stops at (a free slot, or one at count 0; not used by call ``gen``),
    the hand moved past it; -1 if every main slot is used by this call."""
    cap = m.id_of.size
    hand = m.clock[0]
    passed = 0  # slots in a row the hand cannot take: every one of them, and there is none
    while passed < cap:
        if m.count[hand] == WINDOW or m.stamp[hand] == gen:
            passed += 1
        elif m.count[hand] > 0:
            m.count[hand] -= 1
            passed = 0
        else:
            m.clock[0] = hand + 1 if hand + 1 < cap else 0
            return hand
        hand += 1
        if hand == cap:
            hand = 0
    m.clock[0] = hand
    return -1


@jit()
def _window_slot(m, gen):
    """The next slot of the window whose row may leave (not used by call ``gen``), the window's
    position moved past it; -1 if the call uses them all."""
    w = m.window.size
    for _ in range(w):
        at = m.clock[2]
        m.clock[2] = at + 1 if at + 1 < w else 0
        if m.stamp[m.window[at]] != gen:
            return at
    return -1


@jit()
def _age(m):
    """Halve the use counts once they have been raised :data:`AGEING` times the capacity."""
    if m.clock[3] >= AGEING * m.id_of.size:
        m.clock[3] = 0
        for r in range(m.uses.size):
            m.uses[r] >>= 1


@jit()
def assign(m, ids, write, slots):
    """Give every row of ``ids`` a slot: ``slots[i]`` is the slot of ``ids[i]``.

    Rows in the cache keep their slot; each missing row takes a slot of the window, whose row, or
    the main victim that row beats on uses (not one of ``ids``), is evicted. With ``write`` the
    rows are marked changed.

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
        (``slots`` is left unfilled, the arrays are empty) and the map is as it was, bar the counts,
        stamps and uses of the rows.
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
        first = False
        if s >= 0:
            if m.stamp[s] != gen:
                m.stamp[s] = gen
                hits += 1
                first = True
                if m.count[s] < MAX_COUNT:
                    m.count[s] += 1
            if write:
                m.dirty[s] = True
        elif s == -1:
            m.slot_of[r] = -2  # seen: counted once
            missing[k] = r
            k += 1
            first = True
        if first and m.uses[r] < 255:
            m.uses[r] += 1
            m.clock[3] += 1
    _age(m)
    empty = np.empty(0, dtype=np.int64)
    if hits + k > cap:
        for j in range(k):
            m.slot_of[missing[j]] = -1
        return empty, empty, empty, empty, hits + k
    load_slots = np.empty(k, dtype=np.int64)
    evict_slots = np.empty(k, dtype=np.int64)
    evict_ids = np.empty(k, dtype=np.int64)
    e = 0
    room = True  # (once the window is all used by this call it stays so: not searched again)
    for j in range(k):
        at = _window_slot(m, gen) if room else -1
        room = at >= 0
        s = -1 if at < 0 else m.window[at]
        if s >= 0 and m.id_of[s] >= 0:  # its row leaves the window: to the main slots, or out
            v = _victim(m, gen)
            if v >= 0:
                if m.id_of[v] < 0 or m.uses[m.id_of[s]] > m.uses[m.id_of[v]]:
                    m.count[s] = 0
                    m.count[v] = WINDOW
                    m.window[at] = v
                    s = v
        elif s < 0:  # the window all used by this call: straight to the main slots (there is room)
            s = _victim(m, gen)
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
        if m.count[s] != WINDOW:
            m.count[s] = 0
        m.dirty[s] = write
        load_slots[j] = s
    for i in range(n):
        slots[i] = m.slot_of[ids[i]]
    return load_slots, missing[:k], evict_slots[:e], evict_ids[:e], hits + k
