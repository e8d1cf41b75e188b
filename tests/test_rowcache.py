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


def _skewed(steps, seed=0):
    """Batches of 4 ids, Zipf(1.3) over the table: a few hot rows, a tail read now and then, and
    few misses a step, so that a small cache's rows leave through its window (see
    :mod:`sparsemb.kernels.rowcache`), not straight from the main slots."""
    rng = np.random.default_rng(seed)
    return [((rng.zipf(1.3, (2, 2)) - 1) % N, rng.standard_normal((2, 2, DIM)).astype(np.float32))
            for _ in range(steps)]


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
        c.slots([2])  # evicts row 0 or 1 (changed): its write waits
        gone = 0 if c.slot(0) < 0 else 1
        assert c.slot(1 - gone) >= 0
        # row 2 (unchanged, used less than the other) leaves for it, so no second write: the row
        # comes from the waiting write
        s = c.slots([gone])
        assert c.rows_read == 3 and c.rows_written == 1
        assert (w[s] == 1.0 + gone).all()
        assert not (np.load(tmp_path / "t.npy")[gone] == 1.0 + gone).all()
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
    from test_rowcache import OPTS, _batches, _cached, _skewed, _train
    _storage.LOG_RANGE_ROWS, _storage.LOG_FRACTION = 8, 1000  # 5 logs, none merged
    layer = _cached("Embedding", "Adagrad", {path!r}, rows={rows})
    opt = OPTS["Adagrad"]([layer])
    _train(layer, opt, {batches}, True)
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


@pytest.mark.parametrize("batches, rows", [("_batches(20)", ROWS), ("_skewed(300)", 8)],
                         ids=["uniform", "skewed"])
def test_logs_left_by_a_crash_are_merged_when_the_file_is_opened(tmp_path, batches, rows):
    path = str(tmp_path / "emb.npy")
    expected = str(tmp_path / "expected.npy")
    code = CRASH.format(tests=os.path.dirname(__file__), path=path, expected=expected,
                        batches=batches, rows=rows)
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


@pytest.mark.parametrize("name", list(OPTS))
@pytest.mark.parametrize("fused", [True, False], ids=["backward_step", "loop"])
def test_rows_turned_away_by_the_window_keep_their_updates(tmp_path, small_logs, name, fused):
    """A row that leaves the window for a row used more often is evicted like any other: its
    changes go to the logs and come back with it, bit for bit as in RAM, over many steps."""
    batches = _skewed(400)
    ram = _layer("Embedding")
    ram_opt = OPTS[name]([ram])
    cached = _cached("Embedding", name, tmp_path / "emb.npy", rows=8)
    opt = OPTS[name]([cached])
    _train(ram, ram_opt, batches, fused)
    _train(cached, opt, batches, fused)
    c = cached.cache
    assert c.rows_read > 4 * N and c.rows_written > 2 * N and c.merges > 0
    _assert_same(ram, ram_opt, cached, opt)


def _map(rows, capacity):
    from sparsemb.kernels.rowcache import new_map
    return new_map(rows, capacity)


def _use(m, ids, write=False):
    """One call of the kernel: (slots, rows read in, rows evicted changed)."""
    from sparsemb.kernels.rowcache import assign
    ids = np.asarray(ids, np.int64)
    slots = np.empty(ids.size, np.int64)
    _, load_ids, _, evict_ids, _ = assign(m, ids, write, slots)
    return slots, load_ids, evict_ids


def test_the_window_admits_rows_used_more_than_the_victim():
    m = _map(100, 4)  # a window of 1 slot, 3 main slots
    for _ in range(3):
        for r in (0, 1, 2):
            _use(m, [r], write=True)
    assert (m.slot_of[:3] >= 0).all()
    _use(m, [5], write=True)
    _, loaded, evicted = _use(m, [6])  # row 5 leaves the window: used once, it is evicted
    assert m.slot_of[5] == -1 and evicted.tolist() == [5] and loaded.tolist() == [6]
    assert (m.slot_of[:3] >= 0).all()
    for _ in range(5):  # row 8 used while in the window: 5 uses
        _use(m, [8])
    _, _, evicted = _use(m, [9], write=True)  # row 8 leaves the window: it stays, a row of 0-2 goes
    assert m.slot_of[8] >= 0 and m.slot_of[9] >= 0
    assert (m.slot_of[:3] >= 0).sum() == 2 and evicted.size == 1 and evicted[0] in (0, 1, 2)


def test_a_scan_of_rows_used_once_leaves_the_hot_rows_cached(tmp_path):
    table = sm.Embedding(1000, 4, seed=0, storage=tmp_path / "t.npy")
    c = RowCache(table.weight, 128)  # a window of 2 slots
    hot = np.arange(10)
    for _ in range(20):
        c.slots(hot, write=True)
    for r in range(100, 1000):  # 900 rows once each: 7 times the slots
        c.slots([r], write=True)
    read = c.rows_read
    assert all(c.slot(r) >= 0 for r in hot)
    c.slots(hot)
    assert c.rows_read == read  # (with CLOCK alone each pass of the hand evicts them)
    c.write_back()


def test_use_counts_age_so_new_hot_rows_take_over():
    """Rows used often long ago (their counts saturated) give way to rows used often now, once
    halving has aged the old counts below the new ones."""
    m = _map(100, 4)
    for _ in range(1000):
        for r in (0, 1, 2):
            _use(m, [r])
    for _ in range(1000):
        for r in (10, 11, 12):
            _use(m, [r])
    assert all(m.slot_of[r] >= 0 for r in (10, 11, 12))
    assert m.uses[:3].max() < m.uses[10:13].min()


def test_the_window_full_sends_a_batch_straight_to_the_main_slots():
    m = _map(100, 8)  # a window of 1 slot
    slots, loaded, _ = _use(m, np.arange(8))  # more missing rows than the window holds
    assert sorted(slots.tolist()) == list(range(8)) and loaded.size == 8
    slots, loaded, _ = _use(m, np.arange(8, 16))  # all evicted, the batch all in
    assert (m.slot_of[:8] == -1).all() and sorted(slots.tolist()) == list(range(8))
    assert _use(m, np.arange(9))[1].size == 0 and (m.slot_of[8:16] >= 0).all()  # 9 > 8: refused
