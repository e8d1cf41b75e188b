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
import secrets
from typing import NamedTuple

import numpy as np

from .. import optim
from .._config import num_threads
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


def _chunks(n):
    for a in range(0, n, CHUNK_ROWS):
        yield a, min(a + CHUNK_ROWS, n)


def own_ids(spec, index) -> np.ndarray:
    """The ids placed on shard ``index``, sorted (int64)."""
    return np.concatenate([a + np.flatnonzero(shard_of(np.arange(a, b), spec.num_shards) == index)
                           for a, b in _chunks(spec.num_embeddings)])


def _draw_rows(spec, index, seed, weight):
    """Fill ``weight`` with this shard's rows of the table the local layer draws with ``seed``: the
    same N(0, 1) stream, drawn a chunk of rows at a time (the same numbers as in one call), keeping
    the rows placed here. Memory beyond the shard's own rows: one chunk."""
    rng = np.random.default_rng(seed)
    buf = np.empty((CHUNK_ROWS, spec.embedding_dim), dtype=weight.dtype)
    at = 0
    for a, b in _chunks(spec.num_embeddings):
        rng.standard_normal(out=buf[: b - a], dtype=weight.dtype)
        here = np.flatnonzero(shard_of(np.arange(a, b), spec.num_shards) == index)
        weight[at:at + here.size] = buf[here]
        at += here.size


def _read_checkpoint(spec, index, path, files, ids, weight):
    """Fill ``weight`` with the rows of ``ids`` (this shard's) from a checkpoint saved with any number
    of shards, and return their state arrays: each saved shard's ids are read (memory-mapped) and the
    rows placed here under the new count copied to their positions."""
    state = {}
    for entry in files:
        old = np.load(os.path.join(path, entry["ids"]), mmap_mode="r")
        here = np.flatnonzero(shard_of(old, spec.num_shards) == index)
        at = np.searchsorted(ids, old[here])
        weight[at] = np.load(os.path.join(path, entry["weight"]), mmap_mode="r")[here]
        for key, name in entry["state"].items():
            a = np.load(os.path.join(path, name), mmap_mode="r")
            if key not in state:
                state[key] = np.empty((ids.size,) + a.shape[1:], dtype=a.dtype)
            state[key][at] = a[here]
    return state


class Shard:
    """A Dask actor holding the rows of one shard (see the module docstring).

    Parameters
    ----------
    spec : TableSpec
    index : int
        This shard's number, in ``[0, spec.num_shards)``.
    threads : int
        Numba threads for this shard's kernels: its worker's thread count (a Dask worker's thread
        budget; a larger pool on a busy machine also costs more to wake than a small step takes).
    fill : tuple
        ``("seed", seed)``: the local layer's initialisation with that seed (padding row zeroed);
        ``("zeros",)``: zeros, to be overwritten by :meth:`assign`; ``("checkpoint", path, files,
        optimizer_name)``: the rows (and that optimizer's state, if a name is given) of a checkpoint.
    """

    def __init__(self, spec: TableSpec, index: int, threads: int, fill: tuple):
        self.spec = spec
        self.index = index
        self.threads = max(int(threads), 1)
        # Drawn here, not passed: if Dask ever re-ran this task (a worker restarted at the same
        # address), the new, freshly filled actor would answer with another token.
        self.token = secrets.token_hex(8)
        self._restored = None
        self.ids = own_ids(spec, index)
        self.n = self.ids.size
        # A table needs a row: an empty shard (tiny table, many shards) keeps one no id maps to.
        weight = np.zeros((max(self.n, 1), spec.embedding_dim), dtype=np.dtype(spec.dtype))
        if fill[0] == "seed":
            _draw_rows(spec, index, fill[1], weight)
            if spec.padding_idx >= 0 and self.n:
                at = np.searchsorted(self.ids, spec.padding_idx)
                if at < self.n and self.ids[at] == spec.padding_idx:
                    weight[at] = 0
        elif fill[0] == "checkpoint":
            _, path, files, name = fill
            state = _read_checkpoint(spec, index, path, files, self.ids, weight)
            if name is not None:
                self._restored = (name, state)
        self.table = Embedding(weight.shape[0], spec.embedding_dim, _weight=weight)
        self.optimizer = None

    def get_token(self) -> str:
        """This actor's token, drawn when it started (see :meth:`exchange`)."""
        return self.token

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
        """Apply ``pushes`` (a list of :class:`Push`, in order), then return ``(token, rows)``: the
        rows of ``pull`` (sorted ids placed here, or None: rows None), renormalised first when the
        table has a ``max_norm``. One message per step, so the rows pulled always reflect every step
        pushed before them."""
        with num_threads(self.threads):
            for p in pushes:
                self._apply(Push(*p))
            if pull is None:
                return self.token, None
            local = self._local(pull)
            if self.spec.max_norm > 0 and local.size:
                KE.renorm(self.table.weight, local, self.spec.max_norm, self.spec.norm_type)
            return self.token, np.take(self.table.weight, local, axis=0)

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
            state = {k: v[: self.n] for k, v in s.items() if k != "step"}
        # Views, not copies: a big shard is written (save) or sent without a second copy of it.
        return self.ids, self.table.weight[: self.n], state

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
