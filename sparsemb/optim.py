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

import numpy as np

from .kernels import optim as K
from .nn import _Table

_EMPTY_I64 = np.empty(0, dtype=np.int64)


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
        for p in self._group["params"]:
            g = p.grad
            if g is not None:
                # Already summed: every row is a segment of one occurrence, itself.
                starts = np.arange(g.indices.size + 1, dtype=np.int64)
                self._apply(p, (g.indices, _EMPTY_I64, starts, _EMPTY_I64, np.empty(0, g.dtype),
                                g.values))

    def backward_step(self, layer, grad_out):
        """``layer.backward(grad_out)`` and this optimizer's update of ``layer``, fused in one kernel.

        Equivalent, bit for bit, to ``layer.backward(grad_out); opt.step()`` for a layer with no
        accumulated gradient, but the gradient is never stored (``layer.grad`` stays None).

        Raises
        ------
        ValueError
            If ``layer`` is not one of this optimizer's parameters, or ``grad_out`` has the wrong shape.
        RuntimeError
            If ``layer`` has an accumulated gradient (call ``step()`` or ``zero_grad()`` first), or
            before the layer's first forward.
        """
        if id(layer) not in self.state:
            raise ValueError(f"{layer!r} is not a parameter of this optimizer")
        if layer.grad is not None:
            raise RuntimeError("layer has an accumulated gradient: call step() or zero_grad() first")
        seg = layer._gradient_segments(grad_out)
        if seg is not None:
            self._apply(layer, seg)

    def _apply(self, layer, seg):
        state = self.state[id(layer)]
        state["step"] += 1
        self._update(layer.weight, state, self._group, layer.weight.dtype.type, *seg)

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
