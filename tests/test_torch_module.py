"""sparsemb.torch: torch.nn.Modules on sparsemb's kernels, against torch (issue 15 §4).

Every case of tests/_torch_cases.py runs through sparsemb.torch's modules with torch's autograd and
is compared with the values torch's own modules gave (recorded) and give now (live); optimizer cases
run once with torch.optim on our sparse gradients and once fused (optimizer in backward).
Needs torch: skipped without it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import sparsemb.torch as st  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _torch_cases as cases  # noqa: E402
from test_torch_parity import RECORDED, TOL, _dtype, _params, assert_matches  # noqa: E402

def run_module(case, fused=False):
    """``cases.run_torch`` with sparsemb.torch's modules (and, with ``fused``, the optimizer in backward)."""
    return cases.run_torch(case, modules=st, fused=fused)


def _without_grads(expected):
    """What a fused run can be compared on: outputs and weights (it makes no gradient)."""
    return {"steps": [{"calls": [None if c is None else {"out": c["out"]} for c in s["calls"]],
                       "weights": s["weights"]} for s in expected["steps"]]}


@pytest.mark.parametrize("case", _params(RECORDED))
def test_recorded(case):
    expected = {k: v for k, v in case["expected"].items() if k != "state"}  # torch.optim's own state
    assert_matches(run_module(case), expected, TOL[_dtype(case)])


@pytest.mark.parametrize("case", _params({"torch_optim": RECORDED["torch_optim"]}))
def test_fused_optimizer_in_backward_recorded(case):
    assert_matches(run_module(case, fused=True), _without_grads(case["expected"]), TOL[_dtype(case)])


@pytest.mark.parametrize("case", _params({f: cases.build_cases(f)[::7] for f in cases.FAMILIES}))
def test_live(case):
    expected = {k: v for k, v in cases.run_torch(case).items() if k != "state"}
    assert_matches(run_module(case), expected, TOL[_dtype(case)])


def test_mixes_with_torch_layers_and_two_calls_before_backward():
    """A shared table called twice (two features) then one backward, inside an MLP."""
    torch.manual_seed(0)
    ours = st.EmbeddingBag(20, 4, mode="sum", sparse=True)
    theirs = torch.nn.EmbeddingBag.from_pretrained(ours.weight.detach().clone(), freeze=False,
                                                   mode="sum", sparse=True)
    mlp = torch.nn.Linear(8, 1)
    a, b = torch.tensor([[1, 2, 2], [3, 4, 5]]), torch.tensor([[5, 6, 1], [7, 7, 7]])
    for m in (ours, theirs):
        mlp(torch.cat([m(a), m(b)], 1)).square().sum().backward()
    torch.testing.assert_close(ours.weight.grad.to_dense(), theirs.weight.grad.to_dense())


def test_module_surface_is_torchs():
    e = st.Embedding(10, 3, padding_idx=0, sparse=True)
    assert repr(e) == repr(torch.nn.Embedding(10, 3, padding_idx=0, sparse=True))
    assert list(e.state_dict()) == ["weight"] and e.padding_idx == 0 and (e.weight[0] == 0).all()
    e.load_state_dict({"weight": torch.ones(10, 3)})
    assert (e(torch.tensor([4])) == 1).all()                  # the view follows load_state_dict
    e.weight.data = torch.full((10, 3), 2.0)                   # and a replaced .data
    assert (e(torch.tensor([4])) == 2).all()
    with pytest.raises(ValueError, match="optimizer must be one of"):
        st.Embedding(3, 2, optimizer="lamb")
    with pytest.raises(ValueError, match="device must be 'cpu'"):
        st.Embedding(3, 2, device="meta")
    fused = st.EmbeddingBag(10, 3, optimizer="sparse_adam", lr=0.1)
    fused(torch.tensor([[1, 2]])).sum().backward()
    assert fused.weight.grad is None and fused.optimizer.state_dict()["state"][0]["step"] == 1


def test_own_table_is_a_plain_tensor_the_kernels_view():
    """A layer's own weight lives in NumPy-allocated memory (huge pages where the OS gives them);
    it must still be an ordinary torch tensor: the kernels view it without a copy, the dtype asked
    for is kept, and torch's serialization and deepcopy carry it."""
    import copy
    import io

    for dtype in (torch.float32, torch.float64):
        layer = st.EmbeddingBag(50, 4, mode="sum", dtype=dtype, optimizer="sgd", lr=0.5)
        assert layer.weight.dtype == dtype and layer.weight.is_contiguous()
        assert np.shares_memory(layer.weight.detach().numpy(), layer._layer.weight)
        before = layer.weight.detach().clone()
        layer(torch.tensor([[3, 3, 7]])).sum().backward()          # the fused update moves rows in place
        moved = (layer.weight.detach() != before).any(1).nonzero().flatten().tolist()
        assert moved == [3, 7]
        buf = io.BytesIO()
        torch.save(layer.state_dict(), buf)
        buf.seek(0)
        loaded = torch.load(buf)["weight"]
        assert torch.equal(loaded, layer.weight.detach())
        twin = copy.deepcopy(layer)
        assert torch.equal(twin.weight, layer.weight)
        assert not np.shares_memory(twin.weight.detach().numpy(), layer.weight.detach().numpy())
