"""sparsemb on Dask (the optional extra ``pip install "sparsemb[distributed]"``): sharded tables, and
data-parallel word2vec (``Word2Vec(client=...)``, :mod:`sparsemb.distributed.word2vec`).

Names are loaded on first use (PEP 562), so ``import sparsemb.distributed`` costs no Dask start-up
until one is used. :mod:`sparsemb.distributed.sharded` has the design.
"""
from __future__ import annotations

import importlib

# name -> the module (relative to this package) that defines it.
_LAZY = {
    "ShardedEmbedding": ".sharded", "ShardedEmbeddingBag": ".sharded",
    "SGD": ".sharded", "Adagrad": ".sharded", "RowwiseAdagrad": ".sharded", "SparseAdam": ".sharded",
    "ShardLostError": ".sharded", "SchedulerError": ".sharded", "Traffic": ".sharded",
    "CorpusNotSharedError": ".word2vec", "WorkerLostError": ".word2vec",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'sparsemb.distributed' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
