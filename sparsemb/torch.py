"""sparsemb inside PyTorch: torch.nn.Module layers that run sparsemb's kernels (optional extra ``torch``).

``import sparsemb`` never imports torch; this module does (``pip install sparsemb[torch]``).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["optimizer_state_to_torch"]


def optimizer_state_to_torch(state_dict):
    """A sparsemb optimizer's ``state_dict()`` in the form torch's ``load_state_dict`` takes.

    Arrays become tensors (copies) and Adagrad's ``step`` a float tensor, as torch keeps it; the
    structure and keys are already torch's. (The other way needs nothing: sparsemb's optimizers
    load torch's state dicts as they are.)

    >>> torch_opt.load_state_dict(optimizer_state_to_torch(sm_opt.state_dict()))  # doctest: +SKIP
    """
    def convert(key, value):
        if isinstance(value, np.ndarray):
            return torch.from_numpy(np.array(value, copy=True))
        if key == "step" and not has_int_step:
            return torch.tensor(float(value))
        return value

    # torch's SparseAdam keeps an int step; SGD, Adagrad and the rest a float tensor.
    has_int_step = all("betas" in g and "lr_decay" not in g and "momentum" not in g
                       for g in state_dict["param_groups"])
    return {"state": {i: {k: convert(k, v) for k, v in s.items()}
                      for i, s in state_dict["state"].items()},
            "param_groups": [dict(g) for g in state_dict["param_groups"]]}
