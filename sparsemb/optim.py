"""Lazy sparse optimizers with PyTorch's names and semantics (and FBGEMM's row-wise Adagrad).

A step touches only the rows in each layer's coalesced gradient: every other row of the weight and
of the optimizer state stays bit-identical, and a step costs O(batch × dim) whatever the table size.

Fusion: ``layer.backward`` returns a :class:`~sparsemb.nn.SparseRows` that has grouped the ids but
not yet summed the gradient rows. ``step()`` hands that segment form to one kernel per optimizer that
sums each row's occurrences into a per-thread buffer and updates the weight and state right away, so
the gradient is never materialized beyond one row per thread. Reading ``grad.values`` first (or
accumulating two backward passes) materializes it; ``step()`` then works from the summed rows.
"""
from __future__ import annotations

import numpy as np

from .kernels import optim as K
from .nn import _Table


class Optimizer:
    """Base class: holds layers, per-layer state and hyper-parameters (``param_groups[0]``).

    Parameters
    ----------
    params : list of Embedding or EmbeddingBag
    defaults : dict
        Validated hyper-parameters; they may be changed between steps through ``param_groups``.
    """

    _state_keys: tuple = ()

    def __init__(self, params, defaults):
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
        self.param_groups = [dict(defaults, params=params)]
        self.state = {id(p): self._init_state(p, defaults) for p in params}

    @property
    def _group(self):
        return self.param_groups[0]

    def _init_state(self, layer, defaults) -> dict:
        return {"step": 0}

    def zero_grad(self):
        """Clear every layer's gradient."""
        for p in self._group["params"]:
            p.zero_grad()

    def step(self):
        """Apply one update to each layer that has a gradient (a no-op for layers without)."""
        group = self._group
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[id(p)]
            state["step"] += 1
            dt = p.weight.dtype.type
            self._update(p.weight, state, group, dt, *p.grad.segment_form())

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

    def load_state_dict(self, state_dict: dict):
        """Restore what :meth:`state_dict` returned; checks everything before changing anything."""
        params = self._group["params"]
        groups = state_dict["param_groups"]
        states = state_dict["state"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(params) or len(states) != len(params):
            raise ValueError("state_dict does not match this optimizer's parameters")
        for i, p in enumerate(params):
            mine, theirs = self.state[id(p)], states[i]
            if set(mine) != set(theirs):
                raise ValueError(f"state of parameter {i} has keys {sorted(theirs)}, expected {sorted(mine)}")
            for k, v in mine.items():
                if isinstance(v, np.ndarray) and np.shape(theirs[k]) != v.shape:
                    raise ValueError(
                        f"state {k!r} of parameter {i} has shape {np.shape(theirs[k])}, expected {v.shape}"
                    )
        for i, p in enumerate(params):
            mine = self.state[id(p)]
            for k, v in states[i].items():
                if isinstance(mine[k], np.ndarray):
                    mine[k][...] = v
                else:
                    mine[k] = v
        self._group.update({k: v for k, v in groups[0].items() if k != "params"})

    def __repr__(self):
        hp = ", ".join(f"{k}={v}" for k, v in self._group.items() if k != "params")
        return f"{type(self).__name__}({hp})"


def _positive(name, value):
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


def _non_negative(name, value):
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)


class SGD(Optimizer):
    """Plain SGD on the rows of the gradient: ``w -= lr * g`` (``torch.optim.SGD`` on a sparse grad)."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": _positive("lr", lr)})

    def _update(self, weight, state, group, dt, *seg):
        K.sgd_step(weight, *seg, dt(group["lr"]))


class Adagrad(Optimizer):
    """``torch.optim.Adagrad`` for sparse gradients.

    ``clr = lr / (1 + (t-1)·lr_decay)``; ``S += g²`` with ``g`` coalesced first;
    ``w -= clr · g / (√S + eps)``. State ``sum`` (like the table) starts at
    ``initial_accumulator_value``.
    """

    def __init__(self, params, lr=0.01, lr_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, {
            "lr": _positive("lr", lr), "lr_decay": _non_negative("lr_decay", lr_decay),
            "initial_accumulator_value": _non_negative("initial_accumulator_value",
                                                       initial_accumulator_value),
            "eps": _non_negative("eps", eps)})

    def _init_state(self, layer, defaults):
        w = layer.weight
        return {"step": 0, "sum": np.full(w.shape, defaults["initial_accumulator_value"], w.dtype)}

    def _update(self, weight, state, group, dt, *seg):
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        K.adagrad_step(weight, state["sum"], *seg, dt(clr), dt(group["eps"]))


class RowwiseAdagrad(Optimizer):
    """FBGEMM's exact row-wise Adagrad: one accumulator per row.

    ``h += mean(g²)`` over the row; ``w -= lr · g / (√h + eps)``. State ``sum`` has shape
    ``(num_embeddings,)``: a quarter of a byte per weight instead of Adagrad's full copy of the table.
    """

    def __init__(self, params, lr=0.01, eps=1e-8):
        super().__init__(params, {"lr": _positive("lr", lr), "eps": _non_negative("eps", eps)})

    def _init_state(self, layer, defaults):
        return {"step": 0, "sum": np.zeros(layer.weight.shape[0], layer.weight.dtype)}

    def _update(self, weight, state, group, dt, *seg):
        K.rowwise_adagrad_step(weight, state["sum"], *seg, dt(group["lr"]), dt(group["eps"]),
                               dt(weight.shape[1]))


class SparseAdam(Optimizer):
    """``torch.optim.SparseAdam``: Adam moments updated only on the rows a batch saw.

    ``m += (1-β1)(g-m)``, ``v += (1-β2)(g²-v)`` on seen rows;
    ``w -= lr·√(1-β2ᵗ)/(1-β1ᵗ) · m / (√v + eps)``, ``t`` counting steps.
    """

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8):
        betas = tuple(float(b) for b in betas)
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {b}")
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair, got {betas}")
        super().__init__(params, {"lr": _positive("lr", lr), "betas": betas,
                                  "eps": _non_negative("eps", eps)})

    def _init_state(self, layer, defaults):
        w = layer.weight
        return {"step": 0, "exp_avg": np.zeros_like(w), "exp_avg_sq": np.zeros_like(w)}

    def _update(self, weight, state, group, dt, *seg):
        b1, b2 = group["betas"]
        t = state["step"]
        step_size = group["lr"] * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        K.sparse_adam_step(weight, state["exp_avg"], state["exp_avg_sq"], *seg, dt(step_size),
                           dt(1 - b1), dt(1 - b2), dt(group["eps"]))
