"""Sharded tables on a 2-worker LocalCluster: equal to the local layers bit for bit (issue 13 §2, §3, §6)."""
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import sparsemb as sm

from sparsemb.distributed import _shard   # plain NumPy: its tests run without Dask

try:  # the tests that need Dask take the dask_client fixture, or skip themselves
    import distributed
    import sparsemb.distributed.sharded as smd
except ImportError:
    distributed = smd = None

N, D = 40, 4
PAD = 3
OPTIMIZERS = {"SGD": {"lr": 0.1}, "Adagrad": {"lr": 0.1, "lr_decay": 0.01},
              "RowwiseAdagrad": {"lr": 0.1}, "SparseAdam": {"lr": 0.05}}


def _steps(rng, n_steps, bag=False):
    """Batches drawn from few ids (many duplicates), with the padding id among them."""
    for _ in range(n_steps):
        ids = rng.integers(0, 12, size=(6, 3))
        ids[0, 0] = PAD
        g = rng.standard_normal((6, D) if bag else (6, 3, D)).astype(np.float32)
        yield ids, g


def _train(pairs, opts, batches, step_kinds, schedule=False):
    """Run the same steps on each (layer, forward kwargs) in ``pairs``; outputs must agree. Some
    steps prefetch the next batch, one announces ids that do not come; with ``schedule`` the
    learning rate changes every other step."""
    batches = list(batches)
    scheds = [sm.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5) for o in opts] if schedule else []
    for t, (ids, g) in enumerate(batches):
        outs = [layer(ids, **kw) for layer, kw in pairs]
        nxt = batches[t + 1][0] if t + 1 < len(batches) else None
        for (layer, _), opt in zip(pairs, opts):
            if nxt is not None and t % 3 == 2 and hasattr(layer, "traffic"):
                layer.prefetch(nxt)   # the step's push and the next pull leave together
            if nxt is not None and t % 5 == 4 and hasattr(layer, "traffic"):
                layer.prefetch(nxt[::-1] % 7)   # a wrong guess: the next forward pulls afresh
            if step_kinds[t % len(step_kinds)] == "fused":
                opt.backward_step(layer, g)
            else:
                opt.zero_grad()
                layer.backward(g)
                opt.step()
                opt.zero_grad()
        for sched in scheds:
            sched.step()
        for o in outs[1:]:
            assert np.array_equal(outs[0], o), f"forward of step {t} differs"


def _same_state(local_opt, sharded_opt):
    a, b = local_opt.state_dict()["state"][0], sharded_opt.state_dict()["state"][0]
    assert a.keys() == b.keys() and a["step"] == b["step"]
    for k in a:
        assert np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_sharded_embedding_equals_local(dask_client, name):
    max_norm = 1.5 if name == "SGD" else None
    local = sm.Embedding(N, D, padding_idx=PAD, max_norm=max_norm, seed=5,
                         scale_grad_by_freq=name == "Adagrad")
    sharded = smd.ShardedEmbedding(N, D, padding_idx=PAD, max_norm=max_norm, seed=5,
                                   scale_grad_by_freq=name == "Adagrad", client=dask_client,
                                   num_shards=3)
    assert np.array_equal(local.weight, sharded.weight)          # the same initialisation
    opts = [getattr(sm.optim, name)([local], **OPTIMIZERS[name]),
            getattr(smd, name)([sharded], **OPTIMIZERS[name])]
    _train([(local, {}), (sharded, {})], opts, _steps(np.random.default_rng(1), 12),
           ["fused", "torch"], schedule=name in ("Adagrad", "SparseAdam"))
    assert np.array_equal(local.weight, sharded.weight)
    assert not np.array_equal(local.weight, sm.Embedding(N, D, padding_idx=PAD, seed=5).weight)
    _same_state(*opts)
    assert sharded.traffic.messages <= (13 + 2) * 3   # one per shard a step, and 2 wrong guesses


@pytest.mark.parametrize("name,mode", [("SGD", "sum"), ("Adagrad", "mean"),
                                       ("RowwiseAdagrad", "max"), ("SparseAdam", "mean")])
def test_sharded_bag_equals_local(dask_client, name, mode):
    kw = dict(mode=mode, padding_idx=PAD, max_norm=2.0 if name == "SparseAdam" else None)
    local = sm.EmbeddingBag(N, D, seed=9, dtype=np.float64 if name == "SGD" else None, **kw)
    sharded = smd.ShardedEmbeddingBag.from_pretrained(local.weight, freeze=False, client=dask_client,
                                                      num_shards=2, **kw)
    opts = [getattr(sm.optim, name)([local], **OPTIMIZERS[name]),
            getattr(smd, name)([sharded], **OPTIMIZERS[name])]
    rng = np.random.default_rng(2)
    fwd = {}
    if mode == "sum":   # flat ids with offsets and per-sample weights
        fwd = {"offsets": np.array([0, 2, 2, 7, 11, 15]),
               "per_sample_weights": rng.standard_normal(18).astype(np.float64)}
        batches = [(ids.reshape(-1), g.astype(np.float64)) for ids, g in _steps(rng, 10, bag=True)]
    else:
        batches = list(_steps(rng, 10, bag=True))
    _train([(local, fwd), (sharded, fwd)], opts, batches, ["torch", "fused"])
    assert np.array_equal(local.weight, sharded.weight)
    _same_state(*opts)


def test_seeded_init_zero_padding_and_checks(dask_client):
    for dtype in (np.float32, np.float64):
        sharded = smd.ShardedEmbedding(70_000, 2, padding_idx=-1, seed=3, dtype=dtype,
                                       client=dask_client)      # more rows than one drawn chunk
        local = sm.Embedding(70_000, 2, padding_idx=-1, seed=3, dtype=dtype)
        w = sharded.weight
        assert w.dtype == dtype and np.array_equal(w, local.weight) and not w[-1].any()
        sizes = sharded.shard_nbytes()
        assert len(sizes) == 2 and min(sizes) > 0.4 * max(sizes)   # hashed, not all on one shard
    with pytest.raises(IndexError, match="70000"):
        sharded(np.array([1, 70_000]))
    with pytest.raises(ValueError, match="padding_idx 9"):
        smd.ShardedEmbedding(5, 2, padding_idx=9, client=dask_client)
    with pytest.raises(TypeError, match="sparsemb.optim for local layers"):
        smd.SGD([sm.Embedding(5, 2)])
    bag = smd.ShardedEmbeddingBag(8, 3, max_norm=0.5, mode="sum", seed=1, client=dask_client)
    before = bag.weight.copy()
    with pytest.raises(ValueError, match="offsets must not decrease"):   # checked before renorm
        bag(np.array([1, 2, 3]), offsets=np.array([0, 2, 1]))
    assert np.array_equal(bag.weight, before)
    emb = smd.ShardedEmbedding(6, 2, client=dask_client)
    with pytest.raises(TypeError, match="ShardedParameter"):   # it would keep the state in the client
        sm.optim.SGD(emb.parameters())
    opt = smd.Adagrad([emb], lr=0.1)
    with pytest.raises(NotImplementedError, match="load"):
        opt.load_state_dict(opt.state_dict())
    by_address = smd.ShardedEmbedding(6, 2, seed=2, client=dask_client.scheduler.address)
    assert np.array_equal(by_address.weight, sm.Embedding(6, 2, seed=2).weight)
    own_client = by_address._client
    by_address.close()                     # closes the Client it made from the address
    assert own_client.status == "closed" and dask_client.status == "running"
    with pytest.raises(RuntimeError, match="closed"):
        by_address(np.array([1]))
    emb._tokens[0] = "another actor"       # as if Dask had re-run a shard's task on a new worker
    with pytest.raises(smd.ShardLostError, match="shard 0 of 2 .*afresh"):
        emb(np.arange(6))


def test_checkpoint_reshard_round_trip(dask_client, tmp_path):
    """2 shards -> save -> 3 shards -> train -> save -> 1 shard, against one local run throughout."""
    hyper = OPTIMIZERS["SparseAdam"]
    local = sm.Embedding(N, D, padding_idx=PAD, seed=4)
    lopt = sm.optim.SparseAdam([local], **hyper)
    batches = list(_steps(np.random.default_rng(3), 12))
    sharded = smd.ShardedEmbedding(N, D, padding_idx=PAD, seed=4, client=dask_client, num_shards=2)
    sopt = smd.SparseAdam([sharded], **hyper)
    _train([(local, {}), (sharded, {})], [lopt, sopt], batches[:4], ["fused"])
    sharded.save(tmp_path / "ckpt")
    sharded.close()
    three = smd.ShardedEmbedding.load(tmp_path / "ckpt", dask_client, num_shards=3)
    assert three.num_shards == 3 and np.array_equal(three.weight, local.weight)
    opt3 = smd.SparseAdam([three], **hyper)          # resumes the saved state, step count included
    _train([(local, {}), (three, {})], [lopt, opt3], batches[4:8], ["torch"])
    _same_state(lopt, opt3)
    three.save(tmp_path / "ckpt")                    # replaces the checkpoint, whole
    names = os.listdir(tmp_path / "ckpt")
    assert len(names) == 1 + 3 * 4 and not any(n.startswith(".tmp-") for n in names)
    one = smd.ShardedEmbedding.load(tmp_path / "ckpt", dask_client, num_shards=1)
    opt1 = smd.SparseAdam([one], **hyper)
    _train([(local, {}), (one, {})], [lopt, opt1], batches[8:], ["fused"])
    assert np.array_equal(one.weight, local.weight)
    _same_state(lopt, opt1)
    with pytest.raises(ValueError, match="ShardedEmbedding"):
        smd.ShardedEmbeddingBag.load(tmp_path / "ckpt", dask_client)
    with pytest.raises(FileNotFoundError, match="no sparsemb checkpoint"):
        smd.ShardedEmbedding.load(tmp_path / "nothing", dask_client)
    shutil.copytree(tmp_path / "ckpt", tmp_path / "broken")
    os.unlink(next(p for p in (tmp_path / "broken").iterdir() if p.name.endswith(".weight.npy")))
    with pytest.raises(FileNotFoundError, match="weight.npy"):   # the shard's own error, as it is
        smd.ShardedEmbedding.load(tmp_path / "broken", dask_client)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing"):
        one.save(tmp_path / "other")
    assert os.listdir(tmp_path / "other") == ["notes.txt"]


def test_killed_worker_raises_then_resumes_from_checkpoint(tmp_path):
    pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        local = sm.Embedding(N, D, seed=6)
        lopt = sm.optim.Adagrad([local], lr=0.1)
        sharded = smd.ShardedEmbedding(N, D, seed=6, client=client, num_shards=2)
        sopt = smd.Adagrad([sharded], lr=0.1)
        batches = list(_steps(np.random.default_rng(4), 6))
        _train([(local, {}), (sharded, {})], [lopt, sopt], batches[:3], ["fused"])
        sharded.save(tmp_path / "ckpt")
        at_checkpoint = local.weight.copy()
        sharded(batches[3][0])
        sopt.backward_step(sharded, batches[3][1])
        victim = sharded.workers[1]
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(smd.ShardLostError, match=r"shard 1 of 2 .*ckpt") as err:
            sharded(batches[4][0])
        assert err.value.shard == 1 and err.value.checkpoint == str(tmp_path / "ckpt")
        with pytest.raises(smd.ShardLostError):          # never silently used again
            sharded.weight
        client.wait_for_workers(2, timeout=60)           # the nanny restarts the worker
        resumed = smd.ShardedEmbedding.load(tmp_path / "ckpt", client, num_shards=2)
        assert np.array_equal(resumed.weight, at_checkpoint)


def test_bad_scheduler_address_is_one_clear_error():
    dask = pytest.importorskip("dask")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(smd.SchedulerError, match="tcp://127.0.0.1:9"):
            smd.ShardedEmbedding(5, 2, client="tcp://127.0.0.1:9")


def test_import_sparsemb_distributed_imports_no_dask():
    code = ("import sys, sparsemb, sparsemb.distributed as d; "
            "assert 'ShardedEmbedding' in dir(d); "
            "assert not any(m == 'dask' or m.startswith(('dask.', 'distributed')) for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shards_without_dask_hash_init_and_reshard(tmp_path):
    """The shard actors' own logic, in this process: placement, the local layer's initialisation,
    a checkpoint written by 3 shards read back by 2 (runs where Dask is not installed)."""
    spec = _shard.TableSpec(1000, 3, "float32", 7, 0.0, 2.0, 3)
    shards = [_shard.Shard(spec, s, 1, ("seed", 11)) for s in range(3)]
    ids = np.concatenate([sh.ids for sh in shards])
    assert np.array_equal(np.sort(ids), np.arange(1000))
    assert all(np.array_equal(_shard.shard_of(sh.ids, 3), np.full(sh.n, s)) for s, sh in enumerate(shards))
    assert min(sh.n for sh in shards) > 250                          # even, not contiguous ranges
    local = sm.Embedding(1000, 3, padding_idx=7, seed=11)
    for sh in shards:
        assert np.array_equal(sh.table.weight[: sh.n], local.weight[sh.ids])
        sh.attach("Adagrad", {"lr": 0.5}, False)
    g = sm.SparseRows(np.array([2, 7, 500]), np.ones((3, 3), np.float32), 1000)
    local_opt = sm.optim.Adagrad([local], lr=0.5)
    local.grad = g
    local_opt.step()
    for s, sh in enumerate(shards):
        m = _shard.shard_of(g.indices, 3) == s
        hyper = {k: v for k, v in local_opt.param_groups[0].items() if k != "params"}
        sh.exchange([tuple(_shard.Push(1, hyper, g.indices[m], g.values[m]))], None)
    entries = [sh.save(str(tmp_path), "t0") for sh in shards]
    spec2 = spec._replace(num_shards=2)
    two = [_shard.Shard(spec2, s, 1, ("checkpoint", str(tmp_path), entries, "Adagrad")) for s in range(2)]
    for sh in two:
        sh.attach("Adagrad", {"lr": 0.5}, True)
        _, rows, state = sh.dump()
        assert np.array_equal(rows, local.weight[sh.ids])
        assert np.array_equal(state["sum"], local_opt.state_dict()["state"][0]["sum"][sh.ids])
