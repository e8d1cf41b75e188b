"""Data-parallel word2vec on a Dask LocalCluster: Word2Vec(client=...) and `sparsemb train --scheduler`."""
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from sparsemb import KeyedVectors, Word2Vec  # noqa: E402
from sparsemb.cli import main  # noqa: E402
from sparsemb.distributed import word2vec as dw2v  # noqa: E402


@pytest.fixture(scope="module")
def corpus(zipf_corpus):
    return zipf_corpus(words=400, sentences=800, seed=7)


def _model(path, **kw):
    args = dict(corpus_file=path, vector_size=16, min_count=1, epochs=2, quiet=True, seed=5, sync_words=1024)
    args.update(kw)
    return Word2Vec(**args)


def test_deterministic_on_two_workers_equals_one_process(dask_client, corpus):
    local = _model(corpus, workers=3, deterministic=True, sg=1)
    remote = _model(corpus, workers=1, deterministic=True, sg=1, client=dask_client)
    assert np.array_equal(local.wv.vectors, remote.wv.vectors)
    assert np.array_equal(local.syn1neg, remote.syn1neg)
    assert local.epoch_losses == remote.epoch_losses
    assert np.array_equal(local.rng_state, remote.rng_state)


def test_data_parallel_trains(dask_client, corpus):
    model = _model(corpus, workers=1, client=dask_client, epochs=4)
    hogwild = _model(corpus, workers=2, epochs=4)
    assert np.isfinite(model.wv.vectors).all()
    assert model.rng_state.shape == (2,)  # one piece per worker thread
    assert model.epoch_losses[-1] < model.epoch_losses[0]
    assert model.epoch_losses[-1] < hogwild.epoch_losses[-1] * 1.03
    assert model.train_words == hogwild.train_words


def test_one_worker_equals_the_single_thread_run_and_three_deterministic(corpus):
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as c, \
            distributed.Client(c) as client:
        for kw in ({}, {"sg": 1, "optimizer": "adagrad"}):
            remote = _model(corpus, workers=1, client=client, **kw)
            local = _model(corpus, workers=1, **kw)
            assert np.array_equal(remote.wv.vectors, local.wv.vectors)
            assert np.array_equal(remote.syn1neg, local.syn1neg)
            assert np.array_equal(remote.accum0, local.accum0)
        deterministic = _model(corpus, workers=2, deterministic=True).wv.vectors
        remote = _model(corpus, workers=1, client=client, deterministic=True)
        assert np.array_equal(remote.wv.vectors, deterministic)
        c.scale(3)  # and on 3 workers (with the fixture's 2 and the threads 1-3 of test_word2vec_replicas)
        client.wait_for_workers(3, timeout=120)
        remote = _model(corpus, workers=1, client=client, deterministic=True)
        assert np.array_equal(remote.wv.vectors, deterministic)


def test_the_command_line_starts_a_local_cluster(corpus, tmp_path):
    out = tmp_path / "v.txt"
    assert main(["train", corpus, "-o", str(out), "--local-cluster", "1", "--deterministic", "--min-count", "1",
                 "--dim", "8", "--epochs", "1", "--quiet"]) == 0
    written = KeyedVectors.load_word2vec_format(str(out))
    local = Word2Vec(corpus_file=corpus, vector_size=8, min_count=1, epochs=1, deterministic=True, quiet=True)
    assert written.index_to_key == local.wv.index_to_key
    assert np.array_equal(written.vectors, local.wv.vectors)  # 9 significant digits round-trip a float32


def test_a_corpus_a_worker_cannot_read_is_one_clear_error(dask_client, corpus, tmp_path):
    with pytest.raises(dw2v.CorpusNotSharedError, match="not readable on Dask worker tcp://.*shares"):
        dask_client.run(dw2v.check_corpus, str(tmp_path / "absent.txt"), 1, 1)
    with pytest.raises(dw2v.CorpusNotSharedError, match="is not the driver's"):
        dask_client.run(dw2v.check_corpus, corpus, 1, 1)


def test_the_command_line_trains_on_a_scheduler(dask_client, corpus, tmp_path, capsys):
    out = tmp_path / "v.bin"
    address = dask_client.scheduler.address
    assert main(["train", corpus, "-o", str(out), "--scheduler", address, "--deterministic", "--min-count", "1",
                 "--dim", "16", "--epochs", "2", "--seed", "5", "--sync-words", "1024", "--quiet"]) == 0
    written = KeyedVectors.load_word2vec_format(str(out), binary=True)
    local = Word2Vec(corpus_file=corpus, vector_size=16, min_count=1, epochs=2, seed=5, sync_words=1024,
                     deterministic=True, quiet=True, sg=0)
    assert np.array_equal(written.vectors, local.wv.vectors)


@pytest.mark.parametrize("address", ["nonsense", "tcp://host-without-port"])
def test_a_bad_scheduler_address_is_one_line(corpus, tmp_path, capsys, address):
    out = tmp_path / "v.bin"
    assert main(["train", corpus, "-o", str(out), "--scheduler", address, "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--scheduler" in err[0] and "HOST:PORT" in err[0]
    assert not out.exists()


def test_an_unreachable_scheduler_is_one_line(corpus, tmp_path, capsys, monkeypatch):
    from sparsemb import cli

    monkeypatch.setattr(cli, "_CONNECT_SECONDS", 1)
    out = tmp_path / "v.bin"
    assert main(["train", corpus, "-o", str(out), "--scheduler", "tcp://127.0.0.1:1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Dask scheduler" in err[0]
    assert not out.exists()


class _KillAWorker:
    """A callback killing one worker process at the end of the first epoch."""

    def __init__(self, client):
        import os

        self.client, self.pids = client, client.run(os.getpid)
        self.victim = sorted(self.pids)[1]

    def on_epoch_end(self, model):
        import os
        import signal

        if len(model.epoch_losses) == 1:
            os.kill(self.pids[self.victim], signal.SIGKILL)


def test_a_worker_lost_mid_run_is_a_clear_error(corpus):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c, \
            distributed.Client(c) as client:
        kill = _KillAWorker(client)
        model = Word2Vec(vector_size=16, min_count=1, epochs=3, quiet=True, sync_words=1024, client=client)
        model.build_vocab(corpus_file=corpus)
        with pytest.raises(dw2v.WorkerLostError, match=f"Dask worker {kill.victim} was lost"):
            model.train(corpus_file=corpus, total_examples=model.corpus_count, epochs=3, callbacks=[kill])
        assert len(model.epoch_losses) == 1 and np.isfinite(model.wv.vectors).all()
