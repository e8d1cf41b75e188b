import numpy as np
import pytest
from hypothesis import settings

# Numba compiles each kernel signature on first use; deadlines would time the compiler, not the code.
settings.register_profile("sparsemb", deadline=None, max_examples=60)
settings.load_profile("sparsemb")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
