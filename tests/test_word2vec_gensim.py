"""The trainer against gensim: models gensim saved, vocabulary updates, the running loss.

Recorded answers (scripts/record_gensim_fixtures.py model) always; live ones when gensim is installed.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sparsemb.word2vec import Word2Vec

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _corpus():
    with open(os.path.join(FIXTURES, "gensim_word2vec.json"), encoding="utf-8") as f:
        return [line.split() for line in json.load(f)["corpus"]]


@pytest.fixture(scope="module")
def trainer():
    with open(os.path.join(FIXTURES, "gensim_trainer.json"), encoding="utf-8") as f:
        return json.load(f)


def test_a_model_gensim_saved_loads_and_trains_without_gensim(tmp_path):
    script = f"""
import sys
sys.modules["gensim"] = None  # any import of gensim fails
import numpy as np
from sparsemb.word2vec import Word2Vec
model = Word2Vec.load({os.path.join(FIXTURES, "gensim_model", "w2v.model")!r})
with np.load({os.path.join(FIXTURES, "gensim_model.npz")!r}) as want:
    assert model.wv.index_to_key == want["words"].tolist()
    assert model.vocab.counts.tolist() == want["counts"].tolist()
    for got, key in ((model.wv.vectors, "vectors"), (model.syn1neg, "syn1neg"), (model.syn1, "syn1")):
        assert np.array_equal(got, want[key]), key
assert (model.hs, model.negative, model.vector_size) == (1, 3, 8)
model.train([model.wv.index_to_key[:6]] * 20, total_examples=20, epochs=1)
assert np.isfinite(model.wv.vectors).all()
model.save({str(tmp_path / "ours.npz")!r})
print(len(Word2Vec.load({str(tmp_path / "ours.npz")!r}).wv))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) == len(np.load(os.path.join(FIXTURES, "gensim_model.npz"))["words"])


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned > " + str(tmp_path / "owned"),))

    path = tmp_path / "evil.model"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="refused"):
        Word2Vec.load(path)
    assert not (tmp_path / "owned").exists()


def _update(first, second):
    model = Word2Vec(vector_size=8, min_count=3, workers=1, quiet=True)
    model.build_vocab(first)
    before = list(model.wv.index_to_key), model.wv.vectors.copy()
    model.build_vocab(second, update=True)
    return model, before


def test_vocabulary_update_equals_gensims_recorded_one(trainer):
    sentences = _corpus()
    first, second = sentences[:150], sentences[150:300] + [["brand", "new", "words", "brand", "new"]] * 3
    model, (before, vectors) = _update(first, second)
    assert before == trainer["update_before"]
    assert model.wv.index_to_key == trainer["update_words"]
    assert model.vocab.counts.tolist() == trainer["update_counts"]
    # Old vectors kept; the tables grew with the new words.
    assert np.array_equal(model.wv.vectors[: len(before)], vectors)
    assert model.wv.vectors.shape[0] == model.syn1neg.shape[0] == len(trainer["update_words"])
    model.train(second, total_examples=len(second), epochs=1)


def test_vocabulary_update_equals_live_gensims():
    gensim = pytest.importorskip("gensim")
    from gensim.models.word2vec import LineSentence

    lee = list(LineSentence(os.path.join(os.path.dirname(gensim.__file__), "test", "test_data",
                                         "lee_background.cor")))
    first, second = lee[:150], lee[150:]
    ours, _ = _update(first, second)
    theirs = gensim.models.Word2Vec(vector_size=8, min_count=3, workers=1)
    theirs.build_vocab(first)
    theirs.build_vocab(second, update=True)
    assert ours.wv.index_to_key == theirs.wv.index_to_key
    assert ours.vocab.counts.tolist() == [theirs.wv.get_vecattr(w, "count") for w in theirs.wv.index_to_key]


def _our_loss(sentences):
    model = Word2Vec(sentences, vector_size=8, min_count=2, epochs=3, workers=1, seed=4, compute_loss=True,
                     quiet=True)
    return model.get_latest_training_loss()


def test_running_loss_is_of_gensims_order_recorded(trainer):
    ratio = _our_loss(_corpus()) / trainer["loss"]
    assert 0.5 < ratio < 2.0


def test_running_loss_is_of_gensims_order_live():
    gensim = pytest.importorskip("gensim")
    from gensim.models.word2vec import LineSentence

    lee = list(LineSentence(os.path.join(os.path.dirname(gensim.__file__), "test", "test_data",
                                         "lee_background.cor")))
    theirs = gensim.models.Word2Vec(lee, vector_size=8, min_count=2, epochs=3, workers=1, seed=4, compute_loss=True)
    assert 0.5 < _our_loss(lee) / theirs.get_latest_training_loss() < 2.0
