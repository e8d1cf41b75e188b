"""Replicated training in one process: the merge rule, the sync schedule, deterministic=True."""
import numpy as np
import pytest

from sparsemb import Word2Vec
from sparsemb.word2vec import replicas


def _model(path, **kw):
    args = dict(corpus_file=path, vector_size=16, min_count=1, epochs=2, quiet=True, seed=3, sync_words=512)
    args.update(kw)
    return Word2Vec(**args)


def test_merge_sums_the_deltas_in_piece_order():
    base = [np.zeros((4, 2), np.float32)]
    syncs = [replicas.Sync(0, 0, 4)]
    a = np.array([[1, 0], [0, 0], [2, 2], [0, 0]], np.float32)   # replica 0 moved rows 0 and 2
    b = np.array([[1, 1], [0, 3], [0, 0], [0, 0]], np.float32)   # replica 1 moved rows 0 and 1
    merged = replicas.merge(base, [[a], [b]], syncs, copied=False)
    assert np.array_equal(base[0], a + b)                       # every update applied once: not averaged
    assert np.array_equal(merged[0], base[0])


def test_one_replica_is_copied_not_merged():
    base = [np.full((3, 2), 0.1, np.float32)]
    rows = np.array([[0.7, 0.3], [0.2, 0.9], [1e-8, 5.0]], np.float32)
    replicas.merge(base, [[rows]], [replicas.Sync(0, 0, 3)], copied=True)
    assert np.array_equal(base[0], rows)  # 0.1 + (rows - 0.1) would round differently


def test_sync_schedule_head_always_tiers_less_often_all_at_the_end():
    head = replicas.SYNC_HEAD_ROWS
    rows = [head * 30, head * 30, 0, 0, 0]   # syn0 and syn1neg trained, no hs, no adagrad
    periods = 30  # the last period is not one of the 4th tier's
    seen = {j: np.zeros(rows[j], int) for j in (0, 1)}
    for k in range(periods):
        syncs = replicas.sync_after(k, periods, rows)
        assert {s.table for s in syncs} == {0, 1}                 # tables without rows are never merged
        for s in syncs:
            assert 0 <= s.lo < s.hi <= rows[s.table]
            seen[s.table][s.lo:s.hi] += 1
        if k < periods - 1:
            assert sum(s.hi - s.lo for s in syncs) < sum(rows)      # not everything every period
    for j in (0, 1):
        assert (seen[j][:head] == periods).all()                    # the head after every period
        assert seen[j][head] == periods // 4 + 1                    # the next tier every 4th (+ the last)
        assert (seen[j] >= 1).all()                                 # every row by the epoch's end
        assert (np.diff(seen[j]) <= 0).all()                        # rarer rows never merged more often
    last = replicas.sync_after(periods - 1, periods, rows)
    assert sorted((s.table, s.lo, s.hi) for s in last) == [(0, 0, rows[0]), (1, 0, rows[1])]


def test_plan_cuts_every_piece_into_equal_periods(zipf_corpus):
    path = zipf_corpus()
    plan = replicas.make_plan(path, 4, 6000, 2000)  # 2000 corpus tokens a period: 3 periods
    assert plan.periods == 3 and len(plan.offsets) == 4 * 3 + 1
    assert plan.offsets[0] == 0 and plan.offsets == sorted(plan.offsets)
    assert abs(sum(plan.shares) - 6000) <= 4


@pytest.mark.parametrize("sg,optimizer", [(1, "sgd"), (0, "sgd"), (0, "adagrad")])
def test_deterministic_is_the_same_for_any_number_of_threads(zipf_corpus, sg, optimizer):
    path = zipf_corpus()
    runs = [_model(path, workers=w, deterministic=True, sg=sg, optimizer=optimizer) for w in (1, 2, 3)]
    for other in runs[1:]:
        assert np.array_equal(runs[0].wv.vectors, other.wv.vectors)
        assert np.array_equal(runs[0].syn1neg, other.syn1neg)
        assert np.array_equal(runs[0].accum0, other.accum0)
        assert runs[0].epoch_losses == other.epoch_losses
    assert not np.array_equal(runs[0].wv.vectors, _model(path, workers=1, sg=sg, optimizer=optimizer).wv.vectors)


def test_deterministic_hs(zipf_corpus):
    path = zipf_corpus()
    a, b = (_model(path, workers=w, deterministic=True, hs=1, negative=0) for w in (1, 2))
    assert np.array_equal(a.syn1, b.syn1) and np.array_equal(a.wv.vectors, b.wv.vectors)


def test_deterministic_trains_as_well_as_hogwild(zipf_corpus):
    path = zipf_corpus(sentences=1500)
    det = _model(path, workers=2, deterministic=True, epochs=4)
    hog = _model(path, workers=2, epochs=4)
    assert det.epoch_losses[-1] < det.epoch_losses[0]
    assert det.epoch_losses[-1] < hog.epoch_losses[-1] * 1.03
    assert det.train_words == hog.train_words


def test_deterministic_continues_across_train_calls_and_after_a_reload(zipf_corpus, tmp_path):
    path = zipf_corpus()
    a = _model(path, workers=1, deterministic=True, epochs=1)
    b = _model(path, workers=3, deterministic=True, epochs=1)
    assert a.rng_state.shape == (replicas.DETERMINISTIC_PIECES,)
    b.save(str(tmp_path / "m.npz"))
    c = Word2Vec.load(str(tmp_path / "m.npz"))
    assert c.deterministic and c.sync_words == 512 and c.client is None
    for m in (a, b, c):
        m.train(corpus_file=path, total_examples=m.corpus_count, epochs=1)
    assert np.array_equal(a.wv.vectors, b.wv.vectors) and np.array_equal(a.wv.vectors, c.wv.vectors)


def test_deterministic_needs_a_corpus_file():
    sentences = [["a", "b", "c"]] * 50
    with pytest.raises(ValueError, match="corpus_file"):
        Word2Vec(sentences, min_count=1, deterministic=True, quiet=True)


def test_sync_words_is_checked():
    with pytest.raises(ValueError, match="sync_words"):
        Word2Vec(sync_words=0)
