"""Lazy optimizers: closed forms, equivalence with dense updates on Xᵀ G, laziness, state."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparsemb as sm
from sparsemb import reference as ref

N, DIM = 12, 3
BATCHES = [np.array([1, 4, 1, 7, 1]), np.array([4, 4]), np.array([0, 11, 7]), np.array([1, 2, 2, 2])]


def dense_sgd(w, g, st, t, lr):
    w -= lr * g


def dense_adagrad(w, g, st, t, lr, lr_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    st.setdefault("sum", np.full_like(w, initial_accumulator_value))
    rows = np.flatnonzero(g.any(axis=1))  # torch's sparse path touches only rows in the gradient
    st["sum"][rows] += g[rows] ** 2
    clr = lr / (1 + (t - 1) * lr_decay)
    w[rows] -= clr * g[rows] / (np.sqrt(st["sum"][rows]) + eps)


def dense_rowwise(w, g, st, t, lr, eps=1e-8):
    st.setdefault("sum", np.zeros(w.shape[0]))
    rows = np.flatnonzero(g.any(axis=1))
    st["sum"][rows] += np.mean(g[rows] ** 2, axis=1)
    w[rows] -= lr * g[rows] / (np.sqrt(st["sum"][rows])[:, None] + eps)


def dense_adam(w, g, st, t, lr, betas=(0.9, 0.999), eps=1e-8):
    st.setdefault("m", np.zeros_like(w))
    st.setdefault("v", np.zeros_like(w))
    rows = np.flatnonzero(g.any(axis=1))
    b1, b2 = betas
    st["m"][rows] += (1 - b1) * (g[rows] - st["m"][rows])
    st["v"][rows] += (1 - b2) * (g[rows] ** 2 - st["v"][rows])
    step = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    w[rows] -= step * st["m"][rows] / (np.sqrt(st["v"][rows]) + eps)


CASES = [
    (sm.optim.SGD, dense_sgd, dict(lr=0.3)),
    (sm.optim.Adagrad, dense_adagrad, dict(lr=0.2)),
    (sm.optim.Adagrad, dense_adagrad, dict(lr=0.2, lr_decay=0.1, initial_accumulator_value=0.5)),
    (sm.optim.RowwiseAdagrad, dense_rowwise, dict(lr=0.2)),
    (sm.optim.SparseAdam, dense_adam, dict(lr=0.05, betas=(0.8, 0.95))),
]


def _upstream(seed, ids, dtype):
    return np.random.default_rng(seed).standard_normal((ids.size, DIM)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("opt_cls,dense,kw", CASES)
def test_equals_dense_update_on_reference_gradient(opt_cls, dense, kw, dtype):
    emb = sm.Embedding(N, DIM, dtype=dtype, seed=3)
    w = emb.weight.astype(np.float64)
    opt = opt_cls([emb], **kw)
    state = {}
    for t, ids in enumerate(BATCHES, start=1):
        g = _upstream(t, ids, dtype)
        opt.zero_grad()
        emb(ids)
        emb.backward(g)
        opt.step()
        dense(w, ref.grad(ids, g.astype(np.float64), N), state, t, **kw)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(emb.weight, w, rtol=tol, atol=tol)


def test_rowwise_adagrad_closed_form():
    # One row seen twice with constant gradient c: h_t = t·c², w_T = w_0 - Σ lr·c/(√t·|c| + eps).
    emb = sm.Embedding.from_pretrained(np.zeros((3, 4)), freeze=False)
    opt = sm.optim.RowwiseAdagrad([emb], lr=0.5, eps=0.0)
    for _ in range(3):
        opt.zero_grad()
        emb(np.array([2, 2]))
        emb.backward(np.full((2, 4), 1.5))  # coalesced: c = 3 in every column
        opt.step()
    expected = -sum(0.5 * 3.0 / np.sqrt(t * 9.0) for t in (1, 2, 3))
    np.testing.assert_allclose(emb.weight[2], expected, rtol=1e-14)
    np.testing.assert_allclose(opt.state_dict()["state"][0]["sum"], [0, 0, 27.0])
    assert not emb.weight[:2].any()


@pytest.mark.parametrize("opt_cls,dense,kw", CASES)
def test_untouched_rows_and_state_stay_bit_identical(opt_cls, dense, kw):
    emb = sm.Embedding(N, DIM, seed=5)
    opt = opt_cls([emb], **kw)
    for t, ids in enumerate(BATCHES[:2], start=1):  # warm the state on a few rows
        opt.zero_grad()
        emb(ids)
        emb.backward(_upstream(t, ids, np.float32))
        opt.step()
    before_w = emb.weight.copy()
    before_s = opt.state_dict()["state"][0]
    ids = BATCHES[2]
    opt.zero_grad()
    emb(ids)
    emb.backward(_upstream(9, ids, np.float32))
    opt.step()
    others = np.setdiff1d(np.arange(N), ids)
    assert emb.weight[others].tobytes() == before_w[others].tobytes()
    for k, v in opt.state_dict()["state"][0].items():
        if isinstance(v, np.ndarray):
            assert v[others].tobytes() == before_s[k][others].tobytes()


def _layer(kind):
    """The layer of the fused-step tests: an Embedding with padding and frequency scaling, or a bag."""
    if kind == "embedding":
        return sm.Embedding(N, DIM, seed=7, padding_idx=2, scale_grad_by_freq=True)
    return sm.EmbeddingBag(N, DIM, mode=kind[4:], seed=7)


def _forward(emb, kind, ids):
    return emb(ids) if kind == "embedding" else emb(ids, np.array([0, 1]))


@pytest.mark.parametrize("opt_cls,dense,kw", CASES)
@pytest.mark.parametrize("layer", ["embedding", "bag_mean", "bag_max"])
def test_fused_backward_step_equals_backward_then_step(opt_cls, dense, kw, layer):
    results = []
    for fused in (False, True):
        emb = _layer(layer)
        opt = opt_cls([emb], **kw)
        for t, ids in enumerate(BATCHES, start=1):
            out = _forward(emb, layer, ids)
            g = np.random.default_rng(t).standard_normal(out.shape).astype(np.float32)
            if fused:
                opt.backward_step(emb, g)
                assert emb.grad is None
            else:
                opt.zero_grad()
                emb.backward(g)
                opt.step()
        results.append(emb.weight.tobytes())
    assert results[0] == results[1]


@pytest.mark.parametrize("opt_cls,dense,kw", CASES)
@pytest.mark.parametrize("layer", ["embedding", "bag_mean", "bag_max"])
def test_step_from_pending_segments_equals_step_from_summed_gradient(opt_cls, dense, kw, layer):
    # step() runs the fused kernel on a gradient nobody read; reading .grad first sums it and
    # step() applies the sums: same bits. Two backwards before a step accumulate, as in torch.
    results = []
    for mode in ("pending", "read", "accumulate_pending", "accumulate_read"):
        emb = _layer(layer)
        opt = opt_cls([emb], **kw)
        for t, ids in enumerate(BATCHES, start=1):
            opt.zero_grad()
            for k in range(2 if mode.startswith("accumulate") else 1):
                out = _forward(emb, layer, ids)
                g = np.random.default_rng(t).standard_normal(out.shape).astype(np.float32)
                emb.backward(g * (k + 1))
            if mode.endswith("read"):
                emb.grad.values
            opt.step()
        results.append(emb.weight.tobytes())
    assert results[0] == results[1]
    assert results[2] == results[3]
    assert results[0] != results[2]


def test_grad_after_a_pending_step_is_the_gradient_and_steps_again():
    emb = sm.Embedding.from_pretrained(np.zeros((4, 2), np.float32), freeze=False)
    opt = sm.optim.SGD([emb], lr=1.0)
    emb(np.array([0, 1, 0]))
    g = np.ones((3, 2), np.float32)
    emb.backward(g)
    opt.step()
    np.testing.assert_array_equal(emb.grad.to_dense(), [[2, 2], [1, 1], [0, 0], [0, 0]])
    opt.step()  # torch keeps .grad after a step: a second step applies it again
    np.testing.assert_array_equal(emb.weight, [[-4, -4], [-2, -2], [0, 0], [0, 0]])
    assert g.flags.writeable  # summed when read: the caller's buffer is released


def test_backward_step_checks_its_layer():
    emb, other = sm.Embedding(4, 2, seed=0), sm.Embedding(4, 2, seed=1)
    opt = sm.optim.SGD([emb], lr=0.1)
    with pytest.raises(ValueError, match="not a parameter"):
        opt.backward_step(other, np.ones((1, 2)))
    with pytest.raises(RuntimeError, match="before forward"):
        opt.backward_step(emb, np.ones((1, 2)))
    emb(np.array([1]))
    emb.backward(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match="accumulated"):
        opt.backward_step(emb, np.ones((1, 2)))


@pytest.mark.parametrize("opt_cls,dense,kw", CASES)
def test_state_dict_round_trip_resumes_identically(opt_cls, dense, kw):
    def run(steps, emb, opt):
        for t, ids in steps:
            opt.zero_grad()
            emb(ids)
            emb.backward(_upstream(t, ids, np.float32))
            opt.step()

    steps = list(enumerate(BATCHES, start=1))
    emb = sm.Embedding(N, DIM, seed=11)
    opt = opt_cls([emb], **kw)
    run(steps, emb, opt)

    emb2 = sm.Embedding(N, DIM, seed=11)
    opt2 = opt_cls([emb2], **kw)
    run(steps[:2], emb2, opt2)
    saved, weight = opt2.state_dict(), emb2.weight.copy()
    emb3 = sm.Embedding.from_pretrained(weight, freeze=False)
    opt3 = opt_cls([emb3], **kw)
    opt3.load_state_dict(saved)
    run(steps[2:], emb3, opt3)
    assert emb3.weight.tobytes() == emb.weight.tobytes()


def test_bag_layers_and_several_params(rng):
    bag = sm.EmbeddingBag(N, DIM, mode="mean", dtype=np.float64, seed=1)
    emb = sm.Embedding(5, DIM, dtype=np.float64, seed=2)
    w_bag, w_emb = bag.weight.copy(), emb.weight.copy()
    opt = sm.optim.SGD([bag, emb], lr=0.1)
    ids, offsets = np.array([1, 1, 3, 0]), np.array([0, 3])
    g_bag, g_emb = rng.standard_normal((2, DIM)), rng.standard_normal((2, DIM))
    bag(ids, offsets)
    bag.backward(g_bag)
    emb(np.array([4, 4]))
    emb.backward(g_emb)
    opt.step()
    np.testing.assert_allclose(bag.weight, w_bag - 0.1 * ref.bag_grad(w_bag, ids, g_bag, offsets), rtol=1e-12)
    np.testing.assert_allclose(emb.weight, w_emb - 0.1 * ref.grad([4, 4], g_emb, 5), rtol=1e-12)


def test_step_without_gradients_is_a_no_op():
    emb = sm.Embedding(4, 2, seed=0)
    w = emb.weight.copy()
    opt = sm.optim.SparseAdam([emb])
    opt.step()
    assert np.array_equal(emb.weight, w)
    assert opt.state_dict()["state"][0]["step"] == 0


@pytest.mark.parametrize("make,name", [
    (lambda p: sm.optim.SGD(p, lr=-0.1), "lr"),
    (lambda p: sm.optim.SparseAdam(p, lr=0), "lr"),
    (lambda p: sm.optim.Adagrad(p, lr=-1), "lr"),
    (lambda p: sm.optim.Adagrad(p, eps=-1e-3), "eps"),
    (lambda p: sm.optim.Adagrad(p, lr_decay=-0.1), "lr_decay"),
    (lambda p: sm.optim.SparseAdam(p, betas=(1.0, 0.9)), r"betas\[0\]"),
    (lambda p: sm.optim.SparseAdam(p, betas=(0.9, -0.1)), r"betas\[1\]"),
    (lambda p: sm.optim.RowwiseAdagrad(p, eps=-1), "eps"),
])
def test_bad_hyper_parameters_are_named(make, name):
    with pytest.raises(ValueError, match=name):
        make([sm.Embedding(3, 2)])


def test_bad_params():
    emb = sm.Embedding(3, 2)
    with pytest.raises(ValueError, match="more than once"):
        sm.optim.SGD([emb, emb], lr=0.1)
    with pytest.raises(TypeError, match="Embedding"):
        sm.optim.SGD([np.zeros((3, 2))], lr=0.1)


def test_load_state_dict_checks_before_changing():
    emb = sm.Embedding(3, 2)
    opt = sm.optim.Adagrad([emb])
    bad = sm.optim.Adagrad([sm.Embedding(4, 2)]).state_dict()
    before = opt.state_dict()
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    assert np.array_equal(opt.state_dict()["state"][0]["sum"], before["state"][0]["sum"])


@given(st.lists(st.integers(0, N - 1), min_size=1, max_size=30), st.integers(0, 2**31 - 1))
def test_adagrad_sums_duplicates_before_squaring(ids, seed):
    ids = np.array(ids)
    emb = sm.Embedding(N, DIM, dtype=np.float64, seed=0)
    opt = sm.optim.Adagrad([emb], lr=0.1)
    g = _upstream(seed, ids, np.float64)
    emb(ids)
    emb.backward(g)
    opt.step()
    coalesced = ref.grad(ids, g, N)
    np.testing.assert_allclose(opt.state_dict()["state"][0]["sum"], coalesced ** 2, rtol=1e-12)


@pytest.mark.parametrize("opt_cls,dense,kw", CASES)
def test_fused_step_on_rows_long_enough_to_be_prefetched(opt_cls, dense, kw):
    # 64-wide float32 rows (256 bytes) and more unique rows than the prefetch distance: the kernels ask
    # for weight, state and gradient rows ahead (kernels/prefetch.py), which must not change a result.
    n, dim = 500, 64
    emb = sm.Embedding(n, dim, dtype=np.float32, seed=5)
    w = emb.weight.astype(np.float64)
    opt = opt_cls([emb], **kw)
    state = {}
    rng = np.random.default_rng(9)
    for t in range(1, 4):
        ids = (rng.zipf(1.1, 400) - 1) % n
        g = rng.standard_normal((ids.size, dim)).astype(np.float32)
        emb(ids)
        opt.backward_step(emb, g)
        dense(w, ref.grad(ids, g.astype(np.float64), n), state, t, **kw)
    np.testing.assert_allclose(emb.weight, w, rtol=1e-4, atol=1e-4)
