"""Reading a corpus: counting its words, and turning it into int32 word ids.

A corpus is either a text file (one sentence per line, tokens separated by whitespace, UTF-8) or any
iterable of token lists. Sentences longer than :data:`MAX_SENTENCE_LENGTH` tokens are split into pieces
of that length, as gensim's ``LineSentence`` does; empty lines are not sentences.

A file is never held in memory, as text or as ids: :func:`count_file` counts it block by block in
Numba (:class:`WordTable`, words as UTF-8 bytes, no Python strings per token), and training reads it
again in byte ranges that the threads share out, turning blocks into ids as it goes (:func:`encode_file`). Nor is
an iterable: it is read again every epoch, as gensim reads it, in batches (:func:`encode_batches`).
"""
from __future__ import annotations

import logging
import os
import threading
import warnings
from array import array
from dataclasses import dataclass

import numpy as np

from ..kernels import tokenizer as _tok

logger = logging.getLogger(__name__)

from .._limits import MAX_SENTENCE_LENGTH

_BLOCK_BYTES = 1 << 20
#: Bytes of a file below which counting it in more threads is not worth their start (and merge).
COUNT_RANGE_BYTES = 4 << 20

#: Bytes per block read by the Numba reader.
_SCAN_BYTES = 1 << 18

#: Ids per encoded batch handed to the training kernel (at least one whole sentence).
_BATCH_IDS = 1 << 16


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
    ValueError
        If it is a pipe, device or socket (a corpus is read more than once).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"corpus file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"corpus path is a directory, not a file: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"corpus must be a regular file, read again every epoch (not a pipe or device): {path}")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"corpus file is not readable: {path}")
    return path


def _warn_invalid(path, offset, stacklevel):
    warnings.warn(f"{path}: invalid UTF-8 at byte {offset}; invalid bytes were replaced by U+FFFD",
                  UnicodeWarning, stacklevel=stacklevel + 1)


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
                    _warn_invalid(path, offset + err.start, stacklevel=3)
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

    A string where a list of tokens belongs is taken, as gensim takes it, as a sequence of one-character
    tokens, with gensim's warning (once).

    Raises
    ------
    TypeError
        If ``sentences`` is not iterable, or an item is not a sequence of tokens (None, a number); the
        message gives the item's index.
    ValueError
        If ``sentences`` is an iterator (a generator, say) that yields nothing because it was read
        already.
    """
    try:
        items = iter(sentences)
    except TypeError:
        raise TypeError(f"sentences must be an iterable of token lists, got {type(sentences).__name__}") from None
    n = -1
    warned = False
    for n, sentence in enumerate(items):
        if isinstance(sentence, (str, bytes)) and not warned:
            logger.warning("Each 'sentences' item should be a list of words (usually unicode strings). "
                           "First item here is instead plain %s.", type(sentence))
            warned = True
        try:
            tokens = list(sentence)
        except TypeError:
            raise TypeError(f"sentence {n} must be a list of tokens, got {sentence!r}") from None
        yield from split_long(tokens)
    if n < 0 and items is sentences:
        raise ValueError("sentences is an iterator that is already exhausted (a generator can be read only "
                         "once); pass a list or another iterable that can be read again")


def _encode_with(sentences, lookup) -> EncodedCorpus:
    """Ids of every token by ``lookup`` (a C-level ``__getitem__``), sentence by sentence."""
    buf = array("i")
    starts = array("q", [0])
    for tokens in sentences:
        buf.extend(map(lookup, tokens))
        starts.append(len(buf))
    ids = np.frombuffer(buf, dtype=np.int32) if len(buf) else np.zeros(0, dtype=np.int32)
    return EncodedCorpus(ids, np.frombuffer(starts, dtype=np.int64))


class _Lookup(dict):
    """word -> id, with -1 for words outside the vocabulary (still answered in C by ``__getitem__``)."""

    def __missing__(self, key):
        return -1


def encode_batches(sentences, key_to_index, batch_tokens):
    """Yield a corpus in batches of about ``batch_tokens`` raw tokens, as ids of an existing vocabulary.

    Words outside it are left out, as in :func:`encode`; the corpus is read as it goes, so memory holds
    one batch whatever the corpus size.

    Yields
    ------
    batch : EncodedCorpus
    raw_tokens, n_sentences : int
        Tokens of the batch before words outside the vocabulary were left out, and its sentences.
    """
    lookup = _Lookup(key_to_index).__getitem__
    remap = np.arange(len(key_to_index) + 1, dtype=np.int32)
    remap[-1] = -1  # id -1 indexes the last entry
    sentences = iter(sentences)
    while True:
        chunk, raw = [], 0
        for tokens in sentences:
            chunk.append(tokens)
            raw += len(tokens)
            if raw >= batch_tokens:
                break
        if not chunk:
            return
        yield _encode_with(chunk, lookup).keep(remap), raw, len(chunk)


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
    raw = _encode_with(sentences, _Lookup(key_to_index).__getitem__)
    remap = np.arange(len(key_to_index) + 1, dtype=np.int32)
    remap[-1] = -1  # id -1 indexes the last entry
    return raw.keep(remap)


class WordTable:
    """Distinct words as UTF-8 bytes in a hash table that Numba kernels read and extend.

    Word ids are given in insertion order. See :mod:`sparsemb.kernels.tokenizer` for the layout.
    """

    def __init__(self, words=0, arena_bytes=1 << 16):
        cap = max(int(words), 16)
        self.slots = np.full(1 << (2 * cap - 1).bit_length(), -1, dtype=np.int64)
        self.word_off = np.zeros(cap + 1, dtype=np.int64)
        self.arena = np.empty(max(int(arena_bytes), 1), dtype=np.uint8)
        self.heads = np.zeros(cap, dtype=np.uint64)
        self.counts = np.zeros(cap, dtype=np.int64)
        self.n_words = 0

    @classmethod
    def from_words(cls, words):
        """A table holding ``words`` (distinct str) with ids ``0..len(words)-1``."""
        encoded = [w.encode("utf-8") for w in words]
        table = cls(len(encoded) + 1, sum(map(len, encoded)))
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=table.word_off[1:len(encoded) + 1])
        table.arena[: table.word_off[len(encoded)]] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        table.n_words = len(encoded)
        _tok.insert_words(table.arena, table.word_off, table.n_words, table.slots, table.heads)
        return table

    def reserve(self, words, nbytes):
        """Make room for ``words`` more words and ``nbytes`` more bytes of them (amortised doubling)."""
        need = self.n_words + words + 1
        if need > self.counts.shape[0]:
            cap = max(need, 2 * self.counts.shape[0])
            self.counts = np.resize(self.counts, cap)
            self.heads = np.resize(self.heads, cap)
            self.word_off = np.resize(self.word_off, cap + 1)
        if 2 * need > self.slots.shape[0]:
            self.slots = np.full(1 << (2 * need - 1).bit_length(), -1, dtype=np.int64)
            _tok.insert_words(self.arena, self.word_off, self.n_words, self.slots, self.heads)
        used = int(self.word_off[self.n_words])
        if used + nbytes > self.arena.shape[0]:
            self.arena = np.resize(self.arena, max(used + nbytes, 2 * self.arena.shape[0]))

    def merge(self, other):
        """Add ``other``'s words and counts; its new words get the next ids, in ``other``'s order."""
        state = np.zeros(_tok.MERGE_STATE, dtype=np.int64)
        state[_tok.N_WORDS] = self.n_words
        nbytes = int(other.word_off[other.n_words])
        while _tok.merge_counts(other.arena, other.word_off, other.counts[: other.n_words], state,
                                *self.kernel_args(), self.counts):
            self.n_words = int(state[_tok.N_WORDS])
            self.reserve(max(self.n_words, other.n_words), nbytes)
        self.n_words = int(state[_tok.N_WORDS])

    def words(self, ids):
        """The words with ids ``ids``, as str."""
        ids = np.asarray(ids if not isinstance(ids, range) else np.arange(ids.start, ids.stop, ids.step),
                         dtype=np.int64).reshape(-1)
        if not ids.size:
            return []
        # One decode of the words joined by newlines, then one split (a decode per word was 40-70 ms of
        # choosing a 34k-word vocabulary). Tokens hold no newline; a word given to from_words may.
        lo, lengths = self.word_off[ids], self.word_off[ids + 1] - self.word_off[ids]
        ends = np.cumsum(lengths + 1)  # each word and its newline
        joined = np.full(int(ends[-1]), 10, dtype=np.uint8)
        inside = np.ones(joined.shape[0], dtype=bool)
        inside[ends - 1] = False
        dst = np.flatnonzero(inside)
        joined[dst] = self.arena[dst + np.repeat(lo - (ends - lengths - 1), lengths)]
        words = joined.tobytes().decode("utf-8").split("\n")
        if len(words) == ids.size + 1:
            return words[:-1]
        arena, off = self.arena, self.word_off
        return [arena[off[i] : off[i + 1]].tobytes().decode("utf-8") for i in ids.tolist()]

    def kernel_args(self):
        return self.slots, self.word_off, self.arena, self.heads


def read_blocks(path, lo=0, hi=None, block_bytes=_SCAN_BYTES, warn=True, invalid=None):
    """Yield the bytes ``lo:hi`` of a file in blocks of whole lines, as valid UTF-8 uint8 arrays.

    ``lo`` and ``hi`` must be line starts (see :func:`byte_ranges`). Invalid UTF-8 is replaced by U+FFFD,
    with one warning per call when ``warn``, exactly as :func:`file_sentences` decodes; or, when
    ``invalid`` is a list, the offset of the first invalid byte is appended to it instead.
    """
    warned = not warn or invalid is not None
    with open(path, "rb") as f:
        hi = os.fstat(f.fileno()).st_size if hi is None else hi
        f.seek(lo)
        offset = lo
        while offset < hi:
            block = f.read(min(block_bytes, hi - offset))
            if not block:
                break
            # A block ends at a line end, so no character or token is cut in two.
            if not block.endswith(b"\n") and offset + len(block) < hi:
                block += f.readline()
            raw = len(block)
            # Checked in place: decoding a block to check it built a string of up to four times its
            # size, and those varying large allocations left training's peak memory ~10 MiB higher.
            bad = -1 if block.isascii() else _tok.first_invalid_utf8(np.frombuffer(block, dtype=np.uint8))
            if bad >= 0:
                if invalid is not None and not invalid:
                    invalid.append(offset + bad)
                if not warned:
                    _warn_invalid(path, offset + bad, stacklevel=3)
                    warned = True
                block = block.decode("utf-8", errors="replace").encode("utf-8")
            offset += raw
            yield np.frombuffer(block, dtype=np.uint8)


def _count_range(path, lo, hi, invalid):
    """Count the words of bytes ``lo:hi`` of a file: (WordTable, tokens, sentences)."""
    table = WordTable()
    state = np.zeros(_tok.COUNT_STATE, dtype=np.int64)
    for block in read_blocks(path, lo, hi, invalid=invalid):
        state[_tok.POS] = 0
        table.reserve(0, block.shape[0])
        # The table is kept small (it is probed once per token, so it should stay in cache) and grown
        # when the kernel says it is full.
        while _tok.count_block(block, state, *table.kernel_args(), table.counts):
            table.n_words = int(state[_tok.N_WORDS])
            table.reserve(max(table.n_words, 1024), block.shape[0])
        table.n_words = int(state[_tok.N_WORDS])
    return table, int(state[_tok.N_TOKENS]), int(state[_tok.N_SENTENCES])


def count_file(path, workers=1):
    """Count the words of a text file with the Numba reader.

    ``workers`` threads (at most one per :data:`COUNT_RANGE_BYTES` of the file) count equal byte
    ranges of the file at once (the kernel releases the GIL); their tables are then merged in file
    order, so the result is the same for any number of them.

    Returns
    -------
    table : WordTable
        Every distinct word, ids in first-seen order, with ``table.counts``.
    n_tokens, n_sentences : int
        Tokens, and sentences as :func:`file_sentences` makes them.
    """
    path = check_corpus_file(path)
    # A thread per COUNT_RANGE_BYTES at most: a small file is counted in one piece, and its first run
    # compiles no merge kernel (half a second), for a count that takes milliseconds either way.
    workers = min(max(int(workers), 1), max(os.path.getsize(path) // COUNT_RANGE_BYTES, 1))
    offsets = byte_ranges(path, workers)
    n = len(offsets) - 1
    parts, invalid, errors = [None] * n, [[] for _ in range(n)], []

    def count(t):
        try:
            parts[t] = _count_range(path, offsets[t], offsets[t + 1], invalid[t])
        except BaseException as err:  # re-raised in the calling thread
            errors.append(err)

    threads = [threading.Thread(target=count, args=(t,), daemon=True) for t in range(1, n)]
    for th in threads:
        th.start()
    count(0)
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    first_invalid = [x[0] for x in invalid if x]
    if first_invalid:
        _warn_invalid(path, first_invalid[0], stacklevel=2)
    table, n_tokens, n_sentences = parts[0]
    for other, tokens, sentences in parts[1:]:
        table.merge(other)
        n_tokens += tokens
        n_sentences += sentences
    table.counts = table.counts[: table.n_words]
    return table, n_tokens, n_sentences


def byte_ranges(path, n):
    """Cut a file into ``n`` byte ranges of about equal size, each starting at a line start.

    Returns
    -------
    list of int
        ``n + 1`` offsets; range ``t`` is ``[offsets[t], offsets[t + 1])`` (possibly empty).
    """
    size = os.path.getsize(path)
    return line_ranges(path, [size * t // n for t in range(1, n)])


def line_ranges(path, cuts):
    """Cut a file at ascending byte positions ``cuts``, each moved on to the start of the line after
    the one holding the byte before it.

    Returns
    -------
    list of int
        ``len(cuts) + 2`` offsets, from 0 to the file's size; range ``t`` is ``[offsets[t], offsets[t +
        1])`` (possibly empty).
    """
    size = os.path.getsize(path)
    offsets = [0]
    with open(path, "rb") as f:
        for cut in cuts:
            cut = max(cut, offsets[-1])
            if cut > 0:
                f.seek(cut - 1)
                f.readline()  # to the end of the line holding byte cut - 1
                cut = f.tell()
            offsets.append(min(cut, size))
    return offsets + [size]


def encode_file(path, table, lo=0, hi=None, warn=True):
    """Yield a file's bytes ``lo:hi`` as batches of sentences in the ids of ``table``'s words.

    Other words are left out; sentences are cut like :func:`file_sentences`.

    Yields
    ------
    ids : ndarray of int32
    starts : ndarray of int64
        Sentence ``s`` of the batch is ``ids[starts[s]:starts[s + 1]]``. Both arrays are reused: use
        them before asking for the next batch.
    """
    ids = np.empty(_BATCH_IDS, dtype=np.int32)
    starts = np.empty(_BATCH_IDS // 4, dtype=np.int64)
    for block in read_blocks(path, lo, hi, warn=warn):
        pos = 0
        while pos < block.shape[0]:
            pos, n_ids, n_sent = _tok.encode_block(block, pos, *table.kernel_args(), ids, starts)
            if n_sent:
                yield ids[:n_ids], starts[: n_sent + 1]
