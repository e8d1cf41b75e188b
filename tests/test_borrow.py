"""kernels.borrow.borrowed: views without reference counting, for the arrays a kernel was called with."""
from __future__ import annotations

import sys
from typing import NamedTuple

import numpy as np
import pytest
from numba.core.errors import TypingError

from sparsemb._config import jit
from sparsemb.kernels.borrow import borrowed


class Bundle(NamedTuple):
    table: np.ndarray
    scale: float
    ids: np.ndarray
    flag: bool


@jit(inline="always")
def _add_rows(b, out):
    """Called once per row: an inlined callee taking the bundle, as the word2vec centre functions do."""
    for k in range(b.ids.shape[0]):
        r = b.ids[k]
        for d in range(b.table.shape[1]):
            b.table[r, d] += b.scale
        out[0] += b.flag


@jit()
def _kernel(bundle, rounds, out):
    b = borrowed(bundle)
    for _ in range(rounds):
        _add_rows(b, out)
    return b.table.shape[0] + b.ids.size


def _bundle():
    return Bundle(np.zeros((5, 3), np.float32), 0.5, np.array([0, 2, 2], np.int64), True)


def test_borrowed_views_write_the_callers_arrays():
    b = _bundle()
    out = np.zeros(1)
    assert _kernel(b, 4, out) == 8
    expected = np.zeros((5, 3), np.float32)
    expected[0] += 4 * 0.5
    expected[2] += 8 * 0.5
    np.testing.assert_array_equal(b.table, expected)
    assert out[0] == 4 * 3


def test_borrowed_leaves_every_reference_count_as_it_was():
    b = _bundle()
    out = np.zeros(1)
    _kernel(b, 1, out)  # compiled
    refs = [sys.getrefcount(x) for x in (b.table, b.ids)]
    for _ in range(200):
        _kernel(b, 3, out)
    # A borrowed view dropped as if it held a reference would lower these (and free the arrays).
    assert [sys.getrefcount(x) for x in (b.table, b.ids)] == refs


def test_borrowed_keeps_non_array_members():
    @jit()
    def members(bundle):
        b = borrowed(bundle)
        return b.scale, b.flag, b.ids[1]

    assert members(_bundle()) == (0.5, True, 2)


def test_borrowed_refuses_members_that_count_references_of_their_own():
    @jit()
    def nested(bundle):
        return borrowed(bundle)[0].size

    with pytest.raises(TypingError):
        nested((np.zeros(3), (np.zeros(2), 1)))


def test_borrowed_array_is_the_same_data():
    @jit()
    def fill(a):
        b = borrowed(a)
        for i in range(b.shape[0]):
            b[i] = i
        return b.sum()

    a = np.zeros(5)
    refs = sys.getrefcount(a)
    assert fill(a) == 10
    np.testing.assert_array_equal(a, np.arange(5.0))
    assert sys.getrefcount(a) == refs
