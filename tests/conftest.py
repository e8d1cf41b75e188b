import json
import os

import numpy as np
import pytest
from hypothesis import settings

# Numba compiles each kernel signature on first use; deadlines would time the compiler, not the code.
settings.register_profile("sparsemb", deadline=None, max_examples=60)
settings.load_profile("sparsemb")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def recorded():
    """What scripts/record_gensim_fixtures.py recorded from gensim (vocabulary, queries, evaluations)."""
    path = os.path.join(os.path.dirname(__file__), "fixtures", "gensim_word2vec.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def dask_client():
    """A Client of one ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` for the
    whole session (it takes seconds to start); skipped cleanly where dask is not installed. Tests
    that kill a worker make their own short-lived cluster instead."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="session")
def zipf_corpus(tmp_path_factory):
    """``zipf_corpus(words, sentences, seed)``: the path of a text file of ``sentences`` lines of 3-24
    tokens drawn from ``words`` words with Zipf(1) frequencies (made once per set of arguments)."""
    made = {}

    def make(words=300, sentences=400, seed=0):
        key = (words, sentences, seed)
        if key not in made:
            rng = np.random.default_rng(seed)
            vocab = [f"w{i}" for i in range(words)]
            p = 1.0 / np.arange(1, words + 1)
            lines = [" ".join(rng.choice(vocab, size=rng.integers(3, 25), p=p / p.sum())) for _ in range(sentences)]
            path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
            path.write_text("\n".join(lines) + "\n")
            made[key] = str(path)
        return made[key]

    return make
