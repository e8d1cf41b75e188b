"""word2vec training kernels: skip-gram and CBOW with negative sampling and/or hierarchical softmax.

Semantics follow gensim's ``word2vec_inner.pyx`` (itself the C tool's): a per-thread 48-bit linear
congruential generator, frequent words dropped with probability from ``keep``, the window shrunk by a
uniform ``b`` per centre word, negatives drawn from counts**ns_exponent, a precomputed sigmoid table on
[-6, 6] and no update for a score outside it, hierarchical softmax along gensim's Huffman tree
(:mod:`sparsemb.kernels.huffman`). Negatives come from a Walker alias table (one random
draw, two loads in a table of vocabulary size) instead of gensim's binary search. Skip-gram can instead
share one set of noise words among all context words of a centre word (:func:`_sg_center_shared`).

Threads (Hogwild): :func:`train_stretch` trains one stretch of sentences with one random state and
releases the GIL, so the trainer runs one call per thread, each on its own stretch, all updating the
shared tables without locks, as the C tool and gensim do. With one thread the result is a pure
function of the inputs, so a seed reproduces a run bit for bit.

Rows both threads write cost more than rows one thread writes: each write takes the row's cache lines
from the other core. The most written rows are the most frequent words' (ids sorted by frequency
come first), so with ``Config.private`` each call keeps a private copy of the first ``private`` rows
of ``syn0`` and ``syn1neg``, trains on it, and merges it into the shared tables every
:data:`MERGE_WORDS` centre words (:func:`_merge`): Hogwild still, with its writes to the hottest rows
batched.
"""
from __future__ import annotations

import functools
import inspect
from typing import NamedTuple

import numpy as np
from numba import types
from numba.core import config
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, overload

from .._config import jit
from .._limits import MAX_SENTENCE_LENGTH
from .borrow import borrowed
from .embedding import aligned_empty
from .optim import adagrad_row_update
from .prefetch import prefetch_row

MAX_EXP = 6.0
EXP_TABLE_SIZE = 1000
#: Table index per unit of score. word2vec C and gensim compute EXP_TABLE_SIZE / MAX_EXP / 2 in integer
#: arithmetic (83, not 83.3): the same index, so the same sigmoid, as theirs.
TABLE_SCALE = EXP_TABLE_SIZE // int(MAX_EXP) // 2
#: Centre words a call trains between two merges of its private rows into the shared tables.
MERGE_WORDS = 2000

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
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    v = weights.shape[0]
    # Allocated here, not in the kernel: each np.empty of another dtype would compile an
    # implementation of its own on a first run.
    thresholds, alias = np.empty(v, dtype=np.int64), np.empty(v, dtype=np.int32)
    _alias_table(weights, np.empty((2, v)), np.empty((2, v), dtype=np.int64), thresholds, alias)
    return thresholds, alias


@jit()
def _alias_table(weights, scratch, stacks, thresholds, alias):
    """:func:`alias_table` into ``thresholds`` and ``alias``; ``scratch`` (float64) and ``stacks``
    (int64), shape (2, V), are work space."""
    v = weights.shape[0]
    # Loops rather than weights.sum(), np.ones and np.arange(...).astype: the same values (a sum in
    # index order), and each of those would compile an implementation of its own on a first run.
    total = 0.0
    for i in range(v):
        total += weights[i]
    factor = v / total
    scaled, prob = scratch[0], scratch[1]
    for i in range(v):
        scaled[i] = weights[i] * factor
        prob[i] = 1.0
        alias[i] = i
    small, large = stacks[0], stacks[1]
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
    # Leftovers are 1 up to rounding: they always keep their own index. (A test, not min(): min would
    # compile an implementation of its own.)
    one = np.int64(4294967296)
    for i in range(v):
        t = np.int64(prob[i] * 4294967296.0)
        thresholds[i] = t if t < one else one


class Tables(NamedTuple):
    """The model's tables, updated in place (Hogwild when several threads train at once).

    Attributes
    ----------
    syn0 : ndarray of float32, shape (V, dim)
        Input vectors.
    syn1neg : ndarray of float32, shape (V, dim), or (0, dim) without negative sampling
        Output vectors of negative sampling.
    syn1 : ndarray of float32, shape (V, dim), or (0, dim) without hierarchical softmax
        Output vectors of the tree's inner nodes.
    acc0, acc1 : ndarray of float32, shape (V, dim), or (0, dim) without Adagrad
        Adagrad accumulators of ``syn0`` and ``syn1neg``.
    lockf : ndarray of float32, shape (V,) or (1,)
        gensim's ``vectors_lockf``: each step to an input vector is scaled by its row's factor (0 locks
        the row); one value stands for every row.
    """

    syn0: np.ndarray
    syn1neg: np.ndarray
    syn1: np.ndarray
    acc0: np.ndarray
    acc1: np.ndarray
    lockf: np.ndarray


class Sampling(NamedTuple):
    """What words are drawn and looked up from.

    Attributes
    ----------
    keep : ndarray of int64, shape (V,)
        Subsampling: a token is kept when 32 random bits are ``<= keep[id]``.
    neg_prob, neg_alias : ndarrays, shape (V,)
        Alias table of the noise distribution (:func:`alias_table`).
    codes, points, offsets : ndarrays
        The Huffman tree (:class:`~sparsemb.kernels.huffman.HuffmanTree`; empty without hs).
    sigmoid, logsig : ndarray of float32, shape (EXP_TABLE_SIZE,)
        From :func:`sigmoid_tables`.
    """

    keep: np.ndarray
    neg_prob: np.ndarray
    neg_alias: np.ndarray
    codes: np.ndarray
    points: np.ndarray
    offsets: np.ndarray
    sigmoid: np.ndarray
    logsig: np.ndarray


class Config(NamedTuple):
    """gensim's ``Word2VecConfig``: the settings of a run.

    Attributes
    ----------
    window, negative : int
    hs, sg, cbow_mean, adagrad, shrink : bool
        ``shrink``: each centre word's window is shrunk by a uniform ``b`` (gensim's ``shrink_windows``).
    shared : bool
        Skip-gram with negative sampling draws one set of noise words per centre word, shared by its
        context words (:func:`_sg_center_shared`).
    eps : float32
        Adagrad's epsilon.
    private : int
        Rows ``0:private`` of ``syn0`` and ``syn1neg`` (the most frequent words') that each call updates
        in a copy of its own, merged into the tables every :data:`MERGE_WORDS` centre words and at its
        end; 0 (the default, for one thread) trains on the tables alone.
    """

    window: int
    negative: int
    hs: bool
    sg: bool
    shared: bool
    cbow_mean: bool
    adagrad: bool
    shrink: bool
    eps: np.float32
    private: int = 0


class Span(NamedTuple):
    """The sentences one call trains, and the learning rate over them.

    Attributes
    ----------
    ids : ndarray of int32, shape (n_tokens,)
        Word ids, sentences concatenated.
    starts : ndarray of int64, shape (n_sentences + 1,)
        Sentence ``s`` is ``ids[starts[s]:starts[s+1]]``; at most MAX_SENTENCE_LENGTH tokens.
    s_lo, s_hi : int
        The sentences to train on.
    alpha0, alpha1 : float32
        Learning rate at ``done`` and at ``total`` tokens (linear in between, per sentence).
    done, total : int
        Tokens before ``ids[starts[s_lo]]`` and in the whole stretch: sentence ``s`` is trained with the
        rate at ``(done + starts[s] - starts[s_lo]) / total``, so how a stretch is cut into calls does
        not change the result.
    """

    ids: np.ndarray
    starts: np.ndarray
    s_lo: int
    s_hi: int
    alpha0: np.float32
    alpha1: np.float32
    done: int
    total: int


#: Rows of the scratch ``work``: a hidden vector (CBOW's context), the input side's step, a scratch row.
HIDDEN, STEP, TMP = 0, 1, 2


class _Scratch(NamedTuple):
    """One call's buffers: the subsampled sentence; ``work`` (rows HIDDEN, STEP, TMP); context rows'
    steps; ids (context words in ``rows[0]``, output targets in ``rows[1]``); shared skip-gram's
    coefficients; the weights of a plain sum; the call's private rows of ``syn0`` and ``syn1neg``
    (``own0``, ``own1``) and their values at the last merge (``base0``, ``base1``), each
    ``(Config.private, dim)`` (:func:`_scratch` makes them)."""

    sent: np.ndarray
    work: np.ndarray
    steps: np.ndarray
    rows: np.ndarray
    coef: np.ndarray
    unit: np.ndarray
    own0: np.ndarray
    base0: np.ndarray
    own1: np.ndarray
    base1: np.ndarray


def _typed_choice(when_none, otherwise):
    """Make the decorated function a choice between two implementations by the *type* of its first
    argument: ``when_none`` for None, ``otherwise`` for an array.

    A run passes None for each table it does not have (no noise words, no tree, no Adagrad state), so
    a compiled kernel holds only the code its kind of run executes and a first run compiles only
    that (a kernel holding every variant took four times as long to compile). In compiled code the
    choice is made while typing and the chosen function is inlined; in Python (``NUMBA_DISABLE_JIT``)
    it is made by value. The decorated function gives the name, signature and docstring; the two
    implementations are plain functions, compiled where they are used, with their caller's flags.
    """
    def decorate(stub):
        @functools.wraps(stub)
        def chosen(*args):
            return (when_none if args[0] is None else otherwise)(*args)

        def choose(*arg_types):
            return when_none if isinstance(arg_types[0], types.NoneType) else otherwise

        choose.__signature__ = inspect.signature(stub)  # Numba checks it against the implementations'
        overload(chosen, inline="always")(choose)
        return chosen

    return decorate


@intrinsic
def _home(typingctx, own, table, row):
    """``table`` with its data pointer moved to ``own``'s when ``row < own.shape[0]``; ``own`` holds a
    copy of the table's first rows with the same row stride (:func:`_scratch` makes sure).

    A select of one pointer, typed as ``table``: choosing between the two arrays in Python code
    (``own if ... else table``) types a merge of two array structures, with reference counting, at
    each of the kernel's row accesses (LLVM optimizes both to the same code; whether the intrinsic
    also shortens the first compilation was not measured apart from the merge's move)."""
    if not (isinstance(own, types.Array) and isinstance(table, types.Array) and own.dtype == table.dtype
            and own.ndim == table.ndim == 2 and isinstance(row, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        o = context.make_array(own)(context, builder, args[0])
        t = context.make_array(table)(context, builder, args[1])
        index = context.cast(builder, args[2], row, types.intp)
        inside = builder.icmp_signed("<", index, builder.extract_value(o.shape, 0))
        t.data = builder.select(inside, builder.bitcast(o.data, t.data.type), t.data)
        return impl_ret_borrowed(context, builder, table, t._getvalue())

    return table(own, table, row), codegen


def _home_in_python(own, table, row):
    return own if row < own.shape[0] else table


#: The array that holds this call's ``table[row]``: its private copy ``own`` of the table's first
#: rows, or the table (:func:`_home`; in Python, ``NUMBA_DISABLE_JIT``, a plain choice).
_rows = _home_in_python if config.DISABLE_JIT else _home


@jit()
def _merge(table, own, base):
    """Add this call's changes to its private rows since the last merge (``own - base``) to the
    table's first rows, and take the result, the other threads' changes in it, as the new ``own`` and
    ``base``. A value nobody else changed is set to ``own``'s as it is, so that a call alone on the
    tables trains them bit for bit as without private rows. A function of its own, called rather than
    inlined by Numba: inlined, its loop's variables set off warnings of Numba's SSA pass."""
    for r in range(own.shape[0]):
        for d in range(own.shape[1]):
            now, mine, was = table[r, d], own[r, d], base[r, d]
            if now != was:
                mine += now - was
            table[r, d] = mine
            own[r, d] = mine
            base[r, d] = mine


def _no_output_merge(syn1neg, own1, base1):
    pass


def _output_merge(syn1neg, own1, base1):
    _merge(syn1neg, own1, base1)


@_typed_choice(_no_output_merge, _output_merge)
def _merge_output(syn1neg, own1, base1):
    """:func:`_merge` of the output table's private rows (nothing without the table: None)."""


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
    idx = np.int64((f + MAX_EXP) * TABLE_SCALE)  # not int(): it would compile an implementation of its own
    return (np.float32(1.0) - label) * f - logsig[idx], label - sigmoid[idx]


def _no_targets(syn1neg, own1, center, targets, negative, smp, state):
    return 0, state


def _noise_targets(syn1neg, own1, center, targets, negative, smp, state):
    targets[0] = center
    nt = 1
    for k in range(negative):
        state, t = _draw(state, smp.neg_prob, smp.neg_alias)
        if t != center:
            prefetch_row(_rows(own1, syn1neg, t), t)
            targets[nt] = t
            nt += 1
    return nt, state


@_typed_choice(_no_targets, _noise_targets)
def _draw_targets(syn1neg, own1, center, targets, negative, smp, state):
    """``targets[0] = center``, then ``negative`` noise words, leaving out any equal to ``center`` (as
    gensim does), each output row asked for as it is drawn. Returns how many targets there are (0
    without negative sampling: ``syn1neg`` None), and the generator state."""


def _sgd_step(acc, table, row, step, srow, scale, alpha, eps, scratch):
    for d in range(table.shape[1]):
        table[row, d] += step[srow, d] * scale


def _adagrad_step(acc, table, row, step, srow, scale, alpha, eps, scratch):
    for d in range(table.shape[1]):
        scratch[d] = step[srow, d] * scale
    adagrad_row_update(table, acc, row, scratch, alpha, eps)


@_typed_choice(_sgd_step, _adagrad_step)
def _apply_step(acc, table, row, step, srow, scale, alpha, eps, scratch):
    """Apply ``scale * step[srow]`` to ``table[row]``: an SGD step (``alpha`` already in it) added, or,
    with Adagrad state ``acc``, a raw gradient given to :func:`adagrad_row_update` (``scratch`` is a
    dim-long buffer)."""


def _sgd_output(acc1, syn1, target, h, hrow, err, alpha, eps, work):
    g = err * alpha
    for d in range(syn1.shape[1]):
        work[STEP, d] += g * syn1[target, d]
        syn1[target, d] += g * h[hrow, d]


def _adagrad_output(acc1, syn1, target, h, hrow, err, alpha, eps, work):
    for d in range(syn1.shape[1]):
        work[STEP, d] -= err * syn1[target, d]
        work[TMP, d] = -err * h[hrow, d]
    adagrad_row_update(syn1, acc1, target, work[TMP], alpha, eps)


@_typed_choice(_sgd_output, _adagrad_output)
def _update_output(acc1, syn1, target, h, hrow, err, alpha, eps, work):
    """Update output row ``syn1[target]`` for error ``err`` of ``h[hrow]`` (SGD, or lazy Adagrad on that
    row with state ``acc1``) and add to ``work[STEP]`` the step for the input side: ``+alpha * err *
    syn1[target]`` for SGD, the raw gradient for Adagrad (``work[TMP]`` is scratch)."""


def _no_layer(syn1neg, own1, acc1, h, hrow, targets, nt, alpha, eps, smp, work):
    return 0.0


def _noise_layer(syn1neg, own1, acc1, h, hrow, targets, nt, alpha, eps, smp, work):
    loss = 0.0
    for k in range(nt):
        target = targets[k]
        out = _rows(own1, syn1neg, target)
        l, err = _pair(_dot(h, hrow, out, target), np.float32(k == 0), smp.sigmoid, smp.logsig)
        loss += l
        if err != 0.0:
            _update_output(acc1, out, target, h, hrow, err, alpha, eps, work)
    return loss


@_typed_choice(_no_layer, _noise_layer)
def _negative_layer(syn1neg, own1, acc1, h, hrow, targets, nt, alpha, eps, smp, work):
    """Score hidden vector ``h[hrow]`` against ``targets[0]`` (label 1) and ``targets[1:nt]`` (label 0),
    updating each output row in place (:func:`_update_output`). Returns the loss of this example (0
    without negative sampling: ``syn1neg`` None)."""


def _no_tree(syn1, h, hrow, word, alpha, smp, work):
    return 0.0


def _tree_layer(syn1, h, hrow, word, alpha, smp, work):
    loss = 0.0
    for b in range(smp.offsets[word], smp.offsets[word + 1]):
        node = smp.points[b]
        l, err = _pair(_dot(h, hrow, syn1, node), np.float32(1 - smp.codes[b]), smp.sigmoid, smp.logsig)
        loss += l
        if err == 0.0:
            continue
        g = err * alpha
        for d in range(syn1.shape[1]):
            work[STEP, d] += g * syn1[node, d]
            syn1[node, d] += g * h[hrow, d]
    return loss


@_typed_choice(_no_tree, _tree_layer)
def _softmax_layer(syn1, h, hrow, word, alpha, smp, work):
    """Hierarchical softmax: along ``word``'s path in the tree, each inner node's output vector scores
    ``h[hrow]`` against label ``1 - code`` (gensim's ``fast_sentence_*_hs``); SGD updates of those rows,
    the input side's step added to ``work[STEP]``. Returns the loss (0 without a tree: ``syn1`` None)."""


@jit(inline="always", fastmath=True)
def _output_layers(h, hrow, word, targets, nt, t, alpha, cfg, smp, scr):
    """Both output layers the run has, for predicting ``word`` from ``h[hrow]``: their loss, and in
    ``work[STEP]`` the sum of their steps for the input side."""
    work = scr.work
    for d in range(work.shape[1]):
        work[STEP, d] = 0.0
    loss = _softmax_layer(t.syn1, h, hrow, word, alpha, smp, work)
    loss += _negative_layer(t.syn1neg, scr.own1, t.acc1, h, hrow, targets, nt, alpha, cfg.eps, smp, work)
    return loss


def _no_prefetch(table, own, row):
    pass


def _prefetch(table, own, row):
    prefetch_row(_rows(own, table, row), row)


@_typed_choice(_no_prefetch, _prefetch)
def _prefetch_output(table, own, row):
    """Ask for output row ``table[row]``, from the call's private rows ``own`` if it is one of them
    (nothing without the table: None)."""


@jit(inline="always")
def _lock(t, row):
    """The factor of steps to input row ``row`` (gensim's ``vectors_lockf``)."""
    return t.lockf[row] if t.lockf.shape[0] > 1 else t.lockf[0]


@jit(inline="always", fastmath=True)
def _sg_center(lo, hi, i, t, smp, cfg, alpha, scr, state):
    """Skip-gram around position ``i``: each context word's input vector predicts the centre word
    (against its own noise words, in ``rows[1]``, and/or along its path in the tree)."""
    sent, work, rows = scr.sent, scr.work, scr.rows
    loss = 0.0
    pairs = 0
    for j in range(lo, hi):
        if j == i:
            continue
        ctx = sent[j]
        src = _rows(scr.own0, t.syn0, ctx)
        nt, state = _draw_targets(t.syn1neg, scr.own1, sent[i], rows[1], cfg.negative, smp, state)
        loss += _output_layers(src, ctx, sent[i], rows[1], nt, t, alpha, cfg, smp, scr)
        _apply_step(t.acc0, src, ctx, work, STEP, _lock(t, ctx), alpha, cfg.eps, work[TMP])
        pairs += 1
    return loss, pairs, state


@jit(inline="always", fastmath=True)
def _mix(out, orow, weights, table, own, ids, n):
    """``out[orow] = sum(weights[m] * table[ids[m]] for m < n)``, ``n >= 1``, the rows the call holds
    privately taken from ``own``.

    Rows are taken four at a time so that ``out[orow]`` is loaded and stored a quarter as often (LLVM
    cannot keep it in registers: it may alias ``table``).
    """
    dim = table.shape[1]
    g = weights[0]
    r = ids[0]
    a = _rows(own, table, r)
    for d in range(dim):
        out[orow, d] = g * a[r, d]
    m = 1
    while m + 3 < n:
        g0, g1, g2, g3 = weights[m], weights[m + 1], weights[m + 2], weights[m + 3]
        r0, r1, r2, r3 = ids[m], ids[m + 1], ids[m + 2], ids[m + 3]
        a0, a1, a2, a3 = _rows(own, table, r0), _rows(own, table, r1), _rows(own, table, r2), _rows(own, table, r3)
        for d in range(dim):
            out[orow, d] += (g0 * a0[r0, d] + g1 * a1[r1, d]) + (g2 * a2[r2, d] + g3 * a3[r3, d])
        m += 4
    while m < n:
        g = weights[m]
        r = ids[m]
        a = _rows(own, table, r)
        for d in range(dim):
            out[orow, d] += g * a[r, d]
        m += 1


def _sgd_coefficient(acc1, err, alpha):
    return err * alpha


def _adagrad_coefficient(acc1, err, alpha):
    return -err


@_typed_choice(_sgd_coefficient, _adagrad_coefficient)
def _coefficient(acc1, err, alpha):
    """Shared skip-gram's coefficient of a pair: the error times ``alpha`` for SGD, minus the error (a
    gradient) with Adagrad state ``acc1``."""


def _no_tree_step(syn1, syn0, row, center, alpha, smp, work, steps, c):
    return 0.0


def _tree_step(syn1, syn0, row, center, alpha, smp, work, steps, c):
    for d in range(syn0.shape[1]):
        work[STEP, d] = 0.0
    loss = _softmax_layer(syn1, syn0, row, center, alpha, smp, work)
    for d in range(syn0.shape[1]):
        steps[c, d] += work[STEP, d]
    return loss


@_typed_choice(_no_tree_step, _tree_step)
def _shared_tree_step(syn1, syn0, row, center, alpha, smp, work, steps, c):
    """Shared skip-gram with hierarchical softmax too: input row ``syn0[row]`` along ``center``'s path,
    its step joining context ``c``'s in ``steps``. Returns the loss (0 without a tree: ``syn1`` None)."""


@jit(inline="always", fastmath=True)
def _sg_center_shared(lo, hi, i, t, smp, cfg, alpha, scr, state):
    """Skip-gram around position ``i`` with one set of noise words shared by all its context words.

    Ji et al. (2016): the input vectors of the ``nc`` context words (ids in ``rows[0]``) and the output
    vectors of the centre word and the noise words (ids in ``rows[1]``) are two small blocks; all scores
    come from the vectors as they were before this centre word, and the updates are two small matrix
    products: ``syn0 block += coef @ syn1neg block`` and ``syn1neg block += coef.T @ syn0 block``, with
    ``coef`` the errors times ``alpha`` for SGD (minus the errors, a gradient, for Adagrad). ``steps``
    holds the context rows' steps, ``work[STEP]`` an output row's, ``work[TMP]`` is scratch. With
    hierarchical softmax too, each context row's tree step joins its step.
    """
    sent, work, steps, rows, coef = scr.sent, scr.work, scr.steps, scr.rows, scr.coef
    syn0, syn1, own0, own1 = t.syn0, t.syn1neg, scr.own0, scr.own1
    center = sent[i]
    nc = 0
    for j in range(lo, hi):
        if j != i:
            rows[0, nc] = sent[j]
            nc += 1
    if nc == 0:
        return 0.0, 0, state
    nt, state = _draw_targets(syn1, own1, center, rows[1], cfg.negative, smp, state)
    loss = 0.0
    for c in range(nc):
        r = rows[0, c]
        for k in range(nt):
            o = rows[1, k]
            f = _dot(_rows(own0, syn0, r), r, _rows(own1, syn1, o), o)
            l, err = _pair(f, np.float32(k == 0), smp.sigmoid, smp.logsig)
            loss += l
            coef[c, k] = _coefficient(t.acc1, err, alpha)
    for c in range(nc):
        r = rows[0, c]
        _mix(steps, c, coef[c], syn1, own1, rows[1], nt)
        loss += _shared_tree_step(t.syn1, _rows(own0, syn0, r), r, center, alpha, smp, work, steps, c)
    one = np.float32(1.0)
    for k in range(nt):
        o = rows[1, k]
        _mix(work, STEP, coef[:, k], syn0, own0, rows[0], nc)
        _apply_step(t.acc1, _rows(own1, syn1, o), o, work, STEP, one, alpha, cfg.eps, work[TMP])
    for c in range(nc):
        r = rows[0, c]
        _apply_step(t.acc0, _rows(own0, syn0, r), r, steps, c, _lock(t, r), alpha, cfg.eps, work[TMP])
    return loss, nc, state


@jit(inline="always", fastmath=True)
def _cbow_center(lo, hi, i, t, smp, cfg, alpha, scr, state):
    """CBOW at position ``i``: the (mean or sum of the) context vectors, in ``work[HIDDEN]``, predict the centre.

    The context ids go to ``rows[0]``; ``unit`` is all ones (the weights of the sum).
    """
    sent, work, rows = scr.sent, scr.work, scr.rows
    syn0 = t.syn0
    count = 0
    for j in range(lo, hi):
        if j != i:
            rows[0, count] = sent[j]
            count += 1
    if count == 0:
        return 0.0, 0, state
    # The noise words are drawn first so that their rows can be on their way while the context is summed.
    nt, state = _draw_targets(t.syn1neg, scr.own1, sent[i], rows[1], cfg.negative, smp, state)
    _mix(work, HIDDEN, scr.unit, syn0, scr.own0, rows[0], count)
    inv = np.float32(1.0) / np.float32(count)
    if cfg.cbow_mean:
        for d in range(syn0.shape[1]):
            work[HIDDEN, d] *= inv
    loss = _output_layers(work, HIDDEN, sent[i], rows[1], nt, t, alpha, cfg, smp, scr)
    # gensim's choice: with a summed context the error is shared out, with a mean it is not.
    scale = np.float32(1.0) if cfg.cbow_mean else inv
    for c in range(count):
        r = rows[0, c]
        _apply_step(t.acc0, _rows(scr.own0, syn0, r), r, work, STEP, scale * _lock(t, r), alpha, cfg.eps, work[TMP])
    return loss, 1, state


@jit(inline="always", fastmath=True)
def _stretch(t, smp, cfg, span, state, scr, center):
    """The body of every training kernel: subsampling, the learning rate and the windows of each
    sentence of ``span``, ``center`` (one of the ``_*_center`` functions, inlined) at each position of
    the sentence, with the context in positions ``lo:hi``.

    No min() or max() here or in the centre functions, and no array made (the buffers ``scr`` come
    from :func:`train_stretch`): each would compile an implementation of its own on a first run.

    The bundles are taken as borrowed views (:func:`~sparsemb.kernels.borrow.borrowed`): the centre
    function, inlined at every example, would otherwise add and drop a reference to each of their
    arrays there."""
    t, smp, span, scr = borrowed(t), borrowed(smp), borrowed(span), borrowed(scr)
    ids, starts = span.ids, span.starts
    window = cfg.window
    sent = scr.sent
    first = starts[span.s_lo]
    total = span.total if span.total > 1 else 1
    loss = 0.0
    examples = 0
    words = 0
    unmerged = 0
    for s in range(span.s_lo, span.s_hi):
        done = (span.done + starts[s] - first) / total
        alpha = span.alpha0 + (span.alpha1 - span.alpha0) * np.float32(done if done < 1.0 else 1.0)
        n = 0
        for k in range(starts[s], starts[s + 1]):
            w = ids[k]
            state, r = _rand32(state)
            # Like gensim, words past the buffer are dropped (the corpus reader never makes them).
            if r <= smp.keep[w] and n < sent.shape[0]:
                sent[n] = w
                n += 1
        words += n
        for i in range(n):
            # The rows that join the work a few centre words from now: the word entering the window
            # (an input row) and that centre word itself (an output row).
            if i + window + 2 < n:
                w = sent[i + window + 2]
                prefetch_row(_rows(scr.own0, t.syn0, w), w)
                _prefetch_output(t.syn1neg, scr.own1, sent[i + 2])
            b = 0
            if cfg.shrink:
                state, r = _rand32(state)
                b = r % window
            lo = i - window + b
            hi = i + window + 1 - b
            l, c, state = center(lo if lo > 0 else 0, hi if hi < n else n, i, t, smp, cfg, alpha, scr, state)
            loss += l
            examples += c
            unmerged += 1
            if unmerged == MERGE_WORDS:
                _merge(t.syn0, scr.own0, scr.base0)
                _merge_output(t.syn1neg, scr.own1, scr.base1)
                unmerged = 0
    return state, loss, examples, words


@jit(fastmath=True)
def _train_sg_shared(tables, sampling, config, span, state, scratch):
    return _stretch(tables, sampling, config, span, state, scratch, _sg_center_shared)


@jit(fastmath=True)
def _train_sg(tables, sampling, config, span, state, scratch):
    return _stretch(tables, sampling, config, span, state, scratch, _sg_center)


@jit(fastmath=True)
def _train_cbow(tables, sampling, config, span, state, scratch):
    return _stretch(tables, sampling, config, span, state, scratch, _cbow_center)


def train_kernel(sg, shared, negative):
    """The compiled kernel :func:`train_stretch` runs for a model of this kind (to ask whether it is
    compiled yet, :func:`sparsemb._config.cache_is_cold`): one per kind of model, so that a run
    compiles only its own."""
    if sg and shared and negative:
        return _train_sg_shared
    return _train_sg if sg else _train_cbow


def train_stretch(tables, sampling, config, span, state):
    """Train on sentences ``span.s_lo:span.s_hi`` of an encoded corpus (one thread's stretch; the
    compiled kernel releases the GIL).

    Runs the kernel of the model's kind (:func:`train_kernel`) with None in place of each table the
    configuration does not use (``syn1neg`` without negative sampling, ``syn1`` without hierarchical
    softmax, ``acc0`` and ``acc1`` without Adagrad), so that the code compiled for the run holds only
    what it executes.

    Parameters
    ----------
    tables : Tables
    sampling : Sampling
    config : Config
    span : Span
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
    adagrad = config.adagrad
    used = tables._replace(syn1neg=tables.syn1neg if config.negative else None,
                           syn1=tables.syn1 if config.hs else None,
                           acc0=tables.acc0 if adagrad else None,
                           acc1=tables.acc1 if adagrad and config.negative else None)
    scratch = _scratch(used, config)
    done = train_kernel(config.sg, config.shared, config.negative)(used, sampling, config, span, state, scratch)
    # The last merge of the private rows (the kernel merges every MERGE_WORDS centre words).
    _merge(used.syn0, scratch.own0, scratch.base0)
    if used.syn1neg is not None:
        _merge(used.syn1neg, scratch.own1, scratch.base1)
    return done


def _scratch(tables, config):
    """The buffers of one call of a training kernel (:class:`_Scratch`), made here rather than in the
    kernel, where each np.empty of another shape or dtype would compile an implementation of its own.

    Each on cache lines of its own (:func:`~sparsemb.kernels.embedding.aligned_empty`): NumPy hands
    small arrays of two threads out of one pool, and the kernels write these on every example, so two
    threads' buffers sharing a line would make it bounce between the cores."""
    syn0 = tables.syn0
    dim, window, targets = syn0.shape[1], config.window, config.negative + 1
    dt = syn0.dtype
    unit = aligned_empty(2 * window, dt)
    unit[:] = 1
    # The private rows' copies take the tables' row stride (:func:`_home`): a table that is not
    # C-contiguous has none of them.
    private = []
    for table in (syn0, syn0, tables.syn1neg, tables.syn1neg):
        rows = syn0[:0] if table is None else table[:config.private if table.flags.c_contiguous else 0]
        own = aligned_empty(rows.shape, rows.dtype)
        own[:] = rows
        private.append(own)
    return _Scratch(aligned_empty(MAX_SENTENCE_LENGTH, np.int32), aligned_empty((3, dim), dt),
                    aligned_empty((2 * window, dim), dt), aligned_empty((2, max(2 * window, targets)), np.int64),
                    aligned_empty((2 * window, targets), dt), unit, *private)
