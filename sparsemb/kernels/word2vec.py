"""word2vec training kernels: skip-gram and CBOW with negative sampling.

Semantics follow gensim's ``word2vec_inner.pyx`` (itself the C tool's): a per-thread 48-bit linear
congruential generator, frequent words dropped with probability from ``keep``, the window shrunk by a
uniform ``b`` per centre word, negatives drawn from counts**ns_exponent, a precomputed sigmoid table on
[-6, 6] and no update for a score outside it. Negatives come from a Walker alias table (one random
draw, two loads in a table of vocabulary size) instead of gensim's binary search.

Threads (Hogwild): :func:`train_stretch` trains one stretch of sentences with one random state and
releases the GIL, so the trainer runs one call per thread, each on its own stretch, all updating the
shared tables without locks, as the C tool and gensim do. With one thread the result is a pure
function of the inputs, so a seed reproduces a run bit for bit.
"""
from __future__ import annotations

import numpy as np
from .._config import jit
from .optim import adagrad_row_update

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
    scaled = weights * (v / weights.sum())
    prob = np.ones(v)
    alias = np.arange(v).astype(np.int32)
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
def _log_loss(z, logsig):
    """``-log(sigmoid(z))`` from the table; exact enough outside it (0 above, ``-z`` below)."""
    if z >= MAX_EXP:
        return 0.0
    if z <= -MAX_EXP:
        return -np.float64(z)
    return -np.float64(logsig[int((z + MAX_EXP) * _SCALE)])


@jit(inline="always", fastmath=True)
def _output_layer(h, hrow, center, syn1, acc1, neg_prob, neg_alias, negative, alpha, eps, adagrad,
                  sigmoid, logsig, work, state):
    """Score hidden vector ``h[hrow]`` against ``center`` (label 1) and ``negative`` sampled words (label 0).

    Updates each output row in place (SGD, or lazy Adagrad on that row) and leaves in ``work[1]`` the
    step for the input side: ``+alpha * sum(err * syn1[t])`` for SGD, the raw gradient for Adagrad
    (``work[2]`` is scratch). Returns the loss of this example and the generator state.
    """
    dim = syn1.shape[1]
    for d in range(dim):
        work[1, d] = 0.0
    loss = 0.0
    for k in range(negative + 1):
        if k == 0:
            target = np.int64(center)
            label = np.float32(1.0)
        else:
            state, target = _draw(state, neg_prob, neg_alias)
            if target == center:
                continue
            label = np.float32(0.0)
        f = _dot(h, hrow, syn1, target)
        loss += _log_loss(f if k == 0 else -f, logsig)
        # Like gensim: a score this far out gives a vanishing gradient, so the pair is skipped.
        if f <= -MAX_EXP or f >= MAX_EXP:
            continue
        err = label - sigmoid[int((f + MAX_EXP) * _SCALE)]
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
    return loss, state


@jit(inline="always", fastmath=True)
def _input_step(syn0, acc0, row, scale, alpha, eps, adagrad, work):
    """Apply the input-side step ``scale * work[1]`` to row ``row`` of ``syn0`` (SGD add, or Adagrad)."""
    if adagrad:
        for d in range(syn0.shape[1]):
            work[2, d] = work[1, d] * scale
        adagrad_row_update(syn0, acc0, row, work[2], alpha, eps)
    else:
        for d in range(syn0.shape[1]):
            syn0[row, d] += work[1, d] * scale


@jit(inline="always", fastmath=True)
def _sg_center(sent, n, i, b, window, syn0, syn1, acc0, acc1, neg_prob, neg_alias, negative, alpha,
               eps, adagrad, sigmoid, logsig, work, state):
    """Skip-gram around position ``i``: each context word's input vector predicts the centre word."""
    loss = 0.0
    pairs = 0
    one = np.float32(1.0)
    for j in range(max(0, i - window + b), min(n, i + window + 1 - b)):
        if j == i:
            continue
        ctx = sent[j]
        l, state = _output_layer(syn0, ctx, sent[i], syn1, acc1, neg_prob, neg_alias, negative, alpha,
                                 eps, adagrad, sigmoid, logsig, work, state)
        _input_step(syn0, acc0, ctx, one, alpha, eps, adagrad, work)
        loss += l
        pairs += 1
    return loss, pairs, state


@jit(inline="always", fastmath=True)
def _cbow_center(sent, n, i, b, window, cbow_mean, syn0, syn1, acc0, acc1, neg_prob, neg_alias,
                 negative, alpha, eps, adagrad, sigmoid, logsig, work, state):
    """CBOW at position ``i``: the (mean or sum of the) context vectors, in ``work[0]``, predict the centre."""
    lo = max(0, i - window + b)
    hi = min(n, i + window + 1 - b)
    dim = syn0.shape[1]
    for d in range(dim):
        work[0, d] = 0.0
    count = 0
    for j in range(lo, hi):
        if j != i:
            count += 1
            for d in range(dim):
                work[0, d] += syn0[sent[j], d]
    if count == 0:
        return 0.0, 0, state
    inv = np.float32(1.0) / np.float32(count)
    if cbow_mean:
        for d in range(dim):
            work[0, d] *= inv
    loss, state = _output_layer(work, 0, sent[i], syn1, acc1, neg_prob, neg_alias, negative, alpha, eps,
                                adagrad, sigmoid, logsig, work, state)
    # gensim's choice: with a summed context the error is shared out, with a mean it is not.
    scale = np.float32(1.0) if cbow_mean else inv
    for j in range(lo, hi):
        if j != i:
            _input_step(syn0, acc0, sent[j], scale, alpha, eps, adagrad, work)
    return loss, 1, state


@jit(fastmath=True)
def train_stretch(ids, starts, s_lo, s_hi, syn0, syn1, acc0, acc1, keep, neg_prob, neg_alias, sigmoid,
                  logsig, window, negative, sg, cbow_mean, adagrad, alpha0, alpha1, eps, state):
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
    sg, cbow_mean, adagrad : bool
    alpha0, alpha1 : float32
        Learning rate at the start and end of the stretch (linear in between, per sentence).
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
    span = max(starts[s_hi] - first, 1)
    sent = np.empty(10000, dtype=np.int32)
    work = np.empty((3, syn0.shape[1]), dtype=syn0.dtype)
    loss = 0.0
    examples = 0
    words = 0
    for s in range(s_lo, s_hi):
        alpha = alpha0 + (alpha1 - alpha0) * np.float32((starts[s] - first) / span)
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
            state, r = _rand32(state)
            b = r % window
            if sg:
                l, c, state = _sg_center(sent, n, i, b, window, syn0, syn1, acc0, acc1, neg_prob, neg_alias,
                                         negative, alpha, eps, adagrad, sigmoid, logsig, work, state)
            else:
                l, c, state = _cbow_center(sent, n, i, b, window, cbow_mean, syn0, syn1, acc0, acc1, neg_prob,
                                           neg_alias, negative, alpha, eps, adagrad, sigmoid, logsig, work, state)
            loss += l
            examples += c
    return state, loss, examples, words
