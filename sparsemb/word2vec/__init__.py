"""word2vec: vocabulary, corpus streaming, the Word2Vec trainer and KeyedVectors.

>>> from sparsemb.word2vec import Word2Vec
>>> model = Word2Vec(corpus_file="text.txt", vector_size=100, sg=1)   # doctest: +SKIP
>>> model.wv.most_similar("king")                                     # doctest: +SKIP
"""
from __future__ import annotations

from .keyedvectors import KeyedVectors
from .model import Word2Vec

__all__ = ["KeyedVectors", "Word2Vec"]
