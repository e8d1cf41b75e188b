"""Training on copies of the tables, merged at sync points (deterministic and data-parallel word2vec).

The corpus file is cut into ``pieces``, each trained by one *replica*: its own copy of every trained
table and its own random state, one thread. An epoch runs in *periods* (each piece cut into equal byte
ranges, ``sync_words`` tokens of the corpus over all pieces); after a period the replicas' changes to some
rows are merged into the model and every replica continues from the merged rows:

    merged = model + delta_0 + delta_1 + ...    (delta_p = replica_p - model, added in piece order)

The deltas are **summed**: every update any replica made is applied once, as Hogwild threads apply
theirs to one table. (Averaging the deltas would divide the learning rate by the number of replicas;
summing whole vectors instead of deltas adds the model itself ``pieces`` times and blows up, Spark's
SPARK-24666.) The order of the sum is fixed, so the result depends on the pieces, never on how many
threads or machines trained them. One replica is copied back, not merged: a run with one piece equals
the single-thread run bit for bit.

Which rows are merged after a period (the rows are sorted by count, so the head is the frequent
words every replica updates all the time, pWord2Vec's observation): rows ``[0, SYNC_HEAD_ROWS)``
after every period, the next tier (4x as many rows) every 4th period, the next (16x) every 16th, and so on;
every row of every table after the last period of an epoch, so the model is whole between epochs.
Hierarchical softmax's inner nodes (``syn1``) are merged whole after every period.

The learning rate of a replica runs over its piece as a thread's runs over its part of the file (all
pieces advance by equal shares of bytes, so each one's progress is the global progress).

:class:`ReplicaGroup` is one set of replicas and the threads that train them: all of them in one
process, or on a Dask worker those of its pieces (:mod:`sparsemb.distributed.word2vec`).
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import List, NamedTuple, Optional, Sequence

import numpy as np

from ..kernels import word2vec as _k
from . import corpus as _corpus

#: Rows merged after every period; tier ``i`` (``SYNC_HEAD_ROWS * 4**(i-1)`` up to 4x that) every
#: ``4**i`` periods: each tier costs a merge about as much per period as the head.
SYNC_HEAD_ROWS = 1024
#: Pieces of ``deterministic=True``: the result is the same for any number of threads or workers.
DETERMINISTIC_PIECES = 4
#: Default tokens between two merges, over all pieces: a replica misses at most this many of the
#: others' updates, whatever the number of pieces.
SYNC_WORDS = 1 << 14
#: The trained tables, in the order of :class:`sparsemb.kernels.Tables`; ``lockf`` is read only.
TRAINED = ("syn0", "syn1neg", "syn1", "acc0", "acc1")


class Plan(NamedTuple):
    """How a corpus file is cut: piece ``p``'s period ``k`` is bytes ``offsets[p * periods + k]`` to
    ``offsets[p * periods + k + 1]``; ``shares[p]`` its tokens (the learning-rate schedule's)."""

    path: str
    pieces: int
    periods: int
    offsets: List[int]
    shares: List[int]


def make_plan(path, pieces, total_tokens, sync_words) -> Plan:
    """Cut the file at ``path`` (``total_tokens`` in the vocabulary) into ``pieces``, each into as many
    periods as make about ``sync_words`` tokens of all pieces a period (byte ranges at line starts)."""
    periods = max(1, math.ceil(total_tokens / sync_words))
    offsets = _corpus.byte_ranges(path, pieces * periods)
    size = max(offsets[-1], 1)
    shares = [round(total_tokens * (offsets[(p + 1) * periods] - offsets[p * periods]) / size)
              for p in range(pieces)]
    return Plan(path, pieces, periods, offsets, shares)


class Sync(NamedTuple):
    """Rows ``lo:hi`` of trained table ``table`` (an index into :data:`TRAINED`)."""

    table: int
    lo: int
    hi: int


def sync_after(period, periods, rows: Sequence[int]) -> List[Sync]:
    """What is merged after ``period`` (of ``periods``): ``rows[j]`` is table ``j``'s row count (0 for
    a table the run does not train)."""
    last = period == periods - 1
    syncs = []
    for j, n in enumerate(rows):
        if not n:
            continue
        if last or TRAINED[j] == "syn1":
            syncs.append(Sync(j, 0, n))
            continue
        lo, hi, every = 0, SYNC_HEAD_ROWS, 1
        while lo < n:
            if (period + 1) % every == 0:
                syncs.append(Sync(j, lo, min(hi, n)))
            lo, hi, every = hi, hi * 4, every * 4
    return syncs


def merge(base, changes, syncs, copied):
    """Merge the replicas' ``changes`` (per piece, in piece order: one array per sync) into ``base``
    (the trained tables, in place); returns the merged rows, one array per sync. ``copied``: the
    changes are the one replica's rows, not deltas."""
    merged = []
    for i, s in enumerate(syncs):
        if copied:
            rows = changes[0][i]
        else:
            rows = base[s.table][s.lo:s.hi].copy()
            for piece in changes:
                rows += piece[i]
        base[s.table][s.lo:s.hi] = rows
        merged.append(rows)
    return merged


class Training(NamedTuple):
    """What every replica trains with: the vocabulary's words (to read the file), the kernel's
    sampling tables and configuration, the trained tables (``base``, in :data:`TRAINED` order; one
    the run does not train has no rows) and the shared, read-only ``lockf``."""

    words: list
    sampling: tuple
    config: tuple
    base: list
    lockf: np.ndarray


class ReplicaGroup:
    """Replicas of ``training.base`` for ``pieces`` of ``plan``, trained by ``threads`` threads.

    ``base`` is held, not copied: in one process it is the model's tables (merged into by the
    caller), on a worker a copy of them. ``states``: each piece's random state.
    """

    def __init__(self, plan: Plan, training: Training, pieces, states, threads=1):
        self.plan, self.sampling, self.config = plan, training.sampling, training.config
        self.table = _corpus.WordTable.from_words(training.words)
        self.base, self.lockf = training.base, training.lockf
        self.pieces = list(pieces)
        self.states = np.array(states, dtype=np.uint64)
        self.copies = [[a.copy() for a in self.base] for _ in self.pieces]
        self.done = [0] * len(self.pieces)
        self.threads = max(1, min(threads, len(self.pieces)))
        self.pool = None  # made on first use, its threads ended with the group

    def _train(self, i, period, alphas):
        plan, p = self.plan, self.pieces[i]
        if period == 0:
            self.done[i] = 0
        lo, hi = plan.offsets[p * plan.periods + period], plan.offsets[p * plan.periods + period + 1]
        tables, state = _k.Tables(*self.copies[i], self.lockf), self.states[i]
        totals = np.zeros(4)
        for ids, starts in _corpus.encode_file(plan.path, self.table, lo, hi, warn=False):
            span = _k.Span(ids, starts, 0, starts.shape[0] - 1, alphas[0], alphas[1], self.done[i],
                           plan.shares[p])
            state, loss, examples, kept = _k.train_stretch(tables, self.sampling, self.config, span, state)
            n = int(starts[-1])
            self.done[i] += n
            totals += (n, loss, examples, kept)
        self.states[i] = np.uint64(state)
        return totals

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def _period(self, i, update, period, alphas, syncs, copied):
        """Replica ``i``'s share of :meth:`step`, on a thread of its own: take the merged rows, train,
        and return its totals and changes."""
        copy = self.copies[i]
        if update is not None:
            for s, rows in zip(*update):
                copy[s.table][s.lo:s.hi] = rows
        totals = self._train(i, period, alphas)
        changes = [copy[s.table][s.lo:s.hi].copy() if copied
                   else copy[s.table][s.lo:s.hi] - self.base[s.table][s.lo:s.hi] for s in syncs]
        return totals, changes

    def step(self, update: Optional[tuple], period, alphas, syncs, copied=False):
        """Apply ``update`` (``(syncs, merged)`` of the merge before, or None) to ``base`` and every
        replica, train ``period`` of every piece, and return ``(totals, changes, states)``: the
        period's tokens, loss, examples and kept tokens over the replicas (float64); per piece, one
        array per sync of ``syncs``, the replica's rows (``copied``) or their delta from ``base``; the
        pieces' random states. Each replica's part runs on one thread, its copying included."""
        if update is not None:
            for s, rows in zip(*update):
                self.base[s.table][s.lo:s.hi] = rows

        def part(i):
            return self._period(i, update, period, alphas, syncs, copied)

        if self.threads == 1:
            parts = [part(i) for i in range(len(self.pieces))]
        else:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(self.threads)
            parts = list(self.pool.map(part, range(len(self.pieces))))
        return np.sum([t for t, _ in parts], axis=0), [c for _, c in parts], self.states.copy()


class Done(NamedTuple):
    """A result at hand, with the ``result()`` of a future (a group trained in this process)."""

    value: tuple

    def result(self):
        return self.value


class Local(NamedTuple):
    """A :class:`ReplicaGroup` of this process, called as a remote one is."""

    group: ReplicaGroup

    @property
    def pieces(self):
        return self.group.pieces

    def step(self, *args):
        return Done(self.group.step(*args))

    def close(self):
        self.group.close()


class Runner:
    """Trains epochs on ``groups`` (each with ``pieces`` and a ``step`` returning a future of
    :meth:`ReplicaGroup.step`'s result) and merges their changes into ``base`` in piece order."""

    def __init__(self, groups, plan: Plan, base, states):
        self.groups, self.plan, self.base = groups, plan, base
        self.rows = [a.shape[0] for a in base]
        self.copied = plan.pieces == 1
        self.states = np.array(states, dtype=np.uint64)
        self.update = None

    def close(self):
        """End the groups (their threads, or on a cluster their actors)."""
        for g in self.groups:
            g.close()

    def epoch(self, alphas, progress):
        """One epoch; ``progress(tokens)`` after every period. Returns the epoch's tokens, loss,
        examples and kept tokens."""
        totals = np.zeros(4)
        for period in range(self.plan.periods):
            syncs = sync_after(period, self.plan.periods, self.rows)
            futures = [g.step(self.update, period, alphas, syncs, self.copied) for g in self.groups]
            changes = [None] * self.plan.pieces
            for g, future in zip(self.groups, futures):
                counts, piece_changes, states = future.result()
                totals += counts
                for i, p in enumerate(g.pieces):
                    changes[p] = piece_changes[i]
                    self.states[p] = states[i]
                progress(int(counts[0]))
            self.update = (syncs, merge(self.base, changes, syncs, self.copied))
        return totals
