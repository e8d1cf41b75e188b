"""sparsemb: embedding tables trained on the CPU with sparse, lazy updates."""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from . import kernels, optim  # noqa: E402
from .nn import Embedding, EmbeddingBag, SparseRows  # noqa: E402
from .word2vec import KeyedVectors, Word2Vec  # noqa: E402

__all__ = ["Embedding", "EmbeddingBag", "SparseRows", "Word2Vec", "KeyedVectors", "kernels", "optim",
           "reference"]


def __getattr__(name):
    # The SciPy reference path is for tests and explanations; importing scipy.sparse costs ~0.2 s,
    # which the command line should not pay.
    if name == "reference":
        return importlib.import_module(".reference", __name__)
    raise AttributeError(f"module 'sparsemb' has no attribute {name!r}")
