"""Tables in files trained through a row cache (``cache_rows=``, issue 14): bit for bit as in RAM
with a cache much smaller than the table (rows evicted and read again all the time), the file
current whenever it is read, resumable, and bad input refused."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sparsemb as sm
from sparsemb import _storage
from sparsemb._storage import RowCache, checkpoint, log_dir, open_array, restore
from test_storage import DIM, N, OPTS, STATE_KEYS, _assert_same, _batches, _layer, _train

#: Batches of 24 ids hold up to 24 distinct rows of the table's 40.
ROWS = 24


def _cached(kind, name, path, rows=ROWS, **kw):
    interleave = None if name == "SGD" else getattr(sm.optim, name)
    return _layer(kind, storage=path, interleave=interleave, cache_rows=rows, **kw)


@pytest.fixture
def small_logs(monkeypatch):
    """Logs of 4 rows' ranges, merged at every append: merges all the time in small tests."""
    monkeypatch.setattr(_storage, "LOG_RANGE_ROWS", 4)
    monkeypatch.setattr(_storage, "LOG_FRACTION", 0.25)


@pytest.mark.parametrize("logs", ["one log", "small logs"])
@pytest.mark.parametrize("name", list(OPTS))
@pytest.mark.parametrize("kind", ["Embedding", "EmbeddingBag"])
@pytest.mark.parametrize("fused", [True, False], ids=["backward_step", "loop"])
def test_cached_training_equals_in_ram(tmp_path, request, name, kind, fused, logs):
    if logs == "small logs":
        request.getfixturevalue("small_logs")
    batches = _batches(25)
    ram = _layer(kind)
    ram_opt = OPTS[name]([ram])
    cached = _cached(kind, name, tmp_path / "emb.npy")
    opt = OPTS[name]([cached])
    _train(ram, ram_opt, batches, fused)
    _train(cached, opt, batches, fused)
    c = cached.cache
    assert c.capacity == ROWS and c.rows_read > N and c.rows_written > 0  # rows came and went
    assert (c.merges > 0) == (logs == "small logs")  # (one 16,384-row range: never full here)
    _assert_same(ram, ram_opt, cached, opt)  # reading weight wrote the changed rows back
    assert c.rows == 0 and not os.path.exists(log_dir(tmp_path / "emb.npy"))
    stored = np.load(tmp_path / "emb.npy")
    if name == "SGD":
        assert stored.tobytes() == ram.weight.tobytes()
    else:
        for k in STATE_KEYS[name]:
            assert stored[f"{name}.{k}"].tobytes() == ram_opt.state[ram._param][k].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cached_max_norm_and_padding_in_bags(tmp_path, dtype):
    batches = _batches(15)
    kw = {"max_norm": 1.5, "dtype": dtype}
    ram = _layer("EmbeddingBag", **kw)
    ram_opt = OPTS["SparseAdam"]([ram])
    cached = _cached("EmbeddingBag", "SparseAdam", tmp_path / "emb.npy", **kw)
    opt = OPTS["SparseAdam"]([cached])
    for ids, g in batches:
        ids = ids.copy()
        ids[:, 0] = 3  # the padding row in every bag, left out of the sums
        outs = []
        for layer, o in ((ram, ram_opt), (cached, opt)):
            outs.append(layer(ids))
            o.backward_step(layer, g.sum(axis=1))
        assert outs[0].tobytes() == outs[1].tobytes()
    _assert_same(ram, ram_opt, cached, opt)


def test_direct_io_of_512_byte_records(tmp_path):
    """Adagrad records of 64 float32 weights and 64 sums: 512 bytes, read and written with
    O_DIRECT where the file system takes it; the same bits either way."""
    rng = np.random.default_rng(3)
    ram = sm.Embedding(64, 64, seed=1)
    ram_opt = sm.optim.Adagrad([ram], lr=0.1)
    cached = sm.Embedding(64, 64, seed=1, storage=tmp_path / "emb.npy", interleave=sm.optim.Adagrad,
                          cache_rows=20)
    opt = sm.optim.Adagrad([cached], lr=0.1)
    for _ in range(20):
        ids = rng.integers(0, 64, 16)
        g = rng.standard_normal((16, 64)).astype(np.float32)
        for layer, o in ((ram, ram_opt), (cached, opt)):
            layer(ids)
            o.backward_step(layer, g)
    assert cached.cache.rows_written > 0
    _assert_same(ram, ram_opt, cached, opt)
    # (tmpfs, say, refuses O_DIRECT: the cache then reads and writes through the page cache)
    assert cached.cache.direct == _takes_direct_reads(tmp_path)


def _takes_direct_reads(directory):
    if not hasattr(os, "O_DIRECT"):
        return False
    path = os.path.join(directory, "probe")
    with open(path, "wb") as f:
        f.write(b"\0" * 4096)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        return False
    try:
        buf = np.empty(8192, np.uint8)
        start = -buf.ctypes.data % 4096
        os.preadv(fd, [memoryview(buf[start:start + 512])], 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


RESUME = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from sparsemb import _storage
    from test_rowcache import OPTS, _batches, _cached, _train
    _storage.LOG_RANGE_ROWS = {range_rows}
    layer = _cached("Embedding", "Adagrad", {path!r})
    opt = OPTS["Adagrad"]([layer])
    _train(layer, opt, _batches(20)[:{first}], True)
    assert layer.cache.rows > 0  # changed rows still in the cache: written back at exit
    assert layer.cache.rows_written > 0  # and others in the logs, merged into the file at exit
""")


@pytest.mark.parametrize("range_rows", [4, 1 << 14])
def test_resume_after_the_process_ends_is_bit_identical(tmp_path, range_rows):
    path = str(tmp_path / "emb.npy")
    code = RESUME.format(tests=os.path.dirname(__file__), path=path, first=12,
                         range_rows=range_rows)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert not os.path.exists(log_dir(path))
    resumed = _cached("Embedding", "Adagrad", path)
    opt = OPTS["Adagrad"]([resumed])
    assert opt.state[resumed._param]["step"] == 12
    _train(resumed, opt, _batches(20)[12:], True)
    ram = _layer("Embedding")
    ram_opt = OPTS["Adagrad"]([ram])
    _train(ram, ram_opt, _batches(20), True)
    _assert_same(ram, ram_opt, resumed, opt)


def test_checkpoint_state_dict_and_flush_write_changed_rows_back(tmp_path):
    batches = _batches(16)
    ram = _layer("Embedding")
    ram_opt = OPTS["SparseAdam"]([ram])
    cached = _cached("Embedding", "SparseAdam", tmp_path / "emb.npy")
    opt = OPTS["SparseAdam"]([cached])
    _train(ram, ram_opt, batches[:8], True)
    _train(cached, opt, batches[:8], True)
    # The optimizer first: its state is checkpointed from the file before the table's weight is.
    checkpoint(tmp_path / "ck", opt=opt, model=cached)
    theirs, mine = opt.state_dict(), ram_opt.state_dict()
    for k in STATE_KEYS["SparseAdam"]:
        assert theirs["state"][0][k].tobytes() == mine["state"][0][k].tobytes()
    restored = _layer("Embedding")
    restored_opt = OPTS["SparseAdam"]([restored])
    restore(tmp_path / "ck", model=restored, opt=restored_opt)
    _assert_same(ram, ram_opt, restored, restored_opt)
    _train(ram, ram_opt, batches[8:], True)
    _train(cached, opt, batches[8:], True)
    rows = cached.cache.rows
    assert np.load(tmp_path / "emb.npy")["weight"].tobytes() != ram.weight.tobytes()  # not yet
    cached.flush()  # written back, still cached
    assert cached.cache.rows == rows
    assert np.load(tmp_path / "emb.npy")["weight"].tobytes() == ram.weight.tobytes()
    # Restored into the cached table: the file takes the checkpoint, the cache reads it again.
    restore(tmp_path / "ck", model=cached, opt=opt)
    _train(cached, opt, batches[8:], True)
    _assert_same(ram, ram_opt, cached, opt)


def test_writes_to_weight_reach_the_next_lookup(tmp_path):
    cached = _cached("Embedding", "Adagrad", tmp_path / "emb.npy")
    opt = OPTS["Adagrad"]([cached])
    _train(cached, opt, _batches(3), True)
    w = cached.weight  # the file's rows, current; the cache emptied
    w[5] = 7.0
    assert (cached(np.array([5, 5])) == 7.0).all()
    with pytest.raises(AttributeError, match="cannot be replaced"):
        cached.weight = np.zeros((N, DIM), np.float32)


def test_prefetch_reads_rows_into_the_cache(tmp_path):
    batches = _batches(8)
    a = _layer("Embedding")
    b = _cached("Embedding", "Adagrad", tmp_path / "b.npy")
    opt_a, opt_b = OPTS["Adagrad"]([a]), OPTS["Adagrad"]([b])
    ids = np.array([1, 2, 2, 30])
    opt_b.prefetch(b, ids, background=True)  # read, not yet placed: the next lookup takes them
    assert b.cache.rows_read == 3 and b.cache.slot(30) == -1
    b(ids)
    assert b.cache.rows_read == 3 and b.cache.slot(30) >= 0 and b.cache.slot(0) == -1
    b.prefetch([0])
    assert b.cache.slot(0) >= 0
    for ids, g in batches:
        opt_b.prefetch(b, ids)
        b(ids)
        opt_b.backward_step(b, g)
    _train(a, opt_a, batches, True)
    _assert_same(a, opt_a, b, opt_b)


def test_bad_cache_input_is_refused(tmp_path):
    path = tmp_path / "emb.npy"
    with pytest.raises(ValueError, match="needs storage="):
        _layer("Embedding", cache_rows=10)
    for rows in (0, -3):
        with pytest.raises(ValueError, match=f"cache_rows must be >= 1, got {rows}"):
            _cached("Embedding", "Adagrad", path, rows=rows)
    for rows in (2.5, True, "10"):
        with pytest.raises(TypeError, match="cache_rows must be an integer"):
            _cached("Embedding", "Adagrad", path, rows=rows)
    assert _cached("Embedding", "Adagrad", path, rows=10 * N).cache.capacity == N  # the whole table
    with pytest.raises(ValueError, match="mapped from a file"):
        RowCache(np.zeros((N, DIM), np.float32), 4)
    # An optimizer with state needs it in the records the cache holds.
    plain = _layer("Embedding", storage=tmp_path / "plain.npy", cache_rows=ROWS)
    with pytest.raises(ValueError, match="interleave=sm.optim.Adagrad"):
        OPTS["Adagrad"]([plain])
    assert sorted(os.listdir(tmp_path)) == ["emb.npy", "plain.npy"]
    # A batch with more distinct rows than the cache holds: refused, and nothing changed.
    ram = _layer("Embedding")
    ram_opt = OPTS["Adagrad"]([ram])
    small = _cached("Embedding", "Adagrad", tmp_path / "small.npy", rows=8)
    opt = OPTS["Adagrad"]([small])
    rng = np.random.default_rng(5)
    batches = [(rng.integers(0, N, 6), rng.standard_normal((6, DIM)).astype(np.float32))
               for _ in range(10)]
    _train(ram, ram_opt, batches[:5], True)
    _train(small, opt, batches[:5], True)
    held = small.cache.rows
    with pytest.raises(ValueError, match="a batch of 9 distinct rows does not fit in a cache of 8"):
        small(np.arange(9))
    assert small.cache.rows == held
    _train(ram, ram_opt, batches[5:], True)
    _train(small, opt, batches[5:], True)
    _assert_same(ram, ram_opt, small, opt)


@pytest.mark.parametrize("dim", [5, 128])  # 20-byte rows through the page cache, 512 with O_DIRECT
def test_a_row_read_again_while_its_write_is_in_flight_comes_from_the_write(tmp_path, monkeypatch,
                                                                            dim):
    import threading

    from sparsemb import _storage

    release = threading.Event()
    io = _storage._io

    def slow_io(jobs, write):
        if write:
            release.wait(60)
        io(jobs, write)
    monkeypatch.setattr(_storage, "_io", slow_io)
    table = sm.Embedding(4, dim, seed=0, storage=tmp_path / "t.npy")
    c = RowCache(table.weight, 2)
    try:
        w = c.arrays["weight"]
        w[c.slots([0], write=True)] = 1.0
        w[c.slots([1], write=True)] = 2.0
        c.slots([2])  # evicts row 0 (changed): its write waits
        c.slots([1])
        s = c.slots([0])  # evicts row 2 (unchanged, so no write): row 0 from the waiting write
        assert c.rows_read == 3 and c.rows_written == 1
        assert (w[s] == 1.0).all() and not (np.load(tmp_path / "t.npy")[0] == 1.0).all()
    finally:
        release.set()
    c.write_back()
    stored = np.load(tmp_path / "t.npy")
    assert (stored[0] == 1.0).all() and (stored[1] == 2.0).all()


CRASH = textwrap.dedent("""
    import os, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from sparsemb import _storage
    from test_rowcache import OPTS, _batches, _cached, _train
    _storage.LOG_RANGE_ROWS, _storage.LOG_FRACTION = 8, 1000  # 5 logs, none merged
    layer = _cached("Embedding", "Adagrad", {path!r})
    opt = OPTS["Adagrad"]([layer])
    _train(layer, opt, _batches(20), True)
    c = layer.cache
    while c._writing:
        c._logs.finish(c._writing.pop(0))
    assert c._logs.size.any()  # rows in the logs, not yet merged
    ids = np.arange(c._logs.rows)  # each row as the file and logs hold it: what a reopen shows
    latest = c._logs.buffer(ids.size)
    c._logs.read(ids, latest)
    np.save({expected!r}, latest)
    os._exit(0)  # a crash: no write-back, the logs left behind
""")


def test_logs_left_by_a_crash_are_merged_when_the_file_is_opened(tmp_path):
    path = str(tmp_path / "emb.npy")
    expected = str(tmp_path / "expected.npy")
    code = CRASH.format(tests=os.path.dirname(__file__), path=path, expected=expected)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert os.listdir(log_dir(path))
    dtype = np.load(path, mmap_mode="r").dtype  # (the header only)
    with pytest.raises(PermissionError, match="open it writable once"):
        open_array(path, (N,), dtype, writable=False)
    table = open_array(path, (N,), dtype)  # (what storage= does on reopening)
    assert not os.path.exists(log_dir(path))
    assert table.tobytes() == np.load(expected).tobytes()
    assert np.load(path).tobytes() == table.tobytes()


def test_logs_stay_bounded(tmp_path, small_logs):
    cached = _cached("Embedding", "Adagrad", tmp_path / "emb.npy", rows=ROWS)
    opt = OPTS["Adagrad"]([cached])
    c = cached.cache
    limit = _storage.LOG_FRACTION * _storage.LOG_RANGE_ROWS * c._logs.dtype.itemsize
    logs, most = log_dir(tmp_path / "emb.npy"), 0
    for ids, g in _batches(60):
        cached(ids)
        opt.backward_step(cached, g)
        if os.path.isdir(logs):
            most = max([most] + [os.path.getsize(os.path.join(logs, f)) for f in os.listdir(logs)])
    # a log holds at most what reached the limit plus one append (a header and a range's rows)
    assert c.merges > 10 and most <= limit + 512 + _storage.LOG_RANGE_ROWS * c._logs.dtype.itemsize
