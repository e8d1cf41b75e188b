"""Lazy sparse optimizers with PyTorch's names and semantics (and FBGEMM's row-wise Adagrad).

A step touches only the rows in each layer's coalesced gradient: every other row of the weight and
of the optimizer state stays bit-identical, and a step costs O(batch × dim) whatever the table size.

Two ways to train:

- PyTorch's loop, ``opt.zero_grad(); out = layer(ids); layer.backward(g); opt.step()``: ``backward``
  sums the rows of each id into a :class:`~sparsemb.nn.SparseRows` (kept in ``layer.grad``) and
  ``step()`` applies it.
- Fused, ``out = layer(ids); opt.backward_step(layer, g)``: one kernel per optimizer goes from the
  ids and ``g`` straight to updated rows and state. Each unique row's occurrences are summed into a
  per-thread buffer and applied at once (FBGEMM's "exact" fused optimizers), so no gradient is
  materialized, not even the per-row sums. Same result, bit for bit; fewer bytes moved.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from .kernels import optim as K
from .nn import _Table

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


def _check_step(where, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where} must be an integer, got {value!r}")
    if not 0 <= value <= _MAX_STEP:
        raise ValueError(f"{where} must be in [0, {_MAX_STEP}], got {value!r}")
    return int(value)


class Optimizer:
    """Base class: holds layers, per-layer state and hyper-parameters (``param_groups[0]``).

    Parameters
    ----------
    params : list of Embedding or EmbeddingBag
    hyper : dict
        Hyper-parameters, checked by the subclass's ``_rules``; they may be changed between steps
        through ``param_groups`` (each step checks them again by the same rules, as does
        :meth:`load_state_dict`).
    """

    #: hyper-parameter name -> rule(name, value) returning the value to use or raising
    #: TypeError/ValueError. The one place a hyper-parameter is checked: by the constructor, by
    #: load_state_dict and before each step.
    _rules: dict = {}

    def __init__(self, params, hyper):
        hyper = self._check_hyper(hyper)
        if isinstance(params, _Table):
            params = [params]
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for p in params:
            if not isinstance(p, _Table):
                raise TypeError(f"params must be Embedding or EmbeddingBag layers, got {type(p).__name__}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a layer appears more than once in params")
        self.param_groups = [dict(hyper, params=params)]
        self.state = {id(p): self._init_state(p, hyper) for p in params}

    @property
    def _group(self):
        return self.param_groups[0]

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

    def _array_specs(self, layer) -> dict:
        """State array name -> (shape, least allowed value or None); dtype is the table's."""
        return {}

    def _fill(self, key, hyper):
        """The value state array ``key`` starts at."""
        return 0

    def _init_state(self, layer, hyper) -> dict:
        dtype = layer.weight.dtype
        return {"step": 0} | {k: np.full(shape, self._fill(k, hyper), dtype)
                              for k, (shape, _) in self._array_specs(layer).items()}

    def zero_grad(self):
        """Clear every layer's gradient."""
        for p in self._group["params"]:
            p.zero_grad()

    def step(self):
        """Apply one update to each layer that has a gradient (a no-op for layers without)."""
        hyper = self._check_hyper(self._group, "param_groups[0]: ")
        for p in self._group["params"]:
            g = p.grad
            if g is not None:
                # Already summed: every row is a segment of one occurrence, itself.
                starts = np.arange(g.indices.size + 1, dtype=np.int64)
                self._apply(p, hyper, (g.indices, _EMPTY_I64, starts, _EMPTY_I64,
                                       np.empty(0, g.dtype), g.values))

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
        if id(layer) not in self.state:
            raise ValueError(f"{layer!r} is not a parameter of this optimizer")
        if layer.grad is not None:
            raise RuntimeError("layer has an accumulated gradient: call step() or zero_grad() first")
        hyper = self._check_hyper(self._group, "param_groups[0]: ")
        seg = layer._gradient_segments(grad_out)
        if seg is not None:
            self._apply(layer, hyper, seg)

    def _apply(self, layer, hyper, seg):
        state = self.state[id(layer)]
        state["step"] += 1
        self._update(layer.weight, state, hyper, layer.weight.dtype.type, *seg)

    def state_dict(self) -> dict:
        """Copies of the state (keyed by parameter position) and of the hyper-parameters."""
        params = self._group["params"]
        return {
            "state": {
                i: {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
                    for k, v in self.state[id(p)].items()}
                for i, p in enumerate(params)
            },
            "param_groups": [{k: v for k, v in self._group.items() if k != "params"}
                             | {"params": list(range(len(params)))}],
        }

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned, all or nothing.

        Everything is checked before anything changes: the structure (one group; as many parameters,
        each with this optimizer's state keys), each array's shape and dtype (those of the parameter's
        table: a float64 array for a float32 table is refused, not cast), its values (finite;
        accumulators and second moments >= 0), ``step`` (an integer >= 0) and the hyper-parameters (by
        the constructor's rules). As in PyTorch, the group's ``params`` list maps the saved ids, in
        order, to this optimizer's parameters.

        Raises
        ------
        TypeError
            If a part has the wrong type (an array of another dtype, a string for a number).
        ValueError
            If the structure does not match this optimizer or a value is out of range; the message
            names the parameter, the key and the value.
        """
        params = self._group["params"]
        n = len(params)
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        if set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"state_dict must have the keys 'state' and 'param_groups', "
                             f"got {sorted(map(str, state_dict))}")
        groups, states = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)) or len(groups) != 1 or not isinstance(groups[0], Mapping):
            raise ValueError(f"param_groups must be a list of one group (a dict), got {groups!r}")
        group = groups[0]
        ids = group.get("params")
        if not isinstance(ids, (list, tuple)) or len(ids) != n:
            raise ValueError(f"param_groups[0]['params'] must list {n} parameter id(s), got {ids!r}")
        if len(set(ids)) != n:
            raise ValueError(f"param_groups[0]['params'] has a repeated id: {ids!r}")
        hyper = self._check_hyper({k: v for k, v in group.items() if k != "params"},
                                  "param_groups[0]: ")
        if not isinstance(states, Mapping) or set(states) != set(ids):
            got = sorted(map(repr, states)) if isinstance(states, Mapping) else type(states).__name__
            raise ValueError(f"state must map each parameter id {list(ids)} to its state, got {got}")
        loaded = []
        for i, (p, key) in enumerate(zip(params, ids)):
            theirs = states[key]
            specs = self._array_specs(p)
            expected = {"step", *specs}
            if not isinstance(theirs, Mapping) or set(theirs) != expected:
                got = sorted(map(str, theirs)) if isinstance(theirs, Mapping) else type(theirs).__name__
                raise ValueError(f"state of parameter {i} has keys {got}, expected {sorted(expected)}")
            step = _check_step(f"state of parameter {i}: 'step'", theirs["step"])
            for k, (shape, lower) in specs.items():
                _check_array(f"state of parameter {i}: {k!r}", theirs[k], shape, p.weight.dtype, lower)
            loaded.append((p, step, theirs))
        # Checked: from here on nothing can fail.
        for p, step, theirs in loaded:
            mine = self.state[id(p)]
            for k in self._array_specs(p):
                if mine[k].shape == theirs[k].shape and mine[k].dtype == theirs[k].dtype:
                    mine[k][...] = theirs[k]
                else:  # the layer's table was replaced since the optimizer was made
                    mine[k] = np.array(theirs[k], order="C", copy=True)
            mine["step"] = step
        mine = self._group
        mine.clear()
        mine.update({k: v for k, v in group.items() if k != "params"}, **hyper, params=params)

    def __repr__(self):
        hp = ", ".join(f"{k}={v}" for k, v in self._group.items() if k != "params")
        return f"{type(self).__name__}({hp})"


# Each optimizer's rules are PyTorch's (torch.optim.SGD, Adagrad, SparseAdam), and every value must
# also be finite: torch lets lr=inf or eps=nan through to NaN weights at the first step.


class SGD(Optimizer):
    """Plain SGD on the rows of the gradient: ``w -= lr * g`` (``torch.optim.SGD`` on a sparse grad).

    Raises
    ------
    TypeError, ValueError
        If ``lr`` is not a finite real number >= 0.
    """

    _rules = {"lr": _non_negative}

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    def _update(self, weight, state, hyper, dt, *seg):
        K.sgd_step(weight, *seg, dt(hyper["lr"]))


class Adagrad(Optimizer):
    """``torch.optim.Adagrad`` for sparse gradients.

    ``clr = lr / (1 + (t-1)·lr_decay)``; ``S += g²`` with ``g`` coalesced first;
    ``w -= clr · g / (√S + eps)``. State ``sum`` (like the table) starts at
    ``initial_accumulator_value``. With ``eps=0`` a coordinate whose ``S`` is 0 (its gradient has
    been 0 so far) is left unchanged, where PyTorch computes 0/0 = NaN.

    Raises
    ------
    TypeError, ValueError
        If a hyper-parameter is not a finite real number >= 0.
    """

    _rules = {"lr": _non_negative, "lr_decay": _non_negative,
              "initial_accumulator_value": _non_negative, "eps": _non_negative}

    def __init__(self, params, lr=0.01, lr_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, {"lr": lr, "lr_decay": lr_decay,
                                  "initial_accumulator_value": initial_accumulator_value, "eps": eps})

    def _array_specs(self, layer):
        return {"sum": (layer.weight.shape, 0)}

    def _fill(self, key, hyper):
        return hyper["initial_accumulator_value"]

    def _update(self, weight, state, hyper, dt, *seg):
        clr = hyper["lr"] / (1 + (state["step"] - 1) * hyper["lr_decay"])
        K.adagrad_step(weight, state["sum"], *seg, dt(clr), dt(hyper["eps"]))


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

    _rules = {"lr": _non_negative, "eps": _non_negative}

    def __init__(self, params, lr=0.01, eps=1e-8):
        super().__init__(params, {"lr": lr, "eps": eps})

    def _array_specs(self, layer):
        return {"sum": (layer.weight.shape[:1], 0)}

    def _update(self, weight, state, hyper, dt, *seg):
        K.rowwise_adagrad_step(weight, state["sum"], *seg, dt(hyper["lr"]), dt(hyper["eps"]),
                               dt(weight.shape[1]))


class SparseAdam(Optimizer):
    """``torch.optim.SparseAdam``: Adam moments updated only on the rows a batch saw.

    ``m += (1-β1)(g-m)``, ``v += (1-β2)(g²-v)`` on seen rows;
    ``w -= lr·√(1-β2ᵗ)/(1-β1ᵗ) · m / (√v + eps)``, ``t`` counting steps.

    Raises
    ------
    TypeError, ValueError
        If ``lr`` or ``eps`` is not a finite real number > 0, or ``betas`` is not a pair of numbers
        in [0, 1) (PyTorch's rules).
    """

    _rules = {"lr": _positive, "betas": _betas, "eps": _positive}

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    def _array_specs(self, layer):
        return {"exp_avg": (layer.weight.shape, None), "exp_avg_sq": (layer.weight.shape, 0)}

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
                           dt(1 - b1), dt(1 - b2), eps)
