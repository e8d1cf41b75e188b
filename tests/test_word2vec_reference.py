"""The word2vec training kernel against a NumPy reference of the same updates.

The reference replays the kernel's random numbers (the 48-bit generator: one draw per token for
subsampling, one per centre word for the window when it shrinks, one per noise word), so both see the
same words, windows and noise words; then it does word2vec's updates, centre word by centre word, in
float64, with the kernel's sigmoid table and its index (word2vec C's integer scale), with SGD or lazy
Adagrad. Results agree to float32 rounding.
"""
import numpy as np
import pytest

from sparsemb.kernels import word2vec as K
from sparsemb.kernels.huffman import huffman_tree

MASK = (1 << 48) - 1


class Rng:
    def __init__(self, state):
        self.state = int(state)

    def rand32(self):
        self.state = (self.state * 25214903917 + 11) & MASK
        return self.state >> 16

    def noise(self, neg_prob, neg_alias):
        x = self.rand32() * neg_alias.shape[0]
        bucket = x >> 32
        return bucket if (x & 0xFFFFFFFF) < neg_prob[bucket] else int(neg_alias[bucket])


SIGMOID, LOGSIG = K.sigmoid_tables(np.float32)


def err(f, label):
    """label - sigmoid(f) from the table, 0 outside it (no update), as the kernel and gensim."""
    if f >= K.MAX_EXP or f <= -K.MAX_EXP:
        return 0.0
    return label - float(SIGMOID[int((np.float32(f) + np.float32(K.MAX_EXP)) * K.TABLE_SCALE)])


def reference(sent, syn0, syn1neg, syn1, tree, neg_prob, neg_alias, window, negative, sg, shared, hs, cbow_mean,
              shrink, alpha, state, adagrad=False, eps=1e-10):
    """word2vec's updates of one sentence (all tokens kept), in float64: SGD, or lazy Adagrad on each
    row an example touches (negative sampling only); returns the tables."""
    syn0, syn1neg, syn1 = syn0.astype(np.float64), syn1neg.astype(np.float64), syn1.astype(np.float64)
    acc = {id(syn0): np.zeros_like(syn0), id(syn1neg): np.zeros_like(syn1neg)}

    def apply(table, row, step):
        """SGD adds ``step`` (alpha in it); Adagrad takes it as a gradient, ``-step / alpha``."""
        if not adagrad:
            table[row] += step
            return
        g = -step / alpha
        a = acc[id(table)]
        a[row] += g * g
        table[row] -= alpha * g / (np.sqrt(a[row]) + eps)

    rng = Rng(state)
    for _ in sent:
        rng.rand32()  # subsampling: sample=0 keeps every token, but a number is drawn for each
    n = len(sent)
    for i, word in enumerate(sent):
        b = rng.rand32() % window if shrink else 0
        ctx = [sent[j] for j in range(max(0, i - window + b), min(n, i + window + 1 - b)) if j != i]
        if not ctx:
            continue

        def targets():
            out = [word]
            for _ in range(negative):
                t = rng.noise(neg_prob, neg_alias)
                if t != word:
                    out.append(t)
            return out

        def output(h, noise):
            """Steps of both output layers for hidden h: updates syn1/syn1neg, returns the input step."""
            step = np.zeros_like(h)
            if hs:
                a, z = tree.offsets[word], tree.offsets[word + 1]
                for code, node in zip(tree.codes[a:z], tree.points[a:z]):
                    g = err(h @ syn1[node], 1.0 - code) * alpha
                    step += g * syn1[node]
                    syn1[node] += g * h
            for k, t in enumerate(noise):
                g = err(h @ syn1neg[t], float(k == 0)) * alpha
                step += g * syn1neg[t]
                apply(syn1neg, t, g * h)
            return step

        if sg and shared and negative:
            noise = targets()
            before0, before1 = syn0[ctx].copy(), syn1neg[noise].copy()
            coef = np.array([[err(before0[c] @ before1[k], float(k == 0)) * alpha for k in range(len(noise))]
                             for c in range(len(ctx))])
            steps = coef @ before1
            if hs:  # the tree's steps, per context word, from its vector before this centre word
                for c in range(len(ctx)):
                    steps[c] += output(before0[c], [])
            for k, t in enumerate(noise):
                apply(syn1neg, t, coef[:, k] @ before0)
            for c, row in enumerate(ctx):
                apply(syn0, row, steps[c])
        elif sg:
            for row in ctx:
                apply(syn0, row, output(syn0[row].copy(), targets() if negative else []))
        else:
            noise = targets() if negative else []
            h = syn0[ctx].sum(axis=0)
            if cbow_mean:
                h /= len(ctx)
            step = output(h, noise)
            for row in ctx:
                apply(syn0, row, step if cbow_mean else step / len(ctx))
    return syn0, syn1neg, syn1


CASES = [dict(sg=1, shared=0, hs=0, negative=3), dict(sg=1, shared=1, hs=0, negative=3),
         dict(sg=0, shared=0, hs=0, negative=3), dict(sg=1, shared=0, hs=1, negative=0),
         dict(sg=0, shared=0, hs=1, negative=0), dict(sg=1, shared=1, hs=1, negative=2),
         dict(sg=0, shared=0, hs=1, negative=2),
         dict(sg=1, shared=0, hs=0, negative=3, adagrad=1), dict(sg=1, shared=1, hs=0, negative=3, adagrad=1),
         dict(sg=0, shared=0, hs=0, negative=3, adagrad=1)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("cbow_mean, shrink", [(1, True), (0, False)])
def test_training_kernel_equals_the_reference(case, cbow_mean, shrink):
    rng = np.random.default_rng(7)
    v, dim, window = 12, 6, 2
    counts = np.sort(rng.integers(1, 40, v))[::-1].copy()
    syn0 = ((rng.random((v, dim)) - 0.5) / dim).astype(np.float32)
    syn1neg = (0.3 * rng.standard_normal((v, dim))).astype(np.float32) if case["negative"] else np.zeros((0, dim), np.float32)
    syn1 = (0.3 * rng.standard_normal((v, dim))).astype(np.float32) if case["hs"] else np.zeros((0, dim), np.float32)
    tree = huffman_tree(counts)
    neg_prob, neg_alias = K.alias_table(counts.astype(np.float64) ** 0.75)
    sent = rng.integers(0, v, 9).astype(np.int32)
    state, alpha = 12345, np.float32(0.05)
    start = syn0.copy()
    adagrad = bool(case.get("adagrad"))
    expected = reference(sent.tolist(), syn0, syn1neg, syn1, tree, neg_prob, neg_alias, window, case["negative"],
                         case["sg"], case["shared"], case["hs"], cbow_mean, shrink, float(alpha), state, adagrad)
    acc0 = np.zeros_like(syn0) if adagrad else np.zeros((0, dim), np.float32)
    acc1 = np.zeros_like(syn1neg) if adagrad else np.zeros((0, dim), np.float32)
    tables = K.Tables(syn0, syn1neg, syn1, acc0, acc1, np.ones(1, np.float32))
    sampling = K.Sampling(np.full(v, 2**32, np.int64), neg_prob, neg_alias, tree.codes, tree.points, tree.offsets,
                          SIGMOID, LOGSIG)
    config = K.Config(window, case["negative"], bool(case["hs"]), bool(case["sg"]), bool(case["shared"]),
                      bool(cbow_mean), adagrad, shrink, np.float32(1e-10))
    span = K.Span(sent, np.array([0, len(sent)], np.int64), 0, 1, alpha, alpha, 0, len(sent))
    _, loss, examples, words = K.train_stretch(tables, sampling, config, span, np.uint64(state))
    assert words == len(sent) and examples > 0 and loss > 0
    for got, want in zip((syn0, syn1neg, syn1), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert np.abs(syn0 - start).max() > 1e-3  # trained in place, by more than the tolerance


@pytest.mark.parametrize("case", [dict(sg=0, hs=0, negative=3, adagrad=0), dict(sg=1, hs=1, negative=0, adagrad=0),
                                  dict(sg=1, hs=0, negative=3, adagrad=1)],
                         ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_a_run_compiles_only_the_code_of_its_kind(case):
    """The kernel of the model's kind runs, typed with None for each table the run does not use, so
    that the code of the other modes is never compiled (a first run compiled all of it before)."""
    from numba import types
    from numba.core.dispatcher import Dispatcher

    kernel = K.train_kernel(case["sg"], True, case["negative"])
    if not isinstance(kernel, Dispatcher):
        pytest.skip("NUMBA_DISABLE_JIT: nothing is compiled")
    others = {K.train_kernel(sg, shared, 3) for sg in (0, 1) for shared in (0, 1)} - {kernel}
    assert len(others) == 2  # one kernel per kind: CBOW, skip-gram, skip-gram with shared noise words
    v, dim = 10, 4
    rng = np.random.default_rng(0)
    syn0 = rng.random((v, dim), dtype=np.float32)
    tree = huffman_tree(np.arange(v, 0, -1))
    neg_prob, neg_alias = K.alias_table(np.ones(v))
    tables = K.Tables(syn0, np.zeros((v, dim), np.float32), np.zeros((v, dim), np.float32),
                      np.zeros((v, dim), np.float32), np.zeros((v, dim), np.float32), np.ones(1, np.float32))
    sampling = K.Sampling(np.full(v, 2**32, np.int64), neg_prob, neg_alias, tree.codes, tree.points, tree.offsets,
                          SIGMOID, LOGSIG)
    config = K.Config(2, case["negative"], bool(case["hs"]), bool(case["sg"]), True, True, bool(case["adagrad"]),
                      True, np.float32(1e-10))
    alpha = np.float32(0.1)
    span = K.Span(np.arange(v, dtype=np.int32), np.array([0, v], np.int64), 0, 1, alpha, alpha, 0, v)
    K.train_stretch(tables, sampling, config, span, np.uint64(1))
    used = {"syn1neg": case["negative"] > 0, "syn1": bool(case["hs"]), "acc0": bool(case["adagrad"]),
            "acc1": bool(case["adagrad"] and case["negative"])}
    fields = K.Tables._fields
    want = tuple(f == "syn0" or f == "lockf" or used[f] for f in fields)
    typed = {tuple(t != types.none for t in sig[0].types) for sig in kernel.signatures}
    assert want in typed


def _random_run(case, private, v=40, dim=8, tokens=3 * K.MERGE_WORDS, seed=3):
    """Tables after one call of the training kernel on a random corpus of ``tokens`` tokens, with
    ``private`` rows of each thread's own."""
    rng = np.random.default_rng(seed)
    counts = np.sort(rng.integers(1, 400, v))[::-1].copy()
    syn0 = ((rng.random((v, dim)) - 0.5) / dim).astype(np.float32)
    syn1neg = (0.3 * rng.standard_normal((v, dim))).astype(np.float32)
    syn1 = (0.3 * rng.standard_normal((v, dim))).astype(np.float32)
    adagrad = bool(case.get("adagrad"))
    tables = K.Tables(syn0, syn1neg, syn1, np.zeros_like(syn0), np.zeros_like(syn1neg), np.ones(1, np.float32))
    tree = huffman_tree(counts)
    neg_prob, neg_alias = K.alias_table(counts.astype(np.float64) ** 0.75)
    sampling = K.Sampling(np.full(v, 2**32, np.int64), neg_prob, neg_alias, tree.codes, tree.points, tree.offsets,
                          SIGMOID, LOGSIG)
    config = K.Config(3, case["negative"], bool(case["hs"]), bool(case["sg"]), bool(case["shared"]), True, adagrad,
                      True, np.float32(1e-10), private)
    ids = rng.choice(v, tokens, p=counts / counts.sum()).astype(np.int32)  # id 0 the most frequent
    starts = np.arange(0, tokens + 1, 50, dtype=np.int64)
    alpha = np.float32(0.05)
    span = K.Span(ids, starts, 0, len(starts) - 1, alpha, alpha, 0, tokens)
    K.train_stretch(tables, sampling, config, span, np.uint64(99))
    return tables


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_private_rows_train_as_the_tables_do_when_alone(case):
    """A call that keeps the most frequent rows in a copy of its own, merged into the tables every
    MERGE_WORDS centre words and at its end, leaves them bit for bit as training on the tables does when
    no other thread writes them: every read and write of a row goes to the copy that holds it."""
    plain = _random_run(case, 0)
    for private in (1, 7, 40, 100):  # 40 and 100: every row private
        got = _random_run(case, private)
        for name in ("syn0", "syn1neg", "syn1", "acc0", "acc1"):
            assert np.array_equal(getattr(got, name), getattr(plain, name)), (private, name)
    start = _random_run(case, 0, tokens=0)
    assert not np.array_equal(plain.syn0[:7], start.syn0[:7])  # the private rows were trained


def test_a_merge_adds_this_calls_changes_to_the_others():
    """Merging private rows: the table gets this call's change since the last merge on top of what
    other threads wrote there meanwhile; the copy and its base then hold the merged rows; rows past the
    private ones are not touched."""
    rng = np.random.default_rng(5)
    base = rng.integers(-8, 8, (3, 4)).astype(np.float32) / 4  # quarters: sums exact in float32
    table = np.vstack([base, np.full((2, 4), 7, np.float32)])
    own = base.copy()
    own[1] += 0.5  # this call changed row 1 and one value of row 2
    own[2, 3] -= 1.25
    table[1, :2] += 2.0  # another thread changed half of row 1 and row 0
    table[0] -= 0.25
    want = table.copy()
    want[:3] += own - base
    K._merge(table, own, base)
    assert np.array_equal(table, want)
    assert np.array_equal(own, want[:3]) and np.array_equal(base, want[:3])
    assert (table[3:] == 7).all()
