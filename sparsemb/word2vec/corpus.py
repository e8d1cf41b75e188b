"""Reading a corpus once and turning it into a compact array of int32 word ids.

A corpus is either a text file (one sentence per line, tokens separated by whitespace, UTF-8) or any
iterable of token lists. Both are read as a stream: tokens become ids as they are read, so the text is
never held in memory as Python strings. Sentences longer than :data:`MAX_SENTENCE_LENGTH` tokens are
split into pieces of that length, as gensim's ``LineSentence`` does; empty lines are not sentences.
"""
from __future__ import annotations

import itertools
import os
import warnings
from array import array
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

#: gensim's ``MAX_WORDS_IN_BATCH``: longer lines are cut into sentences of this many tokens.
MAX_SENTENCE_LENGTH = 10000

_BLOCK_BYTES = 1 << 20


@dataclass
class EncodedCorpus:
    """A corpus as word ids.

    Attributes
    ----------
    ids : ndarray of int32, shape (n_tokens,)
        Word ids, sentences one after another.
    starts : ndarray of int64, shape (n_sentences + 1,)
        Sentence ``s`` is ``ids[starts[s]:starts[s + 1]]``.
    """

    ids: np.ndarray
    starts: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_sentences(self) -> int:
        return int(self.starts.shape[0] - 1)

    def keep(self, remap: np.ndarray) -> "EncodedCorpus":
        """Map ids through ``remap`` and drop those mapped to -1, keeping sentence boundaries."""
        new = remap[self.ids]
        mask = new >= 0
        cum = np.zeros(mask.shape[0] + 1, dtype=np.int64)
        np.cumsum(mask, out=cum[1:])
        return EncodedCorpus(np.ascontiguousarray(new[mask], dtype=np.int32), cum[self.starts])


def check_corpus_file(path) -> str:
    """Return ``path`` as a string after checking that it names a readable regular file.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    IsADirectoryError, PermissionError
        If it is a directory or cannot be read.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"corpus file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"corpus path is a directory, not a file: {path}")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"corpus file is not readable: {path}")
    return path


def file_sentences(path):
    """Yield the sentences of a text file as token lists.

    Lines are split on ``\\n`` and tokens on whitespace (``str.split()``), exactly as gensim's
    ``LineSentence``. Invalid UTF-8 bytes are replaced by U+FFFD with a single warning per file.

    Parameters
    ----------
    path : str or os.PathLike
        The corpus file.

    Yields
    ------
    list of str
        One sentence, at most :data:`MAX_SENTENCE_LENGTH` tokens.
    """
    path = check_corpus_file(path)
    warned = False
    with open(path, "rb") as f:
        offset = 0
        while True:
            block = f.read(_BLOCK_BYTES)
            if not block:
                break
            # Decoding a block that ends inside a line could cut a multi-byte character in two.
            if not block.endswith(b"\n"):
                block += f.readline()
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError as err:
                text = block.decode("utf-8", errors="replace")
                if not warned:
                    warnings.warn(
                        f"{path}: invalid UTF-8 at byte {offset + err.start}; invalid bytes were "
                        "replaced by U+FFFD",
                        UnicodeWarning,
                        stacklevel=2,
                    )
                    warned = True
            offset += len(block)
            for line in text.split("\n"):
                yield from split_long(line.split())


def split_long(tokens):
    """Yield ``tokens`` in pieces of at most :data:`MAX_SENTENCE_LENGTH`; nothing if it is empty."""
    if len(tokens) <= MAX_SENTENCE_LENGTH:
        if tokens:
            yield tokens
        return
    for i in range(0, len(tokens), MAX_SENTENCE_LENGTH):
        yield tokens[i : i + MAX_SENTENCE_LENGTH]


def iterable_sentences(sentences):
    """Yield the token lists of an iterable corpus, split like :func:`file_sentences`.

    Raises
    ------
    TypeError
        If an item is a string rather than a list of tokens.
    """
    for sentence in sentences:
        if isinstance(sentence, (str, bytes)):
            raise TypeError(
                f"each sentence must be a list of tokens, got a {type(sentence).__name__}: {sentence[:50]!r}"
            )
        yield from split_long(list(sentence))


def scan(sentences):
    """Read a corpus once, giving every distinct word a provisional id in first-seen order.

    Parameters
    ----------
    sentences : iterable of list of str
        Output of :func:`file_sentences` or :func:`iterable_sentences`.

    Returns
    -------
    words : list of str
        The distinct words, in the order they were first seen.
    counts : ndarray of int64, shape (len(words),)
        How often each word occurs.
    corpus : EncodedCorpus
        The corpus in provisional ids (indices into ``words``).
    """
    # A defaultdict whose factory hands out the next integer turns tokens into ids entirely in C:
    # ``map(ids.__getitem__, tokens)`` never runs Python code per token.
    word_ids = defaultdict(itertools.count().__next__)
    lookup = word_ids.__getitem__
    buf = array("i")
    starts = array("q", [0])
    for tokens in sentences:
        buf.extend(map(lookup, tokens))
        starts.append(len(buf))
    ids = np.frombuffer(buf, dtype=np.int32) if len(buf) else np.zeros(0, dtype=np.int32)
    counts = np.bincount(ids, minlength=len(word_ids)).astype(np.int64)
    return list(word_ids), counts, EncodedCorpus(ids, np.frombuffer(starts, dtype=np.int64))


class _Lookup(dict):
    """word -> id, with -1 for words outside the vocabulary (still answered in C by ``__getitem__``)."""

    def __missing__(self, key):
        return -1


def encode(sentences, key_to_index) -> EncodedCorpus:
    """Turn a corpus into ids of an existing vocabulary, dropping words outside it.

    Parameters
    ----------
    sentences : iterable of list of str
        Output of :func:`file_sentences` or :func:`iterable_sentences`.
    key_to_index : dict of str to int
        The vocabulary.

    Returns
    -------
    EncodedCorpus
    """
    lookup = _Lookup(key_to_index).__getitem__
    buf = array("i")
    starts = array("q", [0])
    for tokens in sentences:
        buf.extend(map(lookup, tokens))
        starts.append(len(buf))
    ids = np.frombuffer(buf, dtype=np.int32) if len(buf) else np.zeros(0, dtype=np.int32)
    raw = EncodedCorpus(ids, np.frombuffer(starts, dtype=np.int64))
    remap = np.arange(len(key_to_index) + 1, dtype=np.int32)
    remap[-1] = -1  # id -1 indexes the last entry
    return raw.keep(remap)
