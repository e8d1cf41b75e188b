"""sparsemb inside PyTorch models (optional extra ``torch``; ``import sparsemb`` never imports torch).

:class:`Embedding` and :class:`EmbeddingBag` are ``torch.nn.Module``s on CPU tensors with the
signatures of torch's. Their forward and backward run sparsemb's kernels through a
``torch.autograd.Function`` on zero-copy NumPy views of the weight, ids and gradients, so they mix
with torch's other layers, losses and autograd. Gradients are sparse COO tensors with ``sparse=True``
(for ``torch.optim.SparseAdam``, ``Adagrad``, ``SGD``) and dense ones otherwise, as torch's.

With ``optimizer=`` (``"sgd"``, ``"adagrad"``, ``"rowwise_adagrad"``, ``"sparse_adam"``) and its
hyper-parameters, a layer updates its rows during backward, in the manner of FBGEMM's table-batched
embeddings: no gradient tensor is made (``weight.grad`` stays None) and the rows move in the same
fused kernel that sums their gradient. ``layer.optimizer`` is the sparsemb optimizer doing it (its
``param_groups``, ``state_dict()``, and :mod:`sparsemb.optim.lr_scheduler` work on it).

``per_sample_weights`` get no gradient here (torch computes one).
"""
from __future__ import annotations

import numpy as np
import torch

from . import nn as _nn
from . import optim as _optim
from .kernels import aligned_empty

__all__ = ["Embedding", "EmbeddingBag", "optimizer_state_to_torch", "FUSED_OPTIMIZERS"]

#: ``optimizer=`` names -> sparsemb optimizer classes.
FUSED_OPTIMIZERS = {"sgd": _optim.SGD, "adagrad": _optim.Adagrad,
                    "rowwise_adagrad": _optim.RowwiseAdagrad, "sparse_adam": _optim.SparseAdam}


def _new_table(shape, dtype):
    """An uninitialised CPU tensor for a layer's own weight, in memory NumPy allocates.

    NumPy asks the OS for transparent huge pages on large arrays and torch's allocator does not, so
    a table made by ``torch.empty`` sits on 4 KB pages and nearly every row looked up at random
    misses the TLB. On bench_dlrm's three fused 1,000,000 x 64 tables (one thread, CPU time, after a
    cache flush, same bits) a step took 0.75 (Adagrad) and 0.87 (SparseAdam) of its time on
    ``torch.empty``'s memory. A dtype NumPy lacks keeps torch's memory.
    """
    try:
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:
        return torch.empty(shape, dtype=dtype)
    return torch.from_numpy(aligned_empty(shape, np_dtype))


def _numpy(t, name):
    if not isinstance(t, torch.Tensor):
        return np.asarray(t)
    if t.device.type != "cpu":
        raise ValueError(f"{name} must be on the CPU, got a tensor on {t.device}")
    return t.detach().contiguous().numpy()


class _Lookup(torch.autograd.Function):
    """``weight`` -> the layer's output; backward -> the weight's gradient, or the fused update."""

    @staticmethod
    def forward(ctx, weight, module, args):
        layer = module._sync()
        out = layer(*args)
        ctx.module, ctx.saved = module, layer.saved
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out):
        module = ctx.module
        layer = module._layer
        layer.saved = ctx.saved
        g = grad_out.detach().contiguous().numpy()
        if module.optimizer is not None:
            module.optimizer.backward_step(layer, g)
            return None, None, None
        rows = layer.gradient(g)
        if rows is None:
            return None, None, None
        if module.sparse:
            grad = torch.sparse_coo_tensor(torch.from_numpy(rows.indices)[None],
                                           torch.from_numpy(rows.values), rows.shape,
                                           is_coalesced=True, check_invariants=False)
        else:
            grad = torch.from_numpy(rows.to_dense())
        return grad, None, None


class _Table(torch.nn.Module):
    """The torch Parameter, the sparsemb layer viewing it, and the optional fused optimizer."""

    def _setup(self, layer_cls, num_embeddings, embedding_dim, _weight, _freeze, device, dtype,
               optimizer, optimizer_kwargs, **options):
        _nn._check_device(device)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if _weight is None:
            weight = _new_table((num_embeddings, embedding_dim), dtype)
        else:
            weight = _weight
            if tuple(weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(f"_weight has shape {tuple(weight.shape)}, expected "
                                 f"({num_embeddings}, {embedding_dim})")
        self.weight = torch.nn.Parameter(weight, requires_grad=not _freeze)
        self._layer = layer_cls(num_embeddings, embedding_dim, _weight=self._view(), **options)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        if _weight is None:
            self.reset_parameters()
        if optimizer is None:
            if optimizer_kwargs:
                raise TypeError(f"optimizer arguments {sorted(optimizer_kwargs)} without optimizer=")
            self.optimizer = None
        else:
            if optimizer not in FUSED_OPTIMIZERS:
                raise ValueError(f"optimizer must be one of {sorted(FUSED_OPTIMIZERS)}, got {optimizer!r}")
            self.optimizer = FUSED_OPTIMIZERS[optimizer]([self._layer], **optimizer_kwargs)

    def _view(self):
        if self.weight.device.type != "cpu":
            raise ValueError(f"weight must be on the CPU, got {self.weight.device}")
        return self.weight.detach().numpy()

    def _sync(self):
        """The sparsemb layer, viewing the current weight (``weight.data`` may have been replaced)."""
        layer = self._layer
        if layer.weight.ctypes.data != self.weight.data_ptr() or layer.weight.shape != tuple(self.weight.shape):
            w = self._view()
            layer.weight = _nn._check_weight(w, *layer.weight.shape, None)
        layer.requires_grad = self.weight.requires_grad
        return layer

    def reset_parameters(self):
        """N(0, 1) from torch's generator (``torch.manual_seed`` reproduces it), padding row zeroed."""
        torch.nn.init.normal_(self.weight)
        if self.padding_idx is not None:
            with torch.no_grad():
                self.weight[self.padding_idx].fill_(0)

    def _run(self, *args):
        return _Lookup.apply(self.weight, self, args)

    def __getattr__(self, name):
        # torch's option attributes, read from the sparsemb layer (one place for each option).
        layer = self.__dict__.get("_layer")
        if layer is not None and name in ("padding_idx", "max_norm", "norm_type", "scale_grad_by_freq",
                                          "sparse", "mode", "include_last_offset"):
            return getattr(layer, name)
        return super().__getattr__(name)

    def extra_repr(self):
        r = repr(self._layer)
        return r[r.index("(") + 1:-1]


class Embedding(_Table):
    """``torch.nn.Embedding`` computed by sparsemb (same arguments, plus ``optimizer=`` and its
    keyword arguments for the fused optimizer-in-backward mode)."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None,
                 dtype=None, *, optimizer=None, **optimizer_kwargs):
        super().__init__()
        self._setup(_nn.Embedding, num_embeddings, embedding_dim, _weight, _freeze, device, dtype,
                    optimizer, optimizer_kwargs, padding_idx=padding_idx, max_norm=max_norm,
                    norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None,
                        norm_type=2.0, scale_grad_by_freq=False, sparse=False, **fused):
        """As torch's: the layer uses ``embeddings`` (a 2-D CPU tensor) as its weight."""
        return cls(*embeddings.shape, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                   embeddings, freeze, **fused)

    def forward(self, input):
        return self._run(_numpy(input, "input"))


class EmbeddingBag(_Table):
    """``torch.nn.EmbeddingBag`` computed by sparsemb (same arguments, plus ``optimizer=``)."""

    def __init__(self, num_embeddings, embedding_dim, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, mode="mean", sparse=False, _weight=None,
                 include_last_offset=False, padding_idx=None, device=None, dtype=None, *,
                 _freeze=False, optimizer=None, **optimizer_kwargs):
        super().__init__()
        self._setup(_nn.EmbeddingBag, num_embeddings, embedding_dim, _weight, _freeze, device, dtype,
                    optimizer, optimizer_kwargs, max_norm=max_norm, norm_type=norm_type,
                    scale_grad_by_freq=scale_grad_by_freq, mode=mode, sparse=sparse,
                    include_last_offset=include_last_offset, padding_idx=padding_idx)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, mode="mean", sparse=False,
                        include_last_offset=False, padding_idx=None, **fused):
        """As torch's: the layer uses ``embeddings`` (a 2-D CPU tensor) as its weight."""
        return cls(*embeddings.shape, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                   embeddings, include_last_offset, padding_idx, _freeze=freeze, **fused)

    def forward(self, input, offsets=None, per_sample_weights=None):
        args = [_numpy(input, "input")]
        args.append(None if offsets is None else _numpy(offsets, "offsets"))
        args.append(None if per_sample_weights is None else _numpy(per_sample_weights, "per_sample_weights"))
        return self._run(*args)


def optimizer_state_to_torch(state_dict):
    """A sparsemb optimizer's ``state_dict()`` in the form torch's ``load_state_dict`` takes.

    Arrays become tensors (copies) and ``step`` a float tensor where torch keeps one (all but
    SparseAdam); the structure and keys are already torch's. (The other way needs nothing:
    sparsemb's optimizers load torch's state dicts as they are.)

    >>> torch_opt.load_state_dict(optimizer_state_to_torch(sm_opt.state_dict()))  # doctest: +SKIP
    """
    # torch's SparseAdam (the only one with betas and no lr_decay / momentum) keeps an int step.
    int_step = all("betas" in g and "lr_decay" not in g and "momentum" not in g
                   for g in state_dict["param_groups"])

    def convert(key, value):
        if isinstance(value, np.ndarray):
            return torch.from_numpy(np.array(value, copy=True))
        if key == "step" and not int_step:
            return torch.tensor(float(value))
        return value

    return {"state": {i: {k: convert(k, v) for k, v in s.items()} for i, s in state_dict["state"].items()},
            "param_groups": [dict(g) for g in state_dict["param_groups"]]}
