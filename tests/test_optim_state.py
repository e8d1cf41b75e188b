"""Optimizer state and hyper-parameters: load_state_dict is all or nothing, and no value that would
turn weights into NaN or inf reaches a kernel (issue 10, sections 4 and 5)."""
import numpy as np
import pytest

import sparsemb as sm
from sparsemb._config import num_threads

N, DIM = 6, 3
IDS = [np.array([0, 2, 2, 5]), np.array([1, 2]), np.array([5, 0, 3])]


def _trained(opt_cls, seed, dtype=np.float32, **kw):
    """An optimizer over two tables, each stepped a different number of times (distinct state)."""
    a, b = sm.Embedding(N, DIM, dtype=dtype, seed=seed), sm.Embedding(N + 1, DIM, dtype=dtype, seed=seed + 1)
    opt = opt_cls([a, b], **kw)
    rng = np.random.default_rng(seed)
    for t, ids in enumerate(IDS):
        for layer in (a, b)[: 1 + (t > 0)]:
            layer(ids)
            opt.backward_step(layer, rng.standard_normal((ids.size, DIM)).astype(dtype))
    return opt


def _snapshot(opt):
    sd = opt.state_dict()
    return ({i: {k: (v.tobytes(), v.dtype, v.shape) if isinstance(v, np.ndarray) else v
                 for k, v in s.items()} for i, s in sd["state"].items()},
            [dict(g) for g in sd["param_groups"]])


def _set(key, value):
    def corrupt(sd):
        sd["state"][1][key] = value(sd["state"][1][key]) if callable(value) else value
    return corrupt


def _set_at(key, value, index=(1, 1)):
    def corrupt(sd):
        a = sd["state"][1][key]
        a[index[: a.ndim]] = value
    return corrupt


def _group(key, value):
    def corrupt(sd):
        sd["param_groups"][0][key] = value
    return corrupt


def _drop_group_key(key):
    def corrupt(sd):
        del sd["param_groups"][0][key]
    return corrupt


A, R, S = sm.optim.Adagrad, sm.optim.RowwiseAdagrad, sm.optim.SparseAdam
# (optimizer, corruption of parameter 1 or of the group, exception, message pattern)
BAD = [
    # parameter 0's state is valid and would be loaded first: nothing of it may stay loaded.
    (A, _set("sum", lambda a: np.full(a.shape, "x")), TypeError, r"parameter 1: 'sum'.*dtype"),
    (A, _set("sum", lambda a: a.astype(np.float64)), TypeError,
     r"parameter 1: 'sum' has dtype float64, expected float32"),
    (A, _set("sum", lambda a: a.astype(object)), TypeError, r"parameter 1: 'sum'.*object"),
    (A, _set("sum", lambda a: a.tolist()), TypeError, r"parameter 1: 'sum'.*numpy array"),
    (A, _set_at("sum", -1.0), ValueError, r"parameter 1: 'sum' must be finite and >= 0, got -1.0"),
    (A, _set_at("sum", np.nan), ValueError, r"parameter 1: 'sum'.*got nan at index \(1, 1\)"),
    (A, _set_at("sum", np.inf), ValueError, r"parameter 1: 'sum'.*got inf"),
    (A, _set("step", "abc"), TypeError, r"parameter 1: 'step' must be an integer, got 'abc'"),
    (A, _set("step", 2.5), TypeError, r"parameter 1: 'step'.*2\.5"),
    (A, _set("step", True), TypeError, r"parameter 1: 'step'.*True"),
    (A, _set("step", -1), ValueError, r"parameter 1: 'step'.*-1"),
    (A, _set("step", 2 ** 70), ValueError, r"parameter 1: 'step'"),
    (A, _group("lr", -5), ValueError, r"lr must be >= 0, got -5"),
    (A, _group("lr", "fast"), TypeError, r"lr must be a real number, got 'fast'"),
    (A, _group("lr", np.inf), ValueError, r"lr must be finite, got inf"),
    (A, _group("eps", np.nan), ValueError, r"eps must be finite, got nan"),
    (A, _group("lr_decay", -0.5), ValueError, r"lr_decay must be >= 0"),
    (A, _drop_group_key("lr_decay"), ValueError, r"lr_decay"),
    (R, _set_at("sum", -3.0), ValueError, r"parameter 1: 'sum'.*-3\.0 at index 1\b"),
    (R, _set("sum", lambda a: a[:-1]), ValueError, r"parameter 1: 'sum' has shape"),
    (R, _group("eps", -1e-8), ValueError, r"eps must be >= 0"),
    (S, _group("betas", (1, 1)), ValueError, r"betas\[0\] must be in \[0, 1\), got 1"),
    (S, _group("betas", (0.9, np.inf)), ValueError, r"betas\[1\] must be finite"),
    (S, _group("betas", "ab"), TypeError, r"betas\[0\] must be a real number"),
    (S, _group("eps", 0.0), ValueError, r"eps must be > 0, got 0"),
    (S, _set_at("exp_avg_sq", -1e-3), ValueError, r"parameter 1: 'exp_avg_sq'.*>= 0"),
    (S, _set_at("exp_avg_sq", np.nan), ValueError, r"parameter 1: 'exp_avg_sq'.*nan"),
    (S, _set_at("exp_avg", np.nan), ValueError, r"parameter 1: 'exp_avg' must be finite, got nan"),
    (S, _set("exp_avg", lambda a: a.astype(np.float16)), TypeError,
     r"parameter 1: 'exp_avg' has dtype float16"),
]


@pytest.mark.parametrize("opt_cls,corrupt,exc,match", BAD,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(BAD)])
def test_bad_state_dict_is_refused_and_changes_nothing(opt_cls, corrupt, exc, match):
    opt = _trained(opt_cls, seed=1)
    sd = _trained(opt_cls, seed=7).state_dict()  # other values: a partial load would show
    sd["param_groups"][0]["lr"] = 0.123  # and so would a partial update of the hyper-parameters
    corrupt(sd)
    before = _snapshot(opt)
    with pytest.raises(exc, match=match):
        opt.load_state_dict(sd)
    assert _snapshot(opt) == before


def test_float64_state_is_refused_for_a_float32_table_not_cast():
    opt = _trained(sm.optim.Adagrad, seed=1)
    sd = _trained(sm.optim.Adagrad, seed=2, dtype=np.float64).state_dict()
    with pytest.raises(TypeError, match="parameter 0: 'sum' has dtype float64, expected float32"):
        opt.load_state_dict(sd)


@pytest.mark.parametrize("opt_cls", [sm.optim.SGD, sm.optim.Adagrad, sm.optim.RowwiseAdagrad,
                                     sm.optim.SparseAdam])
def test_good_state_dict_loads_everything(opt_cls):
    kw = {"lr": 0.1} if opt_cls is sm.optim.SGD else {}
    src = _trained(opt_cls, seed=3, **kw)
    sd = src.state_dict()
    sd["param_groups"][0]["lr"] = np.float32(0.25)  # a NumPy scalar is a number: stored as a float
    dst = _trained(opt_cls, seed=4, **kw)
    group, layers = dst.param_groups[0], list(dst.param_groups[0]["params"])
    dst.load_state_dict(sd)
    assert dst.param_groups[0] is group and group["lr"] == 0.25 and type(group["lr"]) is float
    assert len(group["params"]) == 2 and all(a is b for a, b in zip(group["params"], layers))
    got, want = dst.state_dict()["state"], sd["state"]
    for i in want:
        assert set(got[i]) == set(want[i])
        for k, v in want[i].items():
            if isinstance(v, np.ndarray):
                assert got[i][k].tobytes() == v.tobytes() and got[i][k].dtype == v.dtype
            else:
                assert got[i][k] == v


def test_saved_ids_map_to_parameters_in_order_as_in_pytorch():
    src = _trained(sm.optim.Adagrad, seed=3)
    sd = src.state_dict()
    sd["state"] = {10: sd["state"][0], 20: sd["state"][1]}
    sd["param_groups"][0]["params"] = [10, 20]
    dst = _trained(sm.optim.Adagrad, seed=4)
    dst.load_state_dict(sd)
    for i, p in enumerate(dst.param_groups[0]["params"]):
        assert dst.state[p]["sum"].tobytes() == src.state_dict()["state"][i]["sum"].tobytes()


NON_FINITE = [
    (lambda p: sm.optim.SGD(p, lr=np.inf), ValueError, "lr must be finite, got inf"),
    (lambda p: sm.optim.SGD(p, lr=np.nan), ValueError, "lr must be finite, got nan"),
    (lambda p: sm.optim.SGD(p, lr="fast"), TypeError, "lr must be a real number, got 'fast'"),
    (lambda p: sm.optim.SGD(p, lr=True), TypeError, "lr must be a real number, got True"),
    (lambda p: sm.optim.Adagrad(p, lr=np.inf), ValueError, "lr must be finite"),
    (lambda p: sm.optim.Adagrad(p, eps=np.inf), ValueError, "eps must be finite, got inf"),
    (lambda p: sm.optim.Adagrad(p, eps=np.nan), ValueError, "eps must be finite, got nan"),
    (lambda p: sm.optim.Adagrad(p, lr_decay=np.inf), ValueError, "lr_decay must be finite"),
    (lambda p: sm.optim.Adagrad(p, initial_accumulator_value=np.inf), ValueError,
     "initial_accumulator_value must be finite"),
    (lambda p: sm.optim.Adagrad(p, initial_accumulator_value=np.nan), ValueError,
     "initial_accumulator_value must be finite"),
    (lambda p: sm.optim.Adagrad(p, lr=10 ** 400), ValueError, "lr must be finite"),
    (lambda p: sm.optim.Adagrad(p, lr=None), TypeError, "lr must be a real number, got None"),
    (lambda p: sm.optim.RowwiseAdagrad(p, lr=np.inf), ValueError, "lr must be finite"),
    (lambda p: sm.optim.RowwiseAdagrad(p, eps=np.inf), ValueError, "eps must be finite"),
    (lambda p: sm.optim.SparseAdam(p, lr=np.inf), ValueError, "lr must be finite"),
    (lambda p: sm.optim.SparseAdam(p, eps=np.inf), ValueError, "eps must be finite"),
    (lambda p: sm.optim.SparseAdam(p, eps=0.0), ValueError, r"eps must be > 0, got 0\.0"),
    (lambda p: sm.optim.SparseAdam(p, betas=(0.9, np.inf)), ValueError, r"betas\[1\] must be finite"),
    (lambda p: sm.optim.SparseAdam(p, betas=(np.nan, 0.9)), ValueError, r"betas\[0\] must be finite"),
    (lambda p: sm.optim.SparseAdam(p, betas=0.9), TypeError, r"betas must be a pair"),
    (lambda p: sm.optim.SparseAdam(p, betas=("a", 0.9)), TypeError, r"betas\[0\] must be a real number"),
]


@pytest.mark.parametrize("make,exc,match", NON_FINITE)
def test_constructors_refuse_non_finite_and_non_numbers(make, exc, match):
    with pytest.raises(exc, match=match):
        make([sm.Embedding(3, 2, seed=0)])


@pytest.mark.parametrize("make", [lambda p: sm.optim.SGD(p, lr=0), lambda p: sm.optim.Adagrad(p, lr=0),
                                  lambda p: sm.optim.Adagrad(p, eps=0)])
def test_zero_is_allowed_where_pytorch_allows_it(make):
    make([sm.Embedding(3, 2, seed=0)])


@pytest.mark.parametrize("fused", [False, True])
def test_param_group_edits_are_checked_before_a_step_and_valid_ones_apply(fused):
    emb = sm.Embedding(N, DIM, dtype=np.float64, seed=0)
    opt = sm.optim.SGD([emb], lr=0.1)
    ids, g = np.array([1, 3]), np.ones((2, DIM))

    def step():
        emb(ids)
        if fused:
            opt.backward_step(emb, g)
        else:
            opt.zero_grad()
            emb.backward(g)
            opt.step()

    w = emb.weight.copy()
    opt.param_groups[0]["lr"] = np.inf
    with pytest.raises(ValueError, match=r"param_groups\[0\]: lr must be finite"):
        step()
    assert emb.weight.tobytes() == w.tobytes()
    assert opt.state[next(emb.parameters())]["step"] == 0
    opt.param_groups[0]["lr"] = 0.5
    step()
    np.testing.assert_allclose(emb.weight[ids], w[ids] - 0.5, rtol=1e-15)


# eps = 0 (allowed by PyTorch for Adagrad): a row seen with a zero gradient and a zero accumulator
# must stay as it is, not become 0/0 = NaN. Same for an eps that underflows to 0 in float32.
ZERO_EPS = [
    (sm.optim.Adagrad, {"eps": 0.0}),
    (sm.optim.Adagrad, {"eps": 0.0, "lr_decay": 0.1}),
    (sm.optim.RowwiseAdagrad, {"eps": 0.0}),
    (sm.optim.Adagrad, {"eps": 1e-50}),
    (sm.optim.RowwiseAdagrad, {"eps": 1e-50}),
    (sm.optim.SparseAdam, {"eps": 1e-50}),
]


def _zero_grad_rows_run(opt_cls, kw, fused, dtype=np.float32, dim=DIM):
    emb = sm.Embedding(N, dim, dtype=dtype, seed=2)
    opt = opt_cls([emb], **kw)
    for t in range(3):
        ids = np.array([0, 1, 1, 4, 5])
        g = np.random.default_rng(t).standard_normal((ids.size, dim)).astype(dtype)
        g[:3] = 0  # rows 0 and 1: seen, with a zero gradient, every step
        g[3, 0] = 0  # row 4: one zero column
        emb(ids)
        if fused:
            opt.backward_step(emb, g)
        else:
            opt.zero_grad()
            emb.backward(g)
            opt.step()
    return emb.weight, opt.state[next(emb.parameters())]


@pytest.mark.parametrize("opt_cls,kw", ZERO_EPS)
def test_zero_eps_leaves_zero_gradient_rows_unchanged(opt_cls, kw):
    w0 = sm.Embedding(N, DIM, seed=2).weight
    results = []
    for fused in (False, True):
        for threads in (1, 2):
            with num_threads(threads):
                w, state = _zero_grad_rows_run(opt_cls, kw, fused)
            assert np.isfinite(w).all()
            assert w[:2].tobytes() == w0[:2].tobytes()
            if opt_cls is not sm.optim.RowwiseAdagrad:
                assert w[4, 0] == w0[4, 0]
            for v in state.values():
                assert np.isfinite(v).all()
            results.append(w.tobytes())
    assert len(set(results)) == 1  # step path, fused path, 1 or 2 threads: the same bits


@pytest.mark.parametrize("opt_cls,kw", ZERO_EPS)
def test_zero_eps_on_prefetched_rows(opt_cls, kw):
    # 64-wide float32 rows take the kernels' prefetching, vectorised path.
    w, state = _zero_grad_rows_run(opt_cls, kw, fused=True, dim=64)
    assert np.isfinite(w).all()
    assert w[:2].tobytes() == sm.Embedding(N, 64, seed=2).weight[:2].tobytes()
