"""sparsemb against PyTorch, case by case (the cases live in tests/_torch_cases.py).

The recorded tests replay the inputs stored by scripts/record_torch_fixtures.py and compare with the
values torch gave then: they always run, torch or not. The live tests build the same cases and ask
torch now, when it is importable.

Nothing recomputed through libm or SIMD code is compared bit for bit with a recorded float: the
replay uses the stored inputs, not rebuilt ones (np.geomspace, say, rounds differently on a CPU
without AVX-512), results are compared within TOL, and rebuilt inputs are checked against the
stored ones within ``cases.INPUT_ULPS``. Ids, offsets, names, options, shapes and dtypes are exact.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest

import sparsemb as sm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _torch_cases as cases  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# float64 must agree to rounding error; float32 to a few ulps of the O(1)-O(10) values involved.
TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-6, atol=1e-6)}

RECORDED = {family: cases.load_cases(FIXTURES / f"{family}.npz") for family in cases.FAMILIES}


def run_sparsemb(case):
    """Replay ``case`` through sparsemb; the same results layout as ``cases.run_torch``."""
    layers = [getattr(sm, t["layer"]).from_pretrained(t["weight"], freeze=False, **t["options"])
              for t in case["tables"]]
    opt = None
    if "optimizer" in case:
        opt = getattr(sm.optim, case["optimizer"])(layers, **case["hyper"])
    steps = []
    for calls in case["steps"]:
        if opt is not None:
            opt.zero_grad()
        done = []
        for layer, call in zip(layers, calls):
            if call is None:
                done.append(None)
                continue
            kwargs = {k: call[k] for k in ("offsets", "per_sample_weights") if k in call}
            out = layer(call["ids"], **kwargs)
            done.append({"out": out, "grad": layer.backward(call["grad_out"])})
        if opt is not None:
            opt.step()
        # Densified only after step(), so the optimizer consumed each gradient in its fused
        # (not yet summed) form, as it does in a user's loop.
        for d in filter(None, done):
            d["grad"] = d["grad"].to_dense()
        steps.append({"calls": done, "weights": [m.weight.copy() for m in layers]})
    grads = [None if m.grad is None else m.grad.to_dense() for m in layers]
    result = {"steps": steps, "grads": grads}
    if opt is not None:
        state = opt.state_dict()["state"]
        # torch keeps the step count as a float tensor.
        result["state"] = [{k: np.float64(v) if k == "step" else v for k, v in state[i].items()}
                           for i in range(len(layers))]
    return result


def assert_matches(got, expected, tol, where="result"):
    """Compare nested results; dict keys are those of ``expected`` (torch's SGD keeps no state, so
    only the state entries torch has are compared)."""
    if isinstance(expected, dict):
        for k in expected:
            assert k in got, f"{where}: {k!r} missing"
            assert_matches(got[k], expected[k], tol, f"{where}.{k}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), f"{where}: lengths differ"
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_matches(g, e, tol, f"{where}[{i}]")
    elif not isinstance(expected, np.ndarray):      # None, names, options, hyper-parameters
        assert got == expected, f"{where}: {got!r} != {expected!r}"
    else:
        got = np.asarray(got)
        assert got.shape == expected.shape, f"{where}: shape {got.shape} != {expected.shape}"
        assert got.dtype == expected.dtype, f"{where}: dtype {got.dtype} != {expected.dtype}"
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(got, expected, err_msg=where, **tol)
        else:  # integers are exact whatever the tolerance
            np.testing.assert_array_equal(got, expected, err_msg=where)


def _dtype(case):
    return case["tables"][0]["weight"].dtype.name


def _params(by_family):
    return [pytest.param(case, id=f"{family}:{case['name']}")
            for family, family_cases in by_family.items() for case in family_cases]


@pytest.mark.parametrize("case", _params(RECORDED))
def test_recorded(case):
    assert_matches(run_sparsemb(case), case["expected"], TOL[_dtype(case)])


@pytest.mark.parametrize("family", cases.FAMILIES)
def test_fixtures_are_current(family):
    """The recorded inputs are those the case list builds today (else: re-run the record script).

    Names, ids, offsets, options, shapes and dtypes exactly; float inputs within a few ulps, since
    rebuilding them goes through NumPy's SIMD-dispatched exp/log (np.geomspace) and libm, which
    round differently on other CPUs (issue 10: 1 ulp on an AVX2-only EPYC)."""
    built = cases.build_cases(family)
    assert [c["name"] for c in RECORDED[family]] == [c["name"] for c in built]
    for rec, new in zip(RECORDED[family], built):
        cases.assert_same_inputs({k: v for k, v in rec.items() if k != "expected"}, new, rec["name"])


def test_max_norm_decisions_are_far_from_the_threshold():
    """A looked-up row is renormed when its norm exceeds max_norm: were a recorded row's norm
    within rounding of max_norm, another CPU's pow/sum could flip that decision and change the
    result by far more than TOL. Every table row of a max_norm case is at least 1e-4 (relative)
    away from it. (Rows renormed by a first call end 1e-7 below it; renorming them again would move
    them by 1e-7 relative, within TOL.)"""
    for family, family_cases in RECORDED.items():
        for case in family_cases:
            for table in case["tables"]:
                options = table["options"]
                if options.get("max_norm") is None:
                    continue
                norms = np.linalg.norm(table["weight"].astype(np.float64),
                                       ord=options.get("norm_type", 2.0), axis=1)
                gap = np.abs(norms / options["max_norm"] - 1).min()
                assert gap > 1e-4, f"{family}:{case['name']}: a row's norm is {gap:.1e} from max_norm"


def _ulps_away(x, n):
    """``x`` moved ``n`` ulps towards +inf, element by element."""
    for _ in range(n):
        x = np.nextafter(x, np.inf)
    return x


def test_input_check_allows_rounding_and_catches_changed_cases():
    """The rebuilt-input check tolerates what another CPU's rounding gives (an ulp or a few) and
    nothing else: a float moved by a relative 1e-9, an id, an option or a dtype changed all fail."""
    case = next(c for c in RECORDED["torch_embedding"] if c["name"] == "max_norm_p1.0/float64")
    case = {k: v for k, v in case.items() if k != "expected"}

    def changed(edit):
        other = copy.deepcopy(case)
        edit(other)
        return other

    def near(c):
        c["tables"][0]["weight"] = _ulps_away(c["tables"][0]["weight"], cases.INPUT_ULPS)
        c["steps"][1][0]["grad_out"] = _ulps_away(c["steps"][1][0]["grad_out"], 1)

    cases.assert_same_inputs(case, changed(near))

    def weight(c):
        c["tables"][0]["weight"][3, 1] *= 1 + 1e-9

    def ulps(c):
        c["tables"][0]["weight"] = _ulps_away(c["tables"][0]["weight"], cases.INPUT_ULPS + 1)

    def ids(c):
        c["steps"][0][0]["ids"][2] = 4

    def option(c):
        c["tables"][0]["options"]["max_norm"] = 1.5

    def dtype(c):
        c["steps"][0][0]["ids"] = c["steps"][0][0]["ids"].astype(np.int32)

    for edit in (weight, ulps, ids, option, dtype):
        with pytest.raises(AssertionError):
            cases.assert_same_inputs(case, changed(edit))


def test_comparison_catches_a_small_error():
    """Guards against a vacuous comparison: a 1e-5 relative change in one output must fail."""
    case = next(c for c in RECORDED["torch_embedding_bag"] if c["name"] == "mean_offsets/float32")
    got = run_sparsemb(case)
    got["steps"][0]["calls"][0]["out"][0, 2] *= 1 + 1e-5
    with pytest.raises(AssertionError):
        assert_matches(got, case["expected"], TOL["float32"])


@pytest.mark.parametrize("case", _params({f: cases.build_cases(f) for f in cases.FAMILIES}))
def test_live(case):
    pytest.importorskip("torch")
    assert_matches(run_sparsemb(case), cases.run_torch(case), TOL[_dtype(case)])


def test_torch_bag_freq_scaling_still_needs_the_workaround():
    """torch 2.13's own EmbeddingBag backward scales by the wrong counts (see
    ``_torch_cases._bag_by_embedding``); when a torch release fixes it, this fails as a reminder to
    drop the workaround and record from nn.EmbeddingBag directly."""
    torch = pytest.importorskip("torch")
    case = next(c for c in cases.build_cases("torch_embedding_bag")
                if c["name"] == "sum_scale_grad_by_freq/float64")
    table, call = case["tables"][0], case["steps"][0][0]
    bag = torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(table["weight"]), freeze=False,
                                                **table["options"])
    out = bag(torch.from_numpy(call["ids"]), torch.from_numpy(call["offsets"]))
    out.backward(torch.from_numpy(call["grad_out"]))
    documented = run_sparsemb(case)["grads"][0]  # equal to the recorded, documented gradient
    assert not np.allclose(bag.weight.grad.numpy(), documented), \
        "torch now scales EmbeddingBag gradients by the right counts (pytorch/pytorch#190063)"
