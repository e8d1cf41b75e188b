"""The Module and optimizer surface a torch training script touches (issue 15 §2)."""
import copy

import numpy as np
import pytest

import sparsemb as sm
from sparsemb import reference as ref


class Model(sm.nn.Module):
    def __init__(self):
        self.user = sm.Embedding(6, 2, seed=0)
        self.bags = sm.nn.ModuleList([sm.EmbeddingBag(5, 2, mode="sum", seed=1)])
        self.extra = sm.nn.ModuleDict({"item": sm.Embedding(4, 2, seed=2)})


def test_parameters_names_and_state_dict_keys_are_torchs():
    m = Model()
    names = ["user.weight", "bags.0.weight", "extra.item.weight"]
    assert [n for n, _ in m.named_parameters()] == names
    assert list(m.state_dict()) == names
    assert m.state_dict()["user.weight"] is m.user.weight           # shared, as torch's
    p = next(m.user.parameters())
    assert p is next(m.user.parameters()) and p.data is m.user.weight and p.shape == (6, 2)
    assert list(sm.Embedding(3, 2).state_dict()) == ["weight"]


def test_load_state_dict_is_all_or_nothing_and_casts():
    m = Model()
    sd = {k: np.full(v.shape, 2.0) for k, v in m.state_dict().items()}   # float64 into float32
    assert m.load_state_dict(sd) == sm.nn.IncompatibleKeys([], [])
    assert (m.user.weight == 2).all() and m.user.weight.dtype == np.float32
    before = copy.deepcopy(m.state_dict())
    bad = dict(sd, **{"extra.item.weight": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"'extra.item.weight' has shape \(3, 2\)"):
        m.load_state_dict({k: v * 0 for k, v in bad.items()})
    assert all((m.state_dict()[k] == before[k]).all() for k in before)
    with pytest.raises(ValueError, match="missing keys.*user.weight"):
        m.load_state_dict({})
    assert m.load_state_dict({"x": 1}, strict=False).unexpected_keys == ["x"]


def test_train_eval_requires_grad_zero_grad_reset():
    m = Model()
    assert m.eval() is m and not m.user.training and not m.bags[0].training
    m.train()
    assert m.extra["item"].training
    m.requires_grad_(False)
    m.user(np.array([1]))
    assert m.user.backward(np.ones((1, 2))) is None
    m.requires_grad_()
    m.user(np.array([1, 1]))
    m.user.backward(np.ones((2, 2)))
    m.zero_grad(set_to_none=False)
    assert m.user.grad.indices.size == 0
    m.zero_grad()
    assert m.user.grad is None
    e = sm.Embedding(5, 3, padding_idx=1, seed=4)
    first = e.weight.copy()
    e.reset_parameters()
    assert (e.weight[1] == 0).all() and not np.array_equal(e.weight, first)


def test_optimizer_takes_parameters_groups_and_pairs():
    m = Model()
    opt = sm.optim.SGD([{"params": m.user.parameters(), "lr": 0.5},
                        {"params": m.bags.parameters()}], lr=0.1)
    opt.add_param_group({"params": [("w", next(m.extra.parameters()))], "lr": 0.2})
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1, 0.2]
    assert sm.optim.SGD(m.parameters()).defaults["lr"] == 1e-3      # torch's default
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": m.user.parameters()})
    with pytest.raises(TypeError, match="plain array here"):
        sm.optim.SGD([m.user.weight])
    w = m.user.weight.copy()
    ids = np.array([0, 3, 0])
    m.user(ids)
    m.user.backward(np.ones((3, 2)))
    assert opt.step(closure=lambda: 7.0) == 7.0
    np.testing.assert_allclose(m.user.weight, w - 0.5 * ref.grad(ids, np.ones((3, 2)), 6), rtol=1e-6)
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1], [2]]


@pytest.mark.parametrize("cls,kw", [(sm.optim.SGD, {"lr": 0.1}), (sm.optim.Adagrad, {"lr": 0.1}),
                                    (sm.optim.RowwiseAdagrad, {"lr": 0.1}),
                                    (sm.optim.SparseAdam, {"lr": 0.1})])
def test_maximize_ascends(cls, kw):
    """Maximizing L is minimizing -L: the same weights (and SparseAdam's moment of -g, as torch's)."""
    a, b = sm.Embedding(6, 3, seed=1), sm.Embedding(6, 3, seed=1)
    up, down = cls([a], maximize=True, **kw), cls([b], **kw)
    g = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    for _ in range(3):
        for layer, opt, sign in ((a, up, 1), (b, down, -1)):
            layer(np.array([0, 2, 2, 5]))
            opt.backward_step(layer, sign * g)
    np.testing.assert_array_equal(a.weight, b.weight)


@pytest.mark.parametrize("make,match", [
    (lambda p: sm.optim.SGD(p, momentum=0.9), "momentum must be 0"),
    (lambda p: sm.optim.SGD(p, weight_decay=1e-4), "weight_decay must be 0"),
    (lambda p: sm.optim.SGD(p, nesterov=True), "nesterov must be False"),
    (lambda p: sm.optim.Adagrad(p, weight_decay=0.1), "weight_decay must be 0"),
    (lambda p: sm.optim.SparseAdam(p, maximize="yes"), "maximize must be True or False"),
])
def test_torch_keys_a_lazy_step_cannot_honour_are_refused(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(sm.Embedding(3, 2).parameters())


def test_import_sparsemb_never_imports_torch():
    import subprocess
    import sys
    code = ("import sys, sparsemb as sm, numpy as np; e = sm.Embedding(3, 2); "
            "o = sm.optim.SparseAdam(e.parameters()); sm.optim.lr_scheduler.StepLR(o, 2); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
