"""Embedding and EmbeddingBag against the reference path, finite differences and their contracts."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparsemb as sm
from sparsemb import reference as ref


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


@st.composite
def embedding_case(draw):
    n = draw(st.integers(1, 10))
    dim = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(st.sampled_from([(0,), (1,), (7,), (3, 4), (2, 0), (2, 3, 2)]))
    seed = draw(st.integers(0, 2**31 - 1))
    padding = draw(st.one_of(st.none(), st.integers(-n, n - 1)))
    scale = draw(st.booleans())
    return n, dim, dtype, shape, seed, padding, scale


@given(embedding_case())
def test_embedding_matches_reference(case):
    n, dim, dtype, shape, seed, padding, scale = case
    rng = np.random.default_rng(seed)
    emb = sm.Embedding(n, dim, padding_idx=padding, scale_grad_by_freq=scale, dtype=dtype, seed=seed)
    if padding is not None:
        assert not emb.weight[padding].any()
    ids = rng.integers(0, n, size=shape)
    out = emb(ids)
    np.testing.assert_array_equal(out, ref.lookup(emb.weight, ids))
    g = rng.standard_normal(shape + (dim,)).astype(dtype)
    # The reference gradient with padding zeroed and each occurrence divided by its id's count.
    flat = ids.reshape(-1)
    up = g.reshape(flat.size, dim).astype(np.float64)
    if scale and flat.size:
        up = up / np.bincount(flat, minlength=n)[flat][:, None]
    expected = ref.grad(ids, up.reshape(g.shape), n)
    if padding is not None:
        expected[padding % n] = 0
    grad = emb.backward(g)
    assert grad.values.dtype == dtype
    assert np.all(np.diff(grad.indices) > 0)
    if padding is not None:
        assert padding % n not in grad.indices
    np.testing.assert_allclose(grad.to_dense(), expected, **_tol(dtype))


@st.composite
def bag_case(draw):
    n = draw(st.integers(1, 8))
    dim = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    mode = draw(st.sampled_from(["sum", "mean", "max"]))
    sizes = draw(st.lists(st.integers(0, 4), min_size=0, max_size=5))
    seed = draw(st.integers(0, 2**31 - 1))
    padding = draw(st.one_of(st.none(), st.integers(0, n - 1)))
    psw = mode == "sum" and draw(st.booleans())
    last = draw(st.booleans())
    two_d = draw(st.booleans()) and len(set(sizes)) == 1 and sizes
    return n, dim, dtype, mode, sizes, seed, padding, psw, last, two_d


@given(bag_case())
def test_embedding_bag_matches_reference(case):
    n, dim, dtype, mode, sizes, seed, padding, use_psw, last, two_d = case
    rng = np.random.default_rng(seed)
    bag = sm.EmbeddingBag(n, dim, mode=mode, padding_idx=padding, include_last_offset=last,
                          dtype=dtype, seed=seed)
    ids = rng.integers(0, n, size=sum(sizes))
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    offsets = starts if last else starts[:-1]
    psw = rng.standard_normal(ids.size).astype(dtype) if use_psw else None
    if two_d:
        ids, offsets = ids.reshape(len(sizes), sizes[0]), None
        psw = None if psw is None else psw.reshape(ids.shape)
        bag.include_last_offset = last = False
    kw = dict(offsets=offsets, mode=mode, per_sample_weights=psw, padding_idx=padding,
              include_last_offset=last)
    out = bag(ids, offsets, psw)
    assert out.shape == (len(sizes), dim)
    np.testing.assert_allclose(out, ref.bag_lookup(bag.weight, ids, **kw), **_tol(dtype))
    g = rng.standard_normal(out.shape).astype(dtype)
    expected = ref.bag_grad(bag.weight, ids, g, **kw)
    np.testing.assert_allclose(bag.backward(g).to_dense(), expected, **_tol(dtype))


def test_bag_padding_is_left_out_of_mean_count_and_max():
    w = np.array([[1.0, -5.0], [3.0, 4.0], [0.0, 0.0]])
    bag = sm.EmbeddingBag.from_pretrained(w, freeze=False, mode="mean", padding_idx=2)
    out = bag(np.array([0, 2, 1, 2, 2]), np.array([0, 3, 4]))
    np.testing.assert_array_equal(out, [[2.0, -0.5], [0.0, 0.0], [0.0, 0.0]])
    bag = sm.EmbeddingBag.from_pretrained(-np.abs(w) - 1, freeze=False, mode="max", padding_idx=2)
    out = bag(np.array([0, 2]), np.array([0]))
    np.testing.assert_array_equal(out, [[-2.0, -6.0]])  # the padding row (-1, -1) would have won


def test_finite_difference_gradient_through_a_small_model(rng):
    # loss = sum_b  v · mean_bag(lookup)  composed with an Embedding feeding the bag ids' weights.
    n, dim = 6, 3
    bag = sm.EmbeddingBag(n, dim, mode="mean", dtype=np.float64, seed=1)
    bag.weight[:] = rng.standard_normal((n, dim))
    ids, offsets = np.array([0, 3, 3, 5, 1, 0]), np.array([0, 2, 2, 5])
    v = rng.standard_normal((4, dim))

    def loss(weight):
        probe = sm.EmbeddingBag.from_pretrained(weight, mode="mean")
        return float(np.sum(np.tanh(probe(ids, offsets)) @ v.T))

    out = bag(ids, offsets)
    grad = bag.backward((1 - np.tanh(out) ** 2) * v.sum(axis=0)).to_dense()
    num = np.zeros_like(bag.weight)
    h = 1e-6
    for i in range(n):
        for j in range(dim):
            wp, wm = bag.weight.copy(), bag.weight.copy()
            wp[i, j] += h
            wm[i, j] -= h
            num[i, j] = (loss(wp) - loss(wm)) / (2 * h)
    np.testing.assert_allclose(grad, num, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, np.inf])
def test_max_norm_renorms_only_looked_up_rows(rng, norm_type):
    w = rng.standard_normal((6, 4)) * 3
    emb = sm.Embedding.from_pretrained(w, max_norm=1.0, norm_type=norm_type)
    out = emb(np.array([1, 3, 1]))
    norms = np.linalg.norm(w, ord=norm_type, axis=1)
    for r in range(6):
        if r in (1, 3) and norms[r] > 1.0:
            np.testing.assert_allclose(emb.weight[r], w[r] / (norms[r] + 1e-7), rtol=1e-12)
        else:
            assert np.array_equal(emb.weight[r], w[r])
    np.testing.assert_array_equal(out, emb.weight[[1, 3, 1]])


def test_from_pretrained_keeps_padding_row_and_copies():
    w = np.ones((3, 2), np.float32)
    emb = sm.Embedding.from_pretrained(w, padding_idx=1)
    assert np.array_equal(emb.weight[1], [1, 1])
    emb.weight[0] = 5
    assert w[0, 0] == 1
    assert emb.requires_grad is False


def test_constructor_zeroes_negative_padding_row():
    emb = sm.Embedding(5, 3, padding_idx=-2, seed=0)
    assert emb.padding_idx == 3 and not emb.weight[3].any() and emb.weight[4].any()


def test_seed_reproduces_initialisation():
    a = sm.Embedding(7, 3, seed=42).weight
    assert np.array_equal(a, sm.Embedding(7, 3, seed=42).weight)
    assert not np.array_equal(a, sm.Embedding(7, 3, seed=43).weight)


def test_gradient_accumulates_until_zero_grad(rng):
    emb = sm.Embedding(5, 2, dtype=np.float64, seed=0)
    g1, g2 = rng.standard_normal((2, 2)), rng.standard_normal((3, 2))
    emb(np.array([1, 4]))
    first = emb.backward(g1)
    emb(np.array([4, 0, 4]))
    emb.backward(g2)
    expected = ref.grad([1, 4], g1, 5) + ref.grad([4, 0, 4], g2, 5)
    np.testing.assert_allclose(emb.grad.to_dense(), expected, rtol=1e-12)
    np.testing.assert_allclose(first.to_dense(), ref.grad([1, 4], g1, 5))
    emb.zero_grad()
    assert emb.grad is None


def test_frozen_layer_has_no_gradient():
    emb = sm.Embedding.from_pretrained(np.ones((3, 2)))
    emb(np.array([0, 1]))
    assert emb.backward(np.ones((2, 2))) is None
    assert emb.grad is None


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        sm.Embedding(3, 2).backward(np.ones((1, 2)))


def test_grad_out_shape_mismatch_names_both_shapes():
    emb = sm.Embedding(3, 2)
    emb(np.array([[0, 1], [2, 2]]))
    with pytest.raises(ValueError, match=r"\(4, 2\).*\(2, 2, 2\)"):
        emb.backward(np.ones((4, 2)))


def test_bad_ids_change_nothing_even_with_max_norm():
    w = np.full((3, 2), 10.0)
    emb = sm.Embedding.from_pretrained(w, max_norm=1.0)
    with pytest.raises(IndexError, match=r"3.*\[0, 3\)"):
        emb(np.array([0, 3]))
    assert np.array_equal(emb.weight, w)
    with pytest.raises(TypeError):
        emb(np.array([0.5]))


@pytest.mark.parametrize("offsets,msg", [
    ([1, 2], "start at 0"),
    ([0, 3, 2], "must not decrease"),
    ([0, 9], "run past"),
])
def test_bad_offsets(offsets, msg):
    w = np.full((3, 2), 10.0)
    bag = sm.EmbeddingBag.from_pretrained(w, mode="sum", max_norm=1.0)
    with pytest.raises(ValueError, match=msg):
        bag(np.array([0, 1, 2, 1]), np.array(offsets))
    assert np.array_equal(bag.weight, w)


def test_bag_option_errors():
    with pytest.raises(ValueError, match="per_sample_weights"):
        sm.EmbeddingBag(3, 2, mode="mean")(np.array([0, 1]), np.array([0]), np.ones(2))
    with pytest.raises(ValueError, match="mode"):
        sm.EmbeddingBag(3, 2, mode="median")
    with pytest.raises(ValueError, match="offsets"):
        sm.EmbeddingBag(3, 2)(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"offsets\[-1\]"):
        sm.EmbeddingBag(3, 2, include_last_offset=True)(np.array([0, 1]), np.array([0, 1]))


def test_sparse_rows_validates_and_adds():
    a = sm.SparseRows(np.array([0, 2]), np.ones((2, 2)), 4)
    b = sm.SparseRows(np.array([2, 3]), np.ones((2, 2)), 4)
    np.testing.assert_array_equal((a + b).to_dense(), [[1, 1], [0, 0], [2, 2], [1, 1]])
    with pytest.raises(ValueError, match="sorted"):
        sm.SparseRows(np.array([2, 0]), np.ones((2, 2)), 4)


def test_layers_do_not_follow_later_changes_to_caller_arrays():
    # ids are copied at forward; grad_out is read-only while its gradient is pending (not summed),
    # so a write into it raises instead of changing the update, and is allowed again once summed.
    emb = sm.Embedding.from_pretrained(np.ones((4, 2)), freeze=False)
    ids, g = np.array([0, 1, 0]), np.ones((3, 2))
    emb(ids)
    ids[:] = 3
    grad = emb.backward(g)
    with pytest.raises(ValueError, match="read-only"):
        g[:] = 7
    np.testing.assert_array_equal(grad.to_dense(), [[2, 2], [1, 1], [0, 0], [0, 0]])
    g[:] = 7
    np.testing.assert_array_equal(grad.to_dense(), [[2, 2], [1, 1], [0, 0], [0, 0]])
    bag = sm.EmbeddingBag.from_pretrained(np.ones((4, 2)), freeze=False, mode="sum")
    ids, offsets, gb = np.array([0, 1, 0]), np.array([0, 1]), np.ones((2, 2))
    bag(ids, offsets)
    ids[:] = 3
    offsets[:] = 0
    grad = bag.backward(gb)
    with pytest.raises(ValueError, match="read-only"):
        gb[:] = 7
    np.testing.assert_array_equal(grad.to_dense(), [[2, 2], [1, 1], [0, 0], [0, 0]])
    gb[:] = 7
    np.testing.assert_array_equal(grad.to_dense(), [[2, 2], [1, 1], [0, 0], [0, 0]])


def test_pending_gradient_locks_the_buffer_and_its_base_until_dropped():
    emb = sm.Embedding.from_pretrained(np.ones((4, 2), np.float32), freeze=False)
    opt = sm.optim.SGD([emb], lr=1.0)
    buf = np.ones((5, 2), np.float32)
    emb(np.array([0, 1, 0]))
    emb.backward(buf[:3])  # a view: its base is locked too
    assert not buf.flags.writeable
    opt.step()
    assert not buf.flags.writeable  # .grad stays readable after step, as in torch
    opt.zero_grad()  # dropped unread: released without summing
    assert buf.flags.writeable
    buf[:] = 5
    # A gradient someone still holds is summed when the layer drops it, before the release.
    emb(np.array([0, 1, 0]))
    held = emb.backward(buf[:3])
    emb.zero_grad()
    buf[:] = 9
    np.testing.assert_array_equal(held.to_dense()[:2], [[10, 10], [5, 5]])
    # Reassigning grad, or a second backward (accumulation sums both), releases as well.
    emb(np.array([0, 1, 0]))
    emb.backward(buf[:3])
    emb.grad = None
    assert buf.flags.writeable
    emb.backward(buf[:3])
    emb.backward(buf[:3])
    assert buf.flags.writeable
    np.testing.assert_array_equal(emb.grad.to_dense()[:2], [[36, 36], [18, 18]])


def test_grad_out_not_a_plain_writable_array_is_copied():
    emb = sm.Embedding.from_pretrained(np.ones((4, 2), np.float32), freeze=False)
    emb(np.array([0, 1, 0]))
    ro = np.ones((3, 2), np.float32)
    ro.flags.writeable = False
    emb.backward(ro)
    ro.flags.writeable = True  # its owner may do this: the pending gradient has its own copy
    ro[:] = 7
    np.testing.assert_array_equal(emb.grad.to_dense()[:2], [[2, 2], [1, 1]])
    emb.zero_grad()
    raw = bytearray(np.ones((3, 2), np.float32).tobytes())
    emb.backward(np.frombuffer(raw, np.float32).reshape(3, 2))  # memory NumPy does not own
    raw[:] = bytes(len(raw))
    np.testing.assert_array_equal(emb.grad.to_dense()[:2], [[2, 2], [1, 1]])
    emb.zero_grad()
    f64 = np.ones((3, 2))  # converted to the table's dtype: already a copy, nothing locked
    emb.backward(f64)
    assert f64.flags.writeable


# --------------------------------------------------------------------------- torch's names (issue 15 §1)

def test_sparse_is_accepted_everywhere_and_changes_nothing():
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    for layer in (sm.Embedding(4, 3, sparse=True, _weight=w.copy()),
                  sm.Embedding.from_pretrained(w, sparse=True, freeze=False),
                  sm.EmbeddingBag(4, 3, sparse=True, _weight=w.copy()),
                  sm.EmbeddingBag.from_pretrained(w, sparse=True, freeze=False)):
        assert layer.sparse is True
        out = layer(np.array([[0, 2, 2]]))
        assert isinstance(layer.backward(np.ones_like(out)), sm.SparseRows)


def test_positional_order_is_torchs():
    # torch.nn.EmbeddingBag(n, d, max_norm, norm_type, scale_grad_by_freq, mode, sparse, _weight,
    # include_last_offset, padding_idx): a 7th positional True is sparse, not include_last_offset.
    w = np.ones((6, 2), np.float32)
    bag = sm.EmbeddingBag(6, 2, 1.5, 1.0, True, "sum", True, w, False, 3)
    assert (bag.max_norm, bag.norm_type, bag.scale_grad_by_freq, bag.mode, bag.sparse,
            bag.include_last_offset, bag.padding_idx) == (1.5, 1.0, True, "sum", True, False, 3)
    assert bag.weight is w
    emb = sm.Embedding(6, 2, 1, 2.5, 3.0, True, True, w)
    assert (emb.padding_idx, emb.max_norm, emb.norm_type, emb.scale_grad_by_freq, emb.sparse) == \
        (1, 2.5, 3.0, True, True)
    assert emb.weight is w
    with pytest.raises(TypeError):
        sm.Embedding(6, 2, None, None, 2.0, False, False, None, False, None, None, 0)  # seed: keyword


def test_from_pretrained_takes_torchs_keyword():
    w = np.eye(3, dtype=np.float32)
    assert np.array_equal(sm.Embedding.from_pretrained(embeddings=w).weight, w)
    assert np.array_equal(sm.EmbeddingBag.from_pretrained(embeddings=w, mode="sum").weight, w)


@pytest.mark.parametrize("weight,exc,match", [
    (np.zeros((5, 3), np.float32), ValueError, r"_weight has shape \(5, 3\), expected \(10, 4\)"),
    (np.zeros((10, 4)).tolist(), TypeError, "_weight must be a numpy array, got list"),
    (np.zeros((10, 4), np.int64), TypeError, "_weight must be float32 or float64, got dtype int64"),
    (np.zeros((4, 10), np.float32).T, ValueError, "C-contiguous"),
])
def test_weight_is_checked(weight, exc, match):
    for cls in (sm.Embedding, sm.EmbeddingBag):
        with pytest.raises(exc, match=match):
            cls(10, 4, _weight=weight)


def test_weight_is_shared_and_dtype_must_agree():
    w = np.zeros((10, 4))
    emb = sm.Embedding(10, 4, _weight=w)
    assert emb.weight is w and emb.weight.dtype == np.float64
    with pytest.raises(TypeError, match="dtype=float32"):
        sm.Embedding(10, 4, _weight=w, dtype=np.float32)


def test_device_and_dtype():
    assert sm.Embedding(3, 2, device="cpu").weight.dtype == np.float32
    assert sm.EmbeddingBag(3, 2, device="cpu:0", dtype="float64").weight.dtype == np.float64
    with pytest.raises(ValueError, match="device must be 'cpu'.*'cuda:0'"):
        sm.Embedding(3, 2, device="cuda:0")
    with pytest.raises(TypeError, match="float32 or float64, got float16"):
        sm.EmbeddingBag(3, 2, dtype=np.float16)


def test_repr_is_torchs():
    assert repr(sm.Embedding(10, 3)) == "Embedding(10, 3)"
    assert repr(sm.Embedding(10, 3, padding_idx=0, max_norm=1.0, norm_type=3.0,
                             scale_grad_by_freq=True, sparse=True)) == \
        "Embedding(10, 3, padding_idx=0, max_norm=1.0, norm_type=3.0, scale_grad_by_freq=True, sparse=True)"
    assert repr(sm.EmbeddingBag(10, 3)) == "EmbeddingBag(10, 3, mode='mean')"
    assert repr(sm.EmbeddingBag(10, 3, padding_idx=0, max_norm=1.0, mode="sum", sparse=True)) == \
        "EmbeddingBag(10, 3, max_norm=1.0, mode='sum', padding_idx=0)"
    assert repr(sm.EmbeddingBag(10, 3, include_last_offset=True, dtype=np.float64)) == \
        "EmbeddingBag(10, 3, mode='mean', include_last_offset=True, dtype=float64)"


def test_names_and_reprs_match_torch_live():
    torch = pytest.importorskip("torch")
    import inspect
    for name in ("Embedding", "EmbeddingBag"):
        ours, theirs = getattr(sm, name), getattr(torch.nn, name)
        names = list(inspect.signature(theirs.__init__).parameters)
        assert list(inspect.signature(ours.__init__).parameters)[:len(names)] == names
        theirs_pre = list(inspect.signature(theirs.from_pretrained).parameters)
        ours_pre = inspect.signature(ours.from_pretrained).parameters
        assert list(ours_pre)[:len(theirs_pre)] == theirs_pre
        # sparsemb's additions (copy=) come after torch's, keyword-only: torch's calls mean the same
        assert all(p.kind is p.KEYWORD_ONLY for p in list(ours_pre.values())[len(theirs_pre):])
    kw = dict(padding_idx=1, max_norm=1.0, norm_type=3.0, scale_grad_by_freq=True, sparse=True)
    assert repr(sm.Embedding(10, 3, **kw)) == repr(torch.nn.Embedding(10, 3, **kw))
    assert repr(sm.EmbeddingBag(10, 3, mode="sum", **kw)) == \
        repr(torch.nn.EmbeddingBag(10, 3, mode="sum", **kw))
    assert sm.Embedding(3, 2, dtype=torch.float64, device=torch.device("cpu")).weight.dtype == np.float64


def test_one_buffer_given_to_two_layers_is_shared_and_released_when_both_are_done():
    a = sm.Embedding.from_pretrained(np.ones((4, 2), np.float32), freeze=False)
    b = sm.Embedding.from_pretrained(np.ones((4, 2), np.float32), freeze=False)
    buf = np.ones((4, 2), np.float32)
    a(np.array([0, 1, 0]))
    b(np.array([3, 3]))
    a.backward(buf[:3])
    b.backward(buf[2:])
    a.zero_grad()
    assert not buf.flags.writeable  # b's gradient still reads it
    b.zero_grad()
    assert buf.flags.writeable
    view = buf[:3]
    a(np.array([0, 1, 0]))
    a.backward(view)
    b.backward(buf[2:])
    assert not view.flags.writeable
    a.zero_grad()
    assert not buf.flags.writeable  # (view is a's alone: writable again, a view made earlier)
    b.zero_grad()
    assert buf.flags.writeable and view.flags.writeable
    # Nothing of this buffer left held (other tests' layers may still hold their own).
    assert not any(np.shares_memory(a, buf) for a, _ in sm.nn._LOCKS.values())


def test_the_view_passed_is_locked_even_where_numpy_skips_it_as_a_base():
    emb = sm.Embedding.from_pretrained(np.ones((4, 2), np.float32), freeze=False)
    buf = np.ones((6, 2), np.float32)
    v = buf[:3]  # rows' base is buf itself, not v
    emb(np.array([0, 1, 0]))
    emb.backward(v)  # the layer sums a reshape of v, whose base is buf
    for target in (v, buf):
        with pytest.raises(ValueError, match="read-only"):
            target[0] = 2
    emb.zero_grad()
    v[0] = 2
    assert buf[0, 0] == 2 and not any(np.shares_memory(a, buf) for a, _ in sm.nn._LOCKS.values())


@pytest.mark.parametrize("opt", [sm.optim.Adagrad, sm.optim.RowwiseAdagrad, sm.optim.SparseAdam])
def test_tables_state_and_outputs_start_on_a_cache_line(opt):
    """A layer's own table, its optimizer's state and a lookup's output start on a 64-byte line, so that
    rows of 64 float32 span 4 lines, not 5 (and large outputs can be streamed)."""
    line = sm.kernels.embedding.ALIGN
    for emb in (sm.Embedding(1000, 64, seed=0), sm.Embedding.from_pretrained(np.ones((1000, 64))),
                sm.EmbeddingBag(1000, 16, seed=0)):
        o = opt([emb])
        out = emb(np.arange(12).reshape(3, 4))
        assert emb.weight.ctypes.data % line == 0 and out.ctypes.data % line == 0
        emb.backward(np.ones_like(out))
        o.step()
        arrays = [v for state in o.state.values() for v in state.values() if isinstance(v, np.ndarray)]
        assert arrays and all(a.ctypes.data % line == 0 for a in arrays)
