"""Kernels against the one-hot reference: e = xE, dL/dE = Xᵀ dL/de."""
import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sparsemb as sm
from sparsemb._config import max_threads, num_threads


def test_worked_example_single_row():
    # E = [[1,2,3],[4,5,6]], x selects row 1, L = sum(e)  =>  dL/dE = [[0,0,0],[1,1,1]]
    E = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float64)
    ids = np.array([1])
    assert np.array_equal(sm.kernels.lookup(E, ids), [[4, 5, 6]])
    idx, vals = sm.kernels.coalesce(ids, np.ones((1, 3)))
    dense = np.zeros_like(E)
    dense[idx] = vals
    assert np.array_equal(dense, [[0, 0, 0], [1, 1, 1]])
    assert np.array_equal(sm.reference.grad(ids, np.ones((1, 3)), 2), [[0, 0, 0], [1, 1, 1]])


def test_worked_example_duplicates_are_summed():
    # TensorFlow's example: ids [0,1,0,2], upstream rows 1,2,3,4  =>  row 0 receives 1+3.
    ids = np.array([0, 1, 0, 2])
    up = np.repeat(np.arange(1, 5, dtype=np.float32)[:, None], 2, axis=1)
    idx, vals = sm.kernels.coalesce(ids, up)
    assert idx.dtype == np.int64
    assert np.array_equal(idx, [0, 1, 2])
    assert np.array_equal(vals, [[4, 4], [2, 2], [4, 4]])
    emb = sm.Embedding.from_pretrained(np.ones((4, 2), np.float32), freeze=False)
    emb(ids)
    assert np.array_equal(emb.backward(up).to_dense(), [[4, 4], [2, 2], [4, 4], [0, 0]])


def test_numpy_fancy_add_drops_duplicates_but_kernels_do_not():
    ids = np.array([0, 1, 0, 2])
    up = np.repeat(np.arange(1, 5, dtype=np.float64)[:, None], 2, axis=1)
    naive = np.zeros((4, 2))
    naive[ids] += up  # buffered: the second update of row 0 overwrites the first
    assert naive[0, 0] == 3.0
    idx, vals = sm.kernels.coalesce(ids, up)
    assert vals[0, 0] == 4.0
    assert np.array_equal(sm.reference.grad(ids, up, 4)[idx], vals)


def test_one_hot_is_the_lookup_matrix():
    ids = np.array([[2, 0], [2, 1]])
    X = sm.reference.one_hot(ids, 3)
    assert X.shape == (4, 3)
    assert np.array_equal(X.toarray(), np.eye(3)[ids.ravel()])


tables = st.sampled_from([np.float32, np.float64]).flatmap(
    lambda dt: st.tuples(st.integers(1, 12), st.integers(1, 7)).flatmap(
        lambda nd: hnp.arrays(dt, nd, elements=st.floats(-8, 8, width=32))))


@st.composite
def table_and_ids(draw):
    w = draw(tables)
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6))
    ids = draw(hnp.arrays(draw(st.sampled_from([np.int32, np.int64])), shape,
                          elements=st.integers(0, w.shape[0] - 1)))
    return w, ids


@given(table_and_ids())
def test_lookup_equals_one_hot_product(case):
    w, ids = case
    out = sm.kernels.lookup(w, ids)
    assert out.shape == ids.shape + (w.shape[1],)
    assert out.dtype == w.dtype
    assert np.array_equal(out, sm.reference.lookup(w, ids))


@given(table_and_ids(), st.integers(0, 2**31 - 1))
def test_coalesce_equals_transposed_one_hot_product(case, seed):
    w, ids = case
    g = np.random.default_rng(seed).standard_normal(ids.shape + (w.shape[1],)).astype(w.dtype)
    idx, vals = sm.kernels.coalesce(ids, g)
    assert np.array_equal(idx, np.unique(ids))
    dense = np.zeros(w.shape, w.dtype)
    dense[idx] = vals
    tol = 1e-5 if w.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dense, sm.reference.grad(ids, g, w.shape[0]), rtol=tol, atol=tol)


@pytest.mark.parametrize("big", [2**40, 2**62])  # radix with 4 passes; beyond it, the sort fallback
def test_coalesce_handles_large_ids(rng, big):
    ids = np.array([big, 5, big, 2**35 + 1])
    g = rng.standard_normal((4, 3))
    idx, vals = sm.kernels.coalesce(ids, g)
    assert np.array_equal(idx, [5, 2**35 + 1, big])
    np.testing.assert_array_equal(vals[2], g[0] + g[2])


def test_coalesce_sums_in_occurrence_order(rng):
    # Deterministic order of summation is what makes results bitwise reproducible.
    ids = np.array([3, 1, 3, 3, 1])
    g = rng.standard_normal((5, 4)).astype(np.float32)
    idx, vals = sm.kernels.coalesce(ids, g)
    assert np.array_equal(vals[1], ((g[0] + g[2]) + g[3]))
    assert np.array_equal(vals[0], g[1] + g[4])


def test_empty_batch():
    w = np.ones((3, 2), np.float32)
    assert sm.kernels.lookup(w, np.array([], np.int64)).shape == (0, 2)
    idx, vals = sm.kernels.coalesce(np.array([], np.int64), np.zeros((0, 2), np.float32))
    assert idx.shape == (0,) and vals.shape == (0, 2)


@pytest.mark.skipif(max_threads() < 2, reason="needs 2 numba threads")
def test_backward_bitwise_identical_for_1_and_2_threads(rng):
    n, dim = 5000, 16
    ids = (rng.zipf(1.1, 20000) - 1) % n
    g = rng.standard_normal((ids.size, dim)).astype(np.float32)
    results = []
    for threads in (1, 2):
        with num_threads(threads):
            results.append(sm.kernels.coalesce(ids, g))
    assert numba.get_num_threads() == max_threads()
    assert np.array_equal(results[0][0], results[1][0])
    assert results[0][1].tobytes() == results[1][1].tobytes()


@given(runs=st.lists(st.integers(1, 300), max_size=600), row_cost=st.integers(0, 8))
def test_balanced_parts_cut_work_evenly(runs, row_cost):
    # Each cut lies within one row's work of its share of the total, so every thread's run of
    # consecutive ranges is balanced to within a row, whatever the skew.
    from sparsemb.kernels.embedding import balanced_parts
    starts = np.concatenate([[0], np.cumsum(runs, dtype=np.int64)])
    parts = balanced_parts(starts, row_cost)
    n = len(runs)
    assert parts[0] == 0 and parts[-1] == n and np.all(np.diff(parts) >= 0)
    work = np.asarray(runs, np.int64) + row_cost
    done = np.concatenate([[0], np.cumsum(work)])  # work of rows [0, u)
    n_parts = parts.size - 1
    for p in range(1, n_parts):
        share = done[-1] * p // n_parts
        assert done[parts[p]] <= share < done[parts[p]] + max(work.max(initial=0), 1)


def test_zipf_batch_is_split_evenly_between_two_threads(rng):
    ids = (rng.zipf(1.1, 65536) - 1) % 1_000_000
    from sparsemb.kernels.embedding import balanced_parts, segments
    _, _, starts = segments(ids, -1)
    parts = balanced_parts(starts, 2)
    half = parts[(parts.size - 1) // 2]
    first = starts[half] + 2 * half
    total = starts[-1] + 2 * (starts.size - 1)
    assert abs(first / total - 0.5) < 0.05, first / total


def test_num_threads_restores_on_error():
    before = numba.get_num_threads()
    with pytest.raises(ZeroDivisionError):
        with num_threads(1):
            1 / 0
    assert numba.get_num_threads() == before


@pytest.mark.parametrize("bad", [-1, 4, 100])
def test_out_of_range_id_is_named(bad):
    with pytest.raises(IndexError, match=rf"{bad}.*\[0, 4\)"):
        sm.kernels.lookup(np.zeros((4, 2)), np.array([0, bad, 1]))


def test_non_integer_ids_rejected():
    with pytest.raises(TypeError, match="integers"):
        sm.kernels.lookup(np.zeros((4, 2)), np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="integers"):
        sm.kernels.lookup(np.zeros((4, 2)), np.array([True, False]))


def test_coalesce_grad_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(4,"):
        sm.kernels.coalesce(np.array([0, 1, 2, 3]), np.zeros((3, 2)))


@pytest.mark.parametrize("dtype,dim", [(np.float32, 64), (np.float64, 32), (np.float32, 100)])
def test_rows_long_enough_to_be_prefetched_give_the_reference_results(rng, dtype, dim):
    # Rows of 256 bytes or more are asked for ahead of use (kernels/prefetch.py); a hint must not
    # change a result, at the ends of the batch included.
    from sparsemb import reference as ref
    from sparsemb.kernels.prefetch import AHEAD, MIN_ROW_BYTES

    assert dim * np.dtype(dtype).itemsize >= MIN_ROW_BYTES
    n = 500
    ids = (rng.zipf(1.1, 40 * AHEAD) - 1) % n
    w = rng.standard_normal((n, dim)).astype(dtype)
    assert np.array_equal(sm.kernels.lookup(w, ids), w[ids])
    g = rng.standard_normal((ids.size, dim)).astype(dtype)
    idx, vals = sm.kernels.coalesce(ids, g)
    np.testing.assert_allclose(vals, ref.grad(ids, g, n)[idx], rtol=1e-5, atol=1e-5)
    offsets = np.arange(0, ids.size, 7)
    bag = sm.EmbeddingBag.from_pretrained(w, mode="sum")
    np.testing.assert_allclose(bag(ids, offsets), ref.bag_lookup(w, ids, offsets, mode="sum"), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape", [(0, 64), (3, 5), (1000, 64), (7,)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_aligned_empty_starts_on_a_cache_line(shape, dtype):
    a = sm.kernels.aligned_empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    line = sm.kernels.embedding.ALIGN
    if a.size:  # on a line, and the lines it touches belong to its own allocation
        owner = a
        while owner.base is not None:
            owner = owner.base
        assert a.ctypes.data % line == 0
        assert owner.ctypes.data <= a.ctypes.data and -(-a.nbytes // line) * line <= (
            owner.ctypes.data + owner.nbytes - a.ctypes.data)
    a[...] = 1
    assert (a == 1).all()


@pytest.mark.parametrize("dtype, dim, streamed", [(np.float32, 64, True), (np.float64, 64, True),
                                                  (np.float32, 8, True), (np.float32, 100, False)])
def test_a_large_lookup_written_with_streaming_stores_equals_indexing(dtype, dim, streamed):
    """An output of at least STREAM_MIN_BYTES, aligned, whose rows are whole 32-byte vectors, is written
    with streaming stores; any other with plain ones: the same rows either way."""
    from sparsemb.kernels.prefetch import STREAM_MIN_BYTES, streams

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((500, dim)).astype(dtype)
    n = -(-STREAM_MIN_BYTES // (dim * weight.itemsize)) + 3  # just over the threshold
    ids = rng.integers(0, 500, n)
    out = sm.kernels.lookup(weight, ids)
    assert bool(streams(out)) is streamed
    assert np.array_equal(out, weight[ids])
    small = sm.kernels.aligned_empty((n - 10, dim), dtype)  # under the threshold: plain stores
    assert not streams(small)
    sm.kernels.embedding.gather(weight, ids[:n - 10], small)
    assert np.array_equal(small, weight[ids[:n - 10]])
    with num_threads(1):
        assert np.array_equal(sm.kernels.lookup(weight, ids), out)
