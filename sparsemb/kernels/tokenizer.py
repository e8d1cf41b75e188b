"""Corpus files to word ids without Python strings: the compiled tokenizer and word table.

Words are kept as UTF-8 bytes in an open-addressing hash table: ``slots`` (a power of two, -1 when
empty) holds word ids and hash tags (:func:`_slot`); word ``w`` is ``arena[word_off[w]:word_off[w + 1]]``
and ``heads[w]`` its first eight bytes (:func:`_head`), so that most lookups compare one integer, not bytes.
Tokens are what ``str.split()`` gives on the decoded text (Unicode whitespace included); lines end at
``\n`` only, and a line of more than MAX_SENTENCE_LENGTH tokens makes several sentences, as gensim's
LineSentence does. Callers pass valid UTF-8 (invalid bytes already replaced).
"""
from __future__ import annotations

import numpy as np

from .._config import jit
from .._limits import MAX_SENTENCE_LENGTH
from .borrow import borrowed

#: Slots of the resumable ``state`` arrays (int64) of :func:`count_block` and :func:`merge_counts`: where
#: to resume (a byte of the block, a word of the other table), words in the table, and, counting, tokens,
#: sentences and tokens so far in the current line.
POS, N_WORDS, N_TOKENS, N_SENTENCES, LINE_TOKENS = 0, 1, 2, 3, 4
COUNT_STATE, MERGE_STATE = 5, 2  # their lengths

_LOW32 = np.int64((1 << 32) - 1)
#: Odd 64-bit multiplier of the hash (2**64 / golden ratio), and its shifts.
_MIX = np.uint64(0x9E3779B97F4A7C15)
_BYTE = np.uint64(8)
_FOLD = np.uint64(29)
_SHIFT33 = np.uint64(33)
_HIGH32 = np.int64(0x7FFFFFFF00000000)


@jit()
def first_invalid_utf8(data):
    """Offset of the first byte of the first ill-formed sequence in ``data`` (uint8), or -1.

    The same offset as ``UnicodeDecodeError.start`` from ``bytes.decode("utf-8")`` (overlong forms,
    surrogates, code points above U+10FFFF and cut-off sequences are ill-formed), without building
    the decoded string.
    """
    n = data.shape[0]
    i = 0
    while i < n:
        c = data[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            size, lo, hi = 2, 0x80, 0xBF
        elif 0xE0 <= c <= 0xEF:
            size = 3
            lo = 0xA0 if c == 0xE0 else 0x80
            hi = 0x9F if c == 0xED else 0xBF
        elif 0xF0 <= c <= 0xF4:
            size = 4
            lo = 0x90 if c == 0xF0 else 0x80
            hi = 0x8F if c == 0xF4 else 0xBF
        else:
            return i
        if i + 1 >= n or not lo <= data[i + 1] <= hi:  # the second byte has the narrow range
            return i
        for k in range(i + 2, i + size):
            if k >= n or not 0x80 <= data[k] <= 0xBF:
                return i
        i += size
    return -1


#: Byte classes for the tokenizer: 0 part of a token, 1 ASCII whitespace, 2 newline, 3 first byte of a
#: multi-byte character that may be whitespace.
_CLASS = np.zeros(256, dtype=np.uint8)
_CLASS[[9, 11, 12, 13, 28, 29, 30, 31, 32]] = 1
_CLASS[10] = 2
_CLASS[[0xC2, 0xE1, 0xE2, 0xE3]] = 3


@jit()
def _wide_space(data, i):
    """Byte length of the multi-byte whitespace character at ``data[i]`` (0 if it is not one).

    Compiled once and called, not inlined: it runs only at a byte that may start such a character
    (none in ASCII text; 2-5% of the time of text with a typographic quote every third word), and
    inlined at its four call sites it was 0.8 s of a first run's compiling."""
    c = data[i]
    end = data.shape[0]
    if c == 0xC2:  # U+0085, U+00A0
        return 2 if i + 1 < end and (data[i + 1] == 0x85 or data[i + 1] == 0xA0) else 0
    if i + 2 >= end:
        return 0
    c1 = data[i + 1]
    c2 = data[i + 2]
    if c == 0xE1:  # U+1680
        return 3 if c1 == 0x9A and c2 == 0x80 else 0
    if c == 0xE2:  # U+2000..U+200A, U+2028, U+2029, U+202F, U+205F
        if c1 == 0x80 and (c2 <= 0x8A or c2 == 0xA8 or c2 == 0xA9 or c2 == 0xAF):
            return 3
        return 3 if c1 == 0x81 and c2 == 0x9F else 0
    return 3 if c1 == 0x80 and c2 == 0x80 else 0  # U+3000 (c is 0xE3)


@jit(inline="always")
def _finish(h, x, m):
    """The hash of a word from its whole 8-byte groups folded into ``h`` and the ``m`` bytes left in ``x``."""
    h = (h ^ x ^ np.uint64(m)) * _MIX
    return h ^ (h >> _FOLD)  # the product's high bits into the low ones, which pick the slot


@jit(inline="always")
def _token_end(data, i):
    """End of the token starting at ``data[i]``, its hash (:func:`_hash`) and its head (:func:`_head`).

    Bytes are packed eight to a 64-bit word and each word folded in with one multiplication: a byte at a
    time (FNV-1a) the multiplications were a chain as long as the token, and counting twice as slow.
    """
    end = data.shape[0]
    h = np.uint64(0)
    x = np.uint64(0)
    head = np.uint64(0)
    m = 0
    groups = 0  # a count, not a flag: with a bool here the compiled loop ran 2.5 times slower
    while i < end:
        b = data[i]
        k = _CLASS[b]
        if k != 0 and (k != 3 or _wide_space(data, i) > 0):
            break
        x = (x << _BYTE) | np.uint64(b)
        m += 1
        if m == 8:
            if groups == 0:
                head = x
            groups += 1
            h = (h ^ x) * _MIX
            x = np.uint64(0)
            m = 0
        i += 1
    if groups == 0:
        head = x
    return i, _finish(h, x, m), head


@jit(inline="always")
def _hash(data, lo, hi):
    """The hash of the word ``data[lo:hi]``, as :func:`_token_end` computes it while scanning."""
    h = x = np.uint64(0)
    m = 0
    for k in range(lo, hi):
        x = (x << _BYTE) | np.uint64(data[k])
        m += 1
        if m == 8:
            h = (h ^ x) * _MIX
            x = np.uint64(0)
            m = 0
    return _finish(h, x, m)


@jit(inline="always")
def _head(data, lo, hi):
    """The first (up to) eight bytes of the word ``data[lo:hi]`` packed in a uint64, first byte highest:
    two words of the same length are equal if their heads are and so are their bytes from the ninth on."""
    x = np.uint64(0)
    end = lo + 8 if lo + 8 < hi else hi  # not min(): it would compile an implementation of its own
    for k in range(lo, end):
        x = (x << _BYTE) | np.uint64(data[k])
    return x


@jit(inline="always")
def _slot(data, lo, hi, h, head, slots, word_off, arena, heads):
    """Slot of the word ``data[lo:hi]`` (hash ``h``, head ``head``): where it is, or the empty slot where
    it would go.

    A slot holds ``(high 31 bits of the hash) << 32 | word id`` (never negative, -1 is empty), so most
    mismatches are rejected without touching the word; a match is confirmed by the length and the head,
    and only a word longer than eight bytes has bytes left to compare.
    """
    mask = slots.shape[0] - 1
    tag = np.int64(h >> _SHIFT33) << 32
    s = np.int64(h & np.uint64(mask))
    while True:
        v = slots[s]
        if v < 0:
            return s
        if (v & _HIGH32) == tag:
            w = v & _LOW32
            a = word_off[w]
            if word_off[w + 1] - a == hi - lo and heads[w] == head:
                same = True
                for k in range(8, hi - lo):
                    if arena[a + k] != data[lo + k]:
                        same = False
                        break
                if same:
                    return s
        s = (s + 1) & mask


@jit(inline="always")
def _slot_value(h, w):
    return (np.int64(h >> _SHIFT33) << 32) | w


@jit()
def insert_words(arena, word_off, n_words, slots, heads):
    """Put words ``0..n_words-1`` (``arena[word_off[w]:word_off[w + 1]]``, distinct) in empty ``slots``,
    and their heads in ``heads``.

    Also the way a table is rehashed into a bigger ``slots``.
    """
    for w in range(n_words):
        lo = word_off[w]
        hi = word_off[w + 1]
        h = _hash(arena, lo, hi)
        head = _head(arena, lo, hi)
        heads[w] = head
        slots[_slot(arena, lo, hi, h, head, slots, word_off, arena, heads)] = _slot_value(h, w)


@jit(inline="always")
def _add_word(data, lo, hi, h, head, slot, n_words, slots, word_off, arena, heads, counts):
    """Put the new word ``data[lo:hi]`` (hash ``h``, head ``head``, empty ``slot``) in the table as id
    ``n_words`` with count 0; return its id, or -1 if the table is full."""
    used = word_off[n_words]
    if n_words + 1 >= counts.shape[0] or 2 * (n_words + 1) > slots.shape[0] or used + (hi - lo) > arena.shape[0]:
        return -1
    # A loop, not ``arena[used:used + n] = data[lo:hi]``: the slice assignment's shape check drags in
    # Numba's error-message formatting, 1.8 s of a first run's compiling.
    for k in range(hi - lo):
        arena[used + k] = data[lo + k]
    word_off[n_words + 1] = used + (hi - lo)
    heads[n_words] = head
    counts[n_words] = 0
    slots[slot] = _slot_value(h, n_words)
    return n_words


@jit()
def merge_counts(src_arena, src_off, src_counts, state, slots, word_off, arena, heads, counts):
    """Add the words ``state[POS]:`` of another table, with their counts, to this one (new words in the
    other table's order). ``state`` (int64, MERGE_STATE long, updated) holds the next word of the other
    table at POS and this table's words at N_WORDS.

    Returns 0 when done, or 1 when this table is full: grow it and call again.
    """
    n_words = state[N_WORDS]
    for w2 in range(state[POS], src_counts.shape[0]):
        lo = src_off[w2]
        hi = src_off[w2 + 1]
        h = _hash(src_arena, lo, hi)
        head = _head(src_arena, lo, hi)
        slot = _slot(src_arena, lo, hi, h, head, slots, word_off, arena, heads)
        if slots[slot] >= 0:
            w = slots[slot] & _LOW32
        else:
            w = _add_word(src_arena, lo, hi, h, head, slot, n_words, slots, word_off, arena, heads, counts)
            if w < 0:
                state[POS], state[N_WORDS] = w2, n_words
                return 1
            n_words += 1
        counts[w] += src_counts[w2]
    state[POS], state[N_WORDS] = src_counts.shape[0], n_words
    return 0


@jit()
def count_block(data, state, slots, word_off, arena, heads, counts):
    """Count the words of ``data[state[POS]:]``, adding new words to the table.

    ``state`` (int64, COUNT_STATE long, updated): the slots POS, N_WORDS, N_TOKENS, N_SENTENCES,
    LINE_TOKENS. Returns 0 when the block is done, or 1 when the table, word arrays or arena are full:
    grow them and call again (``state[POS]`` is where to resume).
    """
    data = borrowed(data)  # handed to _wide_space, a call, at each byte that may start a wide space
    i, n_words, n_tok = state[POS], state[N_WORDS], state[N_TOKENS]
    n_sent, line_tok = state[N_SENTENCES], state[LINE_TOKENS]
    end = data.shape[0]
    status = 0
    while i < end:
        # One look at the byte's class (not a test for newline, then one for space): 40% faster compiled.
        k = _CLASS[data[i]]
        if k != 0:
            if k == 2:
                line_tok = 0
                i += 1
                continue
            s = 1 if k == 1 else _wide_space(data, i)
            if s > 0:
                i += s
                continue
        j, h, head = _token_end(data, i)
        slot = _slot(data, i, j, h, head, slots, word_off, arena, heads)
        if slots[slot] >= 0:
            w = slots[slot] & _LOW32
        else:
            w = _add_word(data, i, j, h, head, slot, n_words, slots, word_off, arena, heads, counts)
            if w < 0:
                status = 1
                break
            n_words += 1
        counts[w] += 1
        if line_tok % MAX_SENTENCE_LENGTH == 0:
            n_sent += 1
        line_tok += 1
        n_tok += 1
        i = j
    state[POS], state[N_WORDS], state[N_TOKENS] = i, n_words, n_tok
    state[N_SENTENCES], state[LINE_TOKENS] = n_sent, line_tok
    return status


@jit()
def encode_block(data, pos, slots, word_off, arena, heads, ids, starts):
    """Sentences of ``data[pos:]`` as ids of the words in the table (other words are left out).

    Stops early, at a sentence boundary, when ``ids`` (at least MAX_SENTENCE_LENGTH long) or ``starts`` could
    overflow; call again from the returned position.

    Returns
    -------
    pos : int
        Where the next call starts (``data.shape[0]`` when done).
    n_ids : int
        ``ids[:n_ids]`` are the ids.
    n_sent : int
        Sentence ``s`` is ``ids[starts[s]:starts[s + 1]]``.
    """
    data = borrowed(data)  # as in count_block
    i = pos
    end = data.shape[0]
    n = 0
    n_sent = 0
    line_tok = 0
    while i < end:
        k = _CLASS[data[i]]  # as in count_block
        if k != 0:
            if k == 2:
                line_tok = 0
                i += 1
                continue
            s = 1 if k == 1 else _wide_space(data, i)
            if s > 0:
                i += s
                continue
        if line_tok % MAX_SENTENCE_LENGTH == 0:
            if n + MAX_SENTENCE_LENGTH > ids.shape[0] or n_sent + 2 > starts.shape[0]:
                break
            starts[n_sent] = n
            n_sent += 1
        j, h, head = _token_end(data, i)
        v = slots[_slot(data, i, j, h, head, slots, word_off, arena, heads)]
        if v >= 0:
            ids[n] = v & _LOW32
            n += 1
        line_tok += 1
        i = j
    starts[n_sent] = n
    return i, n, n_sent
