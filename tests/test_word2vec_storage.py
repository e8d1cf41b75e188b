"""Word2Vec(storage=dir): tables in memory-mapped files, trained exactly as in memory (issue 14 §2)."""
import os

import numpy as np
import pytest

from sparsemb import KeyedVectors, Word2Vec, _storage


@pytest.fixture
def corpus(zipf_corpus):
    return zipf_corpus(words=250, sentences=300, seed=11)


def _model(path, **kw):
    args = dict(corpus_file=path, vector_size=12, min_count=1, epochs=2, workers=1, quiet=True, seed=2)
    args.update(kw)
    return Word2Vec(**args)


@pytest.mark.parametrize("kw,files", [
    ({"sg": 1}, {"syn0.npy", "syn1neg.npy"}),
    ({"sg": 0, "optimizer": "adagrad"}, {"syn0.npy", "syn1neg.npy", "accum0.npy", "accum1.npy"}),
    ({"hs": 1, "negative": 0}, {"syn0.npy", "syn1.npy"}),
])
def test_mapped_tables_train_bit_for_bit_as_in_memory(corpus, tmp_path, kw, files):
    store = tmp_path / "tables"
    mapped = _model(corpus, storage=store, **kw)
    ram = _model(corpus, **kw)
    assert set(os.listdir(store)) == files
    assert isinstance(mapped.wv.vectors, np.memmap)
    for name in ("syn1neg", "syn1", "accum0", "accum1"):
        assert np.array_equal(getattr(mapped, name), getattr(ram, name))
    assert np.array_equal(mapped.wv.vectors, ram.wv.vectors)
    mapped.wv.vectors.flush()
    assert np.array_equal(np.load(store / "syn0.npy"), ram.wv.vectors)  # the file holds the trained table
    assert mapped.wv.most_similar("w3", topn=5) == ram.wv.most_similar("w3", topn=5)
    assert mapped.wv.similarity("w1", "w2") == ram.wv.similarity("w1", "w2")


def test_the_table_is_drawn_a_block_at_a_time_as_at_once(monkeypatch):
    from sparsemb.word2vec import model as model_module

    m = Word2Vec(vector_size=7, seed=4)
    whole = m._new_vectors(1000, 0)
    monkeypatch.setattr(model_module, "_INIT_ROWS", 64)
    assert np.array_equal(m._new_vectors(1000, 0), whole)


def test_a_saved_mapped_model_loads_into_memory(corpus, tmp_path):
    mapped = _model(corpus, storage=tmp_path / "tables")
    mapped.save(str(tmp_path / "m.npz"))
    loaded = Word2Vec.load(str(tmp_path / "m.npz"))
    assert not isinstance(loaded.wv.vectors, np.memmap) and loaded.storage is None
    assert np.array_equal(loaded.wv.vectors, mapped.wv.vectors)


def test_another_models_files_are_refused_before_the_corpus_is_read(corpus, tmp_path):
    store = tmp_path / "tables"
    store.mkdir()
    (store / "syn1neg.npy").write_bytes(b"a user's file")
    with pytest.raises(FileExistsError, match="syn1neg.npy"):
        Word2Vec(corpus_file=os.path.join(tmp_path, "absent.txt"), storage=store)
    assert (store / "syn1neg.npy").read_bytes() == b"a user's file"


def test_building_the_vocabulary_again_remakes_the_models_own_files(corpus, tmp_path):
    store = tmp_path / "tables"
    m = Word2Vec(vector_size=8, min_count=1, storage=store, quiet=True)
    m.build_vocab(corpus_file=corpus)
    m.build_vocab(corpus_file=corpus)
    assert set(os.listdir(store)) == {"syn0.npy", "syn1neg.npy"}
    with pytest.raises(ValueError, match="storage"):
        m.build_vocab(corpus_file=corpus, update=True)


def test_storage_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="directory"):
        Word2Vec(storage=f)


def test_a_full_disk_is_refused_before_any_file_is_made(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(_storage, "_free_bytes", lambda directory: 1000)
    store = tmp_path / "tables"
    with pytest.raises(_storage.NotEnoughSpaceError, match="needs"):
        _model(corpus, storage=store)
    assert os.listdir(store) == []


def test_norms_are_computed_a_block_at_a_time_with_the_same_numbers(monkeypatch):
    from sparsemb.word2vec import keyedvectors

    v = np.random.default_rng(3).standard_normal((1000, 7)).astype(np.float32)
    monkeypatch.setattr(keyedvectors, "CHUNK_BYTES", 7 * 4 * 64)  # 64 rows a block: 16 blocks
    assert np.array_equal(keyedvectors._row_norms(v), np.linalg.norm(v, axis=1))


def test_the_command_line_trains_into_storage(corpus, tmp_path, capsys):
    from sparsemb.cli import main

    out, store = tmp_path / "v.bin", tmp_path / "tables"
    args = ["train", corpus, "-o", str(out), "--storage", str(store), "--min-count", "1", "--dim", "8", "--epochs",
            "1", "--threads", "1", "--quiet"]
    assert main(args) == 0
    assert sorted(os.listdir(store)) == ["syn0.npy", "syn1neg.npy"]
    written = KeyedVectors.load_word2vec_format(str(out), binary=True)
    assert np.array_equal(np.load(store / "syn0.npy"), written.vectors)
    out.unlink()
    assert main(args) == 1  # the tables of the first run are not overwritten
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds syn0.npy" in err[0] and not out.exists()
