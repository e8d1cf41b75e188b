"""Training: loss, reproducibility, optimizers, model files, and the planted analogies of the demo."""
import io

import numpy as np
import pytest

from sparsemb.word2vec import Word2Vec
from sparsemb.word2vec import corpus as C
from sparsemb.word2vec.demo import generate_corpus, run_demo


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "corpus.txt"
    generate_corpus(path, n_sentences=4000, seed=0)
    return str(path)


def _train(path, **kw):
    args = dict(corpus_file=path, vector_size=16, min_count=1, epochs=3, workers=1, seed=7, quiet=True)
    args.update(kw)
    return Word2Vec(**args)


@pytest.mark.parametrize("sg", [0, 1])
def test_loss_falls_over_epochs(demo_corpus, sg):
    model = _train(demo_corpus, sg=sg, epochs=4)
    losses = model.epoch_losses
    assert len(losses) == 4
    assert losses[-1] < 0.8 * losses[0]
    assert model.get_latest_training_loss() == 0.0  # gensim's: kept only with compute_loss


def test_running_loss_is_gensims_total_for_the_train_call(demo_corpus):
    class Deltas:
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, model):
            self.seen.append(model.get_latest_training_loss())

    cb = Deltas()
    model = _train(demo_corpus, epochs=3, compute_loss=True, callbacks=[cb])
    deltas = np.diff([0.0] + cb.seen)
    assert (deltas > 0).all() and deltas[-1] < deltas[0]  # the usual callback's per-epoch loss falls
    assert model.get_latest_training_loss() == cb.seen[-1]
    effective, raw = model.train(corpus_file=demo_corpus, total_examples=model.corpus_count, epochs=1,
                                 compute_loss=True)
    assert 0 < model.get_latest_training_loss() < cb.seen[-1]  # reset at each train() call
    assert raw == model.corpus_total_words and 0 < effective <= raw


@pytest.mark.parametrize("sg, optimizer", [(1, "sgd"), (0, "sgd"), (1, "adagrad"), (0, "adagrad")])
def test_one_thread_and_a_seed_reproduce_bit_for_bit(demo_corpus, sg, optimizer):
    a = _train(demo_corpus, sg=sg, optimizer=optimizer)
    b = _train(demo_corpus, sg=sg, optimizer=optimizer)
    c = _train(demo_corpus, sg=sg, optimizer=optimizer, seed=8)
    assert np.array_equal(a.wv.vectors, b.wv.vectors)
    assert np.array_equal(a.syn1neg, b.syn1neg)
    assert a.epoch_losses == b.epoch_losses
    assert not np.array_equal(a.wv.vectors, c.wv.vectors)


def test_sentences_and_corpus_file_train_identically(demo_corpus):
    with open(demo_corpus, encoding="utf-8") as f:
        sentences = [line.split() for line in f]
    a = _train(demo_corpus)
    b = _train(None, corpus_file=None, sentences=sentences)
    assert np.array_equal(a.wv.vectors, b.wv.vectors)


def test_adagrad_updates_only_rows_it_touches_and_learns(demo_corpus):
    model = _train(demo_corpus, sg=1, optimizer="adagrad", alpha=0.05, epochs=4)
    assert model.accum0.shape == model.wv.vectors.shape
    assert np.all(model.accum0.sum(axis=1) > 0)  # every word was a context word
    assert model.epoch_losses[-1] < 0.8 * model.epoch_losses[0]
    # "z" is in the vocabulary but not in the training text: its input row is never touched.
    lazy = Word2Vec(vector_size=4, min_count=1, epochs=1, workers=1, optimizer="adagrad", quiet=True)
    lazy.build_vocab(sentences=[["a", "b", "z"]] * 3)
    z = lazy.wv.key_to_index["z"]
    before = lazy.wv.vectors.copy()
    lazy.train(sentences=[["a", "b", "a", "b"]] * 50, total_examples=50, epochs=1)
    assert np.all(lazy.accum0[z] == 0) and np.array_equal(lazy.wv.vectors[z], before[z])
    assert np.all(lazy.accum0[lazy.wv.key_to_index["a"]] > 0)


def test_multithreaded_training_runs_and_learns(demo_corpus):
    model = _train(demo_corpus, workers=2, epochs=4)
    assert np.isfinite(model.wv.vectors).all()
    assert model.epoch_losses[-1] < 0.8 * model.epoch_losses[0]


def test_save_load_keeps_everything_and_training_continues(demo_corpus, tmp_path):
    model = _train(demo_corpus, optimizer="adagrad")
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = Word2Vec.load(path)
    assert loaded.wv.index_to_key == model.wv.index_to_key
    assert np.array_equal(loaded.vocab.counts, model.vocab.counts)
    for name in ("syn1neg", "accum0", "accum1", "rng_state"):
        assert np.array_equal(getattr(loaded, name), getattr(model, name)), name
    assert np.array_equal(loaded.wv.vectors, model.wv.vectors)
    # Continuing the loaded copy and the original gives the same result.
    model.train(corpus_file=demo_corpus, total_examples=model.corpus_count, epochs=1)
    loaded.train(corpus_file=demo_corpus, total_examples=model.corpus_count, epochs=1)
    assert np.array_equal(loaded.wv.vectors, model.wv.vectors)
    assert len(loaded.epoch_losses) == 4


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        Word2Vec.load(bad)
    with pytest.raises(FileNotFoundError, match="none.npz"):
        Word2Vec.load(tmp_path / "none.npz")


@pytest.mark.parametrize("kwargs, name", [({"vector_size": 0}, "vector_size"), ({"window": 0}, "window"),
                                          ({"negative": -1}, "negative"), ({"hs": 2}, "hs"), ({"epochs": 0}, "epochs"),
                                          ({"alpha": -1.0}, "alpha"), ({"optimizer": "adam"}, "optimizer"),
                                          ({"workers": 0}, "workers"), ({"alpha": float("inf")}, "alpha"),
                                          ({"min_alpha": float("inf")}, "min_alpha"),
                                          ({"sample": float("inf")}, "sample"),
                                          ({"ns_exponent": float("nan")}, "ns_exponent"),
                                          ({"adagrad_eps": 0.0}, "adagrad_eps"),
                                          ({"window": 10**9}, "window"),
                                          ({"negative": 99999999999999999999}, "negative"),
                                          ({"max_final_vocab": 1.5}, "max_final_vocab"),
                                          ({"seed": -1}, "seed"), ({"vector_size": True}, "vector_size")])
def test_bad_parameters_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Word2Vec(**kwargs)


def test_callbacks_are_called_per_epoch(demo_corpus):
    seen = []

    class Recorder:
        def on_epoch_end(self, model):
            seen.append(model.epoch_losses[-1])

    model = _train(demo_corpus, epochs=2, callbacks=[Recorder()])
    assert seen == model.epoch_losses and len(seen) == 2


@pytest.mark.parametrize("sg", [1, 0])
def test_demo_reaches_90_percent_on_planted_analogies(sg):
    out = io.StringIO()
    score = run_demo(sg=sg, workers=2, quiet=True, out=out)
    assert score >= 0.9
    assert "planted-analogy accuracy" in out.getvalue()


def test_shared_and_per_pair_negatives_train_reproducibly_and_differ(demo_corpus):
    for optimizer, alpha in (("sgd", 0.025), ("adagrad", 0.05)):
        a = _train(demo_corpus, sg=1, epochs=4, optimizer=optimizer, alpha=alpha, shared_negatives=True)
        b = _train(demo_corpus, sg=1, epochs=4, optimizer=optimizer, alpha=alpha, shared_negatives=True)
        assert a.epoch_losses[-1] < 0.8 * a.epoch_losses[0]
        assert np.array_equal(a.wv.vectors, b.wv.vectors) and np.array_equal(a.syn1neg, b.syn1neg)
        assert a.epoch_losses == b.epoch_losses
        per_pair = _train(demo_corpus, sg=1, epochs=4, optimizer=optimizer, alpha=alpha, shared_negatives=False)
        again = _train(demo_corpus, sg=1, epochs=4, optimizer=optimizer, alpha=alpha, shared_negatives=False)
        assert per_pair.epoch_losses[-1] < 0.8 * per_pair.epoch_losses[0]
        assert np.array_equal(per_pair.wv.vectors, again.wv.vectors) and np.array_equal(per_pair.syn1neg, again.syn1neg)
        assert not np.array_equal(a.wv.vectors, per_pair.wv.vectors)


def test_per_pair_negatives_reach_90_percent_on_planted_analogies():
    assert run_demo(sg=1, workers=2, quiet=True, out=io.StringIO(), shared_negatives=False) >= 0.9


def test_shared_negatives_survive_save_and_load(demo_corpus, tmp_path):
    model = _train(demo_corpus, sg=1, epochs=1, shared_negatives=False)
    model.save(tmp_path / "m.npz")
    assert Word2Vec.load(tmp_path / "m.npz").shared_negatives is False


# -- issue 10 §3: a model file is checked before a kernel sees it ---------------------------------------

@pytest.fixture(scope="module")
def saved_model(demo_corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.npz"
    _train(demo_corpus, epochs=1, optimizer="adagrad").save(path)
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def _resave(arrays, path, **changes):
    import json

    arrays = dict(arrays)
    for key, value in changes.items():
        if key == "meta":
            arrays["meta"] = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return path


def _meta(arrays):
    import json

    return json.loads(arrays["meta"].tobytes())


@pytest.mark.parametrize("array, bad", [
    ("syn1neg", lambda a: a[:5]), ("syn0", lambda a: a[:, :-1]), ("syn0", lambda a: a.astype(np.int32)),
    ("syn0", lambda a: a.astype(np.float64)), ("rng_state", lambda a: a.astype(np.float32)),
    ("rng_state", lambda a: a.reshape(1, -1)), ("counts", lambda a: a[1:]), ("counts", lambda a: -a),
    ("accum0", lambda a: a[:3]), ("accum1", lambda a: -np.ones_like(a)), ("syn0", lambda a: a * np.nan),
    ("rng_state", lambda a: a | np.uint64(1 << 60))])
def test_load_refuses_arrays_that_do_not_fit_the_model(saved_model, tmp_path, array, bad):
    path = _resave(saved_model, tmp_path / "bad.npz", **{array: bad(saved_model[array])})
    with pytest.raises(ValueError, match=f"bad.npz.*{array}"):
        Word2Vec.load(path)


def test_load_refuses_bad_metadata_naming_the_file(saved_model, tmp_path):
    meta = _meta(saved_model)
    for bad, needle in ((list(meta), "not a sparsemb"), ({k: v for k, v in meta.items() if k != "words"}, "words"),
                        (dict(meta, words=meta["words"][:-1]), "syn0"), (dict(meta, vector_size="x"), "vector_size"),
                        (dict(meta, epoch_losses="x"), "epoch_losses")):
        path = _resave(saved_model, tmp_path / "bad.npz", meta=bad)
        with pytest.raises(ValueError, match=f"bad.npz.*{needle}"):
            Word2Vec.load(path)
    npy = tmp_path / "array.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match="array.npz.*npy"):
        Word2Vec.load(npy)
    arrays = {k: v for k, v in saved_model.items() if k != "syn1neg"}
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(ValueError, match="short.npz.*syn1neg"):
        Word2Vec.load(tmp_path / "short.npz")


def test_a_checked_model_still_loads_and_trains(saved_model, demo_corpus, tmp_path):
    model = Word2Vec.load(_resave(saved_model, tmp_path / "ok.npz"))
    model.train(corpus_file=demo_corpus, total_examples=model.corpus_count, epochs=1)
    assert np.isfinite(model.wv.vectors).all() and len(model.epoch_losses) == 2


def test_an_exhausted_iterator_and_bad_sentences_are_named():
    sentences = (s for s in [["a", "b", "c"]] * 30)
    with pytest.raises(TypeError, match="generator .* 6 passes"):  # gensim's refusal: 1 + 5 epochs
        Word2Vec(sentences, vector_size=4, min_count=1, workers=1, quiet=True)
    model = Word2Vec(vector_size=4, min_count=1, workers=1, quiet=True)
    model.build_vocab(sentences)
    with pytest.raises(ValueError, match="exhausted"):
        model.train(sentences, total_examples=30, epochs=1)
    with pytest.raises(TypeError, match="sentence 1 .*None"):
        Word2Vec([["a"], None], min_count=1, quiet=True)
    with pytest.raises(TypeError, match="sentence 0 .*7"):
        Word2Vec([7], min_count=1, quiet=True)
    with pytest.raises(ValueError, match="start_alpha"):
        model.train([["a", "b"]], total_examples=1, epochs=1, start_alpha=float("inf"))
    with pytest.raises(ValueError, match="total_examples or total_words"):
        model.train([["a", "b"]], epochs=1)
    with pytest.raises(ValueError, match="explicit epochs"):
        model.train([["a", "b"]], total_examples=1)
    with pytest.raises(ValueError, match="'hs' or 'negative'"):
        Word2Vec([["a", "b"]], min_count=1, hs=0, negative=0)


def test_tables_too_large_for_memory_are_refused_before_allocating(monkeypatch):
    from sparsemb.word2vec import model as model_module

    monkeypatch.setattr(model_module, "_available_memory", lambda: 1 << 20)
    with pytest.raises(MemoryError, match="GiB"):
        Word2Vec([["a", "b"]] * 10, vector_size=100_000, min_count=1, quiet=True)


# -- issue 11: gensim's training options ------------------------------------------------------------

@pytest.mark.parametrize("sg", [0, 1])
def test_locked_rows_do_not_move_and_others_do(demo_corpus, sg):
    model = Word2Vec(vector_size=8, min_count=1, sg=sg, hs=1, negative=3, workers=1, quiet=True)
    model.build_vocab(corpus_file=demo_corpus)
    model.wv.vectors_lockf = np.ones(len(model.wv), dtype=np.float32)
    model.wv.vectors_lockf[0] = 0.0
    before = model.wv.vectors.copy()
    model.train(corpus_file=demo_corpus, total_examples=model.corpus_count, epochs=1)
    assert np.array_equal(model.wv.vectors[0], before[0])
    assert not np.array_equal(model.wv.vectors[1], before[1])


def test_a_small_iterable_trains_alike_on_any_number_of_threads():
    sentences = [["a", "b", "c", "d", "a", "c"], ["b", "d", "a"]] * 20
    runs = [Word2Vec(sentences, vector_size=6, min_count=1, workers=w, sg=1, seed=3, quiet=True) for w in (2, 2, 3)]
    assert all(np.array_equal(runs[0].wv.vectors, r.wv.vectors) for r in runs[1:])


@pytest.mark.parametrize("kwargs", [{"hs": 1, "negative": 0}, {"hs": 1, "negative": 0, "sg": 1},
                                    {"hs": 1, "negative": 4, "sg": 1}, {"shrink_windows": False}])
def test_hierarchical_softmax_and_fixed_windows_learn_and_reproduce(demo_corpus, kwargs):
    a = _train(demo_corpus, epochs=3, **kwargs)
    b = _train(demo_corpus, epochs=3, **kwargs)
    assert np.array_equal(a.wv.vectors, b.wv.vectors) and a.epoch_losses == b.epoch_losses
    assert a.epoch_losses[-1] < 0.9 * a.epoch_losses[0]
    assert (a.syn1.shape[0] > 0) == bool(a.hs) and (a.syn1neg.shape[0] > 0) == bool(a.negative)
    assert not np.array_equal(a.wv.vectors, _train(demo_corpus, epochs=3).wv.vectors)


def test_training_with_a_zero_count_moves_the_rate_by_epoch_only():
    model = Word2Vec(vector_size=4, min_count=1, workers=1, sample=0, quiet=True)
    model.build_vocab_from_freq({"a": 3, "b": 2, "c": 1})  # leaves corpus_count at 0, as gensim's
    effective, raw = model.train([["a", "b", "c"]] * 5, total_examples=model.corpus_count, epochs=2)
    assert (effective, raw) == (30, 30) and np.isfinite(model.wv.vectors).all()


@pytest.mark.parametrize("size", [0, 1000, 70_000, 3_000_000, 36_022_282])
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_file_pieces_shrink_toward_the_end(size, workers):
    """A corpus file is cut into pieces of FEED_PIECE_BYTES while much is left, then into smaller ones,
    so that the threads finish an epoch together: no piece is larger than the ones before it or than
    a 2 * workers-th of what is left from its start, none but the last smaller than a sixteenth of
    FEED_PIECE_BYTES; one worker takes the file whole."""
    from sparsemb.word2vec import model as model_module

    full, smallest = model_module.FEED_PIECE_BYTES, model_module.FEED_PIECE_BYTES // 16
    cuts = model_module._piece_cuts(size, workers)
    bounds = [0] + cuts + [size]
    pieces = np.diff(bounds)
    assert (pieces > 0).all() or size == 0
    if workers == 1 or size <= smallest:
        assert cuts == []
        return
    assert (np.diff(pieces[:-1]) <= 0).all() and pieces.max() <= full
    assert (pieces[:-1] >= smallest).all()
    assert all(p <= max((size - lo) // (2 * workers), smallest) for p, lo in zip(pieces[:-1], bounds))
    if size > 4 * workers * full:
        assert pieces[0] == full and pieces[-2] == smallest


def test_file_pieces_go_to_whichever_thread_is_free(demo_corpus, monkeypatch):
    """With several threads a corpus file is cut into pieces that a thread takes when it is free: a
    stalled thread holds one piece, the other trains the rest; every word is trained once, and the
    learning rate follows the epoch's progress through the file."""
    import threading

    from sparsemb.word2vec import model as model_module

    monkeypatch.setattr(model_module, "FEED_PIECE_BYTES", 4096)
    model = _train(demo_corpus, workers=2, epochs=2)
    feed = model._file_feed(model._source(None, demo_corpus)[0])
    stop = threading.Event()
    stalled = feed.jobs(0, 1, stop)
    first = next(stalled)
    held = [first.ids.copy()]
    free = [(job.ids.copy(), job.alpha0, job.alpha1) for job in feed.jobs(1, 1, stop)]
    held += [job.ids.copy() for job in stalled]
    assert len(free) > 10 and len(held) == 1  # the stalled thread got no piece after its first
    table = C.WordTable.from_words(model.vocab.index_to_key)
    whole = np.concatenate([ids.copy() for ids, _ in C.encode_file(demo_corpus, table)])
    assert np.array_equal(np.concatenate(held + [ids for ids, _, _ in free]), whole)
    rates = [first.alpha0] + [a for _, a0, a1 in free for a in (a0, a1)]
    assert rates == sorted(rates, reverse=True)  # second of two epochs: from the middle rate to the end
    assert first.alpha0 == model._alphas(1, 0.0) and free[-1][2] == np.float32(model.min_alpha)
