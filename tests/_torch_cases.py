"""PyTorch parity cases: the one list of them, their inputs built with NumPy, their expected values
computed with torch.

scripts/record_torch_fixtures.py runs every case through torch and stores inputs and results in
tests/fixtures/<family>.npz; tests/test_torch_parity.py replays the stored cases through sparsemb
(always) and the freshly built ones against torch (when torch is importable). torch is imported only
inside :func:`run_torch`, so building and loading cases needs NumPy alone.

A case is a dict:

``tables``
    one dict per layer: ``layer`` ("Embedding" / "EmbeddingBag"), ``options`` (keyword arguments
    that ``from_pretrained`` of both libraries accepts under the same names) and ``weight``.
``steps``
    a list of steps; a step is a list with one call per table (``None``: the table is not used in
    that step). A call is ``ids``, ``grad_out`` and, for bags, ``offsets`` / ``per_sample_weights``.
``optimizer``, ``hyper``
    optimizer cases only: the class name (same in ``torch.optim`` and ``sparsemb.optim``) and its
    keyword arguments. Each step is then ``zero_grad(); forward; backward; step()``; without an
    optimizer, gradients accumulate over all steps.

Results (:func:`run_torch`, and the sparsemb replay in the test) are a dict: per step the output and
the gradient returned by each call and the weights after the step; the final accumulated ``.grad``
of each table (``None`` if unset); for optimizer cases the final state of each table.
"""
from __future__ import annotations

import json
import warnings

import numpy as np

DTYPES = (np.float64, np.float32)
MODES = ("sum", "mean", "max")


# --------------------------------------------------------------------------- building cases

def _weight(rng, n, d, spread=False):
    """A float64 table; ``spread`` gives rows norms from ~0.1 to ~4 so that max_norm renorms some
    looked-up rows and leaves others (and unseen large rows) alone.

    np.geomspace goes through NumPy's SIMD-dispatched exp/log, whose last bit depends on the CPU
    (AVX-512 or not) and the NumPy build: a rebuilt ``spread`` table may differ from a recorded one
    by an ulp or two, which is why the tests replay the recorded inputs and compare rebuilt ones
    only within :data:`INPUT_ULPS`."""
    w = rng.standard_normal((n, d))
    if spread:
        w *= np.geomspace(0.1, 4.0, n)[rng.permutation(n)][:, None]
    return w


def _call(rng, ids, out_shape, offsets=None, psw=False):
    ids = np.asarray(ids)
    if ids.dtype != np.int32:            # int32 only where a case asks for it explicitly
        ids = ids.astype(np.int64)
    call = {"ids": ids, "grad_out": rng.standard_normal(out_shape)}
    if offsets is not None:
        call["offsets"] = np.asarray(offsets, dtype=ids.dtype)
    if psw:
        call["per_sample_weights"] = rng.uniform(-2.0, 2.0, ids.shape)
    return call


def _emb_call(rng, ids, d):
    ids = np.asarray(ids)
    return _call(rng, ids, ids.shape + (d,))


def _bag_call(rng, ids, d, offsets=None, include_last_offset=False, psw=False):
    ids = np.asarray(ids)
    if offsets is None:
        bags = ids.shape[0]
    else:
        bags = len(offsets) - 1 if include_last_offset else len(offsets)
    return _call(rng, ids, (bags, d), offsets, psw)


def _case(name, tables, steps, **extra):
    return dict(name=name, tables=tables, steps=steps, **extra)


def _table(layer, weight, **options):
    return {"layer": layer, "options": options, "weight": weight}


def _embedding_cases():
    rng = np.random.default_rng(20240601)
    d = 4
    cases = []

    def single(name, n, calls, spread=False, **options):
        w = _weight(rng, n, d, spread)
        cases.append(_case(name, [_table("Embedding", w, **options)], [[c] for c in calls]))

    single("duplicates_1d", 8, [_emb_call(rng, [0, 1, 0, 2, 7, 1, 0], d)])
    single("ids_2d_int32", 9,
           [_emb_call(rng, np.array([[3, 1, 3, 0], [8, 8, 8, 1], [2, 3, 5, 6]], np.int32), d)])
    single("empty_ids", 5, [_emb_call(rng, np.zeros(0, np.int64), d)])
    single("accumulate_3_calls", 7,
           [_emb_call(rng, [1, 2, 1], d), _emb_call(rng, [[2, 6], [1, 1]], d),
            _emb_call(rng, [0, 2], d)])
    # from_pretrained keeps the padding row's values (lookups return them); its gradient is zero.
    single("padding", 10, [_emb_call(rng, [2, 0, 2, 5, 2, 9], d)], padding_idx=2)
    single("padding_negative", 10, [_emb_call(rng, [[9, 0, 9], [4, 8, 9]], d)], padding_idx=-1)
    for p in (1.0, 2.0, 3.5, np.inf):
        # Two calls: the second sees rows renormed by the first plus new ones.
        single(f"max_norm_p{p}", 16,
               [_emb_call(rng, [0, 3, 3, 5, 7, 9, 11], d), _emb_call(rng, [[3, 12], [13, 0]], d)],
               spread=True, max_norm=1.0, norm_type=float(p))
    single("scale_grad_by_freq", 8, [_emb_call(rng, [5, 1, 5, 2, 5, 1, 7], d)],
           scale_grad_by_freq=True)
    single("all_options", 14,
           [_emb_call(rng, [[11, 3, 3, 0], [12, 3, 11, 5]], d), _emb_call(rng, [11, 3, 7, 7], d)],
           spread=True, padding_idx=-3, max_norm=1.5, norm_type=3.5, scale_grad_by_freq=True)
    return cases


def _bag_cases():
    rng = np.random.default_rng(20240602)
    d = 5
    cases = []

    def single(name, n, calls, spread=False, **options):
        w = _weight(rng, n, d, spread)
        cases.append(_case(name, [_table("EmbeddingBag", w, **options)], [[c] for c in calls]))

    ids = [3, 1, 3, 0, 7, 7, 2, 5, 1, 3]       # duplicates inside and across bags
    offsets = [0, 3, 3, 6, 10]                 # an empty bag in the middle and one at the end
    last = [0, 2, 2, 6, 10]                    # include_last_offset: 4 bags, the second empty
    with_pad = [4, 1, 4, 4, 4, 0, 6, 4, 2]      # bag 1 is padding only (mean count 0 -> zeros)
    pad_offsets = [0, 3, 5, 9]
    ids_2d = [[1, 8, 1], [0, 0, 5], [8, 2, 7], [3, 8, 4]]
    for mode in MODES:
        single(f"{mode}_offsets", 9, [_bag_call(rng, ids, d, offsets)], mode=mode)
        single(f"{mode}_include_last_offset", 9,
               [_bag_call(rng, ids, d, last, include_last_offset=True)],
               mode=mode, include_last_offset=True)
        single(f"{mode}_padding", 8, [_bag_call(rng, with_pad, d, pad_offsets)],
               mode=mode, padding_idx=4)
        single(f"{mode}_2d", 9, [_bag_call(rng, ids_2d, d)], mode=mode)
        single(f"{mode}_2d_padding_negative", 9, [_bag_call(rng, ids_2d, d)],
               mode=mode, padding_idx=-1)
        single(f"{mode}_accumulate", 9,
               [_bag_call(rng, ids, d, offsets), _bag_call(rng, ids_2d, d)], mode=mode)
    single("mean_offsets_int32", 9,
           [_bag_call(rng, np.array(ids, np.int32), d, offsets)], mode="mean")
    for mode, p in (("sum", 1.0), ("mean", 2.0), ("max", np.inf), ("mean", 3.5)):
        single(f"{mode}_max_norm_p{p}", 12,
               [_bag_call(rng, [0, 4, 4, 9, 2, 6], d, [0, 2, 4]),
                _bag_call(rng, [[4, 10], [11, 0]], d)],
               spread=True, mode=mode, max_norm=1.0, norm_type=float(p))
    for mode in ("sum", "mean"):
        single(f"{mode}_scale_grad_by_freq", 9,
               [_bag_call(rng, ids, d, offsets)], mode=mode, scale_grad_by_freq=True)
        single(f"{mode}_scale_grad_by_freq_padding", 8,
               [_bag_call(rng, with_pad, d, pad_offsets)],
               mode=mode, scale_grad_by_freq=True, padding_idx=4)
    single("sum_per_sample_weights", 9, [_bag_call(rng, ids, d, offsets, psw=True)], mode="sum")
    single("sum_per_sample_weights_2d", 9, [_bag_call(rng, ids_2d, d, psw=True)], mode="sum")
    single("sum_per_sample_weights_padding_last_offset", 8,
           [_bag_call(rng, with_pad, d, pad_offsets + [len(with_pad)], include_last_offset=True,
                      psw=True)],
           mode="sum", padding_idx=4, include_last_offset=True)
    # Max ties: rows 0 and 1 are equal in every column and row 2 equals row 0 in column 0, so the
    # gradient of a tied column goes to the first occurrence that attains the max.
    w = _weight(rng, 6, d)
    w[1] = w[0]
    w[2, 0] = w[0, 0]
    cases.append(_case("max_ties", [_table("EmbeddingBag", w, mode="max")],
                       [[_bag_call(rng, [2, 1, 0, 3, 1, 0, 4, 2], d, [0, 4])]]))
    return cases


# Batches for the optimizer runs over a 12-row table: duplicates (steps 0, 3), a step that skips the
# rows seen before (step 1), row 11 never seen, and a row whose occurrences cancel (step 4: row 1
# appears twice with opposite gradients, so it is "seen" with a zero gradient; SparseAdam still
# decays its moments).
_OPT_IDS = ([0, 1, 1, 2, 5, 5, 5], [6, 7, 8], [0, 0, 9, 1, 3], [2, 3, 2, 3, 2, 10], [1, 4, 1, 6])
_CANCEL_STEP = 4
_OPT_HYPER = {
    "sgd": ("SGD", {"lr": 0.5}),
    "adagrad": ("Adagrad", {"lr": 0.1}),
    "adagrad_decay_init_eps": ("Adagrad", {"lr": 0.2, "lr_decay": 0.3,
                                            "initial_accumulator_value": 0.4, "eps": 1e-6}),
    "sparse_adam": ("SparseAdam", {"lr": 0.05}),
    "sparse_adam_betas_eps": ("SparseAdam", {"lr": 0.05, "betas": [0.8, 0.95], "eps": 1e-6}),
}


def _opt_steps(rng, d):
    steps = []
    for i, ids in enumerate(_OPT_IDS):
        call = _emb_call(rng, ids, d)
        if i == _CANCEL_STEP:
            call["grad_out"][2] = -call["grad_out"][0]
        steps.append([call])
    return steps


def _optim_cases():
    rng = np.random.default_rng(20240603)
    d = 4
    cases = []
    for name, (opt, hyper) in _OPT_HYPER.items():
        cases.append(_case(name, [_table("Embedding", _weight(rng, 12, d))], _opt_steps(rng, d),
                           optimizer=opt, hyper=hyper))
    # The padding row never counts as seen: torch drops it from the sparse gradient, so even
    # SparseAdam leaves its weight and moments alone.
    padded = _table("Embedding", _weight(rng, 12, d), padding_idx=5)
    cases.append(_case("sparse_adam_padding", [padded], _opt_steps(rng, d),
                       optimizer="SparseAdam", hyper={"lr": 0.05}))
    # Two tables, the second (a mean bag) unused in steps 1 and 3: a table's step count, which
    # drives Adagrad's lr_decay and Adam's bias correction, counts only the steps it had a gradient.
    for name in ("adagrad_decay_init_eps", "sparse_adam"):
        opt, hyper = _OPT_HYPER[name]
        steps = _opt_steps(rng, d)
        for i, step in enumerate(steps):
            step.append(None if i in (1, 3) else
                        _bag_call(rng, [[i, 7, 7], [3, 2, 9]], 3, None))
        tables = [_table("Embedding", _weight(rng, 12, d)),
                  _table("EmbeddingBag", _weight(rng, 10, 3), mode="mean", padding_idx=2)]
        cases.append(_case(f"two_tables_{name}", tables, steps, optimizer=opt, hyper=hyper))
    return cases


def _in_dtype(case, dtype):
    """The case with every float array cast to ``dtype`` (ids and offsets stay integers)."""
    def cast(x):
        if isinstance(x, np.ndarray):
            return x.astype(dtype) if x.dtype.kind == "f" else x
        if isinstance(x, dict):
            return {k: cast(v) for k, v in x.items()}
        if isinstance(x, list):
            return [cast(v) for v in x]
        return x
    out = cast({k: v for k, v in case.items() if k != "name"})
    out["name"] = f"{case['name']}/{np.dtype(dtype).name}"
    return out


_BUILDERS = {
    "torch_embedding": _embedding_cases,
    "torch_embedding_bag": _bag_cases,
    "torch_optim": _optim_cases,
}
FAMILIES = tuple(_BUILDERS)


def build_cases(family):
    """The cases of ``family`` (one of :data:`FAMILIES`), each in float64 and float32."""
    return [_in_dtype(c, dt) for c in _BUILDERS[family]() for dt in DTYPES]


# --------------------------------------------------------------------------- comparing inputs

# How far a rebuilt float input may lie from the recorded one, in units in the last place of its
# dtype. Rebuilding goes through libm and NumPy's SIMD code (np.geomspace's exp/log, the tails of
# standard_normal), which may round differently on another CPU or build: 1 ulp is what an AVX2-only
# CPU gives for an AVX-512-recorded table (times a normal sample: up to 2; a float32 cast keeps it
# at 1). A changed case moves its values by far more (a relative 1e-9 is ~4.5e6 float64 ulps).
INPUT_ULPS = 4


def assert_same_inputs(recorded, built, where="case"):
    """Assert that ``recorded`` and ``built`` are the same case inputs.

    Structure, dict keys, names, options and hyper-parameters (Python scalars), and every array's
    shape and dtype must be equal; integer arrays (ids, offsets) bit for bit; float arrays within
    :data:`INPUT_ULPS` ulps, since they are recomputed through libm/SIMD code (see above).
    """
    if isinstance(built, dict):
        assert isinstance(recorded, dict), f"{where}: {type(recorded).__name__} is not a dict"
        assert sorted(recorded) == sorted(built), f"{where}: keys {sorted(recorded)} != {sorted(built)}"
        for k in built:
            assert_same_inputs(recorded[k], built[k], f"{where}.{k}")
    elif isinstance(built, (list, tuple)):
        assert isinstance(recorded, (list, tuple)) and len(recorded) == len(built), \
            f"{where}: {recorded!r} and {built!r} differ in length"
        for i, (r, b) in enumerate(zip(recorded, built)):
            assert_same_inputs(r, b, f"{where}[{i}]")
    elif isinstance(built, np.ndarray):
        assert isinstance(recorded, np.ndarray), f"{where}: {type(recorded).__name__} is not an array"
        assert recorded.shape == built.shape, f"{where}: shape {recorded.shape} != {built.shape}"
        assert recorded.dtype == built.dtype, f"{where}: dtype {recorded.dtype} != {built.dtype}"
        if built.dtype.kind == "f":
            try:
                np.testing.assert_array_max_ulp(recorded, built, maxulp=INPUT_ULPS)
            except AssertionError as err:
                raise AssertionError(f"{where}: {err}") from None
        else:
            np.testing.assert_array_equal(recorded, built, err_msg=where)
    else:  # None, names, options, hyper-parameters: literals of the case list, exact
        assert type(recorded) is type(built) and recorded == built, f"{where}: {recorded!r} != {built!r}"


def stored_inputs(stored, built):
    """The recorded inputs of each built case where they are the same inputs (by
    :func:`assert_same_inputs`), else the built ones: re-recording on another CPU then keeps the
    stored bits instead of churning the fixtures by an ulp. Returns (cases, number kept)."""
    by_name = {c["name"]: c for c in stored}
    out, kept = [], 0
    for case in built:
        old = by_name.get(case["name"])
        if old is not None:
            old = {k: v for k, v in old.items() if k != "expected"}
            try:
                assert_same_inputs(old, case, case["name"])
            except AssertionError:
                old = None
        out.append(case if old is None else old)
        kept += old is not None
    return out, kept


# --------------------------------------------------------------------------- running torch

def _to_numpy(t):
    if t is None:
        return None
    return (t.to_dense() if t.is_sparse else t).detach().numpy().copy()


def _bag_by_embedding(torch, layer, ids, offsets=None, psw=None, *, expected):
    """A sum/mean bag as F.embedding followed by a per-bag sum, for ``scale_grad_by_freq``.

    torch 2.13's CPU EmbeddingBag backward divides each row's gradient by the count of the wrong id
    (``counts[indices_data[i]]`` with ``i`` the rank of the row among the unique ids;
    pytorch/pytorch#190063), unlike F.embedding, the CUDA/MPS kernels and the documentation. This
    composition has torch compute the documented gradient. The layer's own forward (which already
    applied max_norm) is checked against it.
    """
    flat = ids.reshape(-1)
    n = flat.numel()
    if offsets is None:                       # 2-D ids: one bag per row
        starts = torch.arange(0, n + 1, ids.shape[1])
    else:
        starts = offsets if layer.include_last_offset else torch.cat([offsets, torch.tensor([n])])
    bags = starts.numel() - 1
    bag_of = torch.repeat_interleave(torch.arange(bags), starts.diff())
    pad = -1 if layer.padding_idx is None else layer.padding_idx
    coef = (flat != pad).to(layer.weight.dtype)
    if psw is not None:
        coef = coef * psw.reshape(-1)
    if layer.mode == "mean":
        coef = coef / torch.bincount(bag_of, coef, minlength=bags).clamp(min=1)[bag_of]
    rows = torch.nn.functional.embedding(flat, layer.weight, padding_idx=layer.padding_idx,
                                         scale_grad_by_freq=True)
    out = torch.zeros_like(expected).index_add(0, bag_of, rows * coef[:, None])
    torch.testing.assert_close(out, expected)
    return out


#: sparsemb.torch's ``optimizer=`` (the update in backward) for each torch optimizer.
FUSED = {"SGD": "sgd", "Adagrad": "adagrad", "SparseAdam": "sparse_adam"}


def run_torch(case, modules=None, fused=False):
    """Run ``case`` through torch; returns the results dict described in the module docstring.

    ``modules`` is where the layer classes come from: torch.nn by default (the recorded reference),
    or ``sparsemb.torch`` (the same replay of its modules). With ``fused`` (sparsemb.torch only) the
    layers update their rows in backward (:data:`FUSED`): no torch optimizer and no gradient.
    """
    import torch

    reference = modules is None
    modules = torch.nn if reference else modules
    optimizer = case.get("optimizer")
    extra = {"optimizer": FUSED[optimizer], **case["hyper"]} if fused else {}
    # Optimizer cases use sparse gradients, as the sparse optimizers require; layer cases take
    # torch's dense backward, an independent implementation of the same sums.
    layers = [getattr(modules, t["layer"]).from_pretrained(
        torch.from_numpy(t["weight"].copy()), freeze=False, sparse=optimizer is not None,
        **t["options"], **extra) for t in case["tables"]]
    opt = None
    if optimizer is not None and not fused:
        opt = getattr(torch.optim, optimizer)([m.weight for m in layers], **case["hyper"])
    steps = []
    for calls in case["steps"]:
        if opt is not None:
            opt.zero_grad()
        done = []
        for layer, call in zip(layers, calls):
            if call is None:
                done.append(None)
                continue
            args = [torch.from_numpy(call["ids"])]
            if "offsets" in call or "per_sample_weights" in call:
                args += [None if call.get(k) is None else torch.from_numpy(call[k])
                         for k in ("offsets", "per_sample_weights")]
            out = layer(*args)
            if reference and isinstance(layer, torch.nn.EmbeddingBag) and layer.scale_grad_by_freq:
                out = _bag_by_embedding(torch, layer, *args, expected=out)
            g_out = torch.from_numpy(call["grad_out"])
            entry = {"out": _to_numpy(out)}
            if not fused:
                # This call's own gradient, then the accumulating backward on the same graph.
                (grad,) = torch.autograd.grad(out, layer.weight, g_out, retain_graph=True)
                entry["grad"] = _to_numpy(grad)
            out.backward(g_out)
            done.append(entry)
        if opt is not None:
            with warnings.catch_warnings():
                # torch's sparse Adagrad warns that it skips sparse invariant checks: not ours.
                warnings.filterwarnings("ignore", "Sparse invariant checks")
                opt.step()
        steps.append({"calls": done, "weights": [_to_numpy(m.weight) for m in layers]})
    result = {"steps": steps}
    if not fused:
        result["grads"] = [_to_numpy(m.weight.grad) for m in layers]
    if reference and opt is not None:
        result["state"] = [
            {k: np.asarray(_to_numpy(v), dtype=np.float64 if k == "step" else None)
             for k, v in opt.state[m.weight].items() if torch.is_tensor(v)}
            for m in layers]
    return result


# --------------------------------------------------------------------------- fixture files

def _pack(obj, blobs):
    """JSON skeleton of ``obj``; each ndarray is appended, flattened, to the list for its dtype in
    ``blobs`` and replaced by where it lies (one array per dtype keeps the .npz free of the
    per-member overhead that would otherwise be most of its size)."""
    if isinstance(obj, np.ndarray):
        parts = blobs.setdefault(obj.dtype.name, [])
        at = sum(p.size for p in parts)
        parts.append(obj.ravel())
        return {"__array__": obj.dtype.name, "at": at, "shape": list(obj.shape)}
    if isinstance(obj, dict):
        return {k: _pack(v, blobs) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_pack(v, blobs) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def _unpack(obj, arrays):
    if isinstance(obj, dict):
        if "__array__" in obj:
            flat = arrays[obj["__array__"]]
            size = int(np.prod(obj["shape"]))
            return flat[obj["at"]:obj["at"] + size].reshape(obj["shape"]).copy()
        return {k: _unpack(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, arrays) for v in obj]
    return obj


def save_cases(path, cases):
    """Write cases (each with its ``expected`` results) to one compressed .npz (no pickles)."""
    blobs = {}
    skeleton = json.dumps(_pack(cases, blobs)).encode()
    np.savez_compressed(path, __skeleton__=np.frombuffer(skeleton, np.uint8),
                        **{k: np.concatenate(v) for k, v in blobs.items()})


def load_cases(path):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return _unpack(json.loads(arrays.pop("__skeleton__").tobytes()), arrays)


# --------------------------------------------------------------------------- optimizer state dicts

#: Optimizer configurations whose state dicts go both ways: (name, class, hyper-parameters).
STATE_CASES = (
    ("sgd", "SGD", {"lr": 0.3}),
    ("sgd_maximize", "SGD", {"lr": 0.3, "maximize": True}),
    ("adagrad", "Adagrad", {"lr": 0.2, "lr_decay": 0.1, "initial_accumulator_value": 0.3}),
    ("adagrad_maximize", "Adagrad", {"lr": 0.2, "maximize": True}),
    ("sparse_adam", "SparseAdam", {"lr": 0.05, "betas": (0.8, 0.95)}),
    ("sparse_adam_maximize", "SparseAdam", {"lr": 0.05, "maximize": True}),
)
#: The state dict is taken after this many of the steps; the rest continue from it.
STATE_SPLIT = 2


def build_state_cases():
    """One case per optimizer configuration: a float32 table and four steps (ids, grad_out)."""
    rng = np.random.default_rng(20240604)
    out = []
    for name, opt, hyper in STATE_CASES:
        steps = [_emb_call(rng, ids, 3) for ids in ([0, 2, 2, 5], [1, 2], [5, 0, 3, 3], [4, 1])]
        out.append({"name": name, "optimizer": opt, "hyper": dict(hyper),
                    "weight": rng.standard_normal((6, 3)).astype(np.float32),
                    "steps": [{k: v.astype(np.float32) if v.dtype.kind == "f" else v
                               for k, v in s.items()} for s in steps]})
    return out


def _plain(value):
    """A torch state-dict value as what the fixture stores: arrays, Python scalars, lists."""
    import torch
    if torch.is_tensor(value):
        return value.detach().numpy().copy()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def run_torch_state(case):
    """torch's state dict after STATE_SPLIT steps (ids as strings, tensors as arrays) and the weight
    after each step."""
    import torch
    emb = torch.nn.Embedding.from_pretrained(torch.from_numpy(case["weight"].copy()), freeze=False,
                                             sparse=True)
    opt = getattr(torch.optim, case["optimizer"])(emb.parameters(), **case["hyper"])
    weights, state = [], None
    for i, call in enumerate(case["steps"]):
        if i == STATE_SPLIT:
            state = _plain(opt.state_dict())
        opt.zero_grad()
        emb(torch.from_numpy(call["ids"])).backward(torch.from_numpy(call["grad_out"]))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sparse invariant checks")
            opt.step()
        weights.append(emb.weight.detach().numpy().copy())
    return {"state_dict": state, "weights": weights}


# --------------------------------------------------------------------------- learning-rate schedules

#: lr_lambda functions by name (a fixture stores the name).
LAMBDAS = {"pow": lambda e: 0.9 ** e, "warmup": lambda e: min(1.0, (e + 1) / 4)}
#: (name, scheduler, keyword arguments, optimizer, steps, metrics for ReduceLROnPlateau)
SCHEDULER_CASES = (
    ("step", "StepLR", {"step_size": 3, "gamma": 0.5}, "SGD", 10),
    ("multistep", "MultiStepLR", {"milestones": [2, 5, 5, 8], "gamma": 0.3}, "SGD", 10),
    ("exponential", "ExponentialLR", {"gamma": 0.9}, "Adagrad", 8),
    ("lambda", "LambdaLR", {"lr_lambda": "pow"}, "SGD", 6),
    ("lambda_per_group", "LambdaLR", {"lr_lambda": ["pow", "warmup"]}, "SparseAdam", 6),
    ("linear", "LinearLR", {"start_factor": 0.25, "end_factor": 0.9, "total_iters": 4}, "SGD", 8),
    ("cosine", "CosineAnnealingLR", {"T_max": 5, "eta_min": 0.001}, "Adagrad", 16),
    ("onecycle", "OneCycleLR", {"max_lr": [0.5, 0.2], "total_steps": 12}, "SparseAdam", 11),
    ("onecycle_linear_3phase", "OneCycleLR",
     {"max_lr": 0.4, "total_steps": 10, "anneal_strategy": "linear", "three_phase": True,
      "cycle_momentum": False}, "SGD", 9),
    ("plateau", "ReduceLROnPlateau", {"patience": 1, "factor": 0.5, "cooldown": 1, "min_lr": 0.01},
     "SGD", 12),
    ("plateau_max_abs", "ReduceLROnPlateau",
     {"mode": "max", "threshold_mode": "abs", "threshold": 0.1, "patience": 0}, "Adagrad", 8),
)
#: The metric ReduceLROnPlateau sees at each step.
METRICS = [1.0, 0.9, 0.95, 0.97, 0.96, 0.8, 0.85, 0.86, 0.87, 0.5, 0.6, 0.7]
#: Two param groups with their own rates.
GROUP_LRS = (0.1, 0.03)


def scheduler_kwargs(kwargs):
    """The keyword arguments with lr_lambda names turned into the functions."""
    out = dict(kwargs)
    if "lr_lambda" in out:
        f = out["lr_lambda"]
        out["lr_lambda"] = [LAMBDAS[n] for n in f] if isinstance(f, list) else LAMBDAS[f]
    return out


def schedule_entry(opt, sched):
    """One point of a scheduler trace: each group's learning rate (and betas), and ``get_last_lr()``;
    the same for torch's optimizers and sparsemb's."""
    return {"lr": [g["lr"] for g in opt.param_groups],
            "betas": [list(g["betas"]) for g in opt.param_groups] if "betas" in opt.defaults else None,
            "last_lr": list(sched.get_last_lr())}


def run_torch_scheduler(case):
    """torch's learning rate (and betas) of each group after construction and after each step, and
    the scheduler's state dict at the end (its plain entries)."""
    import torch
    name, cls, kwargs, opt_name, steps = case
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in GROUP_LRS]
    opt = getattr(torch.optim, opt_name)([{"params": [p], "lr": lr} for p, lr in zip(params, GROUP_LRS)])
    sched = getattr(torch.optim.lr_scheduler, cls)(opt, **scheduler_kwargs(kwargs))
    trace = [schedule_entry(opt, sched)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping the scheduler without optimizer steps
        for i in range(steps):
            sched.step(METRICS[i]) if cls == "ReduceLROnPlateau" else sched.step()
            trace.append(schedule_entry(opt, sched))
    state = {k: v for k, v in sched.state_dict().items() if isinstance(v, (int, float, list, str))
             and k != "lr_lambdas"}
    return {"trace": trace, "state": state}
