"""The matrix-factorization example trains with every optimizer (a small version of the script)."""
import importlib.util
from pathlib import Path

import pytest

_path = Path(__file__).parent.parent / "scripts" / "example_matrix_factorization.py"
_spec = importlib.util.spec_from_file_location("example_matrix_factorization", _path)
mf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mf)


@pytest.mark.parametrize("optimizer", sorted(mf.OPTIMIZERS))
def test_rmse_falls_below_bound(optimizer):
    hist = mf.train(optimizer, users=500, items=300, rank=4, n_ratings=30_000, epochs=8, seed=1)
    assert hist[0] > 0.9  # the untrained model predicts ~0 for ratings of variance ~1
    assert hist[-1] < 0.25, hist  # noise floor is 0.1
