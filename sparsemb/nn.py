"""PyTorch-style embedding layers on NumPy arrays, with explicit sparse backward passes.

Besides the layers, the part of ``torch.nn.Module`` a training script touches: ``parameters()`` /
``named_parameters()`` (what the optimizers take), ``state_dict()`` / ``load_state_dict()`` with
torch's keys, ``train()`` / ``eval()``, ``requires_grad_()``, ``zero_grad()``, and containers
(:class:`ModuleList`, :class:`ModuleDict`, or a :class:`Module` subclass whose attributes are layers)
for models with several tables.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from . import _storage
from . import kernels as K
from .kernels import bag as B

_EMPTY_I64 = np.empty(0, dtype=np.int64)
#: Rows drawn at a time into an interleaved table's strided weight (a 64-wide float32 block: 16 MiB).
_DRAW_ROWS = 1 << 16


class GradientSegments(NamedTuple):
    """A gradient in segment form (see :mod:`sparsemb.kernels.embedding`), what the fused optimizer
    kernels take: for each unique row ``indices[u]``, the occurrences ``order[starts[u]:starts[u+1]]``
    whose rows ``coef[i] * rows[src[i]]`` (``coef`` / ``src`` empty: 1 and ``i``) sum to its gradient."""

    indices: np.ndarray
    order: np.ndarray
    starts: np.ndarray
    src: np.ndarray
    coef: np.ndarray
    rows: np.ndarray


#: id -> [array, count]: the arrays pending gradients made read-only, with how many hold each, so
#: that one buffer given to several layers (``out = a(i) + b(j)``) is shared, not copied.
_LOCKS: dict = {}


def _locked_by_us(a) -> bool:
    e = _LOCKS.get(id(a))
    return e is not None and e[0] is a


def _lock(chain):
    for a in chain:
        e = _LOCKS.get(id(a))
        if e is not None and e[0] is a:
            e[1] += 1
        else:
            a.flags.writeable = False
            _LOCKS[id(a)] = [a, 1]


def _unlock(chain):
    for a in chain:
        _LOCKS[id(a)][1] -= 1
    # Writable again, bases first (NumPy refuses a writable view of a read-only base): repeat while
    # an array held by nobody has a writable (or no) base.
    freed = True
    while freed:
        freed = False
        for k, (a, n) in list(_LOCKS.items()):
            if n == 0 and (not isinstance(a.base, np.ndarray) or a.base.flags.writeable):
                a.flags.writeable = True
                del _LOCKS[k]
                freed = True


class _Pending:
    """A gradient not summed yet: its segments and the caller's arrays made read-only meanwhile.

    The aliasing rule (see :meth:`_Table.backward`): ``rows`` may be the caller's ``grad_out``. While
    the gradient is pending, that array and every array it is a view of are read-only, so a caller
    who reuses its buffer gets a ValueError instead of a silently different update. They are made
    writable again when no pending gradient holds them: summed (``values`` read) or dropped.
    """

    __slots__ = ("seg", "locked")

    def __init__(self, seg, locked):
        self.seg = seg
        self.locked = locked

    def __del__(self):  # the gradient was dropped unread (or its layer was)
        if self.locked:
            self.release()

    def release(self):
        locked, self.locked = self.locked, ()
        _unlock(locked)


def _hold(rows, grad_out):
    """``(rows, arrays made read-only)``: ``rows`` is kept as is when it is our own array or a plain
    writable NumPy array of the caller's (then locked; or one another pending gradient locked), and
    copied otherwise (memory NumPy does not own, such as a tensor's or a buffer's, or an array
    already read-only, which its owner may make writable again)."""
    if isinstance(grad_out, np.ndarray):
        if not np.may_share_memory(rows, grad_out):
            return rows, ()  # converted or made contiguous: already a copy
    elif isinstance(grad_out, (list, tuple)):
        return rows, ()
    # rows (a reshape), the array passed, and what they are views of: NumPy's ``base`` skips
    # intermediate views, so the array passed is not always on rows' chain.
    arrays = {}
    for a in (rows, grad_out):
        while isinstance(a, np.ndarray):
            arrays.setdefault(id(a), a)
            a = a.base
        if a is not None:  # memory NumPy does not own (a tensor's, a buffer's)
            return rows.copy(), ()
    owner = [a for a in arrays.values() if a.base is None]
    if len(owner) != 1 or not (owner[0].flags.writeable or _locked_by_us(owner[0])):
        return rows.copy(), ()
    # The owner first; a view already read-only needs no lock: NumPy refuses to make a view
    # writable over a read-only base, so it stays read-only at least as long as the owner.
    held = owner + [a for a in arrays.values()
                    if a is not owner[0] and (a.flags.writeable or _locked_by_us(a))]
    _lock(held)
    return rows, tuple(held)


class SparseRows:
    """A row-sparse gradient: ``values[u]`` is the gradient of row ``indices[u]``; other rows are 0.

    Always coalesced: ``indices`` are sorted, unique int64. A layer's ``backward`` returns one whose
    ``values`` are summed only when first read (the optimizers' ``step()`` applies it from the
    unsummed segments, as ``backward_step`` does).

    Parameters
    ----------
    indices : ndarray of int64, shape (nnz,)
    values : ndarray, shape (nnz, dim)
    num_rows : int
    """

    __slots__ = ("indices", "_values", "num_rows", "_pending", "__weakref__")

    def __init__(self, indices, values, num_rows: int):
        indices = np.asarray(indices, dtype=np.int64)
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[0] != indices.shape[0]:
            raise ValueError(
                f"values of shape {values.shape} do not match indices of shape {indices.shape}"
            )
        if indices.size and (np.any(np.diff(indices) <= 0) or indices[0] < 0
                             or indices[-1] >= num_rows):
            raise ValueError(f"indices must be sorted, unique and in [0, {num_rows})")
        self.indices = indices
        self._values = values
        self.num_rows = int(num_rows)
        self._pending = None

    @classmethod
    def _lazy(cls, pending: _Pending, num_rows: int) -> "SparseRows":
        """A gradient whose values are the sums of ``pending``'s segments, computed when read."""
        self = cls.__new__(cls)
        self.indices = pending.seg.indices
        self._values = None
        self.num_rows = int(num_rows)
        self._pending = pending
        return self

    @property
    def values(self) -> np.ndarray:
        if self._pending is not None:
            self._materialize()
        return self._values

    @values.setter
    def values(self, value):
        self._drop_pending()
        self._values = value

    def _materialize(self):
        pending = self._pending
        seg = pending.seg
        values = np.empty((seg.indices.size, seg.rows.shape[1]), dtype=seg.rows.dtype)
        K.segment_sum(seg.order, seg.starts, seg.src, seg.coef, seg.rows, values)
        self._values = values
        self._pending = None
        pending.release()

    def _drop_pending(self):
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.release()

    @property
    def shape(self):
        dim = (self._pending.seg.rows if self._pending is not None else self._values).shape[1]
        return (self.num_rows, dim)

    @property
    def dtype(self):
        return (self._pending.seg.rows if self._pending is not None else self._values).dtype

    def to_dense(self) -> np.ndarray:
        """The full ``(num_rows, dim)`` gradient (allocates the whole table: for tests and small
        tables)."""
        out = np.zeros(self.shape, dtype=self.dtype)
        out[self.indices] = self.values  # indices are unique, so plain assignment is exact
        return out

    def __add__(self, other: "SparseRows") -> "SparseRows":
        if not isinstance(other, SparseRows):
            return NotImplemented
        if other.shape != self.shape:
            raise ValueError(f"cannot add gradients of shapes {self.shape} and {other.shape}")
        idx, val = K.coalesce(np.concatenate([self.indices, other.indices]),
                              np.concatenate([self.values, other.values]))
        return SparseRows(idx, val, self.num_rows)

    def __repr__(self):
        return f"SparseRows(nnz={self.indices.size}, shape={self.shape}, dtype={self.dtype})"


def _check_padding_idx(padding_idx, num_embeddings):
    if padding_idx is None:
        return None
    p = int(padding_idx)
    if not -num_embeddings <= p < num_embeddings:
        raise ValueError(f"padding_idx {padding_idx} must be within [-{num_embeddings}, {num_embeddings})")
    return p + num_embeddings if p < 0 else p


def _check_norm(max_norm, norm_type):
    if max_norm is not None and not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    if not norm_type > 0:
        raise ValueError(f"norm_type must be positive, got {norm_type}")


def _check_dtype(dtype):
    """float32 (the default, as torch's) or float64; a torch dtype is read by name, without torch."""
    if dtype is None:
        return np.dtype(np.float32)
    if type(dtype).__module__.startswith("torch"):
        dtype = str(dtype).removeprefix("torch.")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _check_device(device):
    """None or the CPU (``"cpu"``, ``"cpu:0"``, ``torch.device("cpu")``): tables live in NumPy memory."""
    if device is not None and str(device).split(":")[0] != "cpu":
        raise ValueError(f"device must be 'cpu' (sparsemb tables live in CPU memory), got {device!r}")


def _check_weight(weight, num_embeddings, embedding_dim, dtype):
    """``_weight`` as torch checks it, and a table the kernels can update in place (no silent copy:
    the layer shares it, as torch's layer shares its ``_weight``)."""
    if not isinstance(weight, np.ndarray):
        raise TypeError(f"_weight must be a numpy array, got {type(weight).__name__}")
    if weight.shape != (num_embeddings, embedding_dim):
        raise ValueError(f"_weight has shape {weight.shape}, expected ({num_embeddings}, {embedding_dim}) "
                         "(num_embeddings, embedding_dim)")
    if weight.dtype not in (np.float32, np.float64):
        raise TypeError(f"_weight must be float32 or float64, got dtype {weight.dtype}")
    if dtype is not None and _check_dtype(dtype) != weight.dtype:
        raise TypeError(f"_weight has dtype {weight.dtype}, but dtype={_check_dtype(dtype)} was asked for")
    if not weight.flags.c_contiguous:
        raise ValueError("_weight must be C-contiguous (the layer updates it in place; "
                         "pass np.ascontiguousarray(w))")
    return weight


def _pretrained(embeddings, copy, freeze):
    """The table ``from_pretrained`` keeps: a C-ordered copy, or with ``copy=False`` the array itself
    (a memmap stays mapped), which must then be usable as it is."""
    if copy:
        table = K.as_table(embeddings, "embeddings")
        w = K.aligned_empty(table.shape, table.dtype)
        w[...] = table
        return w
    if not isinstance(embeddings, np.ndarray):
        raise TypeError(f"from_pretrained(copy=False) keeps a NumPy array (or np.memmap) as the table, "
                        f"got {type(embeddings).__name__}")
    if embeddings.ndim == 2 and not embeddings.flags.c_contiguous:
        raise ValueError("from_pretrained(copy=False) needs a C-contiguous table (the layer uses it in "
                         "place); pass np.ascontiguousarray(embeddings) or copy=True")
    K.as_table(embeddings, "embeddings")  # the shape and dtype (C-contiguous: nothing copied)
    w = embeddings
    if not freeze and not w.flags.writeable:
        raise ValueError("embeddings is read-only (mapped with mmap_mode='r'?), so it cannot be "
                         "trained: pass freeze=True, map it with mmap_mode='r+', or copy=True")
    _storage.advise(w, "random")  # rows are read at random: see _storage.open_array
    return w


class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` returns, as torch's ``_IncompatibleKeys``."""

    missing_keys: list
    unexpected_keys: list


class TableParameter:
    """What any layer's table shows an optimizer: ``data`` is ``layer.weight``, ``grad`` is
    ``layer.grad``, ``requires_grad`` is the layer's. :class:`Parameter` is the local layers' (a
    sharded table has another, which the local optimizers do not take)."""

    __slots__ = ("module",)

    def __init__(self, module):
        self.module = module

    @property
    def data(self) -> np.ndarray:
        return self.module.weight

    @property
    def grad(self):
        return self.module.grad

    @property
    def requires_grad(self) -> bool:
        return self.module.requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        self.module.requires_grad = bool(value)


class Parameter(TableParameter):
    """A layer's table as an optimizer sees it: what ``parameters()`` yields (torch's ``Parameter``).

    It refers to its layer, where the table and its gradient live: ``data`` is ``layer.weight`` (the
    ndarray), ``grad`` is ``layer.grad``, ``requires_grad`` is the layer's. One per layer, always the
    same object, so it can key an optimizer's ``state`` as in torch.
    """

    __slots__ = ()

    @property
    def shape(self):
        return self.module._weight.shape

    @property
    def dtype(self):
        return self.module._weight.dtype

    def numel(self) -> int:
        return self.module._weight.size

    def __array__(self, dtype=None, copy=None):
        return self.module.weight if dtype is None else self.module.weight.astype(dtype)

    def __repr__(self):
        return f"Parameter of {self.module!r}, shape {self.shape}, dtype {self.dtype}"


class Module:
    """The part of ``torch.nn.Module`` a training loop uses, for models made of sparsemb layers.

    Subclass it and assign layers (or other modules) as attributes, as in torch, or use
    :class:`ModuleList` / :class:`ModuleDict`; ``parameters()`` then walks them all, with torch's
    dotted names (``"user.weight"``, ``"tables.0.weight"``).
    """

    training = True

    def __setattr__(self, name, value):
        modules = self.__dict__.setdefault("_modules", {})
        if isinstance(value, Module):
            modules[name] = value
        else:
            modules.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self.__dict__.get("_modules", {}).pop(name, None)
        object.__delattr__(self, name)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def named_children(self):
        """``(name, module)`` for each direct sub-module, in assignment order."""
        return iter(self.__dict__.get("_modules", {}).items())

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix=""):
        """This module and every sub-module, each once, with its dotted name."""
        seen = set()

        def walk(m, name):
            if id(m) in seen:
                return
            seen.add(id(m))
            yield name, m
            for child_name, child in m.named_children():
                yield from walk(child, f"{name}.{child_name}" if name else child_name)
        return walk(self, prefix)

    def modules(self):
        return (m for _, m in self.named_modules())

    def _own_parameters(self):
        return ()

    def named_parameters(self, prefix="", recurse=True):
        """``(name, Parameter)`` pairs, each parameter once (a layer shared by two parents too)."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else iter([(prefix, self)])
        for name, m in mods:
            for pname, p in m._own_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{name}.{pname}" if name else pname), p

    def parameters(self, recurse=True):
        """The :class:`Parameter` of every layer: ``SGD(model.parameters(), lr=...)`` as in torch."""
        return (p for _, p in self.named_parameters(recurse=recurse))

    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Each layer's table under torch's key (``"weight"``, ``"user.weight"``).

        The arrays are the tables themselves, as torch's state_dict holds the tensors: copy them
        (``copy.deepcopy``) to keep a snapshot while training goes on.
        """
        out = OrderedDict() if destination is None else destination
        for name, p in self.named_parameters(prefix.rstrip(".")):
            out[name] = p.data
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy the tables in ``state_dict`` (NumPy arrays or CPU tensors) into the layers, all or nothing.

        Values are cast to each table's dtype, as torch's ``copy_`` does.

        Raises
        ------
        ValueError
            With ``strict``, if a key is missing or unexpected; always, if a shape differs. Nothing
            is copied then.
        """
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(f"state_dict does not match {type(self).__name__}: missing keys "
                             f"{missing}, unexpected keys {unexpected}")
        values = {}
        for k, p in own.items():
            if k in state_dict:
                v = np.asarray(state_dict[k])
                if v.shape != p.shape:
                    raise ValueError(f"{k!r} has shape {v.shape} in state_dict, {p.shape} in the model")
                if v.dtype.kind not in "fiu":
                    raise TypeError(f"{k!r} has dtype {v.dtype} in state_dict, expected floats")
                values[k] = v
        for k, v in values.items():
            np.copyto(own[k].data, v, casting="unsafe")
        return IncompatibleKeys(missing, unexpected)

    def train(self, mode=True):
        """Set ``training`` on this module and every sub-module (no layer here behaves differently)."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every layer; returns self."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none=True):
        """Drop every layer's gradient (``set_to_none=False``: an empty gradient instead)."""
        for m in self.modules():
            if isinstance(m, _Table):
                m._zero_own_grad(set_to_none)


class ModuleList(Module):
    """Layers in a list, as ``torch.nn.ModuleList``; their names are ``"0"``, ``"1"``, ..."""

    def __init__(self, modules=None):
        for m in modules or ():
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds modules, got {type(module).__name__}")
        setattr(self, str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, i):
        mods = list(self.children())
        return ModuleList(mods[i]) if isinstance(i, slice) else mods[i]

    def __len__(self):
        return len(self.__dict__.get("_modules", {}))

    def __iter__(self):
        return self.children()


class ModuleDict(Module):
    """Layers by name, as ``torch.nn.ModuleDict`` (one table per categorical feature, say)."""

    def __init__(self, modules=None):
        for k, m in dict(modules or {}).items():
            self[k] = m

    def __setitem__(self, key, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict holds modules, got {type(module).__name__} for {key!r}")
        modules = self.__dict__.setdefault("_modules", {})
        modules[str(key)] = module

    def __getitem__(self, key):
        return self.__dict__.get("_modules", {})[key]

    def __delitem__(self, key):
        del self.__dict__["_modules"][key]

    def __contains__(self, key):
        return key in self.__dict__.get("_modules", {})

    def __len__(self):
        return len(self.__dict__.get("_modules", {}))

    def __iter__(self):
        return iter(self.__dict__.get("_modules", {}))

    def keys(self):
        return self.__dict__.get("_modules", {}).keys()

    def values(self):
        return self.__dict__.get("_modules", {}).values()

    def items(self):
        return self.__dict__.get("_modules", {}).items()


class _Table(Module):
    """What Embedding and EmbeddingBag share: the table, its options, gradient bookkeeping."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
                 scale_grad_by_freq, sparse, _weight, freeze, device, dtype, seed, storage=None,
                 interleave=None, cache_rows=None):
        _check_device(device)
        self._cache = None
        if int(num_embeddings) < 1 or int(embedding_dim) < 1:
            raise ValueError(
                f"num_embeddings and embedding_dim must be >= 1, got {num_embeddings}, {embedding_dim}"
            )
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.padding_idx = _check_padding_idx(padding_idx, self.num_embeddings)
        _check_norm(max_norm, norm_type)
        self.max_norm = None if max_norm is None else float(max_norm)
        self.norm_type = float(norm_type)
        self.scale_grad_by_freq = bool(scale_grad_by_freq)
        # Gradients here are always row-sparse; ``sparse`` is kept for torch's repr and code.
        self.sparse = bool(sparse)
        self._rng = np.random.default_rng(seed)
        self._records = None
        if cache_rows is not None:  # checked before a file is made
            if storage is None:
                raise ValueError("cache_rows= caches the rows of a table kept in a file: it needs "
                                 "storage=")
            _storage.RowCache.check_rows(cache_rows)
        if interleave is not None:
            if storage is None:
                raise ValueError("interleave= puts the optimizer state in the table's file: it needs "
                                 "storage=")
            state = getattr(interleave, "state_fields", None)
            if not isinstance(interleave, type) or state is None:
                raise TypeError(f"interleave must be a sparsemb optimizer class (sm.optim.Adagrad, "
                                f"...), got {interleave!r}")
            state = {f"{interleave.__name__}.{k}": v for k, v in state(self.embedding_dim).items()}
            if not state:
                raise ValueError(f"{interleave.__name__} keeps no state per row: nothing to "
                                 "interleave (use storage= alone)")
            record = _storage.interleaved_dtype(_check_dtype(dtype), self.embedding_dim, state)
            # Drawn as the in-RAM table (bit for bit); the state fields start at 0 and the
            # optimizer sets them when it starts (see Optimizer, "State in files").
            self._records = _storage.open_array(storage, (self.num_embeddings,), record,
                                                init=lambda a: self._draw(a["weight"]))
            self.weight = self._records["weight"]
        elif storage is not None:
            if _weight is not None:
                raise ValueError("pass either _weight or storage, not both")
            # Created as the in-RAM table would be (same draws, bit for bit), or reopened as stored.
            self.weight = _storage.open_array(storage, (self.num_embeddings, self.embedding_dim),
                                              _check_dtype(dtype), init=self._draw)
        elif _weight is None:
            self.weight = K.aligned_empty((self.num_embeddings, self.embedding_dim), _check_dtype(dtype))
            self.reset_parameters()
        else:
            self.weight = _check_weight(_weight, self.num_embeddings, self.embedding_dim, dtype)
        if cache_rows is not None:
            self._cache = _storage.RowCache(self._weight if self._records is None else self._records,
                                            cache_rows)
        self.requires_grad = not freeze
        self._grad = None
        self._saved = None
        self._param = Parameter(self)

    def reset_parameters(self):
        """Draw the table again from N(0, 1) in place, as torch's; the padding row is zeroed.

        The draws continue the layer's generator (seeded by ``seed``), so a re-draw differs from the
        first while the whole sequence is reproducible."""
        self._draw(self.weight)

    def _draw(self, weight):
        if weight.flags.c_contiguous:
            self._rng.standard_normal(out=weight, dtype=weight.dtype)
        else:  # an interleaved table's weight: drawn in blocks of rows, the same numbers in order
            block = np.empty((min(weight.shape[0], _DRAW_ROWS), weight.shape[1]), weight.dtype)
            for start in range(0, weight.shape[0], block.shape[0]):
                part = block[:weight.shape[0] - start]
                self._rng.standard_normal(out=part, dtype=weight.dtype)
                weight[start:start + part.shape[0]] = part
        if self.padding_idx is not None:
            weight[self.padding_idx] = 0

    @property
    def weight(self):
        """The table, ``(num_embeddings, embedding_dim)``: an ndarray, an ``np.memmap`` with
        ``storage``. For a cached table (``cache_rows``) reading it first writes the cache's changed
        rows to the file and empties the cache, so that it shows the current values and writes to it
        are seen by the next lookup; read it again after training (a cost of a full write-back)."""
        if self._cache is not None:
            self._cache.write_back(drop=True)
        return self._weight

    @weight.setter
    def weight(self, value):
        if self._cache is not None:
            raise AttributeError("a cached table's weight is its file: it cannot be replaced")
        self._weight = value

    @property
    def cache(self):
        """The :class:`~sparsemb._storage.RowCache` of a table made with ``cache_rows``, else None."""
        return self._cache

    @property
    def records(self):
        """The record array of an interleaved table (``interleave=``): a structured ``np.memmap`` of
        ``num_embeddings`` records whose field ``"weight"`` is :attr:`weight` and whose other fields
        (``"<Optimizer>.<state>"``) hold the optimizer's state; None for other tables. For a cached
        table, read as :attr:`weight` is (the cache written back and emptied first)."""
        r = self._records
        if r is None or self._weight.base is not r:
            return None
        if self._cache is not None:
            self._cache.write_back(drop=True)
        return r

    def _rows(self, flat, write=False):
        """The array the kernels read (and update) and the rows ``flat`` there: the table and the ids
        themselves, or for a cached table the cache's weight and the ids' slots (missing rows read
        in; with ``write`` marked changed)."""
        if self._cache is None:
            return self._weight, flat
        return self._cache.arrays["weight"], self._cache.slots(flat, write)

    def prefetch(self, ids):
        """Start reading the pages of the rows ``ids`` of a mapped table, in parallel
        (``MADV_WILLNEED``); nothing for a table in RAM; for a cached table, read the missing rows
        into the cache now. For lookups on a table larger than memory; to train,
        ``opt.prefetch(layer, ids)`` also reads the optimizer's state rows."""
        ids = K.as_ids(ids, self.num_embeddings)
        if self._cache is not None:
            self._cache.slots(ids)
        else:
            _storage.will_need(self._weight, ids)

    def flush(self):
        """Write a mapped table's changed pages to its file (``msync``), or a cached table's changed
        rows (then ``fdatasync``); nothing for a table in RAM.

        A mapped file is written in place and is not a consistent snapshot after a crash: use
        :func:`sparsemb.checkpoint` for that."""
        if self._cache is not None:
            self._cache.flush()
        else:
            _storage.flush(self._weight)  # an interleaved table's whole file

    def _own_parameters(self):
        return (("weight", self._param),)

    def _zero_own_grad(self, set_to_none):
        self.grad = None if set_to_none else SparseRows(_EMPTY_I64, np.empty(
            (0, self.embedding_dim), self._weight.dtype), self.num_embeddings)

    def zero_grad(self, set_to_none=True):
        """Drop the accumulated gradient (``grad = None``); ``set_to_none=False`` leaves an empty
        gradient (no rows), which a step applies as torch applies a zeroed sparse gradient."""
        self._zero_own_grad(set_to_none)

    def _renorm(self, table, rows):
        if self.max_norm is not None and rows.size:
            if not table.flags.writeable:
                raise ValueError("max_norm rescales looked-up rows in place, but the weight is "
                                 "read-only (mapped with mmap_mode='r'?)")
            K.embedding.renorm(table, np.unique(rows), self.max_norm, self.norm_type)

    @property
    def grad(self):
        """The gradient summed since the last ``zero_grad()`` (:class:`SparseRows`), or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        old, self._grad = self._grad, value
        if old is not None and old is not value and old._pending is not None:
            # Dropped before it was summed. If nobody else holds it, freeing it releases the
            # caller's arrays (_Pending.__del__); if someone does, it must stay readable: sum it now.
            ref = weakref.ref(old)
            del old
            held = ref()
            if held is not None:
                held._materialize()

    def backward(self, grad_out):
        """Gradient of the last ``forward`` with respect to ``weight``, given ``dL/d(output)``.

        Returns the coalesced :class:`SparseRows` (padding row left out) and adds it into
        ``self.grad``; ``None`` for a frozen layer. When ``grad`` was empty (None), the rows are not
        summed yet: ``values`` is computed when first read, and an optimizer's ``step()`` applies
        the gradient straight from the unsummed rows, as fast as ``backward_step``; a second
        ``backward`` before ``zero_grad()`` sums both, as torch accumulates.

        Aliasing rule: until that gradient is summed (its ``values`` read) or dropped
        (``zero_grad()``, ``grad = None``, the layer freed), ``grad_out`` and the arrays it is a
        view of are made read-only, so that writing into a reused buffer raises ValueError instead
        of changing the pending update; they are made writable again afterwards. (A writable view of
        that memory made *before* this call is not caught: do not write through one.) ``grad_out``
        is copied instead when it is not a plain writable NumPy array (a tensor's memory, a buffer,
        a read-only array).
        """
        if self.grad is not None:
            g = self.gradient(grad_out)
            if g is not None:
                self.grad = self.grad + g
            return g
        seg = self._gradient_segments(grad_out)
        if seg is None:
            return None
        rows, locked = _hold(seg.rows, grad_out)
        g = SparseRows._lazy(_Pending(seg._replace(rows=rows), locked), self.num_embeddings)
        self.grad = g
        return g

    def gradient(self, grad_out):
        """The coalesced gradient of the last ``forward`` (:class:`SparseRows`), not added to
        ``grad``; ``None`` for a frozen layer."""
        seg = self._gradient_segments(grad_out)
        if seg is None:
            return None
        indices, order, starts, src, coef, rows = seg
        values = np.empty((indices.size, self.embedding_dim), dtype=rows.dtype)
        K.segment_sum(order, starts, src, coef, rows, values)
        return SparseRows(indices, values, self.num_embeddings)

    @property
    def saved(self):
        """What the last ``forward`` kept for the backward pass (opaque). Code that runs several
        forwards before their backwards (:mod:`sparsemb.torch`'s autograd functions) takes it after
        each forward and puts it back before that call's backward."""
        return self._saved

    @saved.setter
    def saved(self, value):
        self._saved = value

    def _gradient_segments(self, grad_out):
        """The gradient of the last forward as :class:`GradientSegments`, or None for a frozen
        layer. ``rows`` may be (a view of) ``grad_out`` itself."""
        if self._saved is None:
            raise RuntimeError("backward called before forward")
        g = self._check_grad_out(grad_out)
        if not self.requires_grad:
            return None
        return GradientSegments(*self._segments(g))

    def _check_grad_out(self, grad_out):
        g = np.asarray(grad_out)
        expected = self._output_shape()
        if g.shape != expected:
            raise ValueError(f"grad_out has shape {g.shape}, expected {expected}")
        if g.dtype.kind != "f":
            raise TypeError(f"grad_out must be floating point, got dtype {g.dtype}")
        return np.ascontiguousarray(g, dtype=self._weight.dtype)

    def _skip(self):
        return -1 if self.padding_idx is None else self.padding_idx

    def _norm_repr(self):
        """The norm options as torch's repr shows them."""
        s = ""
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq:
            s += ", scale_grad_by_freq=True"
        return s

    def _dtype_repr(self):
        return "" if self._weight.dtype == np.float32 else f", dtype={self._weight.dtype}"


class Embedding(_Table):
    """A lookup table, like ``torch.nn.Embedding`` with ``sparse=True``.

    Parameters
    ----------
    num_embeddings, embedding_dim : int
        Table shape.
    padding_idx : int, optional
        A row whose gradient is always zero; negative counts from the end. Zeroed at construction.
    max_norm : float, optional
        In ``forward``, each looked-up row whose ``norm_type``-norm exceeds it is rescaled in place
        to ``max_norm``.
    norm_type : float
        p of the p-norm for ``max_norm`` (``np.inf`` allowed). Default 2.
    scale_grad_by_freq : bool
        Divide each occurrence's gradient by its id's count in the batch.
    sparse : bool
        Accepted for torch's code: the gradient here is always row-sparse (:class:`SparseRows`).
    _weight : ndarray, shape (num_embeddings, embedding_dim), optional
        A C-contiguous float32/float64 table the layer uses (and updates) in place, as torch's.
    device : "cpu" or None
        Anything else raises ValueError: tables live in CPU memory.
    dtype : float32 (default) or float64
        NumPy or torch dtype.
    seed : int, optional, keyword only
        Seed for the N(0, 1) initialisation.
    storage : str or os.PathLike, optional, keyword only
        Keep the table in this ``.npy`` file, memory-mapped, for tables larger than memory. A missing
        file is created (after checking the free disk space) and drawn exactly as the in-RAM table
        with the same ``seed`` (bit for bit); an existing one is reopened as stored (not redrawn,
        padding row not zeroed) after checking its shape and dtype. Optimizers then keep their
        state in files next to it. See :func:`sparsemb._storage.open_array` for the rules and errors.
    interleave : optimizer class, optional, keyword only
        With ``storage``: the file holds, beside each row of the table, that row's state for this
        optimizer (``sm.optim.Adagrad``, ``RowwiseAdagrad`` or ``SparseAdam``), one record a row,
        so a row that is not in memory costs one page read, not one per array. ``weight`` is then
        the ``"weight"`` field of :attr:`records` (a strided view); the optimizer of that class
        finds its state there. For tables larger than memory (see README).
    cache_rows : int, optional, keyword only
        With ``storage``: train on a cache of this many rows in RAM (with their optimizer state:
        give ``interleave=`` for an optimizer that keeps state) instead of on the mapped file: rows
        missing from the cache are read from the file or from the logs beside it (``path.log/``)
        where the changed rows evicted for them are appended, bypassing the page cache where the
        file system allows (see :class:`~sparsemb._storage.RowCache`). At least the distinct ids
        of one batch; more than ``num_embeddings`` is the whole table. Training is bit for bit as
        in RAM. Reading :attr:`weight` (or :attr:`records`) merges the logs and the changed rows
        into the file and empties the cache; ``flush()``, ``opt.state_dict()`` and
        :func:`sparsemb.checkpoint` merge them.

    The positional order is torch's: ``Embedding(num_embeddings, embedding_dim, padding_idx,
    max_norm, norm_type, scale_grad_by_freq, sparse, _weight, _freeze, device, dtype)``.

    Attributes
    ----------
    weight : ndarray, shape (num_embeddings, embedding_dim)
        An ``np.memmap`` with ``storage``.
    grad : SparseRows or None
        Sum of the gradients since the last ``zero_grad()``.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None,
                 norm_type=2.0, scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False,
                 device=None, dtype=None, *, seed=None, storage=None, interleave=None,
                 cache_rows=None):
        super().__init__(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
                         scale_grad_by_freq, sparse, _weight, _freeze, device, dtype, seed, storage,
                         interleave, cache_rows)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None,
                        norm_type=2.0, scale_grad_by_freq=False, sparse=False, *, copy=True):
        """An Embedding holding a copy of ``embeddings`` (2-D float32/float64; its padding row is left
        as given): a later change to ``embeddings`` never reaches the layer.

        With ``copy=False`` the layer keeps ``embeddings`` itself, as torch's layer shares its
        tensor: a C-contiguous NumPy array or ``np.memmap`` (``np.load(path, mmap_mode="r+")``
        trains a table in a file; ``mmap_mode="r"`` serves one read-only, with ``freeze=True``).
        An array that would need converting raises instead of being copied silently (ValueError,
        TypeError), as does a read-only one with ``freeze=False``. A memmap is advised
        ``MADV_RANDOM`` (see :func:`sparsemb._storage.open_array`)."""
        w = _pretrained(embeddings, copy, freeze)
        return cls(w.shape[0], w.shape[1], padding_idx, max_norm, norm_type, scale_grad_by_freq,
                   sparse, w, freeze)

    def forward(self, ids) -> np.ndarray:
        """Look up ``ids`` (int array of any shape) -> ``ids.shape + (embedding_dim,)``."""
        idx = K.as_ids(ids, self.num_embeddings)
        flat = idx.reshape(-1)
        table, rows = self._rows(flat, write=self.max_norm is not None)
        self._renorm(table, rows)
        out = K.aligned_empty((flat.size, self.embedding_dim), table.dtype)  # streamed when large
        K.gather(table, rows, out)
        # Saved ids must not follow later in-place changes to the caller's array.
        self._saved = idx if idx is not ids and idx.base is None else idx.copy()
        return out.reshape(idx.shape + (self.embedding_dim,))

    __call__ = forward

    def _output_shape(self):
        return self._saved.shape + (self.embedding_dim,)

    def _segments(self, g):
        flat = self._saved.reshape(-1)
        g = g.reshape(flat.size, self.embedding_dim)
        indices, order, starts = K.segments(flat, self._skip())
        coef = np.empty(0, dtype=g.dtype)
        if self.scale_grad_by_freq:
            counts = K.embedding.occurrence_counts(starts, order, flat.size)
            coef = (1.0 / np.maximum(counts, 1)).astype(g.dtype)
        return indices, order, starts, _EMPTY_I64, coef, g

    def __repr__(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        s += self._norm_repr()
        if self.sparse:
            s += ", sparse=True"
        return f"Embedding({s}{self._dtype_repr()})"


_MODES = {"sum": B.SUM, "mean": B.MEAN, "max": B.MAX}


class EmbeddingBag(_Table):
    """Sums, means or maxes of bags of embeddings, like ``torch.nn.EmbeddingBag``.

    Parameters
    ----------
    num_embeddings, embedding_dim, padding_idx, max_norm, norm_type, scale_grad_by_freq, dtype, seed, storage, interleave, cache_rows
        As :class:`Embedding`. Padding ids are left out of sums, maxes and the mean's count.
    mode : {"sum", "mean", "max"}
    sparse, _weight, device
        As :class:`Embedding`.
    include_last_offset : bool
        ``offsets`` has one more entry, the end of the last bag (CSR layout). It must equal
        ``len(ids)``: PyTorch silently ignores ids past it, sparsemb raises ValueError.

    The positional order is torch's: ``EmbeddingBag(num_embeddings, embedding_dim, max_norm,
    norm_type, scale_grad_by_freq, mode, sparse, _weight, include_last_offset, padding_idx, device,
    dtype)``; ``seed``, ``storage``, ``interleave`` and ``cache_rows`` are keyword only.
    """

    def __init__(self, num_embeddings, embedding_dim, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, mode="mean", sparse=False, _weight=None,
                 include_last_offset=False, padding_idx=None, device=None, dtype=None, *,
                 seed=None, _freeze=False, storage=None, interleave=None, cache_rows=None):
        if mode not in _MODES:
            raise ValueError(f"mode must be 'sum', 'mean' or 'max', got {mode!r}")
        if scale_grad_by_freq and mode == "max":
            raise ValueError("scale_grad_by_freq is not supported with mode='max'")
        super().__init__(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
                         scale_grad_by_freq, sparse, _weight, _freeze, device, dtype, seed, storage,
                         interleave, cache_rows)
        self.mode = mode
        self.include_last_offset = bool(include_last_offset)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, mode="mean", sparse=False,
                        include_last_offset=False, padding_idx=None, *, copy=True):
        """An EmbeddingBag holding a copy of ``embeddings``, or with ``copy=False`` the array itself
        (see :meth:`Embedding.from_pretrained`)."""
        w = _pretrained(embeddings, copy, freeze)
        return cls(w.shape[0], w.shape[1], max_norm, norm_type, scale_grad_by_freq, mode, sparse, w,
                   include_last_offset, padding_idx, _freeze=freeze)

    def _starts(self, idx, offsets):
        if offsets is None:
            if idx.ndim != 2:
                raise ValueError(f"ids of shape {idx.shape} need offsets; without offsets ids must be 2-D")
            width = idx.shape[1]
            return np.arange(idx.shape[0] + 1, dtype=np.int64) * width
        if idx.ndim != 1:
            raise ValueError(f"with offsets, ids must be 1-D, got shape {idx.shape}")
        off = np.asarray(offsets)
        if off.dtype.kind not in "iu" or off.ndim != 1:
            raise TypeError(f"offsets must be a 1-D integer array, got {off.dtype} of shape {off.shape}")
        off = off.astype(np.int64)
        n = idx.size
        if self.include_last_offset:
            if off.size < 1:
                raise ValueError("with include_last_offset, offsets needs at least one entry")
            if off[-1] != n:
                raise ValueError(f"with include_last_offset, offsets[-1] must be len(ids) = {n}, "
                                 f"got {off[-1]}")
            starts = off
        else:
            starts = np.append(off, n)
        if off.size and off[0] != 0:
            raise ValueError(f"offsets must start at 0, got {off[0]}")
        if np.any(np.diff(starts) < 0):
            bad = int(np.flatnonzero(np.diff(starts) < 0)[0])
            raise ValueError(f"offsets must not decrease (offset {bad + 1} is {starts[bad + 1]} "
                             f"after {starts[bad]}) or run past the {n} ids")
        return np.ascontiguousarray(starts)

    def forward(self, ids, offsets=None, per_sample_weights=None) -> np.ndarray:
        """Reduce bags of ids to ``(bags, embedding_dim)``.

        ``ids`` is 1-D with ``offsets`` (start of each bag) or 2-D (one bag per row) without.
        ``per_sample_weights`` (same shape as ids) scale each id's row; sum mode only.
        """
        idx = K.as_ids(ids, self.num_embeddings)
        starts = self._starts(idx, offsets)
        flat = idx.reshape(-1)
        psw = np.empty(0, dtype=self._weight.dtype)
        if per_sample_weights is not None:
            if self.mode != "sum":
                raise ValueError(f"per_sample_weights is only supported with mode='sum', not {self.mode!r}")
            p = np.asarray(per_sample_weights)
            if p.shape != idx.shape:
                raise ValueError(f"per_sample_weights has shape {p.shape}, expected {idx.shape}")
            psw = np.array(p.reshape(-1), dtype=self._weight.dtype, copy=True)
        table, rows = self._rows(flat, write=self.max_norm is not None)
        self._renorm(table, rows)
        skip = self._skip()
        if self._cache is not None and skip >= 0:  # the padding row's occurrences: by its slot
            skip = self._cache.slot(skip)
        n_bags = starts.size - 1
        out = K.aligned_empty((n_bags, self.embedding_dim), table.dtype)
        counts = np.empty(n_bags, dtype=np.int64)
        mode = _MODES[self.mode]
        argmax = np.empty((n_bags if mode == B.MAX else 0, self.embedding_dim), dtype=np.int64)
        B.bag_forward(table, rows, starts, psw, mode, skip, out, counts, argmax)
        if flat.base is not None or flat is ids:
            flat = flat.copy()  # see Embedding.forward
        self._saved = (flat, starts, psw, counts, argmax)
        return out

    __call__ = forward

    def _output_shape(self):
        return (self._saved[1].size - 1, self.embedding_dim)

    def _segments(self, g):
        flat, starts, psw, counts, argmax = self._saved
        indices, order, starts_u = K.segments(flat, self._skip())
        mode = _MODES[self.mode]
        if mode == B.MAX:
            rows = np.zeros((flat.size, self.embedding_dim), dtype=g.dtype)
            B.bag_max_scatter(argmax, g, rows)
            src, coef = _EMPTY_I64, np.empty(0, dtype=g.dtype)
        else:
            coef = np.empty(flat.size, dtype=g.dtype)
            src = np.empty(flat.size, dtype=np.int64)
            B.bag_occurrence_coef(flat, starts, psw, mode, self._skip(), counts, coef, src)
            rows = g
        if self.scale_grad_by_freq:
            freq = K.embedding.occurrence_counts(starts_u, order, flat.size)
            coef = coef / np.maximum(freq, 1).astype(g.dtype)
        return indices, order, starts_u, src, coef, rows

    def __repr__(self):
        # torch's repr, then what it leaves out but changes what a call means.
        s = f"{self.num_embeddings}, {self.embedding_dim}{self._norm_repr()}, mode={self.mode!r}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.include_last_offset:
            s += ", include_last_offset=True"
        return f"EmbeddingBag({s}{self._dtype_repr()})"
