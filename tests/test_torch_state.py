"""Optimizer state dicts go both ways between sparsemb and torch (issue 15 §2).

Recorded (always): torch's state dict after two steps, loaded here, continues to torch's weights; our
state dict has torch's structure and keys. Live (torch importable): a torch optimizer loads ours
(through sparsemb.torch.optimizer_state_to_torch) and continues to our weights.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import sparsemb as sm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _torch_cases as cases  # noqa: E402

RECORDED = cases.load_cases(Path(__file__).resolve().parent / "fixtures" / "torch_optim_state.npz")
TOL = dict(rtol=1e-6, atol=1e-6)
IDS = [c["name"] for c in RECORDED]


def _ours(case, steps):
    emb = sm.Embedding.from_pretrained(case["weight"], freeze=False)
    opt = getattr(sm.optim, case["optimizer"])(emb.parameters(), **case["hyper"])
    weights = []
    for call in case["steps"][:steps]:
        opt.zero_grad()
        emb(call["ids"])
        emb.backward(call["grad_out"])
        opt.step()
        weights.append(emb.weight.copy())
    return emb, opt, weights


def _continue(emb, opt, steps):
    out = []
    for call in steps:
        opt.zero_grad()
        emb(call["ids"])
        emb.backward(call["grad_out"])
        opt.step()
        out.append(emb.weight.copy())
    return out


def test_fixture_is_current():
    assert IDS == [name for name, _, _ in cases.STATE_CASES]
    for rec, new in zip(RECORDED, cases.build_state_cases()):
        cases.assert_same_inputs({k: v for k, v in rec.items() if k != "expected"},
                                 {k: (list(v) if isinstance(v, tuple) else v) for k, v in new.items()}
                                 | {"hyper": cases._pack(new["hyper"], {})}, rec["name"])


@pytest.mark.parametrize("case", RECORDED, ids=IDS)
def test_ours_loads_torchs_and_continues_like_torch(case):
    split = cases.STATE_SPLIT
    emb = sm.Embedding.from_pretrained(case["expected"]["weights"][split - 1], freeze=False)
    opt = getattr(sm.optim, case["optimizer"])(emb.parameters(), lr=0.123)
    theirs = case["expected"]["state_dict"]
    theirs = {"state": {int(k): v for k, v in theirs["state"].items()},
              "param_groups": theirs["param_groups"]}
    opt.load_state_dict(theirs)
    assert opt.param_groups[0]["lr"] == case["hyper"]["lr"]
    assert opt.param_groups[0]["maximize"] == case["hyper"].get("maximize", False)
    got = _continue(emb, opt, case["steps"][split:])
    for g, e in zip(got, case["expected"]["weights"][split:]):
        np.testing.assert_allclose(g, e, **TOL)


@pytest.mark.parametrize("case", RECORDED, ids=IDS)
def test_our_state_dict_has_torchs_structure_and_values(case):
    _, opt, weights = _ours(case, cases.STATE_SPLIT)
    np.testing.assert_allclose(weights[-1], case["expected"]["weights"][cases.STATE_SPLIT - 1], **TOL)
    ours, theirs = opt.state_dict(), case["expected"]["state_dict"]
    assert [sorted(g) for g in ours["param_groups"]] == [sorted(g) for g in theirs["param_groups"]]
    for g_ours, g_theirs in zip(ours["param_groups"], theirs["param_groups"]):
        for k, v in g_theirs.items():
            assert (list(g_ours[k]) if isinstance(g_ours[k], tuple) else g_ours[k]) == v, k
    for i, s in theirs["state"].items():
        mine = ours["state"][int(i)]
        assert set(s) <= set(mine)
        for k, v in s.items():
            np.testing.assert_allclose(np.asarray(mine[k], np.float64), np.asarray(v, np.float64),
                                       err_msg=k, **TOL)


@pytest.mark.parametrize("case", RECORDED, ids=IDS)
def test_torch_loads_ours_and_continues_like_ours_live(case):
    torch = pytest.importorskip("torch")
    from sparsemb.torch import optimizer_state_to_torch
    split = cases.STATE_SPLIT
    emb, opt, weights = _ours(case, split)
    temb = torch.nn.Embedding.from_pretrained(torch.from_numpy(weights[-1].copy()), freeze=False,
                                              sparse=True)
    topt = getattr(torch.optim, case["optimizer"])(temb.parameters(), lr=0.123)
    topt.load_state_dict(optimizer_state_to_torch(opt.state_dict()))
    assert topt.param_groups[0]["lr"] == case["hyper"]["lr"]
    expected = _continue(emb, opt, case["steps"][split:])
    import warnings
    for call, e in zip(case["steps"][split:], expected):
        topt.zero_grad()
        # A copy: sparsemb keeps the recorded grad_out read-only while its layer's update is pending.
        temb(torch.from_numpy(call["ids"])).backward(torch.from_numpy(call["grad_out"].copy()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            topt.step()
        np.testing.assert_allclose(temb.weight.detach().numpy(), e, **TOL)


def test_fresh_torch_state_dicts_load_and_keep_torchs_keys_live():
    torch = pytest.importorskip("torch")
    for name in ("SGD", "Adagrad", "SparseAdam"):
        t = getattr(torch.optim, name)(torch.nn.Embedding(4, 2, sparse=True).parameters(), lr=0.5)
        ours = getattr(sm.optim, name)(sm.Embedding(4, 2).parameters(), lr=0.1)
        ours.load_state_dict(t.state_dict())     # SparseAdam's and SGD's state is still empty
        assert ours.param_groups[0].keys() - {"params"} == t.param_groups[0].keys() - {"params"}
        assert ours.defaults | {"lr": 0.5} == t.defaults and ours.param_groups[0]["lr"] == 0.5
