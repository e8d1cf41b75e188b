"""Lazy sparse optimizers with PyTorch's names and semantics (and FBGEMM's row-wise Adagrad).

The surface is torch.optim's: param groups (a list of dicts with per-group hyper-parameters,
``add_param_group``), ``zero_grad(set_to_none=True)``, ``step(closure=None)``, torch's defaults and
hyper-parameter keys (``maximize`` included), and a ``state_dict()`` that torch's optimizers load
(through :func:`sparsemb.torch.optimizer_state_to_torch`, which makes tensors of the arrays) and
whose loader takes torch's. Learning-rate schedules are in :mod:`sparsemb.optim.lr_scheduler`.

A step touches only the rows in each layer's coalesced gradient: every other row of the weight and
of the optimizer state stays bit-identical, and a step costs O(batch × dim) whatever the table size.

Two ways to train:

- PyTorch's loop, ``opt.zero_grad(); out = layer(ids); layer.backward(g); opt.step()``: ``backward``
  keeps the gradient in segment form (rows grouped by id, not summed: ``layer.grad`` is a
  :class:`~sparsemb.nn.SparseRows` whose values are summed only if read) and ``step()`` runs the
  fused kernel on it, as ``backward_step`` does. Until then ``g`` is read-only (see
  :meth:`sparsemb.nn.Embedding.backward`). A gradient accumulated over several ``backward`` calls
  is summed and applied as such.
- Fused, ``out = layer(ids); opt.backward_step(layer, g)``: one kernel per optimizer goes from the
  ids and ``g`` straight to updated rows and state. Each unique row's occurrences are summed into a
  per-thread buffer and applied at once (FBGEMM's "exact" fused optimizers), so no gradient is
  materialized, not even the per-row sums. Same result, bit for bit; fewer bytes moved.
"""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping

import numpy as np

from .. import _storage
from ..kernels import aligned_empty, as_ids
from ..kernels import optim as K
from ..nn import Parameter, _Table

_EMPTY_I64 = np.empty(0, dtype=np.int64)
#: The largest step count a state may hold: an int64, as the step arithmetic (β**t, t·lr_decay) needs
#: a number that converts to a float.
_MAX_STEP = int(np.iinfo(np.int64).max)


def _real(name, value):
    """``value`` as a finite float; TypeError for what is not a real number (a string, a bool)."""
    if type(value) is float:  # the usual case, first: each step checks its hyper-parameters
        v = value
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    else:
        try:
            v = float(value)
        except OverflowError:  # an int beyond any float
            v = math.inf
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _positive(name, value):
    v = _real(name, value)
    if not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def _non_negative(name, value):
    v = _real(name, value)
    if not v >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def _betas(name, value):
    """A pair of coefficients in [0, 1): at 1 a moment never moves and the bias correction divides by 0."""
    try:
        pair = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a pair of real numbers, got {value!r}") from None
    if len(pair) != 2:
        raise ValueError(f"{name} must be a pair, got {value!r}")
    out = []
    for i, b in enumerate(pair):
        b = _real(f"{name}[{i}]", b)
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{name}[{i}] must be in [0, 1), got {pair[i]!r}")
        out.append(b)
    return tuple(out)


def _check_array(where, value, shape, dtype, lower):
    """Refuse a state array that is not exactly what the kernels expect, or holds a value they must not see.

    ``lower`` is the least allowed value (None: any finite value). Min and max find a NaN, an
    infinity or a value below ``lower`` without a temporary the size of the table.
    """
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{where} must be a numpy array, got {type(value).__name__}")
    if value.dtype != dtype:
        raise TypeError(f"{where} has dtype {value.dtype}, expected {np.dtype(dtype)} (the table's dtype)")
    if value.shape != shape:
        raise ValueError(f"{where} has shape {value.shape}, expected {shape}")
    if value.size == 0:
        return
    lo, hi = value.min(), value.max()
    if np.isfinite(lo) and np.isfinite(hi) and (lower is None or lo >= lower):
        return
    bad = ~np.isfinite(value)
    if lower is not None:
        bad |= value < lower
    at = np.unravel_index(np.flatnonzero(bad)[0], shape)
    at = at[0] if len(at) == 1 else tuple(int(a) for a in at)
    need = "finite" if lower is None else f"finite and >= {lower}"
    raise ValueError(f"{where} must be {need}, got {value[at].item()!r} at index {at}")


def _zero(name, value):
    """A hyper-parameter torch has and a lazy sparse step cannot honour unless it is 0 (momentum and
    weight decay move every row at every step)."""
    v = _real(name, value)
    if v != 0:
        raise ValueError(f"{name} must be 0 for sparse, lazy updates, got {value!r}")
    return value


def _false(name, value):
    if value is not False and value != 0:
        raise ValueError(f"{name} must be False for sparse, lazy updates, got {value!r}")
    return False


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _flag_or_none(name, value):
    """torch's implementation switches (``foreach``, ``fused``): every step here is one fused kernel,
    so they are accepted and have no effect."""
    return None if value is None else _flag(name, value)


#: torch's implementation flags, filled in with their defaults when a loaded group lacks them (as
#: torch's ``__setstate__`` does for state dicts of older releases).
_COMPAT = {"maximize": False, "foreach": None, "differentiable": False, "fused": None}


def _as_array(value):
    """A state array as saved: a NumPy array, or a CPU tensor (viewed, not copied) from torch's."""
    if not isinstance(value, np.ndarray) and hasattr(value, "__array__") and hasattr(value, "dtype"):
        return np.asarray(value)
    return value


def _check_step(where, value):
    if not isinstance(value, numbers.Integral) and hasattr(value, "__array__"):
        # torch keeps Adagrad's step as a float tensor: a whole number is a step count.
        a = np.asarray(value)
        if a.ndim == 0 and a.dtype.kind == "f" and float(a).is_integer():
            value = int(a)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where} must be an integer, got {value!r}")
    if not 0 <= value <= _MAX_STEP:
        raise ValueError(f"{where} must be in [0, {_MAX_STEP}], got {value!r}")
    return int(value)


class Optimizer:
    """Base class, as ``torch.optim.Optimizer``: parameter groups, per-parameter state.

    Parameters
    ----------
    params : iterable of Parameter, Embedding / EmbeddingBag, ``(name, Parameter)`` pairs, or dicts
        What ``model.parameters()`` yields, layers themselves, or param groups: dicts with a
        ``"params"`` entry and hyper-parameters that override ``defaults`` for that group.
    defaults : dict
        Hyper-parameters, checked by the subclass's ``_rules``; they may be changed between steps
        through ``param_groups`` (each step checks them again by the same rules, as does
        :meth:`load_state_dict`).
    state_storage : str or os.PathLike, optional
        A directory for the state files of every parameter (see "State in files" below).

    State in files (tables larger than memory)
    ------------------------------------------
    A parameter whose table is mapped from a file (``Embedding(..., storage=path)``, or
    ``from_pretrained(np.load(path, mmap_mode="r+"), copy=False)``) keeps its state arrays in
    ``.npy`` files next to it, named after the table's file, the optimizer and the state:
    ``emb.npy`` gets ``emb.Adagrad.sum.npy`` (SparseAdam: ``emb.SparseAdam.exp_avg.npy`` and
    ``emb.SparseAdam.exp_avg_sq.npy``) and ``emb.Adagrad.step.npy``, the step count, written at
    every step. With ``state_storage=dir`` they go to ``dir`` instead, also for tables in RAM,
    then named ``param<i>`` after the parameter's position in the optimizer (``param0.Adagrad.sum.npy``).
    Files that do not exist are created (after checking the disk space for all of them; none is left
    if one fails) and start as in RAM; files that do are reopened as stored, after checking shapes
    and dtypes (not values: :meth:`load_state_dict` and :func:`sparsemb.checkpoint`'s restore
    check those), so a new optimizer on the same files continues the run bit for bit. Some files
    present and others missing is refused (FileNotFoundError). The files are written in place:
    :meth:`flush` writes them out; a consistent snapshot is :func:`sparsemb.checkpoint`'s.

    Attributes
    ----------
    param_groups : list of dict
        Each group's hyper-parameters (torch's keys) and its ``"params"`` (a list of Parameter).
    state : dict
        Parameter -> its state (``"step"`` and the optimizer's arrays, like the table).
    defaults : dict
    """

    #: hyper-parameter name -> rule(name, value) returning the value to use or raising
    #: TypeError/ValueError. The one place a hyper-parameter is checked: by the constructor, by
    #: add_param_group, by load_state_dict and before each step.
    _rules: dict = {}

    def __init__(self, params, defaults, state_storage=None):
        self.defaults = self._check_hyper(defaults)
        self.param_groups = []
        self.state = {}
        #: Parameter -> its step-count file (a memmap of one int64), for state kept in files.
        self._step_files = {}
        #: The Future of the last ``prefetch(..., background=True)``, until the next prefetch.
        self._prefetching = None
        if state_storage is not None:
            state_storage = os.fspath(state_storage)
            if not os.path.isdir(state_storage):
                if os.path.exists(state_storage):
                    raise NotADirectoryError(f"state_storage is not a directory: {state_storage}")
                raise FileNotFoundError(f"state_storage directory does not exist: {state_storage}")
        self._state_storage = state_storage
        if isinstance(params, (_Table, Parameter)):
            params = [params]
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    @staticmethod
    def _as_param(p):
        if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str):
            p = p[1]  # a named_parameters() pair
        if isinstance(p, _Table):
            return p._param
        if isinstance(p, Parameter):
            return p
        hint = (" (a layer's weight is a plain array here: pass the layer or layer.parameters())"
                if isinstance(p, np.ndarray) else "")
        raise TypeError(f"params must be Parameters or Embedding / EmbeddingBag layers, got "
                        f"{type(p).__name__}{hint}")

    def add_param_group(self, param_group):
        """Add a group (a dict with ``"params"`` and hyper-parameters overriding ``defaults``).

        Raises
        ------
        TypeError, ValueError
            A parameter that is not one, or is already in a group; a hyper-parameter the rules refuse.
        """
        if not isinstance(param_group, Mapping) or "params" not in param_group:
            raise TypeError(f"a param group is a dict with a 'params' entry, got {param_group!r}")
        params = param_group["params"]
        params = [params] if isinstance(params, (_Table, Parameter)) else list(params)
        params = [self._as_param(p) for p in params]
        where = f"param_groups[{len(self.param_groups)}]: "
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{where}a parameter appears more than once in params")
        have = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in have for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group = dict(self.defaults) | {k: v for k, v in param_group.items() if k != "params"}
        checked = self._check_hyper(group, where)
        group.update(checked, params=params)
        first = len(self._params())
        files = [self._state_files(p, first + i) for i, p in enumerate(params)]
        states, created = {}, []
        try:
            _storage.check_space([(path, shape, np.int64 if k == "step" else p.dtype)
                                  for p, f in zip(params, files) if f
                                  for k, (path, shape) in f.items()])
            for p, f in zip(params, files):
                states[p] = (self._init_state(p.module, checked) if f is None
                             else self._open_state(p, f, checked, created))
        except BaseException:
            for path in created:
                os.unlink(path)
            raise
        for p, f in zip(params, files):
            state = states[p]
            if f is not None:
                self._step_files[p] = state.pop("_step_file")
            self.state[p] = state
        self.param_groups.append(group)

    @classmethod
    def _check_hyper(cls, group, where="") -> dict:
        """This optimizer's hyper-parameters in ``group``, checked and normalized.

        Other keys (``params``, or what a scheduler adds, as ``initial_lr`` in PyTorch) reach no
        kernel and are left alone.
        """
        rules = cls._rules
        if not rules.keys() <= group.keys():
            missing = [k for k in rules if k not in group]
            raise ValueError(f"{where}{cls.__name__} needs the hyper-parameter(s) {missing}")
        return {k: rule(where + k, group[k]) for k, rule in rules.items()}

    @classmethod
    def state_fields(cls, embedding_dim) -> dict:
        """State array name -> the shape of one row's part of it (``(embedding_dim,)``, or ``()`` for
        one number a row): what ``Embedding(..., storage=, interleave=cls)`` keeps beside each row."""
        return {}

    #: State array name -> the least value it may hold (checked by :meth:`load_state_dict`).
    _lower: dict = {}

    def _array_specs(self, layer) -> dict:
        """State array name -> (shape, least allowed value or None); dtype is the table's."""
        n = layer.weight.shape[0]
        return {k: ((n,) + tuple(shape), self._lower.get(k))
                for k, shape in self.state_fields(layer.weight.shape[1]).items()}

    def _fill(self, key, hyper):
        """The value state array ``key`` starts at."""
        return 0

    def _init_state(self, layer, hyper) -> dict:
        dtype = layer.weight.dtype
        state = {"step": 0}
        for k, (shape, _) in self._array_specs(layer).items():
            state[k] = aligned_empty(shape, dtype)  # on a cache line, as the layer's own table
            state[k][...] = self._fill(k, hyper)
        return state

    def _state_files(self, p, index):
        """State name (and ``"step"``) -> (path, shape) of ``p``'s state files, or None for state in
        RAM (see "State in files" in the class docstring). An interleaved table's state is in its
        own file: only ``"step"`` has a file of its own."""
        records = getattr(p.module, "records", None)
        if getattr(p.module, "cache", None) is not None and records is None and self.state_fields(1):
            raise ValueError(f"{p.module!r} is cached (cache_rows=) without its {type(self).__name__} "
                             "state beside its rows: make it with "
                             f"interleave=sm.optim.{type(self).__name__}")
        table = _storage.mapped_file(p.data if records is None else records)
        if self._state_storage is None and table is None:
            return None
        directory = self._state_storage or os.path.dirname(table)
        stem = f"param{index}"
        if table is not None:
            stem = os.path.basename(table)
            stem = stem[:-4] if stem.endswith(".npy") else stem
        prefix = os.path.join(directory, f"{stem}.{type(self).__name__}.")
        step = {"step": (prefix + "step.npy", (1,))}
        if records is not None:  # the state is in the table's own records
            return step
        return {k: (prefix + k + ".npy", shape) for k, (shape, _) in self._array_specs(p.module).items()} | step

    def _open_state(self, p, files, hyper, created) -> dict:
        """``p``'s state mapped from ``files``: all created (their paths appended to ``created``)
        or all reopened."""
        if getattr(p.module, "records", None) is not None:
            return self._open_interleaved(p, files["step"][0], hyper, created)
        present = [path for path, _ in files.values() if os.path.exists(path)]
        if present and len(present) < len(files):
            missing = [path for path, _ in files.values() if not os.path.exists(path)]
            raise FileNotFoundError(f"optimizer state files {missing} are missing while {present} "
                                    "exist: restore them (or remove all to start afresh)")
        state = {}
        for k, (path, shape) in files.items():
            dtype = np.int64 if k == "step" else p.dtype
            fill = 0 if k == "step" else self._fill(k, hyper)
            state[k] = _storage.open_array(path, shape, dtype, init=lambda a, v=fill: a.fill(v))
            if not present:
                created.append(path)
        step_file = state.pop("step")
        state = {"step": _check_step(f"{files['step'][0]}: step", int(step_file[0]))} | state
        state["_step_file"] = step_file
        return state

    def _open_interleaved(self, p, step_path, hyper, created) -> dict:
        """``p``'s state as the fields of its interleaved table's records, and its step file. With
        no step file the state starts afresh: its fields are set to their initial values (a pass
        over the file) and written out before the step file is created, so a run stopped in
        between starts afresh again."""
        records = p.module.records
        mine = {f"{type(self).__name__}.{k}": shape
                for k, shape in self.state_fields(p.module.embedding_dim).items()}
        theirs = {k: records.dtype.fields[k][0].shape for k in records.dtype.names[1:]}
        if mine != theirs:
            raise _storage.StorageMismatchError(
                f"{_storage.mapped_file(records)} interleaves the state {theirs} with its rows, "
                f"not {type(self).__name__}'s {mine}: use the optimizer it was made for "
                "(Embedding(..., interleave=))")
        state = {k.split(".", 1)[1]: records[k] for k in mine}
        if not os.path.exists(step_path):
            rows = records.shape[0]
            block = max(1, (16 << 20) // records.dtype.itemsize)
            for k, a in state.items():
                value = self._fill(k, hyper)
                for start in range(0, rows, block):
                    a[start:start + block] = value
            _storage.flush(records)
            step_file = _storage.open_array(step_path, (1,), np.int64)
            created.append(step_path)
        else:
            step_file = _storage.open_array(step_path, (1,), np.int64)
        return ({"step": _check_step(f"{step_path}: step", int(step_file[0]))} | state
                | {"_step_file": step_file})

    def prefetch(self, layer, ids, background=False):
        """Start reading, in parallel, the pages that a step on ``ids`` will touch: ``layer``'s rows
        and their state rows, where they are mapped from files (``MADV_WILLNEED``; nothing for
        arrays in RAM). Call it before ``layer(ids)`` when the table does not fit in memory; where
        it does, it only costs time. For a cached table (``cache_rows=``) the rows missing from the
        cache are read into it now, or with ``background`` read on the cache's threads while the
        call returns, for the step that needs them to take (see
        :meth:`sparsemb._storage.RowCache.stage`).

        With ``background=True`` the requests are made on a background thread and the call returns
        at once: call it with the *next* batch's ids before this step's ``layer(ids)``, so that
        the next batch's reads (and the reclaim of other pages they need, under a memory limit)
        overlap this step. Each call first waits for the previous background request to finish
        (one at a time). A hint only: results are the same bits with or without it.

        Raises
        ------
        ValueError
            If ``layer`` is not one of this optimizer's parameters.
        """
        p = layer._param if isinstance(layer, _Table) else None
        if p not in self.state:
            raise ValueError(f"{layer!r} is not a parameter of this optimizer")
        ids = as_ids(ids, layer.num_embeddings)
        pending, self._prefetching = self._prefetching, None
        if pending is not None:
            pending.result()
        if layer.cache is not None:  # the rows and their state: read into the cache, or staged
            if background:
                layer.cache.stage(ids)
            else:
                layer.cache.slots(ids)
            return
        records = getattr(layer, "records", None)
        arrays = ([records] if records is not None  # a row's weight and state: one record
                  else [p.data] + [v for v in self.state[p].values() if isinstance(v, np.ndarray)])
        if background:
            self._prefetching = _storage.will_need_later(arrays, ids)
        else:
            for a in arrays:
                _storage.will_need(a, ids)

    def flush(self):
        """Write the changed pages of every state file (and mapped table) out (``msync``); nothing
        for state in RAM. Files written in place are not a consistent snapshot after a crash: use
        :func:`sparsemb.checkpoint` for that."""
        for p in self._params():
            for v in self.state[p].values():
                _storage.flush(v)
            if p in self._step_files:
                _storage.flush(self._step_files[p])
            p.module.flush()

    def _write_back(self, drop=False):
        """Write the changed rows of every cached table to its file (see
        :meth:`sparsemb._storage.RowCache.write_back`), where the state arrays see them."""
        for p in self._params():
            cache = getattr(p.module, "cache", None)  # a sharded table has no such attribute
            if cache is not None:
                cache.write_back(drop)

    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self, set_to_none=True):
        """Clear every parameter's gradient (``set_to_none=False``: an empty gradient instead)."""
        for p in self._params():
            p.module.zero_grad(set_to_none)

    def step(self, closure=None):
        """Apply one update to each parameter that has a gradient (a no-op for those without).

        ``closure``, if given, is called first and its value returned, as in torch.
        """
        loss = None if closure is None else closure()
        for i, group in enumerate(self.param_groups):
            hyper = self._check_hyper(group, f"param_groups[{i}]: ")
            for p in group["params"]:
                g = p.module.grad
                if g is not None and g._pending is not None:
                    # Not summed yet (a single backward): the fused kernel, as backward_step.
                    self._apply(p, hyper, g._pending.seg)
                elif g is not None:
                    # Already summed: every row is a segment of one occurrence, itself.
                    starts = np.arange(g.indices.size + 1, dtype=np.int64)
                    self._apply(p, hyper, (g.indices, _EMPTY_I64, starts, _EMPTY_I64,
                                           np.empty(0, g.dtype), g.values))
        return loss

    def backward_step(self, layer, grad_out):
        """``layer.backward(grad_out)`` and this optimizer's update of ``layer``, fused in one kernel.

        Equivalent, bit for bit, to ``layer.backward(grad_out); opt.step()`` for a layer with no
        accumulated gradient, but the gradient is never stored (``layer.grad`` stays None).

        Raises
        ------
        ValueError
            If ``layer`` is not one of this optimizer's parameters, or ``grad_out`` has the wrong shape,
            or a hyper-parameter in ``param_groups`` was set to a value the constructor refuses.
        RuntimeError
            If ``layer`` has an accumulated gradient (call ``step()`` or ``zero_grad()`` first), or
            before the layer's first forward.
        """
        p = layer._param if isinstance(layer, self._layer_types) else None
        if p not in self.state:
            raise ValueError(f"{layer!r} is not a parameter of this optimizer")
        if layer.grad is not None:
            raise RuntimeError("layer has an accumulated gradient: call step() or zero_grad() first")
        i = next(i for i, g in enumerate(self.param_groups) if any(q is p for q in g["params"]))
        hyper = self._check_hyper(self.param_groups[i], f"param_groups[{i}]: ")
        update = self._backward_update(layer, grad_out)
        if update is not None:
            self._apply(p, hyper, update)

    #: The layers :meth:`backward_step` takes (a subclass for other layers overrides this,
    #: :meth:`_backward_update` and :meth:`_apply`).
    _layer_types = (_Table,)

    @staticmethod
    def _backward_update(layer, grad_out):
        """What :meth:`_apply` takes for ``layer``'s gradient of ``grad_out`` (its segments), or None."""
        return layer._gradient_segments(grad_out)

    def _apply(self, p, hyper, seg):
        state = self.state[p]
        cache = p.module.cache
        if cache is None:
            weight, arrays = p.module.weight, {}
            if not weight.flags.writeable:
                raise ValueError(f"{p.module!r}: its weight is read-only (mapped with mmap_mode='r'?), "
                                 "so it cannot be trained")
        else:  # the rows' slots in the cache, where their weight and state are updated
            seg = (cache.slots(seg[0], write=True),) + tuple(seg[1:])
            weight, arrays = cache.arrays["weight"], cache.fields(type(self).__name__)
        state["step"] += 1
        self._update(weight, state | arrays, hyper, weight.dtype.type, *seg)
        if p in self._step_files:
            self._step_files[p][0] = state["step"]

    def state_dict(self) -> dict:
        """torch's layout: ``{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}``.

        Parameters are numbered across groups in order; the state holds copies of the arrays (a
        cached table's changed rows are written back first).
        """
        self._write_back()
        index = {id(p): i for i, p in enumerate(self._params())}
        return {
            "state": {index[id(p)]: {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
                                     for k, v in s.items()}
                      for p, s in self.state.items()},
            "param_groups": [{k: v for k, v in g.items() if k != "params"}
                             | {"params": [index[id(p)] for p in g["params"]]}
                             for g in self.param_groups],
        }

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned, or a torch optimizer's state dict, all or nothing.

        Everything is checked before anything changes: the structure (as many groups, each with as
        many parameters), each state's keys, each array's shape and dtype (those of the parameter's
        table: a float64 array for a float32 table is refused, not cast), its values (finite;
        accumulators and second moments >= 0), ``step`` (an integer >= 0, or torch's float tensor
        holding one) and the hyper-parameters (by the constructor's rules). As in PyTorch, each
        group's ``params`` list maps the saved ids, in order, to this optimizer's parameters, and a
        parameter without saved state (torch creates some lazily) starts afresh. Arrays may be
        NumPy arrays or CPU tensors.

        Raises
        ------
        TypeError
            If a part has the wrong type (an array of another dtype, a string for a number).
        ValueError
            If the structure does not match this optimizer or a value is out of range; the message
            names the parameter, the key and the value.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        if set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"state_dict must have the keys 'state' and 'param_groups', "
                             f"got {sorted(map(str, state_dict))}")
        groups, states = state_dict["param_groups"], state_dict["state"]
        n_groups = len(self.param_groups)
        if (not isinstance(groups, (list, tuple)) or len(groups) != n_groups
                or not all(isinstance(g, Mapping) for g in groups)):
            raise ValueError(f"param_groups must be a list of {n_groups} group(s) (dicts), got {groups!r}")
        if not isinstance(states, Mapping):
            raise ValueError(f"state must map parameter ids to states, got {type(states).__name__}")
        new_groups, loaded, all_ids = [], [], []
        for gi, (mine, group) in enumerate(zip(self.param_groups, groups)):
            where = f"param_groups[{gi}]"
            ids, params = group.get("params"), mine["params"]
            if not isinstance(ids, (list, tuple)) or len(ids) != len(params):
                raise ValueError(f"{where}['params'] must list {len(params)} parameter id(s), got {ids!r}")
            all_ids += ids
            group = ({k: v for k, v in _COMPAT.items() if k in self._rules}
                     | {k: v for k, v in group.items() if k != "params"})
            new_groups.append((group, self._check_hyper(group, where + ": ")))
            for p, key in zip(params, ids):
                loaded.append((p, key, new_groups[-1][1]))
        if len(set(all_ids)) != len(all_ids):
            raise ValueError(f"param_groups list a parameter id more than once: {all_ids!r}")
        if not set(states) <= set(all_ids):
            raise ValueError(f"state has ids {sorted(map(repr, set(states) - set(all_ids)))} that no "
                             f"group lists (ids {all_ids})")
        new_states = []
        for i, (p, key, hyper) in enumerate(loaded):
            specs = self._array_specs(p.module)
            if key not in states:
                new_states.append((p, self._init_state(p.module, hyper)))
                continue
            theirs = states[key]
            expected = {"step", *specs}
            if not isinstance(theirs, Mapping) or set(theirs) != expected:
                got = sorted(map(str, theirs)) if isinstance(theirs, Mapping) else type(theirs).__name__
                if not (isinstance(theirs, Mapping) and not specs and set(theirs) <= expected):
                    raise ValueError(f"state of parameter {i} has keys {got}, expected {sorted(expected)}")
            step = _check_step(f"state of parameter {i}: 'step'", theirs.get("step", 0))
            arrays = {}
            for k, (shape, lower) in specs.items():
                arrays[k] = _as_array(theirs[k])
                _check_array(f"state of parameter {i}: {k!r}", arrays[k], shape, p.dtype, lower)
            new_states.append((p, {"step": step, **arrays}))
        # Checked: from here on nothing can fail.
        self._write_back(drop=True)  # a cached table's rows are read again from the loaded state
        for p, theirs in new_states:
            mine = self.state[p]
            for k in self._array_specs(p.module):
                if mine[k].shape == theirs[k].shape and mine[k].dtype == theirs[k].dtype:
                    mine[k][...] = theirs[k]
                else:  # the layer's table was replaced since the optimizer was made
                    mine[k] = np.array(theirs[k], order="C", copy=True)
            mine["step"] = theirs["step"]
            if p in self._step_files:
                self._step_files[p][0] = mine["step"]
        for mine, (group, hyper) in zip(self.param_groups, new_groups):
            params = mine["params"]
            mine.clear()
            mine.update(group, **hyper, params=params)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines + [")"])


# Each optimizer's rules are PyTorch's (torch.optim.SGD, Adagrad, SparseAdam), and every value must
# also be finite: torch lets lr=inf or eps=nan through to NaN weights at the first step. Each has
# torch's keys, so that a torch state dict loads here and ours in torch; those a lazy sparse step
# cannot honour (momentum, weight decay) must stay 0, as torch itself requires of sparse gradients
# for weight decay. ``maximize`` ascends instead of descending.

_IMPL_RULES = {"foreach": _flag_or_none, "maximize": _flag, "differentiable": _flag,
               "fused": _flag_or_none}


def _sign(hyper):
    return -1.0 if hyper["maximize"] else 1.0


class SGD(Optimizer):
    """Plain SGD on the rows of the gradient: ``w -= lr * g`` (``torch.optim.SGD`` on a sparse grad).

    torch's signature and defaults (``lr=1e-3``). ``momentum``, ``dampening`` (with no momentum it
    has no effect), ``weight_decay`` and ``nesterov`` are torch's keys; momentum and weight decay
    would move every row at every step, so they must be 0 here. ``foreach``, ``differentiable`` and
    ``fused`` are accepted and have no effect.

    Raises
    ------
    TypeError, ValueError
        If ``lr`` is not a finite real number >= 0, or momentum / weight decay is not 0.
    """

    _rules = {"lr": _non_negative, "momentum": _zero, "dampening": _real, "weight_decay": _zero,
              "nesterov": _false} | _IMPL_RULES

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None, state_storage=None):
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov,
                                  "maximize": maximize, "foreach": foreach,
                                  "differentiable": differentiable, "fused": fused}, state_storage)

    def _update(self, weight, state, hyper, dt, *seg):
        K.sgd_step(weight, *seg, dt(_sign(hyper) * hyper["lr"]))


class Adagrad(Optimizer):
    """``torch.optim.Adagrad`` for sparse gradients (torch's signature and defaults).

    ``clr = lr / (1 + (t-1)·lr_decay)``; ``S += g²`` with ``g`` coalesced first;
    ``w -= clr · g / (√S + eps)``. State ``sum`` (like the table) starts at
    ``initial_accumulator_value``. With ``eps=0`` a coordinate whose ``S`` is 0 (its gradient has
    been 0 so far) is left unchanged, where PyTorch computes 0/0 = NaN. ``weight_decay`` must be 0,
    as torch requires for sparse gradients.

    Raises
    ------
    TypeError, ValueError
        If a hyper-parameter is not a finite real number >= 0, or weight_decay is not 0.
    """

    _rules = {"lr": _non_negative, "lr_decay": _non_negative, "eps": _non_negative,
              "weight_decay": _zero, "initial_accumulator_value": _non_negative} | _IMPL_RULES

    def __init__(self, params, lr=0.01, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None,
                 state_storage=None):
        super().__init__(params, {"lr": lr, "lr_decay": lr_decay, "eps": eps,
                                  "weight_decay": weight_decay,
                                  "initial_accumulator_value": initial_accumulator_value,
                                  "foreach": foreach, "maximize": maximize,
                                  "differentiable": differentiable, "fused": fused}, state_storage)

    @classmethod
    def state_fields(cls, embedding_dim):
        return {"sum": (int(embedding_dim),)}

    _lower = {"sum": 0}

    def _fill(self, key, hyper):
        return hyper["initial_accumulator_value"]

    def _update(self, weight, state, hyper, dt, *seg):
        clr = hyper["lr"] / (1 + (state["step"] - 1) * hyper["lr_decay"])
        K.adagrad_step(weight, state["sum"], *seg, dt(_sign(hyper) * clr), dt(hyper["eps"]))


class RowwiseAdagrad(Optimizer):
    """FBGEMM's exact row-wise Adagrad: one accumulator per row.

    ``h += mean(g²)`` over the row; ``w -= lr · g / (√h + eps)``. State ``sum`` has shape
    ``(num_embeddings,)``: a quarter of a byte per weight instead of Adagrad's full copy of the table.
    With ``eps=0`` a row whose ``h`` is 0 is left unchanged (no 0/0).

    Raises
    ------
    TypeError, ValueError
        If ``lr`` or ``eps`` is not a finite real number >= 0 (Adagrad's rules).
    """

    _rules = {"lr": _non_negative, "eps": _non_negative, "maximize": _flag}

    def __init__(self, params, lr=0.01, eps=1e-8, *, maximize=False, state_storage=None):
        super().__init__(params, {"lr": lr, "eps": eps, "maximize": maximize}, state_storage)

    @classmethod
    def state_fields(cls, embedding_dim):
        return {"sum": ()}

    _lower = {"sum": 0}

    def _update(self, weight, state, hyper, dt, *seg):
        K.rowwise_adagrad_step(weight, state["sum"], *seg, dt(_sign(hyper) * hyper["lr"]),
                               dt(hyper["eps"]), dt(weight.shape[1]))


class SparseAdam(Optimizer):
    """``torch.optim.SparseAdam``: Adam moments updated only on the rows a batch saw.

    ``m += (1-β1)(g-m)``, ``v += (1-β2)(g²-v)`` on seen rows;
    ``w -= lr·√(1-β2ᵗ)/(1-β1ᵗ) · m / (√v + eps)``, ``t`` counting steps. With ``maximize``, ``g`` is
    negated first, as in torch (so ``exp_avg`` holds the moment of ``-g``).

    Raises
    ------
    TypeError, ValueError
        If ``lr`` or ``eps`` is not a finite real number > 0, or ``betas`` is not a pair of numbers
        in [0, 1) (PyTorch's rules).
    """

    _rules = {"lr": _positive, "betas": _betas, "eps": _positive, "maximize": _flag}

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, maximize=False, *,
                 state_storage=None):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "maximize": maximize},
                         state_storage)

    @classmethod
    def state_fields(cls, embedding_dim):
        return {"exp_avg": (int(embedding_dim),), "exp_avg_sq": (int(embedding_dim),)}

    _lower = {"exp_avg_sq": 0}

    def _update(self, weight, state, hyper, dt, *seg):
        b1, b2 = hyper["betas"]
        t = state["step"]
        step_size = hyper["lr"] * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        # eps > 0 keeps m / (√v + eps) from 0/0, unless it underflows to 0 in the table's dtype
        # (eps=1e-50 in float32): then the smallest positive number of that dtype.
        eps = dt(hyper["eps"])
        if eps == 0:
            eps = np.finfo(dt).smallest_subnormal
        K.sparse_adam_step(weight, state["exp_avg"], state["exp_avg_sq"], *seg, dt(step_size),
                           dt(1 - b1), dt(1 - b2), eps, dt(_sign(hyper)))


from . import lr_scheduler  # noqa: E402  (torch.optim.lr_scheduler's place; it needs Optimizer)
