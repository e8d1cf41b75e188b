"""word2vec training kernels: skip-gram and CBOW with negative sampling.

Semantics follow gensim's ``word2vec_inner.pyx`` (itself the C tool's): a per-thread 48-bit linear
congruential generator, frequent words dropped with probability from ``keep``, the window shrunk by a
uniform ``b`` per centre word, negatives drawn from counts**ns_exponent, a precomputed sigmoid table on
[-6, 6] and no update for a score outside it. Negatives come from a Walker alias table (one random
draw, two loads in a table of vocabulary size) instead of gensim's binary search. Skip-gram can instead
share one set of noise words among all context words of a centre word (:func:`_sg_center_shared`).

Threads (Hogwild): :func:`train_stretch` trains one stretch of sentences with one random state and
releases the GIL, so the trainer runs one call per thread, each on its own stretch, all updating the
shared tables without locks, as the C tool and gensim do. With one thread the result is a pure
function of the inputs, so a seed reproduces a run bit for bit.
"""
from __future__ import annotations

import numpy as np
from .._config import jit
from .optim import adagrad_row_update
from .prefetch import prefetch_row

MAX_EXP = 6.0
EXP_TABLE_SIZE = 1000
_SCALE = EXP_TABLE_SIZE / MAX_EXP / 2.0

_LCG_MUL = np.uint64(25214903917)
_LCG_ADD = np.uint64(11)
_LCG_MASK = np.uint64((1 << 48) - 1)
_SHIFT16 = np.uint64(16)
_LOW32 = np.int64((1 << 32) - 1)


def sigmoid_tables(dtype=np.float32):
    """Return ``(sigmoid, log_sigmoid)`` sampled like word2vec's ``expTable`` on [-MAX_EXP, MAX_EXP)."""
    x = (np.arange(EXP_TABLE_SIZE) / EXP_TABLE_SIZE * 2.0 - 1.0) * MAX_EXP
    sig = 1.0 / (1.0 + np.exp(-x))
    return sig.astype(dtype), np.log(sig).astype(dtype)


@jit(inline="always")
def _rand32(state):
    """Advance the 48-bit LCG; return the new state and its top 32 bits as an int64."""
    state = (state * _LCG_MUL + _LCG_ADD) & _LCG_MASK
    return state, np.int64(state >> _SHIFT16)


@jit(inline="always")
def _draw(state, neg_prob, neg_alias):
    """One word from the alias table: the high half of ``r * V`` picks a bucket, the low half accepts it."""
    state, r = _rand32(state)
    x = r * neg_alias.shape[0]
    bucket = x >> 32
    if (x & _LOW32) < neg_prob[bucket]:
        return state, bucket
    return state, np.int64(neg_alias[bucket])


@jit()
def draw_negatives(neg_prob, neg_alias, state, n):
    """Draw ``n`` word ids from an alias table with the trainer's generator (for tests and tools).

    Parameters
    ----------
    neg_prob : ndarray of int64, shape (V,)
        Acceptance thresholds in [0, 2**32].
    neg_alias : ndarray of int32, shape (V,)
        Alias of each bucket.
    state : int
        Generator state (48 bits).
    n : int
        Number of draws.

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    out = np.empty(n, dtype=np.int64)
    s = np.uint64(state)
    for i in range(n):
        s, out[i] = _draw(s, neg_prob, neg_alias)
    return out


@jit()
def alias_table(weights):
    """Walker/Vose alias table for sampling index ``i`` with probability ``weights[i] / sum(weights)``.

    Parameters
    ----------
    weights : ndarray of float64, shape (V,)
        Non-negative, with a positive sum.

    Returns
    -------
    neg_prob : ndarray of int64, shape (V,)
        Bucket ``i`` keeps ``i`` when the low 32 random bits are below ``neg_prob[i]``.
    neg_alias : ndarray of int32, shape (V,)
        Otherwise it returns ``neg_alias[i]``.
    """
    v = weights.shape[0]
    # Loops rather than weights.sum(), np.ones and np.arange(...).astype: the same values (a sum in
    # index order), and each of those would compile an implementation of its own on a first run.
    total = 0.0
    for i in range(v):
        total += weights[i]
    factor = v / total
    scaled = np.empty(v)
    prob = np.empty(v)
    alias = np.empty(v, dtype=np.int32)
    for i in range(v):
        scaled[i] = weights[i] * factor
        prob[i] = 1.0
        alias[i] = i
    small = np.empty(v, dtype=np.int64)
    large = np.empty(v, dtype=np.int64)
    ns = 0
    nl = 0
    for i in range(v):
        if scaled[i] < 1.0:
            small[ns] = i
            ns += 1
        else:
            large[nl] = i
            nl += 1
    while ns > 0 and nl > 0:
        ns -= 1
        s = small[ns]
        g = large[nl - 1]
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] = (scaled[g] + scaled[s]) - 1.0
        if scaled[g] < 1.0:
            nl -= 1
            small[ns] = g
            ns += 1
    # Leftovers are 1 up to rounding: they always keep their own index.
    thresholds = np.empty(v, dtype=np.int64)
    for i in range(v):
        thresholds[i] = min(np.int64(prob[i] * 4294967296.0), np.int64(4294967296))
    return thresholds, alias


@jit(inline="always", fastmath=True)
def _dot(a, ra, b, rb):
    """``a[ra] . b[rb]`` in float32."""
    f = np.float32(0.0)
    for d in range(a.shape[1]):
        f += a[ra, d] * b[rb, d]
    return f


@jit(inline="always", fastmath=True)
def _pair(f, label, sigmoid, logsig):
    """Loss ``-log(sigmoid(±f))`` and error ``label - sigmoid(f)`` of score ``f`` against ``label`` (1 or 0).

    One table index serves both: ``log(1 - sigmoid(f)) = log(sigmoid(f)) - f``. Like gensim, a score
    outside the table gives a vanishing gradient, so the error is then 0 (the pair is skipped), and only
    then; the loss there is 0 or ``|f|``, exact enough.
    """
    zero = np.float32(0.0)
    if f >= MAX_EXP:
        return (zero if label > zero else f), zero
    if f <= -MAX_EXP:
        return (-f if label > zero else zero), zero
    idx = int((f + MAX_EXP) * _SCALE)
    return (np.float32(1.0) - label) * f - logsig[idx], label - sigmoid[idx]


@jit(inline="always")
def _draw_targets(center, targets, negative, neg_prob, neg_alias, syn1, state):
    """``targets[0] = center``, then ``negative`` noise words, leaving out any equal to ``center`` (as
    gensim does), each output row asked for as it is drawn. Returns how many targets there are, and
    the generator state."""
    targets[0] = center
    nt = 1
    for k in range(negative):
        state, t = _draw(state, neg_prob, neg_alias)
        if t != center:
            prefetch_row(syn1, t)
            targets[nt] = t
            nt += 1
    return nt, state


@jit(inline="always", fastmath=True)
def _output_layer(h, hrow, targets, nt, syn1, acc1, alpha, eps, adagrad, sigmoid, logsig, work):
    """Score hidden vector ``h[hrow]`` against ``targets[0]`` (label 1) and ``targets[1:nt]`` (label 0).

    Updates each output row in place (SGD, or lazy Adagrad on that row) and leaves in ``work[1]`` the
    step for the input side: ``+alpha * sum(err * syn1[t])`` for SGD, the raw gradient for Adagrad
    (``work[2]`` is scratch). Returns the loss of this example.
    """
    dim = syn1.shape[1]
    for d in range(dim):
        work[1, d] = 0.0
    loss = 0.0
    for k in range(nt):
        target = targets[k]
        l, err = _pair(_dot(h, hrow, syn1, target), np.float32(k == 0), sigmoid, logsig)
        loss += l
        if err == 0.0:
            continue
        if adagrad:
            for d in range(dim):
                work[1, d] -= err * syn1[target, d]
                work[2, d] = -err * h[hrow, d]
            adagrad_row_update(syn1, acc1, target, work[2], alpha, eps)
        else:
            g = err * alpha
            for d in range(dim):
                work[1, d] += g * syn1[target, d]
                syn1[target, d] += g * h[hrow, d]
    return loss


@jit(inline="always", fastmath=True)
def _apply_step(table, acc, row, step, srow, scale, alpha, eps, adagrad, scratch):
    """Apply ``scale * step[srow]`` to ``table[row]``: an SGD step (``alpha`` already in it) added, or,
    for Adagrad, a raw gradient given to :func:`adagrad_row_update` (``scratch`` is a dim-long buffer)."""
    if adagrad:
        for d in range(table.shape[1]):
            scratch[d] = step[srow, d] * scale
        adagrad_row_update(table, acc, row, scratch, alpha, eps)
    else:
        for d in range(table.shape[1]):
            table[row, d] += step[srow, d] * scale


@jit(inline="always", fastmath=True)
def _sg_center(sent, n, i, b, window, syn0, syn1, acc0, acc1, neg_prob, neg_alias, negative, alpha,
               eps, adagrad, sigmoid, logsig, work, rows, state):
    """Skip-gram around position ``i``: each context word's input vector predicts the centre word
    against its own noise words (in ``rows[1]``)."""
    loss = 0.0
    pairs = 0
    one = np.float32(1.0)
    for j in range(max(0, i - window + b), min(n, i + window + 1 - b)):
        if j == i:
            continue
        ctx = sent[j]
        nt, state = _draw_targets(sent[i], rows[1], negative, neg_prob, neg_alias, syn1, state)
        loss += _output_layer(syn0, ctx, rows[1], nt, syn1, acc1, alpha, eps, adagrad, sigmoid, logsig, work)
        _apply_step(syn0, acc0, ctx, work, 1, one, alpha, eps, adagrad, work[2])
        pairs += 1
    return loss, pairs, state


@jit(inline="always", fastmath=True)
def _mix(out, orow, weights, table, ids, n):
    """``out[orow] = sum(weights[m] * table[ids[m]] for m < n)``, ``n >= 1``.

    Rows are taken four at a time so that ``out[orow]`` is loaded and stored a quarter as often (LLVM
    cannot keep it in registers: it may alias ``table``).
    """
    dim = table.shape[1]
    g = weights[0]
    r = ids[0]
    for d in range(dim):
        out[orow, d] = g * table[r, d]
    m = 1
    while m + 3 < n:
        g0, g1, g2, g3 = weights[m], weights[m + 1], weights[m + 2], weights[m + 3]
        r0, r1, r2, r3 = ids[m], ids[m + 1], ids[m + 2], ids[m + 3]
        for d in range(dim):
            out[orow, d] += (g0 * table[r0, d] + g1 * table[r1, d]) + (g2 * table[r2, d] + g3 * table[r3, d])
        m += 4
    while m < n:
        g = weights[m]
        r = ids[m]
        for d in range(dim):
            out[orow, d] += g * table[r, d]
        m += 1


@jit(inline="always", fastmath=True)
def _sg_center_shared(sent, n, i, b, window, syn0, syn1, acc0, acc1, neg_prob, neg_alias, negative, alpha,
                      eps, adagrad, sigmoid, logsig, work, steps, rows, coef, state):
    """Skip-gram around position ``i`` with one set of noise words shared by all its context words.

    Ji et al. (2016): the input vectors of the ``nc`` context words (ids in ``rows[0]``) and the output
    vectors of the centre word and the noise words (ids in ``rows[1]``) are two small blocks; all scores
    come from the vectors as they were before this centre word, and the updates are two small matrix
    products: ``syn0 block += coef @ syn1 block`` and ``syn1 block += coef.T @ syn0 block``, with
    ``coef`` the errors times ``alpha`` for SGD (minus the errors, a gradient, for Adagrad). ``steps``
    holds the context rows' steps, ``work[1]`` an output row's, ``work[2]`` is scratch.
    """
    center = sent[i]
    nc = 0
    for j in range(max(0, i - window + b), min(n, i + window + 1 - b)):
        if j != i:
            rows[0, nc] = sent[j]
            nc += 1
    if nc == 0:
        return 0.0, 0, state
    nt, state = _draw_targets(center, rows[1], negative, neg_prob, neg_alias, syn1, state)
    loss = 0.0
    for c in range(nc):
        for k in range(nt):
            l, err = _pair(_dot(syn0, rows[0, c], syn1, rows[1, k]), np.float32(k == 0), sigmoid, logsig)
            loss += l
            coef[c, k] = -err if adagrad else err * alpha
    for c in range(nc):
        _mix(steps, c, coef[c], syn1, rows[1], nt)
    one = np.float32(1.0)
    for k in range(nt):
        _mix(work, 1, coef[:, k], syn0, rows[0], nc)
        _apply_step(syn1, acc1, rows[1, k], work, 1, one, alpha, eps, adagrad, work[2])
    for c in range(nc):
        _apply_step(syn0, acc0, rows[0, c], steps, c, one, alpha, eps, adagrad, work[2])
    return loss, nc, state


@jit(inline="always", fastmath=True)
def _cbow_center(sent, n, i, b, window, cbow_mean, syn0, syn1, acc0, acc1, neg_prob, neg_alias,
                 negative, alpha, eps, adagrad, sigmoid, logsig, work, rows, unit, state):
    """CBOW at position ``i``: the (mean or sum of the) context vectors, in ``work[0]``, predict the centre.

    The context ids go to ``rows[0]``; ``unit`` is all ones (the weights of the sum).
    """
    count = 0
    for j in range(max(0, i - window + b), min(n, i + window + 1 - b)):
        if j != i:
            rows[0, count] = sent[j]
            count += 1
    if count == 0:
        return 0.0, 0, state
    # The noise words are drawn first so that their rows can be on their way while the context is summed.
    nt, state = _draw_targets(sent[i], rows[1], negative, neg_prob, neg_alias, syn1, state)
    _mix(work, 0, unit, syn0, rows[0], count)
    inv = np.float32(1.0) / np.float32(count)
    if cbow_mean:
        for d in range(syn0.shape[1]):
            work[0, d] *= inv
    loss = _output_layer(work, 0, rows[1], nt, syn1, acc1, alpha, eps, adagrad, sigmoid, logsig, work)
    # gensim's choice: with a summed context the error is shared out, with a mean it is not.
    scale = np.float32(1.0) if cbow_mean else inv
    for c in range(count):
        _apply_step(syn0, acc0, rows[0, c], work, 1, scale, alpha, eps, adagrad, work[2])
    return loss, 1, state


@jit(fastmath=True)
def train_stretch(ids, starts, s_lo, s_hi, syn0, syn1, acc0, acc1, keep, neg_prob, neg_alias, sigmoid,
                  logsig, window, negative, sg, shared, cbow_mean, adagrad, alpha0, alpha1, done, total, eps,
                  state):
    """Train on sentences ``s_lo:s_hi`` of an encoded corpus (one thread's stretch; releases the GIL).

    Parameters
    ----------
    ids : ndarray of int32, shape (n_tokens,)
        Word ids, sentences concatenated.
    starts : ndarray of int64, shape (n_sentences + 1,)
        Sentence ``s`` is ``ids[starts[s]:starts[s+1]]``; at most 10000 tokens.
    s_lo, s_hi : int
        The sentences to train on.
    syn0, syn1 : ndarray of float32, shape (V, dim)
        Input and output tables, updated in place (Hogwild when several threads run at once).
    acc0, acc1 : ndarray, shape (V, dim) or (0, dim)
        Adagrad accumulators (used only when ``adagrad``).
    keep : ndarray of int64, shape (V,)
        Subsampling: a token is kept when 32 random bits are ``<= keep[id]``.
    neg_prob, neg_alias : ndarrays, shape (V,)
        Alias table of the noise distribution (:func:`alias_table`).
    sigmoid, logsig : ndarray of float32, shape (EXP_TABLE_SIZE,)
        From :func:`sigmoid_tables`.
    window, negative : int
    sg, shared, cbow_mean, adagrad : bool
        ``shared``: skip-gram draws one set of noise words per centre word, shared by its context words
        (:func:`_sg_center_shared`); ignored by CBOW.
    alpha0, alpha1 : float32
        Learning rate at the start and the end of the thread's stretch (linear in between, per sentence).
    done, total : int
        Tokens of the stretch before ``ids[starts[s_lo]]``, and in the whole stretch: sentence ``s`` is
        trained with the rate at ``(done + starts[s] - starts[s_lo]) / total``, so how a stretch is cut
        into calls does not change the result.
    eps : float32
        Adagrad's epsilon.
    state : uint64
        The thread's generator state (48 bits).

    Returns
    -------
    state : uint64
        The advanced generator state.
    loss : float
        Sum of the examples' losses, in float64.
    examples : int
        Predicted examples (skip-gram pairs, CBOW centre words).
    words : int
        Tokens kept by subsampling.
    """
    first = starts[s_lo]
    sent = np.empty(10000, dtype=np.int32)
    work = np.empty((3, syn0.shape[1]), dtype=syn0.dtype)
    steps = np.empty((2 * window, syn0.shape[1]), dtype=syn0.dtype)
    rows = np.empty((2, max(2 * window, negative + 1)), dtype=np.int64)
    coef = np.empty((2 * window, negative + 1), dtype=syn0.dtype)
    unit = np.ones(2 * window, dtype=syn0.dtype)
    loss = 0.0
    examples = 0
    words = 0
    for s in range(s_lo, s_hi):
        alpha = alpha0 + (alpha1 - alpha0) * np.float32(min((done + starts[s] - first) / max(total, 1), 1.0))
        n = 0
        for k in range(starts[s], starts[s + 1]):
            w = ids[k]
            state, r = _rand32(state)
            # Like gensim, words past the buffer are dropped (the corpus reader never makes them).
            if r <= keep[w] and n < sent.shape[0]:
                sent[n] = w
                n += 1
        words += n
        for i in range(n):
            # The rows that join the work a few centre words from now: the word entering the window
            # (an input row) and that centre word itself (an output row).
            if i + window + 2 < n:
                prefetch_row(syn0, sent[i + window + 2])
                prefetch_row(syn1, sent[i + 2])
            state, r = _rand32(state)
            b = r % window
            if sg and shared:
                l, c, state = _sg_center_shared(sent, n, i, b, window, syn0, syn1, acc0, acc1, neg_prob,
                                                neg_alias, negative, alpha, eps, adagrad, sigmoid, logsig, work,
                                                steps, rows, coef, state)
            elif sg:
                l, c, state = _sg_center(sent, n, i, b, window, syn0, syn1, acc0, acc1, neg_prob, neg_alias,
                                         negative, alpha, eps, adagrad, sigmoid, logsig, work, rows, state)
            else:
                l, c, state = _cbow_center(sent, n, i, b, window, cbow_mean, syn0, syn1, acc0, acc1, neg_prob,
                                           neg_alias, negative, alpha, eps, adagrad, sigmoid, logsig, work, rows, unit,
                                           state)
            loss += l
            examples += c
    return state, loss, examples, words


# -- corpus files: tokens to ids without Python strings --------------------------------------------
#
# Words are kept as UTF-8 bytes in an open-addressing hash table: ``slots`` (a power of two, -1 when
# empty) holds word ids and hash tags (:func:`_slot`); word ``w`` is ``arena[word_off[w]:word_off[w + 1]]``.
# Tokens are what ``str.split()`` gives on the decoded text (Unicode whitespace included); lines end at
# ``\n`` only, and a line of more than MAX_SENTENCE tokens makes several sentences, as gensim's
# LineSentence does. Callers pass valid UTF-8 (invalid bytes already replaced).

MAX_SENTENCE = 10000

_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)
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


@jit(inline="always")
def _wide_space(data, i):
    """Byte length of the multi-byte whitespace character at ``data[i]`` (0 if it is not one)."""
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
def _space(data, i):
    """Byte length of the whitespace character (not newline) at ``data[i]``; 0 if none."""
    k = _CLASS[data[i]]
    if k == 0 or k == 2:
        return 0
    return 1 if k == 1 else _wide_space(data, i)


@jit(inline="always")
def _token_end(data, i):
    """End of the token starting at ``data[i]`` and its FNV-1a hash."""
    h = _FNV_OFFSET
    end = data.shape[0]
    while i < end:
        k = _CLASS[data[i]]
        if k != 0 and (k != 3 or _wide_space(data, i) > 0):
            break
        h = (h ^ np.uint64(data[i])) * _FNV_PRIME
        i += 1
    return i, h


@jit(inline="always")
def _slot(data, lo, hi, h, slots, word_off, arena):
    """Slot of the word ``data[lo:hi]`` (hash ``h``): where it is, or the empty slot where it would go.

    A slot holds ``(high 31 bits of the hash) << 32 | word id`` (never negative, -1 is empty), so most
    mismatches are rejected without touching the word's bytes.
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
            if word_off[w + 1] - a == hi - lo:
                same = True
                for k in range(hi - lo):
                    if arena[a + k] != data[lo + k]:
                        same = False
                        break
                if same:
                    return s
        s = (s + 1) & mask


@jit(inline="always")
def _hash(data, lo, hi):
    """FNV-1a hash of the word ``data[lo:hi]`` (as :func:`_token_end` computes it while scanning)."""
    h = _FNV_OFFSET
    for k in range(lo, hi):
        h = (h ^ np.uint64(data[k])) * _FNV_PRIME
    return h


@jit(inline="always")
def _slot_value(h, w):
    return (np.int64(h >> _SHIFT33) << 32) | w


@jit()
def insert_words(arena, word_off, n_words, slots):
    """Put words ``0..n_words-1`` (``arena[word_off[w]:word_off[w + 1]]``, distinct) in empty ``slots``.

    Also the way a table is rehashed into a bigger ``slots``.
    """
    for w in range(n_words):
        lo = word_off[w]
        hi = word_off[w + 1]
        h = _hash(arena, lo, hi)
        slots[_slot(arena, lo, hi, h, slots, word_off, arena)] = _slot_value(h, w)


@jit(inline="always")
def _add_word(data, lo, hi, h, slot, n_words, slots, word_off, arena, counts):
    """Put the new word ``data[lo:hi]`` (hash ``h``, empty ``slot``) in the table as id ``n_words`` with
    count 0; return its id, or -1 if the table is full."""
    used = word_off[n_words]
    if n_words + 1 >= counts.shape[0] or 2 * (n_words + 1) > slots.shape[0] or used + (hi - lo) > arena.shape[0]:
        return -1
    # A loop, not ``arena[used:used + n] = data[lo:hi]``: the slice assignment's shape check drags in
    # Numba's error-message formatting, 1.8 s of a first run's compiling.
    for k in range(hi - lo):
        arena[used + k] = data[lo + k]
    word_off[n_words + 1] = used + (hi - lo)
    counts[n_words] = 0
    slots[slot] = _slot_value(h, n_words)
    return n_words


@jit()
def merge_counts(src_arena, src_off, src_counts, state, slots, word_off, arena, counts):
    """Add the words ``state[0]:`` of another table, with their counts, to this one (new words in the
    other table's order). ``state`` (int64, updated) is [next word of the other table, words here].

    Returns 0 when done, or 1 when this table is full: grow it and call again.
    """
    n_words = state[1]
    for w2 in range(state[0], src_counts.shape[0]):
        lo = src_off[w2]
        hi = src_off[w2 + 1]
        h = _hash(src_arena, lo, hi)
        slot = _slot(src_arena, lo, hi, h, slots, word_off, arena)
        if slots[slot] >= 0:
            w = slots[slot] & _LOW32
        else:
            w = _add_word(src_arena, lo, hi, h, slot, n_words, slots, word_off, arena, counts)
            if w < 0:
                state[0], state[1] = w2, n_words
                return 1
            n_words += 1
        counts[w] += src_counts[w2]
    state[0], state[1] = src_counts.shape[0], n_words
    return 0


@jit()
def count_block(data, state, slots, word_off, arena, counts):
    """Count the words of ``data[state[0]:]``, adding new words to the table.

    ``state`` (int64, updated) is [position, words, tokens, sentences, tokens so far in the line].
    Returns 0 when the block is done, or 1 when the table, word arrays or arena are full: grow them and
    call again (``state[0]`` is where to resume).
    """
    i, n_words, n_tok, n_sent, line_tok = state[0], state[1], state[2], state[3], state[4]
    end = data.shape[0]
    status = 0
    while i < end:
        if data[i] == 10:
            line_tok = 0
            i += 1
            continue
        s = _space(data, i)
        if s > 0:
            i += s
            continue
        j, h = _token_end(data, i)
        slot = _slot(data, i, j, h, slots, word_off, arena)
        if slots[slot] >= 0:
            w = slots[slot] & _LOW32
        else:
            w = _add_word(data, i, j, h, slot, n_words, slots, word_off, arena, counts)
            if w < 0:
                status = 1
                break
            n_words += 1
        counts[w] += 1
        if line_tok % MAX_SENTENCE == 0:
            n_sent += 1
        line_tok += 1
        n_tok += 1
        i = j
    state[0], state[1], state[2], state[3], state[4] = i, n_words, n_tok, n_sent, line_tok
    return status


@jit()
def encode_block(data, pos, slots, word_off, arena, ids, starts):
    """Sentences of ``data[pos:]`` as ids of the words in the table (other words are left out).

    Stops early, at a sentence boundary, when ``ids`` (at least MAX_SENTENCE long) or ``starts`` could
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
    i = pos
    end = data.shape[0]
    n = 0
    n_sent = 0
    line_tok = 0
    while i < end:
        if data[i] == 10:
            line_tok = 0
            i += 1
            continue
        s = _space(data, i)
        if s > 0:
            i += s
            continue
        if line_tok % MAX_SENTENCE == 0:
            if n + MAX_SENTENCE > ids.shape[0] or n_sent + 2 > starts.shape[0]:
                break
            starts[n_sent] = n
            n_sent += 1
        j, h = _token_end(data, i)
        v = slots[_slot(data, i, j, h, slots, word_off, arena)]
        if v >= 0:
            ids[n] = v & _LOW32
            n += 1
        line_tok += 1
        i = j
    starts[n_sent] = n
    return i, n, n_sent
