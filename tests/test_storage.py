"""Tables in files (issue 14): mapped layers and optimizer state equal in-RAM ones bit for bit,
runs resume from the files, checkpoints survive crashes, and bad storage is refused cleanly."""
import errno
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sparsemb as sm
from sparsemb import _storage
from sparsemb._storage import NotEnoughSpaceError, StorageMismatchError, checkpoint, restore

N, DIM = 40, 5
OPTS = {
    "SGD": lambda params, **kw: sm.optim.SGD(params, lr=0.1, **kw),
    "Adagrad": lambda params, **kw: sm.optim.Adagrad(params, lr=0.1, lr_decay=0.01, **kw),
    "RowwiseAdagrad": lambda params, **kw: sm.optim.RowwiseAdagrad(params, lr=0.1, **kw),
    "SparseAdam": lambda params, **kw: sm.optim.SparseAdam(params, lr=0.05, **kw),
}
STATE_KEYS = {"SGD": [], "Adagrad": ["sum"], "RowwiseAdagrad": ["sum"],
              "SparseAdam": ["exp_avg", "exp_avg_sq"]}


def _layer(kind, **kw):
    if kind == "Embedding":
        return sm.Embedding(N, DIM, padding_idx=3, seed=7, **kw)
    return sm.EmbeddingBag(N, DIM, mode="sum", padding_idx=3, seed=7, **kw)


def _batches(steps, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, N, (6, 4)), rng.standard_normal((6, 4, DIM)).astype(np.float32))
            for _ in range(steps)]


def _train(layer, opt, batches, fused):
    for ids, g in batches:
        out_g = g if isinstance(layer, sm.Embedding) else g.sum(axis=1)
        if fused:
            layer(ids)
            opt.backward_step(layer, out_g)
        else:
            opt.zero_grad()
            layer(ids)
            layer.backward(out_g)
            opt.step()


def _state(opt, layer):
    s = opt.state[layer._param]
    return {k: np.array(v) for k, v in s.items() if isinstance(v, np.ndarray)} | {"step": s["step"]}


def _assert_same(a_layer, a_opt, b_layer, b_opt):
    assert a_layer.weight.tobytes() == b_layer.weight.tobytes()
    sa, sb = _state(a_opt, a_layer), _state(b_opt, b_layer)
    assert sa.keys() == sb.keys() and sa["step"] == sb["step"]
    for k in sa:
        if k != "step":
            assert sa[k].dtype == sb[k].dtype and sa[k].tobytes() == sb[k].tobytes(), k


def _listing(d):
    return sorted(os.listdir(d))


@pytest.mark.parametrize("kind", ["Embedding", "EmbeddingBag"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mapped_table_is_drawn_as_in_ram(tmp_path, kind, dtype):
    ram, mapped = _layer(kind, dtype=dtype), _layer(kind, dtype=dtype, storage=tmp_path / "w.npy")
    assert isinstance(mapped.weight, np.memmap) and mapped.weight.dtype == dtype
    assert mapped.weight.tobytes() == ram.weight.tobytes()
    assert not mapped.weight[3].any()  # the padding row, zeroed as in RAM
    assert np.load(tmp_path / "w.npy").tobytes() == ram.weight.tobytes()


@pytest.mark.parametrize("name", list(OPTS))
@pytest.mark.parametrize("kind", ["Embedding", "EmbeddingBag"])
@pytest.mark.parametrize("fused", [True, False], ids=["backward_step", "loop"])
def test_mapped_training_equals_in_ram(tmp_path, name, kind, fused):
    batches = _batches(25)
    ram = _layer(kind)
    ram_opt = OPTS[name]([ram])
    mapped = _layer(kind, storage=tmp_path / "emb.npy")
    mapped_opt = OPTS[name]([mapped])
    _train(ram, ram_opt, batches, fused)
    _train(mapped, mapped_opt, batches, fused)
    _assert_same(ram, ram_opt, mapped, mapped_opt)
    # State files next to the table, named after it, the optimizer and the state.
    expected = {"emb.npy", f"emb.{name}.step.npy"} | {f"emb.{name}.{k}.npy" for k in STATE_KEYS[name]}
    assert set(_listing(tmp_path)) == expected
    for k in STATE_KEYS[name]:
        assert isinstance(mapped_opt.state[mapped._param][k], np.memmap)
    mapped_opt.flush()
    mapped.flush()
    assert np.load(tmp_path / f"emb.{name}.step.npy")[0] == 25
    assert np.load(tmp_path / "emb.npy").tobytes() == ram.weight.tobytes()


def test_state_storage_directory_for_tables_in_ram(tmp_path):
    batches = _batches(10)
    a, b = _layer("Embedding"), _layer("Embedding")
    c = sm.Embedding(N + 1, DIM, seed=1)
    opt_a = OPTS["SparseAdam"]([a])
    opt_b = OPTS["SparseAdam"]([b, c], state_storage=tmp_path)
    _train(a, opt_a, batches, True)
    _train(b, opt_b, batches, True)
    _assert_same(a, opt_a, b, opt_b)
    assert _listing(tmp_path) == sorted(f"param{i}.SparseAdam.{k}.npy" for i in (0, 1)
                                        for k in ("exp_avg", "exp_avg_sq", "step"))
    assert np.load(tmp_path / "param1.SparseAdam.exp_avg.npy").shape == (N + 1, DIM)


def test_from_pretrained_copy_false_keeps_the_array(tmp_path):
    w = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    assert sm.Embedding.from_pretrained(w).weight is not w  # torch's copy semantics by default
    assert sm.Embedding.from_pretrained(w, copy=False).weight is w
    assert sm.EmbeddingBag.from_pretrained(w, copy=False).weight is w
    np.save(tmp_path / "w.npy", w)
    mm = np.load(tmp_path / "w.npy", mmap_mode="r+")
    layer = sm.Embedding.from_pretrained(mm, freeze=False, copy=False)
    opt = OPTS["Adagrad"]([layer])
    ram = sm.Embedding.from_pretrained(w, freeze=False)
    ram_opt = OPTS["Adagrad"]([ram])
    _train(layer, opt, _batches(5), True)
    _train(ram, ram_opt, _batches(5), True)
    _assert_same(ram, ram_opt, layer, opt)
    assert (tmp_path / "w.Adagrad.sum.npy").exists()
    with pytest.raises(ValueError, match="C-contiguous"):
        sm.Embedding.from_pretrained(np.asfortranarray(w), copy=False)
    with pytest.raises(TypeError, match="got list"):
        sm.Embedding.from_pretrained(w.tolist(), copy=False)


def test_read_only_mapping_serves_lookups_and_refuses_training(tmp_path):
    w = np.arange(N * DIM, dtype=np.float32).reshape(N, DIM)
    np.save(tmp_path / "w.npy", w)
    ro = np.load(tmp_path / "w.npy", mmap_mode="r")
    with pytest.raises(ValueError, match="read-only"):
        sm.Embedding.from_pretrained(ro, freeze=False, copy=False)
    layer = sm.Embedding.from_pretrained(ro, copy=False)
    assert np.array_equal(layer(np.array([2, 5])), w[[2, 5]])
    layer.requires_grad = True
    opt = sm.optim.SGD([layer], state_storage=None)
    layer(np.array([1]))
    with pytest.raises(ValueError, match="read-only"):
        opt.backward_step(layer, np.ones((1, DIM), np.float32))
    assert np.load(tmp_path / "w.npy").tobytes() == w.tobytes()
    bag = sm.EmbeddingBag.from_pretrained(ro, copy=False, max_norm=1.0)
    with pytest.raises(ValueError, match="read-only"):
        bag(np.array([[1, 2]]))


RESUME = textwrap.dedent("""
    import sys
    import numpy as np
    import sparsemb as sm
    sys.path.insert(0, {tests!r})
    from test_storage import OPTS, _batches, _layer, _train
    layer = _layer({kind!r}, storage={path!r})
    opt = OPTS[{name!r}]([layer])
    _train(layer, opt, _batches(20)[:{first}], True)
    opt.flush()
""")


@pytest.mark.parametrize("name,kind", [("SparseAdam", "Embedding"), ("Adagrad", "EmbeddingBag")])
def test_resume_after_the_process_ends_is_bit_identical(tmp_path, name, kind):
    path = str(tmp_path / "emb.npy")
    code = RESUME.format(tests=os.path.dirname(__file__), kind=kind, path=path, name=name, first=12)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    resumed = _layer(kind, storage=path)  # reopened: not drawn again
    opt = OPTS[name]([resumed])
    assert opt.state[resumed._param]["step"] == 12
    _train(resumed, opt, _batches(20)[12:], True)
    ram = _layer(kind)
    ram_opt = OPTS[name]([ram])
    _train(ram, ram_opt, _batches(20), True)
    _assert_same(ram, ram_opt, resumed, opt)


def test_checkpoint_round_trip_and_generations(tmp_path):
    batches = _batches(30)
    live = _layer("Embedding", storage=tmp_path / "emb.npy")
    live_opt = OPTS["SparseAdam"]([live])
    _train(live, live_opt, batches[:10], True)
    ck = tmp_path / "ck"
    checkpoint(ck, model=live, opt=live_opt)
    first = _listing(ck)
    _train(live, live_opt, batches[10:20], True)
    checkpoint(ck, model=live, opt=live_opt)  # the second generation replaces the first
    assert len(_listing(ck)) == len(first) and not set(first) - {"checkpoint.json"} & set(_listing(ck))
    manifest = json.loads((ck / "checkpoint.json").read_text())
    assert manifest["generation"] == 1 and manifest["objects"]["opt"]["state"][0]["step"] == 20
    _train(live, live_opt, batches[20:], True)
    # Restored into fresh in-RAM objects, the run continues as the live one did.
    back = sm.Embedding(N, DIM, padding_idx=3, seed=99)
    back_opt = OPTS["SparseAdam"]([back], betas=(0.5, 0.6))
    restore(ck, model=back, opt=back_opt)
    assert back_opt.param_groups[0]["betas"] == (0.9, 0.999)
    _train(back, back_opt, batches[20:], True)
    _assert_same(live, live_opt, back, back_opt)


def test_checkpoint_interrupted_keeps_the_previous_one(tmp_path, monkeypatch):
    layer = _layer("Embedding")
    opt = OPTS["Adagrad"]([layer])
    _train(layer, opt, _batches(3), True)
    ck = tmp_path / "ck"
    checkpoint(ck, model=layer, opt=opt)
    saved_w, saved_s = layer.weight.copy(), opt.state[layer._param]["sum"].copy()
    before = _listing(ck)
    _train(layer, opt, _batches(3, seed=1), True)
    calls = []
    real = _storage._write_npy

    def dies_on_second(path, a):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, a)
    monkeypatch.setattr(_storage, "_write_npy", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        checkpoint(ck, model=layer, opt=opt)
    monkeypatch.undo()
    assert _listing(ck) == before  # nothing of the new generation left, the old one complete
    # A crash of the process (temporary files left over) is cleaned up by the next checkpoint.
    (ck / ".tmp-model.weight.1.npy.abcd1234").write_bytes(b"partial")
    fresh = _layer("Embedding")
    fresh_opt = OPTS["Adagrad"]([fresh])
    restore(ck, model=fresh, opt=fresh_opt)
    assert fresh.weight.tobytes() == saved_w.tobytes()
    assert fresh_opt.state[fresh._param]["sum"].tobytes() == saved_s.tobytes()
    assert fresh_opt.state[fresh._param]["step"] == 3
    checkpoint(ck, model=layer, opt=opt)
    assert not [f for f in _listing(ck) if f.startswith(".tmp-")]


def test_restore_checks_before_copying(tmp_path):
    layer = _layer("Embedding")
    opt = OPTS["SparseAdam"]([layer])
    checkpoint(tmp_path / "ck", model=layer, opt=opt)
    other = sm.Embedding(N + 1, DIM, seed=2)
    keep = other.weight.copy()
    with pytest.raises(ValueError, match=r"'weight' is float32 \(40, 5\)"):
        restore(tmp_path / "ck", model=other)
    assert other.weight.tobytes() == keep.tobytes()
    with pytest.raises(KeyError, match="holds no 'nope'"):
        restore(tmp_path / "ck", nope=layer)
    with pytest.raises(ValueError, match="is a SparseAdam, got a Adagrad"):
        restore(tmp_path / "ck", opt=sm.optim.Adagrad([layer]))
    with pytest.raises(FileNotFoundError, match="no sparsemb checkpoint"):
        restore(tmp_path, model=layer)
    with pytest.raises(ValueError, match="file name part"):
        checkpoint(tmp_path / "ck2", **{"../x": layer})
    with pytest.raises(TypeError, match="got ndarray"):
        checkpoint(tmp_path / "ck2", w=layer.weight)


# -- bad input ---------------------------------------------------------------------------------

def test_reopen_checks_shape_dtype_and_format(tmp_path):
    p = tmp_path / "w.npy"
    sm.Embedding(N, DIM, storage=p)
    with pytest.raises(StorageMismatchError, match=r"shape \(40, 5\) and dtype float32; expected "
                                                   r"shape \(41, 5\)"):
        sm.Embedding(N + 1, DIM, storage=p)
    with pytest.raises(StorageMismatchError, match="expected shape .* dtype float64"):
        sm.Embedding(N, DIM, storage=p, dtype=np.float64)
    np.save(tmp_path / "f.npy", np.zeros((N, DIM), np.float32, order="F"))
    with pytest.raises(StorageMismatchError, match="Fortran order"):
        sm.Embedding(N, DIM, storage=tmp_path / "f.npy")
    (tmp_path / "t.npy").write_text("not an array")
    with pytest.raises(StorageMismatchError, match="not a .npy array file"):
        sm.Embedding(N, DIM, storage=tmp_path / "t.npy")
    data = p.read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-7])
    with pytest.raises(StorageMismatchError, match="truncated"):
        sm.Embedding(N, DIM, storage=tmp_path / "cut.npy")
    assert issubclass(StorageMismatchError, ValueError)
    with pytest.raises(IsADirectoryError, match="directory"):
        sm.Embedding(N, DIM, storage=tmp_path)
    with pytest.raises(FileNotFoundError, match="directory does not exist"):
        sm.Embedding(N, DIM, storage=tmp_path / "missing" / "w.npy")
    with pytest.raises(FileNotFoundError, match="read-only"):
        _storage.open_array(tmp_path / "new.npy", (2, 2), np.float32, writable=False)
    with pytest.raises(ValueError, match="either _weight or storage"):
        sm.Embedding(N, DIM, storage=tmp_path / "x.npy", _weight=np.zeros((N, DIM), np.float32))
    assert np.load(p).shape == (N, DIM) and not (tmp_path / "new.npy").exists()
    assert not (tmp_path / "x.npy").exists()


def test_read_only_file_is_refused_for_training(tmp_path, monkeypatch):
    p = tmp_path / "w.npy"
    sm.Embedding(N, DIM, storage=p)
    os.chmod(p, 0o444)
    if os.geteuid() != 0:  # root may write anyway: then the check is simulated below
        with pytest.raises(PermissionError, match="read-only"):
            sm.Embedding(N, DIM, storage=p)
    monkeypatch.setattr(_storage.os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="read-only.*mmap_mode='r'"):
        sm.Embedding(N, DIM, storage=p)
    monkeypatch.undo()
    a = _storage.open_array(p, (N, DIM), np.float32, writable=False)
    assert not a.flags.writeable


@pytest.mark.parametrize("cls", [sm.Embedding, sm.EmbeddingBag])
def test_full_disk_is_refused_before_creating(tmp_path, monkeypatch, cls):
    monkeypatch.setattr(_storage, "_free_bytes", lambda directory: 100)
    with pytest.raises(NotEnoughSpaceError, match=r"needs 4\.8 KiB \(4,896 bytes\), .* has 100 bytes free") as e:
        cls(N, DIM, storage=tmp_path / "w.npy")
    assert e.value.errno == errno.ENOSPC and isinstance(e.value, OSError)
    assert _listing(tmp_path) == []


def test_optimizer_state_files_all_or_nothing(tmp_path, monkeypatch):
    layer = _layer("Embedding", storage=tmp_path / "emb.npy")
    # Room for the table but not for two moments: the check covers both files before either exists.
    monkeypatch.setattr(_storage, "_free_bytes", lambda directory: 1500)
    with pytest.raises(NotEnoughSpaceError, match="3 files"):
        OPTS["SparseAdam"]([layer])
    assert _listing(tmp_path) == ["emb.npy"]
    monkeypatch.undo()
    # The disk fills up while the second file is allocated: the first is removed again.
    calls = []
    real = os.posix_fallocate

    def fails_second(fd, offset, length):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, offset, length)
    monkeypatch.setattr(_storage.os, "posix_fallocate", fails_second)
    with pytest.raises(OSError, match="No space left"):
        OPTS["SparseAdam"]([layer])
    assert _listing(tmp_path) == ["emb.npy"]
    monkeypatch.undo()
    # A failing init leaves nothing either.
    with pytest.raises(ZeroDivisionError):
        _storage.open_array(tmp_path / "z.npy", (3, 3), np.float32, init=lambda a: 1 / 0)
    assert _listing(tmp_path) == ["emb.npy"]


def test_state_files_partly_missing_are_refused(tmp_path):
    layer = _layer("Embedding", storage=tmp_path / "emb.npy")
    OPTS["SparseAdam"]([layer])
    os.unlink(tmp_path / "emb.SparseAdam.exp_avg_sq.npy")
    with pytest.raises(FileNotFoundError, match="exp_avg_sq.npy'] are missing"):
        OPTS["SparseAdam"]([layer])
    with pytest.raises(StorageMismatchError):
        np.save(tmp_path / "emb.SparseAdam.exp_avg_sq.npy", np.zeros((N, DIM + 1), np.float32))
        OPTS["SparseAdam"]([layer])
    with pytest.raises(FileNotFoundError, match="state_storage directory does not exist"):
        OPTS["SGD"]([layer], state_storage=tmp_path / "nope")


def _prefetched_steps_equal(a, opt_a, b, opt_b, batches):
    """Train ``b`` with every prefetch before each fused step and ``a`` without: the same tables."""
    for ids, g in batches:
        opt_b.prefetch(b, ids)
        b.prefetch(ids)
        b(ids)
        opt_b.backward_step(b, g)
    _train(a, opt_a, batches, True)
    _assert_same(a, opt_a, b, opt_b)


def test_prefetch_is_only_a_hint(tmp_path):
    batches = _batches(8)
    a = _layer("Embedding", storage=tmp_path / "a.npy")
    b = _layer("Embedding", storage=tmp_path / "b.npy")
    opt_a, opt_b = OPTS["Adagrad"]([a]), OPTS["Adagrad"]([b])
    _prefetched_steps_equal(a, opt_a, b, opt_b, batches)
    assert _storage.will_need(b.weight, np.array([0, 1, N - 1])) >= 1
    assert _storage.will_need(np.zeros((N, DIM)), np.array([0])) == 0
    with pytest.raises(ValueError, match="not a parameter"):
        opt_a.prefetch(b, [0])
    with pytest.raises(IndexError):
        opt_a.prefetch(a, [N])


# -- interleaved tables: a row's weight and its optimizer state in one record of one file ---------

INTERLEAVED = ["Adagrad", "RowwiseAdagrad", "SparseAdam"]


@pytest.mark.parametrize("name", INTERLEAVED)
@pytest.mark.parametrize("kind", ["Embedding", "EmbeddingBag"])
@pytest.mark.parametrize("fused", [True, False], ids=["backward_step", "loop"])
def test_interleaved_training_equals_in_ram(tmp_path, name, kind, fused):
    batches = _batches(25)
    ram = _layer(kind)
    ram_opt = OPTS[name]([ram])
    path = tmp_path / "emb.npy"
    inter = _layer(kind, storage=path, interleave=getattr(sm.optim, name))
    assert inter.weight.tobytes() == ram.weight.tobytes() and not inter.weight[3].any()
    inter_opt = OPTS[name]([inter])
    _train(ram, ram_opt, batches, fused)
    _train(inter, inter_opt, batches, fused)
    _assert_same(ram, ram_opt, inter, inter_opt)
    # One file of records (weight, then the state), and the step count beside it.
    assert set(_listing(tmp_path)) == {"emb.npy", f"emb.{name}.step.npy"}
    assert inter.records.dtype.names == ("weight",) + tuple(f"{name}.{k}" for k in STATE_KEYS[name])
    for k in STATE_KEYS[name]:
        assert np.shares_memory(inter_opt.state[inter._param][k], inter.records)
    inter_opt.flush()
    stored = np.load(path)
    assert stored["weight"].tobytes() == ram.weight.tobytes()
    for k in STATE_KEYS[name]:
        assert stored[f"{name}.{k}"].tobytes() == ram_opt.state[ram._param][k].tobytes()
    assert np.load(tmp_path / f"emb.{name}.step.npy")[0] == 25


def test_interleaved_state_starts_at_its_initial_value_and_resumes(tmp_path):
    batches = _batches(20)
    path = tmp_path / "emb.npy"

    def opt(layer):
        return sm.optim.Adagrad([layer], lr=0.1, initial_accumulator_value=0.25)
    ram = _layer("Embedding")
    ram_opt = opt(ram)
    _train(ram, ram_opt, batches, True)
    first = _layer("Embedding", storage=path, interleave=sm.optim.Adagrad)
    first_opt = opt(first)
    assert (first_opt.state[first._param]["sum"] == 0.25).all()
    _train(first, first_opt, batches[:8], True)
    first_opt.flush()
    del first, first_opt
    # Reopened (not drawn again, state as stored): the run goes on bit for bit.
    resumed = _layer("Embedding", storage=path, interleave=sm.optim.Adagrad)
    resumed_opt = opt(resumed)
    assert resumed_opt.state[resumed._param]["step"] == 8
    _train(resumed, resumed_opt, batches[8:], True)
    _assert_same(ram, ram_opt, resumed, resumed_opt)
    # Without its step file the state starts afresh (set to its initial value again).
    os.unlink(tmp_path / "emb.Adagrad.step.npy")
    fresh_opt = opt(resumed)
    assert fresh_opt.state[resumed._param]["step"] == 0
    assert (fresh_opt.state[resumed._param]["sum"] == 0.25).all()


def test_interleaved_checkpoint_restores_into_ram_and_back(tmp_path):
    batches = _batches(16)
    inter = _layer("Embedding", storage=tmp_path / "emb.npy", interleave=sm.optim.SparseAdam)
    inter_opt = OPTS["SparseAdam"]([inter])
    _train(inter, inter_opt, batches[:8], True)
    checkpoint(tmp_path / "ck", model=inter, opt=inter_opt)
    ram = _layer("Embedding")
    ram_opt = OPTS["SparseAdam"]([ram])
    restore(tmp_path / "ck", model=ram, opt=ram_opt)
    _assert_same(ram, ram_opt, inter, inter_opt)
    _train(ram, ram_opt, batches[8:], True)
    checkpoint(tmp_path / "ck2", model=ram, opt=ram_opt)
    restore(tmp_path / "ck2", model=inter, opt=inter_opt)  # into the records, in place
    _assert_same(ram, ram_opt, inter, inter_opt)
    assert inter.records is not None and np.shares_memory(inter.weight, inter.records)


def test_interleaved_prefetch_touches_each_record_once(tmp_path):
    batches = _batches(6)
    a = _layer("Embedding")
    b = _layer("Embedding", storage=tmp_path / "b.npy", interleave=sm.optim.Adagrad)
    opt_a, opt_b = OPTS["Adagrad"]([a]), OPTS["Adagrad"]([b])
    _prefetched_steps_equal(a, opt_a, b, opt_b, batches)
    # 40 records of 40 bytes from the page-aligned start of the data: all on the file's second page.
    assert _storage.will_need(b.records, np.arange(N)) == 1
    assert _storage.will_need(b.weight, np.array([0, N - 1])) == 1
    assert _storage.will_need(opt_b.state[b._param]["sum"], np.array([5])) == 1


def test_interleaved_errors_change_nothing(tmp_path, monkeypatch):
    path = tmp_path / "emb.npy"
    with pytest.raises(ValueError, match="needs storage="):
        _layer("Embedding", interleave=sm.optim.Adagrad)
    with pytest.raises(TypeError, match="optimizer class"):
        _layer("Embedding", storage=path, interleave="Adagrad")
    with pytest.raises(ValueError, match="SGD keeps no state per row"):
        _layer("Embedding", storage=path, interleave=sm.optim.SGD)
    assert _listing(tmp_path) == []
    monkeypatch.setattr(_storage, "_free_bytes", lambda directory: 100)
    with pytest.raises(NotEnoughSpaceError):
        _layer("Embedding", storage=path, interleave=sm.optim.Adagrad)
    monkeypatch.undo()
    assert _listing(tmp_path) == []
    # A plain table's file is not an interleaved one, nor the other way round.
    _layer("Embedding", storage=tmp_path / "plain.npy")
    with pytest.raises(StorageMismatchError, match="expected shape"):
        _layer("Embedding", storage=tmp_path / "plain.npy", interleave=sm.optim.Adagrad)
    inter = _layer("Embedding", storage=path, interleave=sm.optim.Adagrad)
    before = path.read_bytes()
    with pytest.raises(StorageMismatchError, match="Adagrad.sum"):
        _layer("Embedding", storage=path)
    with pytest.raises(StorageMismatchError, match="Adagrad.sum"):
        _layer("Embedding", storage=path, interleave=sm.optim.RowwiseAdagrad)
    # The optimizer must be the one the records were made for; no step file is left behind.
    with pytest.raises(StorageMismatchError, match="not SparseAdam's"):
        OPTS["SparseAdam"]([inter])
    with pytest.raises(StorageMismatchError, match="not RowwiseAdagrad's"):
        OPTS["RowwiseAdagrad"]([inter])
    assert _listing(tmp_path) == ["emb.npy", "plain.npy"] and path.read_bytes() == before


def test_new_files_are_page_aligned_and_old_ones_reopen(tmp_path):
    ram = _layer("Embedding")
    new = _layer("Embedding", storage=tmp_path / "new.npy")
    assert new.weight.offset == _storage.DATA_OFFSET
    assert np.load(tmp_path / "new.npy").tobytes() == ram.weight.tobytes()  # a valid .npy
    np.save(tmp_path / "old.npy", ram.weight)  # numpy's own 128-byte header
    old = _layer("Embedding", storage=tmp_path / "old.npy")
    assert old.weight.offset == 128 and old.weight.tobytes() == ram.weight.tobytes()
    opt, ram_opt = OPTS["Adagrad"]([old]), OPTS["Adagrad"]([ram])
    _train(old, opt, _batches(5), True)
    _train(ram, ram_opt, _batches(5), True)
    _assert_same(ram, ram_opt, old, opt)


@pytest.mark.parametrize("interleave", [None, sm.optim.Adagrad])
def test_background_prefetch_of_the_next_batch_is_only_a_hint(tmp_path, interleave):
    batches = _batches(8)
    a = _layer("Embedding")
    b = _layer("Embedding", storage=tmp_path / "b.npy", interleave=interleave)
    opt_a, opt_b = OPTS["Adagrad"]([a]), OPTS["Adagrad"]([b])
    for i, (ids, g) in enumerate(batches):
        nxt = batches[(i + 1) % len(batches)][0].copy()
        opt_b.prefetch(b, nxt, background=True)
        nxt[...] = 0  # the request holds its own copy of the ids
        b(ids)
        opt_b.backward_step(b, g)
    _train(a, opt_a, batches, True)
    _assert_same(a, opt_a, b, opt_b)
    assert opt_b._prefetching.result() >= 1  # the last request, done on the background thread
    opt_b.prefetch(b, [0])  # waits for any request still running, then asks in this thread
    assert opt_b._prefetching is None
    with pytest.raises(IndexError):  # ids are checked in the caller, before anything is queued
        opt_b.prefetch(b, [N], background=True)
    assert _storage.will_need_later([np.zeros((N, DIM))], [0]).result() == 0  # in RAM: nothing
