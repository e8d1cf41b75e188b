"""Sharded embedding tables: rows (and their optimizer state) spread over Dask actors by a hash of the id.

A parameter server on Dask actors, as DGL-KE's KVStore and TorchRec's row-wise sharding: each shard
(:class:`~sparsemb.distributed._shard.Shard`, one actor on one worker) holds the rows whose id hashes
to it and their optimizer state, and updates them with ``sparsemb.optim``'s own optimizer on a local
table -- the same fused kernels as the single-process layer. The client keeps no row.

The user's loop is the local one::

    emb = ShardedEmbedding(1_000_000, 64, client=client, seed=0)
    opt = sparsemb.distributed.Adagrad([emb], lr=0.1)
    out = emb(ids); opt.backward_step(emb, g)                          # fused
    opt.zero_grad(); out = emb(ids); emb.backward(g); opt.step()      # PyTorch's

How a step travels (synchronous and exact, at most one round trip per shard a step):

- ``emb(ids)`` finds the batch's unique ids, asks each shard that holds some of them for those rows,
  in one message per shard sent to all shards at once, and computes the output on the client from
  those rows with the local layer's own kernels (so the output is the local layer's, bit for bit).
- ``backward`` / ``backward_step`` computes the coalesced gradient on the client (each unique row
  summed in occurrence order, as the fused kernel sums it) and ``step`` queues each shard's part of
  it with the step's count and hyper-parameters. The queued push travels with the *next* pull: the
  shard applies it, then gathers, so the rows pulled reflect every earlier step. A step costs one
  round trip per shard involved, not two.
- With :meth:`prefetch` (the next batch's ids, given before the step), the push and the next pull
  leave at once, when the step is taken, without waiting: their round trip overlaps whatever the
  client does until the next forward (the dense part of a model, loading the next batch). Still
  exact: the shard applies the push before it gathers.

Reading the whole table (``weight``, the optimizer's ``state_dict``) gathers it on the client: for
small tables and tests. ``save(dir)`` has every shard write its own rows and state (the directory
must be reachable from every worker: a shared filesystem) and ``load(dir, client, num_shards=...)``
restores onto any number of shards. A shard whose worker dies raises :class:`ShardLostError`
naming it and the last checkpoint; the table then refuses all further use.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from typing import NamedTuple

import numpy as np
from distributed.comm.core import CommClosedError

from .. import kernels as K
from .. import nn
from .. import optim as _optim
from .._config import num_threads
from .._io import atomic_write
from ..kernels import embedding as KE
from ._client import SchedulerError, connect
from ._shard import MANIFEST, Push, Shard, TableSpec, read_manifest, shard_of

__all__ = ["ShardedEmbedding", "ShardedEmbeddingBag", "SGD", "Adagrad", "RowwiseAdagrad",
           "SparseAdam", "ShardLostError", "SchedulerError", "Traffic"]

#: Seconds between checks, while waiting for a shard, that its worker is still alive.
_POLL = 0.5
#: Seconds a shard may take to answer before it is given up as lost (a worker that hangs).
TIMEOUT = 300.0
#: Checkpoint format version, written into the manifest.
_FORMAT = "sparsemb-sharded-table"
_VERSION = 1
#: A step whose batch has fewer elements (ids x dim) than this runs its client-side kernels on the
#: calling thread: after waiting for the shards, Numba's pool has gone to sleep, and waking it on a
#: busy machine costs more than the work (measured on a loaded 2-core VM: a 4,096 x 64 gather took
#: 7.5 ms on the pool just after a 10 ms wait, 0.4 ms on one thread). Same results either way.
SERIAL_BELOW = 1 << 20
#: Rows sent at a time when a given table (``_weight``, ``from_pretrained``) is scattered.
_SCATTER_ROWS = 1 << 16


class ShardLostError(RuntimeError):
    """A shard's worker died (or stopped answering): the table is no longer whole.

    Attributes
    ----------
    shard : int
    worker : str
        The address of the worker that held it.
    checkpoint : str or None
        The directory of the last checkpoint saved or loaded, to resume from.
    """

    def __init__(self, message, shard, worker, checkpoint):
        super().__init__(message)
        self.shard, self.worker, self.checkpoint = shard, worker, checkpoint


class Traffic(NamedTuple):
    """What a table sent to and received from its shards: messages and payload bytes (ids, rows,
    gradients; Dask's own framing, some hundreds of bytes a message, not counted)."""

    messages: int
    bytes_sent: int
    bytes_received: int


class _Batch(NamedTuple):
    """A forward's ids as the client needs them: the flat checked ids, their unique sorted values,
    each occurrence's position among those, and the unique ids split by shard."""

    idx: np.ndarray
    unique: np.ndarray
    inverse: np.ndarray
    parts: list   # per shard: positions in ``unique`` (sorted) or None


class _Inflight(NamedTuple):
    """An exchange sent and not yet answered: per shard its future, and the batch it pulls (or None)."""

    futures: dict
    batch: object


class _Config(NamedTuple):
    """A table's options, as the manifest keeps them."""

    kind: str
    num_embeddings: int
    embedding_dim: int
    dtype: str
    padding_idx: object
    max_norm: object
    norm_type: float
    scale_grad_by_freq: bool
    mode: str
    include_last_offset: bool


def _check_config(cfg: _Config) -> _Config:
    """The local layers' rules for their options (the shards' tables hold a part of the rows only,
    so the sharded layer checks the whole table's options itself)."""
    n, dim = int(cfg.num_embeddings), int(cfg.embedding_dim)
    if n < 1 or dim < 1:
        raise ValueError(f"num_embeddings and embedding_dim must be >= 1, got {cfg.num_embeddings}, "
                         f"{cfg.embedding_dim}")
    pad = cfg.padding_idx
    if pad is not None:
        if not -n <= int(pad) < n:
            raise ValueError(f"padding_idx {pad} must be within [-{n}, {n})")
        pad = int(pad) + n if int(pad) < 0 else int(pad)
    if cfg.max_norm is not None and not cfg.max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {cfg.max_norm}")
    if not cfg.norm_type > 0:
        raise ValueError(f"norm_type must be positive, got {cfg.norm_type}")
    dtype = np.dtype(np.float32 if cfg.dtype is None else cfg.dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    if cfg.kind == "EmbeddingBag":
        if cfg.mode not in ("sum", "mean", "max"):
            raise ValueError(f"mode must be 'sum', 'mean' or 'max', got {cfg.mode!r}")
        if cfg.scale_grad_by_freq and cfg.mode == "max":
            raise ValueError("scale_grad_by_freq is not supported with mode='max'")
    return cfg._replace(num_embeddings=n, embedding_dim=dim, padding_idx=pad, dtype=dtype.name,
                        max_norm=None if cfg.max_norm is None else float(cfg.max_norm),
                        norm_type=float(cfg.norm_type), scale_grad_by_freq=bool(cfg.scale_grad_by_freq),
                        include_last_offset=bool(cfg.include_last_offset))


async def _gather(futures):
    """Every future's result, or the exception it raised (actor futures are awaitables)."""
    return await asyncio.gather(*futures, return_exceptions=True)


class ShardedParameter(nn.TableParameter):
    """A sharded table as an optimizer sees it (what ``parameters()`` yields), like
    :class:`sparsemb.nn.Parameter` but not one: a ``sparsemb.optim`` optimizer, which would keep a
    whole-table state in the client, refuses it; ``sparsemb.distributed``'s optimizers take it.
    ``data`` gathers the whole table (see :attr:`ShardedEmbedding.weight`); ``shape`` and ``dtype``
    do not."""

    __slots__ = ()

    @property
    def shape(self):
        return (self.module.num_embeddings, self.module.embedding_dim)

    @property
    def dtype(self):
        return self.module.dtype

    def numel(self) -> int:
        return self.module.num_embeddings * self.module.embedding_dim

    def __repr__(self):
        return f"ShardedParameter of {self.module!r}, shape {self.shape}, dtype {self.dtype}"


class _ShardedTable(nn.Module):
    """What ShardedEmbedding and ShardedEmbeddingBag share: the shards, the exchange, checkpoints."""

    sparse = False  # torch's flag, kept for its code: the gradient is always row-sparse

    def _start(self, cfg, client, num_shards, fill, requires_grad):
        self._cfg = cfg
        self.num_embeddings = cfg.num_embeddings
        self.embedding_dim = cfg.embedding_dim
        self.dtype = np.dtype(cfg.dtype)
        self.padding_idx = cfg.padding_idx
        self.max_norm = cfg.max_norm
        self.norm_type = cfg.norm_type
        self.scale_grad_by_freq = cfg.scale_grad_by_freq
        self.requires_grad = bool(requires_grad)
        self._client = connect(client)
        self._own_client = self._client is not client   # made here from an address: closed by close()
        info = self._client.scheduler_info(n_workers=-1)["workers"]
        workers = sorted(info)
        if not workers:
            raise SchedulerError(f"the Dask cluster at {self._client.scheduler.address} has no workers")
        n = len(workers) if num_shards is None else num_shards
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"num_shards must be an integer >= 1, got {num_shards!r}")
        self.num_shards = int(n)
        self._grad = None
        self._saved = None
        self._next = None          # the _Batch given to prefetch()
        self._pushes = {}          # shard -> [Push] queued, not sent
        self._inflight = None
        self._reply = None         # (batch, rows) answered by a prefetching exchange
        self._lost = None
        self._checkpoint = None
        self._restored = None      # (optimizer name, step) whose state a load restored on the shards
        self._optimizer = None
        self._opt_state = None
        self._traffic = [0, 0, 0]
        self._param = ShardedParameter(self)
        spec = TableSpec(cfg.num_embeddings, cfg.embedding_dim, cfg.dtype,
                         -1 if cfg.padding_idx is None else cfg.padding_idx,
                         0.0 if cfg.max_norm is None else cfg.max_norm, cfg.norm_type, self.num_shards)
        tag = secrets.token_hex(6)
        self.workers = [workers[s % len(workers)] for s in range(self.num_shards)]
        self._futures = [self._client.submit(Shard, spec, s, info[w].get("nthreads", 1), fill,
                                             actor=True, pure=False,
                                             workers=[w], allow_other_workers=False,
                                             key=f"sparsemb-shard-{tag}-{s}")
                         for s, w in enumerate(self.workers)]
        self._actors = self._wait({s: f for s, f in enumerate(self._futures)}, what="start")
        self._tokens = self._call("get_token", {s: () for s in range(self.num_shards)}, "start")

    # -- waiting for shards, and losing them ---------------------------------------------------

    def _lose(self, s, reason):
        where = self._checkpoint
        last = (f"the last checkpoint is {where!r}: resume with {type(self).__name__}.load({where!r}, "
                f"client, num_shards=...)" if where else "no checkpoint was saved or loaded")
        self._lost = ShardLostError(
            f"shard {s} of {self.num_shards} (on worker {self.workers[s]}) was lost: {reason}. The "
            f"table is no longer whole and will not be used again; {last}", s, self.workers[s], where)
        raise self._lost

    def _check_alive(self):
        if self._lost is not None:
            raise self._lost

    def _wait(self, futures, what):
        """The results of ``futures`` (shard -> future), awaited together in one hop to Dask's event
        loop, polling between hops that each shard's actor is still alive."""
        shards = list(futures)
        start = time.monotonic()
        while True:
            try:
                results = self._client.sync(_gather, [futures[s] for s in shards],
                                            callback_timeout=_POLL)
                break
            except TimeoutError:
                for s in shards:
                    status = self._futures[s].status
                    if status not in ("finished", "pending") or (what != "start" and status != "finished"):
                        self._lose(s, f"its actor is {status} (the worker died)")
                if time.monotonic() - start > TIMEOUT:
                    self._lose(shards[0], f"no answer to {what} in {TIMEOUT:.0f} s")
        for s, r in zip(shards, results):
            if isinstance(r, BaseException):
                self._failed(s, r, what)
        return dict(zip(shards, results))

    def _failed(self, s, err, what):
        """Shard ``s`` raised ``err`` during ``what``: lose the table if the shard is gone (Dask's
        errors for a worker that died) or if ``err`` interrupted a step (the shards would no longer
        agree); otherwise (a save into a directory a worker cannot write, say) re-raise ``err``."""
        if what == "start":  # the shard's own start failed (a checkpoint file it cannot read)
            raise err
        gone = (isinstance(err, CommClosedError) or "Actor's worker" in str(err)
                or "Worker holding Actor was lost" in str(err)
                or self._futures[s].status not in ("finished", "pending"))
        if gone:
            self._lose(s, f"{type(err).__name__}: {err}")
        if what == "an exchange":
            self._lose(s, f"it failed while applying a step ({type(err).__name__}: {err})")
        raise err

    def _check_tokens(self, tokens=None):
        """Lose the table if a shard answering is not the actor that started (``tokens``: shard ->
        the token it answered with; None: ask every shard)."""
        if tokens is None:
            tokens = self._call("get_token", {s: () for s in range(self.num_shards)}, "a check")
        for s, token in tokens.items():
            if token != self._tokens[s]:
                self._lose(s, "Dask started it afresh on a restarted worker (its rows and state are "
                              "not the table's)")

    def _call(self, method, per_shard, what):
        """``actor.method(*args)`` on each shard in ``per_shard`` (shard -> args), all sent at once;
        their results."""
        self._check_alive()
        futures = {}
        for s, args in per_shard.items():
            try:
                futures[s] = getattr(self._actors[s], method)(*args)
            except Exception as err:
                self._failed(s, err, what)
        return self._wait(futures, what)

    # -- the exchange: queued pushes and a pull in one message per shard -----------------------

    def _batch(self, idx) -> _Batch:
        flat = idx.reshape(-1)
        unique, order, starts = KE.segments(flat, -1)
        inverse = np.empty(flat.size, dtype=np.int64)
        inverse[order] = np.repeat(np.arange(unique.size, dtype=np.int64), np.diff(starts))
        where = shard_of(unique, self.num_shards)
        parts = [None] * self.num_shards
        if unique.size:
            by_shard = np.argsort(where, kind="stable")
            bounds = np.searchsorted(where[by_shard], np.arange(self.num_shards + 1))
            for s in range(self.num_shards):
                if bounds[s + 1] > bounds[s]:
                    parts[s] = by_shard[bounds[s]:bounds[s + 1]]
        return _Batch(idx, unique, inverse.reshape(idx.shape), parts)

    def _send(self, batch):
        """Send every queued push, and the pull of ``batch`` (or none), one message per shard."""
        self._settle()
        involved = set(self._pushes) | {s for s, p in enumerate(batch.parts if batch else ()) if p is not None}
        futures = {}
        sent = 0
        for s in sorted(involved):
            pushes = self._pushes.pop(s, [])
            pull = None if batch is None or batch.parts[s] is None else batch.unique[batch.parts[s]]
            sent += sum(p.ids.nbytes + p.values.nbytes for p in pushes) + (0 if pull is None else pull.nbytes)
            try:
                futures[s] = self._actors[s].exchange([tuple(p) for p in pushes], pull)
            except Exception as err:
                self._failed(s, err, "an exchange")
        self._pushes = {}
        self._traffic[0] += len(futures)
        self._traffic[1] += sent
        self._inflight = _Inflight(futures, batch)

    def _settle(self):
        """Wait for the exchange in flight; keep the rows it pulled."""
        if self._inflight is None:
            return
        inflight, self._inflight = self._inflight, None
        replies = self._wait(inflight.futures, "an exchange")
        self._check_tokens({s: token for s, (token, _) in replies.items()})
        batch = inflight.batch
        if batch is None:
            return
        rows = np.empty((batch.unique.size, self.embedding_dim), dtype=self.dtype)
        for s, part in enumerate(batch.parts):
            if part is not None:
                rows[part] = replies[s][1]
                self._traffic[2] += replies[s][1].nbytes
        self._reply = (batch, rows)

    def _rows(self, batch):
        """The current rows of ``batch.unique`` (every queued push applied first)."""
        self._check_alive()
        ready = self._inflight.batch if self._inflight is not None else (
            self._reply[0] if self._reply is not None else None)
        if ready is not batch or self._pushes:
            self._send(batch)
        self._settle()
        got, rows = self._reply
        self._reply = None
        assert got is batch
        return rows

    def flush(self):
        """Send every queued update and wait until the shards have applied it (``save``, ``weight``
        and the optimizer's ``state_dict`` do this themselves)."""
        self._check_alive()
        if self._pushes:
            self._send(None)
        self._settle()
        self._reply = None

    def prefetch(self, ids):
        """Name the ids of the next forward, so that the next step's push and that pull leave at
        once when the step is taken, without waiting (see the module docstring). Exact whatever
        happens next: a forward with other ids pulls them afresh.

        ``ids`` as for ``forward`` (for a bag, the flat or 2-D ids; offsets are not needed)."""
        self._check_alive()
        # A copy: the caller may refill its array before the forward that it announces.
        self._next = self._batch(np.array(K.as_ids(ids, self.num_embeddings), copy=True))
        if self._pushes:  # the step was already taken: send now
            self._send(self._next)

    def _queue(self, step, hyper, g):
        """Queue one optimizer step of coalesced gradient ``g`` (SparseRows) for the shards."""
        self._check_alive()
        where = shard_of(g.indices, self.num_shards)
        for s in np.unique(where):
            m = where == s
            self._pushes.setdefault(int(s), []).append(
                Push(step, hyper, g.indices[m], np.ascontiguousarray(g.values[m])))
        if self._next is not None:
            self._send(self._next)

    def _ids_of_next(self, idx):
        nxt = self._next
        self._next = None
        if nxt is not None and nxt.idx.shape == idx.shape and np.array_equal(nxt.idx, idx):
            return nxt
        return self._batch(idx)

    # -- the local layer's surface ---------------------------------------------------------------

    def _mini(self, batch, rows):
        """A local layer over just the batch's rows: its forward and backward are the local
        layer's, with each id replaced by its position among the batch's unique ids."""
        pad = None
        if self.padding_idx is not None:
            at = np.searchsorted(batch.unique, self.padding_idx)
            if at < batch.unique.size and batch.unique[at] == self.padding_idx:
                pad = int(at)
        if rows.shape[0] == 0:
            rows = np.zeros((1, self.embedding_dim), dtype=self.dtype)
        return self._local_layer(rows, pad)

    def _threads(self, batch):
        """The Numba threads for the client's kernels on ``batch`` (see :data:`SERIAL_BELOW`)."""
        return num_threads(1 if batch.idx.size * self.embedding_dim < SERIAL_BELOW else None)

    @property
    def grad(self):
        """The gradient summed since the last ``zero_grad()`` (:class:`sparsemb.SparseRows` over
        the whole table's ids), or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = value

    def zero_grad(self, set_to_none=True):
        self._grad = None if set_to_none else nn.SparseRows(
            np.empty(0, np.int64), np.empty((0, self.embedding_dim), self.dtype), self.num_embeddings)

    def _zero_own_grad(self, set_to_none):
        self.zero_grad(set_to_none)

    def _own_parameters(self):
        return (("weight", self._param),)

    def gradient(self, grad_out):
        """The coalesced gradient of the last forward (:class:`sparsemb.SparseRows`), not added to
        ``grad``; None for a frozen layer."""
        if self._saved is None:
            raise RuntimeError("backward called before forward")
        batch, mini = self._saved
        with self._threads(batch):
            g = mini.gradient(grad_out)
        if g is None or not self.requires_grad:
            return None
        return nn.SparseRows(batch.unique[g.indices], g.values, self.num_embeddings)

    def backward(self, grad_out):
        """As the local layer's: the coalesced gradient, also added into ``grad``; None if frozen.
        (The rows are summed here, on the client: the shards receive sums, never ``grad_out``.)"""
        g = self.gradient(grad_out)
        if g is not None:
            self._grad = g if self._grad is None else self._grad + g
        return g

    @property
    def weight(self) -> np.ndarray:
        """The whole table gathered on the client (a read-only copy: for small tables and tests)."""
        return self._gather()[0]

    def _gather(self):
        """``(rows, {state key: rows})`` of the whole table, in id order, from every shard."""
        self.flush()
        self._check_tokens()
        parts = self._call("dump", {s: () for s in range(self.num_shards)}, "a gather")
        w = np.empty((self.num_embeddings, self.embedding_dim), dtype=self.dtype)
        state = {}
        for ids, rows, st in parts.values():
            w[ids] = rows
            for k, v in st.items():
                state.setdefault(k, np.empty((self.num_embeddings,) + v.shape[1:], v.dtype))[ids] = v
        w.flags.writeable = False
        return w, state

    @property
    def traffic(self) -> Traffic:
        """Messages and payload bytes exchanged with the shards so far (see :class:`Traffic`)."""
        return Traffic(*self._traffic)

    def shard_nbytes(self) -> list:
        """Bytes of rows, ids and optimizer state each shard holds."""
        got = self._call("nbytes", {s: () for s in range(self.num_shards)}, "a size query")
        return [got[s] for s in range(self.num_shards)]

    # -- optimizer attachment (called by sparsemb.distributed's optimizers) -----------------------

    def _attach(self, optimizer, name, hyper):
        """Make ``name``'s state on every shard (or resume it, if a load restored that optimizer's)
        and return the state dict the optimizer keeps here: ``{"step": count}``."""
        if self._optimizer is not None and self._optimizer is not optimizer:
            raise ValueError(f"{self!r} already belongs to an optimizer (each table has one: its state "
                             "lives on the shards)")
        resume = self._restored is not None and self._restored[0] == name
        self.flush()
        self._call("attach", {s: (name, hyper, resume) for s in range(self.num_shards)}, "attach")
        self._optimizer = optimizer
        self._opt_state = {"step": self._restored[1] if resume else 0}
        self._restored = None
        return self._opt_state

    # -- checkpoints ---------------------------------------------------------------------------------

    def save(self, path):
        """Write every shard's rows and optimizer state into directory ``path`` (made if missing).

        Each shard writes its own files (new names: nothing is replaced), then the manifest is
        written (under a temporary name, renamed), and only then are the files of the checkpoint it
        replaces removed: at every moment ``path`` holds one whole checkpoint. ``path`` must be
        reachable, under that name, from every worker (a shared filesystem).

        Raises
        ------
        FileExistsError
            If ``path`` is a non-empty directory that holds no sparsemb checkpoint.
        ShardLostError
            If a shard is lost; the previous checkpoint in ``path``, if any, is left whole.
        """
        path = os.path.abspath(os.fspath(path))
        os.makedirs(path, exist_ok=True)
        old = read_manifest(path)
        if old is None and os.listdir(path):
            raise FileExistsError(f"{path} is not empty and holds no sparsemb checkpoint "
                                  f"({MANIFEST}): refusing to write into it")
        self.flush()
        self._check_tokens()
        token = secrets.token_hex(4)
        try:
            entries = self._call("save", {s: (path, token) for s in range(self.num_shards)}, "save")
            opt = None
            if self._optimizer is not None:
                opt = {"name": type(self._optimizer).__name__, "step": self._opt_state["step"]}
            manifest = {"format": _FORMAT, "version": _VERSION, "config": self._cfg._asdict(),
                        "requires_grad": self.requires_grad, "num_shards": self.num_shards,
                        "optimizer": opt, "files": [entries[s] for s in range(self.num_shards)]}
            with atomic_write(os.path.join(path, MANIFEST)) as f:
                f.write(json.dumps(manifest, indent=1).encode())
        except BaseException:
            for name in os.listdir(path):
                if f"-{token}." in name:
                    os.unlink(os.path.join(path, name))
            raise
        for entry in (old or {}).get("files", ()):
            for name in [entry["ids"], entry["weight"], *entry["state"].values()]:
                if os.path.exists(os.path.join(path, name)):
                    os.unlink(os.path.join(path, name))
        self._checkpoint = path

    @classmethod
    def load(cls, path, client, num_shards=None):
        """The table saved in ``path`` by :meth:`save`, on ``num_shards`` shards (default: one per
        worker), whatever the number it was saved with. If it was saved with an optimizer, that
        optimizer's state is restored on the shards, and an optimizer of the same class made on this
        table resumes it (its step count and arrays; hyper-parameters are the new constructor's).

        Raises
        ------
        FileNotFoundError
            If ``path`` holds no checkpoint.
        ValueError
            If the checkpoint is not one of this class's tables.
        """
        path = os.path.abspath(os.fspath(path))
        m = read_manifest(path)
        if m is None:
            raise FileNotFoundError(f"no sparsemb checkpoint in {path} (no {MANIFEST})")
        if m.get("format") != _FORMAT or m.get("version") != _VERSION:
            raise ValueError(f"{path} holds no sparsemb sharded table of version {_VERSION}")
        cfg = _Config(**m["config"])
        if cfg.kind != cls._kind:
            raise ValueError(f"{path} holds a {cfg.kind}, not a {cls._kind}: load it with Sharded{cfg.kind}")
        self = cls.__new__(cls)
        opt = m["optimizer"]
        self._start(cfg, client, num_shards,
                    ("checkpoint", path, m["files"], None if opt is None else opt["name"]),
                    m["requires_grad"])
        self._restored = None if opt is None else (opt["name"], opt["step"])
        self._checkpoint = path
        return self

    def _scatter(self, weight):
        """Send the rows of a given table to their shards, a chunk of rows at a time."""
        w = K.as_table(weight, "_weight")
        if w.shape != (self.num_embeddings, self.embedding_dim):
            raise ValueError(f"_weight has shape {w.shape}, expected "
                             f"({self.num_embeddings}, {self.embedding_dim})")
        for a in range(0, self.num_embeddings, _SCATTER_ROWS):
            ids = np.arange(a, min(a + _SCATTER_ROWS, self.num_embeddings))
            where = shard_of(ids, self.num_shards)
            self._call("assign", {int(s): (ids[where == s], np.ascontiguousarray(
                w[ids[where == s]], dtype=self.dtype)) for s in np.unique(where)}, "a scatter")

    def close(self):
        """Release the shards (their rows and state are lost unless saved), and the Client if the
        table made it from an address. The table cannot be used afterwards."""
        for f in self._futures:
            f.release()
        self._lost = self._lost or RuntimeError(f"{type(self).__name__} was closed")
        if self._own_client:
            self._client.close()

    def __repr__(self):
        return (f"{type(self).__name__}({self.num_embeddings}, {self.embedding_dim}, "
                f"num_shards={self.num_shards})")


def _init(self, cfg, client, num_shards, seed, _weight, _freeze, sparse, device):
    """The constructors' common part: checks, then shards filled from the seed or from ``_weight``."""
    if device is not None and str(device).split(":")[0] != "cpu":
        raise ValueError(f"device must be 'cpu' (sparsemb tables live in CPU memory), got {device!r}")
    cfg = _check_config(cfg)
    self.sparse = bool(sparse)
    if _weight is not None:
        w = np.asarray(_weight)
        if w.dtype in (np.float32, np.float64) and cfg.dtype != w.dtype.name:
            cfg = cfg._replace(dtype=w.dtype.name)
        self._start(cfg, client, num_shards, ("zeros",), not _freeze)
        self._scatter(w)
        return
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (1 << 63))
    self._start(cfg, client, num_shards, ("seed", seed), not _freeze)


class ShardedEmbedding(_ShardedTable):
    """:class:`sparsemb.Embedding` with its rows on Dask actors (see the module docstring).

    Parameters
    ----------
    num_embeddings, embedding_dim, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
    _weight, _freeze, device, dtype, seed
        As :class:`sparsemb.Embedding`; with the same ``seed`` the table starts equal, bit for bit,
        to the local layer's (each shard draws the whole N(0, 1) stream in chunks and keeps its
        rows). ``max_norm`` renormalises the looked-up rows on their shards, as the local forward does.
    client : distributed.Client or str, keyword only
        The cluster, or its scheduler's address.
    num_shards : int, optional, keyword only
        Default: one per worker. Shards are placed on the workers in turn.

    Raises
    ------
    SchedulerError
        If the scheduler cannot be reached.
    """

    _kind = "Embedding"

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None,
                 dtype=None, *, seed=None, client, num_shards=None):
        _init(self, _Config("Embedding", num_embeddings, embedding_dim, dtype, padding_idx, max_norm,
                            norm_type, scale_grad_by_freq, "mean", False),
              client, num_shards, seed, _weight, _freeze, sparse, device)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False, *, client, num_shards=None):
        """A sharded table holding the rows of ``embeddings`` (2-D float32/float64)."""
        w = K.as_table(embeddings, "embeddings")
        return cls(w.shape[0], w.shape[1], padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                   w, freeze, client=client, num_shards=num_shards)

    def _local_layer(self, rows, pad):
        return nn.Embedding(rows.shape[0], self.embedding_dim, pad, None, self.norm_type,
                            self.scale_grad_by_freq, _weight=rows)

    def forward(self, ids) -> np.ndarray:
        """Look up ``ids`` (int array of any shape) -> ``ids.shape + (embedding_dim,)``."""
        idx = K.as_ids(ids, self.num_embeddings)
        batch = self._ids_of_next(idx)
        mini = self._mini(batch, self._rows(batch))
        with self._threads(batch):
            out = mini(batch.inverse)
        self._saved = (batch, mini)
        return out

    __call__ = forward


class ShardedEmbeddingBag(_ShardedTable):
    """:class:`sparsemb.EmbeddingBag` with its rows on Dask actors (see :class:`ShardedEmbedding`).

    Parameters
    ----------
    num_embeddings, embedding_dim, max_norm, norm_type, scale_grad_by_freq, mode, sparse, _weight,
    include_last_offset, padding_idx, device, dtype, seed
        As :class:`sparsemb.EmbeddingBag`.
    client, num_shards : keyword only
        As :class:`ShardedEmbedding`.
    """

    _kind = "EmbeddingBag"

    def __init__(self, num_embeddings, embedding_dim, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, mode="mean", sparse=False, _weight=None,
                 include_last_offset=False, padding_idx=None, device=None, dtype=None, *,
                 seed=None, _freeze=False, client, num_shards=None):
        _init(self, _Config("EmbeddingBag", num_embeddings, embedding_dim, dtype, padding_idx,
                            max_norm, norm_type, scale_grad_by_freq, mode, include_last_offset),
              client, num_shards, seed, _weight, _freeze, sparse, device)

    @property
    def mode(self):
        return self._cfg.mode

    @property
    def include_last_offset(self):
        return self._cfg.include_last_offset

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, mode="mean", sparse=False, include_last_offset=False,
                        padding_idx=None, *, client, num_shards=None):
        """A sharded bag table holding the rows of ``embeddings`` (2-D float32/float64)."""
        w = K.as_table(embeddings, "embeddings")
        return cls(w.shape[0], w.shape[1], max_norm, norm_type, scale_grad_by_freq, mode, sparse, w,
                   include_last_offset, padding_idx, _freeze=freeze, client=client,
                   num_shards=num_shards)

    def _local_layer(self, rows, pad):
        return nn.EmbeddingBag(rows.shape[0], self.embedding_dim, None, self.norm_type,
                               self.scale_grad_by_freq, self.mode, _weight=rows,
                               include_last_offset=self.include_last_offset, padding_idx=pad)

    def forward(self, ids, offsets=None, per_sample_weights=None) -> np.ndarray:
        """Reduce bags of ids to ``(bags, embedding_dim)``, as :meth:`sparsemb.EmbeddingBag.forward`."""
        idx = K.as_ids(ids, self.num_embeddings)
        batch = self._ids_of_next(idx)
        if self.max_norm is not None:
            # The pull renormalises rows on the shards: check the bags before anything changes.
            with self._threads(batch):
                self._mini(batch, np.zeros((batch.unique.size, self.embedding_dim), self.dtype))(
                    batch.inverse, offsets, per_sample_weights)
        mini = self._mini(batch, self._rows(batch))
        with self._threads(batch):
            out = mini(batch.inverse, offsets, per_sample_weights)
        self._saved = (batch, mini)
        return out

    __call__ = forward


# -- optimizers ------------------------------------------------------------------------------------


class _Sharded:
    """The part of a sparsemb.distributed optimizer that differs from its local class: the state
    arrays live on the shards (the local class's optimizer, made on each shard's rows, updates them),
    the step count lives here and travels with each push."""

    @staticmethod
    def _as_param(p):
        if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str):
            p = p[1]
        if isinstance(p, _ShardedTable):
            return p._param
        if isinstance(p, ShardedParameter):
            return p
        raise TypeError(f"sparsemb.distributed optimizers take ShardedEmbedding / ShardedEmbeddingBag "
                        f"layers, got {type(p).__name__} (use sparsemb.optim for local layers)")

    def _init_state(self, layer, hyper):
        return layer._attach(self, type(self).__name__, hyper)

    def step(self, closure=None):
        """Queue one update of each table that has a gradient (sent with its next pull)."""
        loss = None if closure is None else closure()
        for i, group in enumerate(self.param_groups):
            hyper = self._check_hyper(group, f"param_groups[{i}]: ")
            for p in group["params"]:
                g = p.module.grad
                if g is not None:
                    self._apply(p, hyper, g)
        return loss

    # backward_step is the local class's: for a sharded layer, its gradient is queued as a push.
    _layer_types = (_ShardedTable,)

    @staticmethod
    def _backward_update(layer, grad_out):
        return layer.gradient(grad_out)

    def _apply(self, p, hyper, g):
        state = self.state[p]
        state["step"] += 1
        p.module._queue(state["step"], hyper, g)

    def state_dict(self) -> dict:
        """torch's layout, as the local class's, with every state array gathered from the shards
        (the whole table's state on the client: for small tables and tests; checkpoint big ones
        with the table's ``save``)."""
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {}
        for p, s in self.state.items():
            arrays = p.module._gather()[1]
            state[index[id(p)]] = {"step": s["step"], **arrays}
        return {"state": state,
                "param_groups": [{k: v for k, v in g.items() if k != "params"}
                                 | {"params": [index[id(p)] for p in g["params"]]}
                                 for g in self.param_groups]}

    def load_state_dict(self, state_dict):
        raise NotImplementedError(
            "a sharded optimizer's state lives on its table's shards: restore it with "
            "ShardedEmbedding.load(dir, client) from a checkpoint written by the table's save(dir)")


class SGD(_Sharded, _optim.SGD):
    """:class:`sparsemb.optim.SGD` for sharded tables (same arguments, same results bit for bit)."""


class Adagrad(_Sharded, _optim.Adagrad):
    """:class:`sparsemb.optim.Adagrad` for sharded tables (same arguments, same results bit for bit)."""


class RowwiseAdagrad(_Sharded, _optim.RowwiseAdagrad):
    """:class:`sparsemb.optim.RowwiseAdagrad` for sharded tables (same arguments and results)."""


class SparseAdam(_Sharded, _optim.SparseAdam):
    """:class:`sparsemb.optim.SparseAdam` for sharded tables (same arguments and results; the step
    count is the table's, global over its shards)."""
