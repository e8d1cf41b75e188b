"""sparsemb: embedding tables trained on the CPU with sparse, lazy updates."""
from __future__ import annotations

__version__ = "0.1.0"

from . import kernels, reference  # noqa: E402
from . import optim  # noqa: E402
from .nn import Embedding, EmbeddingBag, SparseRows  # noqa: E402
