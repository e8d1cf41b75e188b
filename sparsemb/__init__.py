"""sparsemb: embedding tables trained on the CPU with sparse, lazy updates."""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Loaded on first use: ``import sparsemb`` (and the command line, before it has parsed its arguments)
# costs no Numba or SciPy start-up, and Ctrl-C during that start-up reaches code that can report it.
_LAZY = {
    "Embedding": ".nn", "EmbeddingBag": ".nn", "SparseRows": ".nn",
    "Word2Vec": ".word2vec", "KeyedVectors": ".word2vec",
    "checkpoint": "._storage", "restore": "._storage",
    "kernels": None, "optim": None, "nn": None, "word2vec": None, "reference": None,
    "distributed": None,
}

__all__ = ["Embedding", "EmbeddingBag", "SparseRows", "Word2Vec", "KeyedVectors", "checkpoint", "restore",
           "kernels", "optim", "reference"]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'sparsemb' has no attribute {name!r}")
    module = _LAZY[name]
    value = (importlib.import_module("." + name, __name__) if module is None
             else getattr(importlib.import_module(module, __name__), name))
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
