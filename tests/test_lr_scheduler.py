"""sparsemb.optim.lr_scheduler against torch's schedules, step by step (issue 15 §2).

Recorded (always): the rates (and SparseAdam's betas) torch gave after construction and each step,
stored by scripts/record_torch_fixtures.py. Live: the same against torch now, and state dicts
exchanged both ways.
"""
from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import sparsemb as sm
from sparsemb.optim import lr_scheduler as L

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _torch_cases as cases  # noqa: E402

RECORDED = cases.load_cases(Path(__file__).resolve().parent / "fixtures" / "torch_lr_scheduler.npz")


def _run(case):
    name, cls, kwargs, opt_name, steps = case
    layers = [sm.Embedding(3, 2, seed=i) for i in range(len(cases.GROUP_LRS))]
    opt = getattr(sm.optim, opt_name)([{"params": m.parameters(), "lr": lr}
                                       for m, lr in zip(layers, cases.GROUP_LRS)])
    sched = getattr(L, cls)(opt, **cases.scheduler_kwargs(kwargs))
    trace = [cases.schedule_entry(opt, sched)]
    for i in range(steps):
        sched.step(cases.METRICS[i]) if cls == "ReduceLROnPlateau" else sched.step()
        trace.append(cases.schedule_entry(opt, sched))
    return {"trace": trace, "sched": sched, "opt": opt}


def _assert_trace(got, expected):
    # The same formulas in the same order: the same floats (a 1-ulp slack for libm's cos).
    for step, (g, e) in enumerate(zip(got, expected)):
        for k in e:
            if e[k] is not None:
                np.testing.assert_allclose(np.asarray(g[k], float), np.asarray(e[k], float),
                                           rtol=1e-15, atol=0, err_msg=f"step {step}: {k}")


@pytest.mark.parametrize("rec", RECORDED, ids=[r["case"][0] for r in RECORDED])
def test_recorded(rec):
    got = _run(tuple(rec["case"]))
    assert len(got["trace"]) == len(rec["expected"]["trace"])
    _assert_trace(got["trace"], rec["expected"]["trace"])
    state = got["sched"].state_dict()
    # torch's private warning flag aside, the same entries with the same values.
    for k, v in rec["expected"]["state"].items():
        if k == "_get_lr_called_within_step":
            continue
        mine = state[k]
        if (isinstance(v, float) and math.isinf(v)) or isinstance(v, str) or (
                isinstance(v, list) and v and isinstance(v[0], dict)):
            assert mine == v, k
        else:
            np.testing.assert_allclose(np.asarray(mine, float), np.asarray(v, float), rtol=1e-15, err_msg=k)


def test_fixture_is_current():
    assert [tuple(r["case"]) for r in RECORDED] == [
        tuple(cases._pack(list(c), {})) for c in cases.SCHEDULER_CASES]


@pytest.mark.parametrize("case", cases.SCHEDULER_CASES, ids=[c[0] for c in cases.SCHEDULER_CASES])
def test_live(case):
    pytest.importorskip("torch")
    _assert_trace(_run(case)["trace"], cases.run_torch_scheduler(case)["trace"])


def test_state_dicts_go_both_ways_live():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(2))
    t_opt = torch.optim.SGD([p], lr=0.2)
    t_sched = torch.optim.lr_scheduler.StepLR(t_opt, step_size=2, gamma=0.5)
    opt = sm.optim.SGD(sm.Embedding(3, 2).parameters(), lr=0.2)
    sched = L.StepLR(opt, step_size=2, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            t_sched.step()
            sched.step()
        sched2 = L.StepLR(sm.optim.SGD(sm.Embedding(3, 2).parameters(), lr=0.2), step_size=9)
        sched2.load_state_dict(t_sched.state_dict())
        t2 = torch.optim.lr_scheduler.StepLR(torch.optim.SGD([p], lr=0.2), step_size=9)
        t2.load_state_dict(sched.state_dict())
        for _ in range(3):
            for s in (sched, sched2, t_sched, t2):
                s.step()
    assert sched2.last_epoch == t2.last_epoch == t_sched.last_epoch == sched.last_epoch == 6
    # (As in torch, a scheduler's state leaves the optimizer's rates to the optimizer's state dict.)
    assert sched.get_last_lr() == t_sched.get_last_lr() and sched2.get_last_lr() == t2.get_last_lr()
    assert sched2.state_dict() | {"_get_lr_called_within_step": False} == t2.state_dict()


def test_lambda_state_dict_keeps_callable_objects_state():
    class Factor:
        def __init__(self):
            self.k = 0.5

        def __call__(self, epoch):
            return self.k ** epoch
    opt = sm.optim.SGD(sm.Embedding(3, 2).parameters(), lr=1.0)
    f = Factor()
    s = L.LambdaLR(opt, [f])
    f.k = 0.25
    sd = s.state_dict()
    g = Factor()
    L.LambdaLR(sm.optim.SGD(sm.Embedding(3, 2).parameters(), lr=1.0), [g]).load_state_dict(sd)
    assert g.k == 0.25 and sd["lr_lambdas"] == [{"k": 0.25}]


def test_errors_are_torchs():
    opt = sm.optim.Adagrad(sm.Embedding(3, 2).parameters())
    with pytest.raises(TypeError, match="is not an Optimizer"):
        L.StepLR(object(), 2)
    with pytest.raises(ValueError, match="momentum or beta1"):
        L.OneCycleLR(opt, max_lr=0.1, total_steps=4)
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        L.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(KeyError, match="initial_lr"):
        L.StepLR(sm.optim.SGD(sm.Embedding(3, 2).parameters()), 2, last_epoch=3)
