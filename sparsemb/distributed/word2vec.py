"""Data-parallel word2vec on Dask: ``Word2Vec(corpus_file=..., client=client)``.

Every Dask worker holds a :class:`~sparsemb.word2vec.replicas.ReplicaGroup` in an actor: copies of the
tables for its pieces of the corpus file, trained by its threads with the same kernels as one process.
After every period the driver gathers the changes of the rows due for a merge (one call per worker),
sums them in piece order into the model, and sends the merged rows with the next period's call; the
rule is :mod:`sparsemb.word2vec.replicas`'s. Pieces: one per worker thread, or with
``deterministic=True`` the fixed number of one process, so the vectors are the same bit for bit for
any cluster (and the same as ``deterministic=True`` in one process).

The corpus file is read by the workers at the path the driver has: it must be on a filesystem every
worker shares. Each worker checks it (same size and modification time) before training starts.
"""
from __future__ import annotations

import os
import time
from typing import NamedTuple

import numpy as np
from distributed.comm.core import CommClosedError

from ..word2vec import replicas as _replicas


class CorpusNotSharedError(FileNotFoundError):
    """The corpus file is missing, or another file, on a Dask worker."""


class WorkerLostError(ConnectionError):
    """A Dask worker holding pieces of the training went away; the model is as of the last merge."""


def check_corpus(path, size, mtime_ns, dask_worker=None):
    """On a worker (``client.run``): the corpus file is the driver's (raises
    :class:`CorpusNotSharedError`)."""
    where = dask_worker.address
    try:
        st = os.stat(path)
    except OSError as err:
        raise CorpusNotSharedError(f"corpus file {path} is not readable on Dask worker {where} ({err.strerror}): "
                                   f"the corpus must be on a filesystem every worker shares") from None
    if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
        raise CorpusNotSharedError(f"corpus file {path} on Dask worker {where} is not the driver's ({st.st_size} "
                                   f"bytes, not {size}, or another modification time): the corpus must be on a "
                                   f"filesystem every worker shares")


class GroupActor:
    """A worker's replicas (a Dask actor): ReplicaGroup's arguments, the tables copied on arrival."""

    def __init__(self, plan, training, pieces, states, threads):
        training = training._replace(base=[np.array(a, copy=True) for a in training.base])
        self.group = _replicas.ReplicaGroup(plan, training, pieces, states, threads)

    def step(self, *args):
        return self.group.step(*args)

    def __del__(self):
        self.group.close()


#: Seconds between two looks at a pending call (and at whether the run's workers are all there).
_POLL = 0.02
_WORKER_CHECK = 1.0


def _lost(worker, why):
    return WorkerLostError(f"Dask worker {worker} was lost during training ({why}); the model holds the vectors "
                           f"of the last merge")


class _Watch(NamedTuple):
    """The run's workers: all must stay, since a merge needs every piece."""

    client: object
    workers: list

    def check(self):
        there = self.client.scheduler_info()["workers"]
        for worker in self.workers:
            if worker not in there:
                raise _lost(worker, "it left the cluster")


class _Call(NamedTuple):
    watch: _Watch
    future: object
    worker: str

    def result(self):
        # Polled, not waited on: when a worker dies (and its nanny restarts it, without the actor),
        # calls to it, and seen here even calls to the others, can stay pending for ever.
        waited = 0.0
        while not self.future.done():
            time.sleep(_POLL)
            waited += _POLL
            if waited >= _WORKER_CHECK:
                waited = 0.0
                self.watch.check()
        try:
            return self.future.result()
        except (CommClosedError, OSError, EOFError, RuntimeError) as err:
            if isinstance(err, RuntimeError):  # Dask's "worker holding actor was lost", or the step's own
                try:
                    self.watch.check()
                except WorkerLostError as lost:
                    raise lost from err
                raise
            raise _lost(self.worker, f"{type(err).__name__}: {err}") from err


class Remote(NamedTuple):
    """A worker's actor, called as :class:`~sparsemb.word2vec.replicas.Local` is."""

    watch: _Watch
    future: object  # the actor lives while its future is held
    actor: object
    worker: str
    pieces: list

    def step(self, *args):
        with self.watch.client.as_current():  # the actor's proxy finds its client there, default or not
            return _Call(self.watch, self.actor.step(*args), self.worker)

    def close(self):
        self.future.release()  # the actor goes with its last future


def runner(client, key, total, training, plan_for, states_for):
    """The :class:`~sparsemb.word2vec.replicas.Runner` of a run on ``client``'s workers: ``key`` the
    corpus file's (kind, path, size, mtime), ``total`` its tokens, ``plan_for(path, pieces, total)`` and
    ``states_for(pieces)`` the model's plan and random states for a number of pieces (one per worker
    thread; a deterministic model fixes it)."""
    workers = client.scheduler_info()["workers"]
    if not workers:
        raise RuntimeError(f"the Dask cluster at {client.scheduler.address} has no workers")
    addresses = sorted(workers)
    _, path, size, mtime_ns = key
    client.run(check_corpus, path, size, mtime_ns, workers=addresses)
    plan = plan_for(path, sum(workers[a]["nthreads"] for a in addresses), total)
    states = states_for(plan.pieces)
    made = []
    for i, address in enumerate(addresses):
        mine = list(range(i, plan.pieces, len(addresses)))
        if mine:
            future = client.submit(GroupActor, plan, training, mine, states[mine], workers[address]["nthreads"],
                                   actor=True, workers=[address], allow_other_workers=False, pure=False)
            made.append((future, address, mine))
    watch = _Watch(client, [address for _, address, _ in made])
    groups = [Remote(watch, future, _Call(watch, future, address).result(), address, mine)
              for future, address, mine in made]
    return _replicas.Runner(groups, plan, training.base, states)
