"""One shard of a sharded table: the actor that holds its rows, their optimizer state, and applies
sparsemb's own optimizers to them. Plain NumPy and sparsemb: a worker imports no more than this.

Rows are placed by a hash of their id (:func:`shard_of`), so that a Zipf batch's frequent rows, which
have small ids, are spread over every shard rather than all landing on the first. A shard keeps its
rows' ids sorted (:attr:`Shard.ids`) and its rows in that order, in a local
:class:`sparsemb.Embedding` table, so that a local optimizer built on that table updates them with
the same kernels, bit for bit, as the single-process layer would.
"""
from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np

from .. import optim
from .._io import atomic_write
from ..kernels import embedding as KE
from ..nn import Embedding, SparseRows

#: Rows drawn (or scanned) at a time when a shard fills itself: bounds the memory a shard needs
#: beyond its own rows while it reads the whole id range.
CHUNK_ROWS = 1 << 16

#: The name of a checkpoint's manifest, written last: the checkpoint is the one it lists.
MANIFEST = "manifest.json"


def shard_of(ids, num_shards: int) -> np.ndarray:
    """The shard of each id: ``splitmix64(id) % num_shards`` (int64, the shape of ``ids``).

    A fixed function of the id and the shard count only, so the client, every shard and a later
    load with another shard count agree on it without a table of placements.
    """
    x = np.asarray(ids).astype(np.uint64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x % np.uint64(num_shards)).astype(np.int64)


class TableSpec(NamedTuple):
    """What a shard needs to know of its table."""

    num_embeddings: int
    embedding_dim: int
    dtype: str
    padding_idx: int   # -1 for none
    max_norm: float    # 0.0 for none
    norm_type: float
    num_shards: int


class Push(NamedTuple):
    """One optimizer step for one shard: the step's global count, the optimizer's hyper-parameters
    at that step, and this shard's part of the coalesced gradient (ids sorted, rows summed)."""

    step: int
    hyper: dict
    ids: np.ndarray
    values: np.ndarray


def _seeded_rows(spec, index, seed):
    """This shard's rows of the table the local layer draws with ``seed``: the same N(0, 1) stream,
    drawn in chunks of rows (the same numbers as in one call), keeping the rows placed here."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(spec.dtype)
    buf = np.empty((CHUNK_ROWS, spec.embedding_dim), dtype=dt)
    ids, parts = [], []
    for a in range(0, spec.num_embeddings, CHUNK_ROWS):
        b = min(a + CHUNK_ROWS, spec.num_embeddings)
        rng.standard_normal(out=buf[: b - a], dtype=dt)
        here = np.flatnonzero(shard_of(np.arange(a, b), spec.num_shards) == index)
        ids.append(here + a)
        parts.append(buf[here])
    return np.concatenate(ids), np.concatenate(parts)


def _checkpoint_rows(spec, index, path, files):
    """This shard's rows and state arrays from a checkpoint saved with any number of shards: each
    saved shard's ids are read (memory-mapped) and the rows placed here under the new count taken."""
    ids, weight, state = [], [], {}
    for entry in files:
        old = np.load(os.path.join(path, entry["ids"]), mmap_mode="r")
        here = np.flatnonzero(shard_of(old, spec.num_shards) == index)
        ids.append(np.asarray(old[here]))
        weight.append(np.load(os.path.join(path, entry["weight"]), mmap_mode="r")[here])
        for key, name in entry["state"].items():
            state.setdefault(key, []).append(np.load(os.path.join(path, name), mmap_mode="r")[here])
    ids = np.concatenate(ids)
    order = np.argsort(ids, kind="stable")
    return (ids[order], np.concatenate(weight)[order],
            {k: np.concatenate(v)[order] for k, v in state.items()})


class Shard:
    """A Dask actor holding the rows of one shard (see the module docstring).

    Parameters
    ----------
    spec : TableSpec
    index : int
        This shard's number, in ``[0, spec.num_shards)``.
    fill : tuple
        ``("seed", seed)``: the local layer's initialisation with that seed (padding row zeroed);
        ``("zeros",)``: zeros, to be overwritten by :meth:`assign`; ``("checkpoint", path, files,
        optimizer_name)``: the rows (and that optimizer's state, if a name is given) of a checkpoint.
    """

    def __init__(self, spec: TableSpec, index: int, fill: tuple):
        self.spec = spec
        self.index = index
        dt = np.dtype(spec.dtype)
        self._restored = None
        if fill[0] == "seed":
            self.ids, weight = _seeded_rows(spec, index, fill[1])
            if spec.padding_idx >= 0:
                weight[self.ids == spec.padding_idx] = 0
        elif fill[0] == "zeros":
            self.ids = np.concatenate([a + np.flatnonzero(shard_of(np.arange(a, min(
                a + CHUNK_ROWS, spec.num_embeddings)), spec.num_shards) == index)
                for a in range(0, spec.num_embeddings, CHUNK_ROWS)])
            weight = np.zeros((self.ids.size, spec.embedding_dim), dtype=dt)
        else:
            _, path, files, name = fill
            self.ids, weight, state = _checkpoint_rows(spec, index, path, files)
            if name is not None:
                self._restored = (name, state)
        self.n = self.ids.size
        # A table needs a row: an empty shard (tiny table, many shards) keeps one no id maps to.
        table = np.zeros((max(self.n, 1), spec.embedding_dim), dtype=dt)
        table[: self.n] = weight
        self.table = Embedding(table.shape[0], spec.embedding_dim, _weight=table)
        self.optimizer = None

    def _local(self, ids):
        return np.searchsorted(self.ids, ids)

    def assign(self, ids, rows):
        """Overwrite the rows of ``ids`` (sorted, all placed here) with ``rows``."""
        self.table.weight[self._local(ids)] = rows

    def attach(self, name, hyper, resume):
        """Make the ``sparsemb.optim`` optimizer ``name`` with ``hyper`` on this shard's rows; with
        ``resume``, take its state from the checkpoint this shard was loaded from."""
        self.optimizer = getattr(optim, name)([self.table], **hyper)
        if resume:
            saved_name, arrays = self._restored
            assert saved_name == name
            state = self.optimizer.state[next(self.table.parameters())]
            for key, a in arrays.items():
                state[key][: self.n] = a
        self._restored = None

    def exchange(self, pushes, pull):
        """Apply ``pushes`` (a list of :class:`Push`, in order), then return the rows of ``pull``
        (sorted ids placed here, or None), renormalised first when the table has a ``max_norm``:
        one message per step, so the rows pulled always reflect every step pushed before them."""
        for p in pushes:
            self._apply(Push(*p))
        if pull is None:
            return None
        local = self._local(pull)
        if self.spec.max_norm > 0 and local.size:
            KE.renorm(self.table.weight, local, self.spec.max_norm, self.spec.norm_type)
        return np.take(self.table.weight, local, axis=0)

    def _apply(self, push):
        opt = self.optimizer
        param = next(self.table.parameters())
        values = push.values if push.values.flags.writeable else push.values.copy()
        # The local optimizer's own step on a summed gradient; the count is the table's, not this
        # shard's (a shard sees only the steps that touched it; SparseAdam's bias correction and
        # Adagrad's lr_decay count every step).
        opt.param_groups[0].update(push.hyper)
        opt.state[param]["step"] = push.step - 1
        self.table.grad = SparseRows(self._local(push.ids), values, self.table.num_embeddings)
        try:
            opt.step()
        finally:
            self.table.grad = None

    def dump(self):
        """``(ids, rows, {state key: rows})`` of every row held here (for small tables and tests)."""
        state = {}
        if self.optimizer is not None:
            s = self.optimizer.state[next(self.table.parameters())]
            state = {k: v[: self.n].copy() for k, v in s.items() if k != "step"}
        return self.ids, self.table.weight[: self.n].copy(), state

    def nbytes(self) -> int:
        """Bytes of rows, ids and optimizer state held here."""
        total = self.ids.nbytes + self.table.weight.nbytes
        if self.optimizer is not None:
            s = self.optimizer.state[next(self.table.parameters())]
            total += sum(v.nbytes for k, v in s.items() if k != "step")
        return total

    def save(self, path, token):
        """Write this shard's ids, rows and optimizer state as ``.npy`` files named with ``token``
        (new names: nothing existing is replaced; each file written under a temporary name first).
        Returns the manifest entry: ``{"ids": name, "weight": name, "state": {key: name}}``."""
        ids, weight, state = self.dump()
        stem = f"shard{self.index:04d}-{token}"
        entry = {"ids": f"{stem}.ids.npy", "weight": f"{stem}.weight.npy",
                 "state": {k: f"{stem}.state-{k}.npy" for k in state}}
        arrays = [(entry["ids"], ids), (entry["weight"], weight)]
        arrays += [(entry["state"][k], v) for k, v in state.items()]
        for name, a in arrays:
            with atomic_write(os.path.join(path, name)) as f:
                np.save(f, a, allow_pickle=False)
        return entry


def read_manifest(path):
    """The manifest of the checkpoint in directory ``path`` (a dict), or None if it has none."""
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
