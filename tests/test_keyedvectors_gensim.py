"""KeyedVectors' gensim interface: methods against recorded gensim answers (always) and live gensim (when
installed); word2vec files across both for every option; persistence, gensim's pickles, mmap."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from sparsemb import _io
from sparsemb.kernels import textio
from sparsemb.word2vec import KeyedVectors
from sparsemb.word2vec.keyedvectors import VectorsFileEOFError, format_rows

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def rec():
    with open(os.path.join(FIXTURES, "gensim_keyedvectors.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture()
def wv():
    return KeyedVectors.load_word2vec_format(os.path.join(FIXTURES, "gensim_vectors.bin"), binary=True)


def _same(ours, theirs):
    assert [k for k, _ in ours] == [k for k, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], **TOL)


def test_methods_match_recorded_gensim(wv, rec):
    a, b, c, d = rec["words"]
    assert wv.distance(a, b) == pytest.approx(rec["distance"], abs=1e-6)
    assert wv.similarity(a, a) == rec["similarity_self"] and wv.distance(a, a) == 0
    np.testing.assert_allclose(wv.distances(a, [b, c, d]), rec["distances"], **TOL)
    np.testing.assert_allclose(wv.distances(a), rec["distances_all"], **TOL)
    assert wv.n_similarity([a, b], [c, d]) == pytest.approx(rec["n_similarity"], abs=1e-6)
    assert wv.closer_than(a, c) == rec["closer_than"] and wv.rank(a, c) == rec["rank"]
    assert wv.most_similar_to_given(a, [b, c, d]) == rec["most_similar_to_given"]
    assert wv.relative_cosine_similarity(a, b, 5) == pytest.approx(rec["relative_cosine_similarity"], abs=1e-6)
    np.testing.assert_allclose(wv.get_mean_vector([a, b, "not-a-word"], weights=[1, 2, 5]), rec["mean"], **TOL)
    np.testing.assert_allclose(wv.get_mean_vector([a, b], pre_normalize=False, post_normalize=True),
                               rec["mean_raw_post"], **TOL)
    _same(wv.most_similar(wv[a], topn=5), rec["most_similar_vector"])
    _same(wv.most_similar(positive=wv.vectors[:3], topn=5), rec["most_similar_rows"])
    _same(wv.most_similar(positive=[(a, 2.0), b], negative=[(c, 0.5)], topn=5), rec["most_similar_weighted"])
    np.testing.assert_allclose(wv.most_similar(a, topn=None), rec["most_similar_all"], **TOL)
    _same(wv.most_similar(a, topn=5, clip_start=5, clip_end=40), rec["most_similar_clip"])
    _same(wv.most_similar(a, topn=5, restrict_vocab=20), rec["most_similar_restrict"])
    _same(wv.similar_by_vector(wv[b], topn=5), rec["similar_by_vector"])
    ranked = wv.rank_by_centrality([a, b, c, d])
    assert [w for _, w in ranked] == [w for _, w in rec["rank_by_centrality"]]
    np.testing.assert_allclose([s for s, _ in ranked], [s for s, _ in rec["rank_by_centrality"]], **TOL)
    np.testing.assert_allclose(KeyedVectors.cosine_similarities(wv[a], wv.vectors[:6]), rec["cosine_similarities"],
                               **TOL)
    wv.sort_by_descending_frequency()
    assert wv.index_to_key == rec["sorted_keys"]


def test_constructor_add_and_vecattrs():
    kv = KeyedVectors(3)
    assert kv.vectors.shape == (0, 3) and kv.vectors.dtype == np.float32 and len(kv) == 0
    assert str(kv) == "KeyedVectors<vector_size=3, 0 keys>"
    kv.add_vectors(["a", "b"], np.eye(2, 3, dtype=np.float64))
    assert kv.vectors.dtype == np.float32 and kv.index_to_key == ["a", "b"]
    kv["c"] = np.ones(3)
    kv[["a", "d"]] = [np.full(3, 2.0), np.full(3, 3.0)]
    assert kv.index_to_key == ["a", "b", "c", "d"] and kv["a"].tolist() == [2, 2, 2]
    kv.add_vectors(["a"], [np.zeros(3)])  # kept without replace
    assert kv["a"].tolist() == [2, 2, 2]
    kv.set_vecattr("b", "count", 7)
    assert kv.get_vecattr("b", "count") == 7 and kv.get_vecattr("a", "count") == 0
    assert kv.get_index("zz", default=-1) == -1 and kv.get_index(2) == 2 and kv.has_index_for("d")
    with pytest.raises(KeyError, match="zz"):
        kv.get_index("zz")
    pre = KeyedVectors(2, count=3)
    assert [pre.add_vector(k, [i, i]) for i, k in enumerate("xyz")] == [0, 1, 2]
    assert pre.add_vector("w", [9, 9]) == 3 and pre.index_to_key == list("xyzw")
    with pytest.raises(ValueError, match="restrict_vocab"):
        kv.most_similar("a", restrict_vocab=-1)
    with pytest.raises(TypeError, match="restrict_vocab"):
        kv.most_similar("a", restrict_vocab=2.5)


def test_vectors_for_all_and_normalisation(wv):
    words = wv.index_to_key[:3] + ["nope", wv.index_to_key[0]]
    sub = wv.vectors_for_all(words, copy_vecattrs=True)
    assert sub.index_to_key == wv.index_to_key[:3]
    assert sub.get_vecattr(words[1], "count") == wv.get_vecattr(words[1], "count")
    normed = wv.get_normed_vectors()
    wv.unit_normalize_all()
    np.testing.assert_allclose(wv.vectors, normed, rtol=1e-6)
    wv.fill_norms(force=True)
    np.testing.assert_allclose(wv.norms, 1, rtol=1e-6)


def test_analogies_with_cosmul(wv, recorded, tmp_path):
    path = tmp_path / "q.txt"
    path.write_text(recorded["analogies_file"], encoding="utf-8")
    score, sections = wv.evaluate_word_analogies(path, similarity_function="most_similar_cosmul")
    assert 0 <= score <= 1 and sections[-1]["section"] == "Total accuracy"
    with pytest.raises(ValueError, match="nope"):
        wv.evaluate_word_analogies(path, similarity_function="nope")


def test_wmdistance_needs_pot(wv):
    words = wv.index_to_key
    try:
        import ot  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError):
            wv.wmdistance(words[:3], words[3:6])
        return
    gensim_kv = pytest.importorskip("gensim.models").KeyedVectors
    theirs = gensim_kv.load_word2vec_format(os.path.join(FIXTURES, "gensim_vectors.bin"), binary=True)
    assert wv.wmdistance(words[:3], words[3:6]) == pytest.approx(theirs.wmdistance(words[:3], words[3:6]), rel=1e-5)


# -- word2vec files -----------------------------------------------------------------------------------

def _kv(n=6, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    kv = KeyedVectors.from_arrays(rng.standard_normal((n, dim)).astype(np.float32), [f"k{i}é" for i in range(n)],
                                  counts=rng.integers(1, 50, n))
    return kv


def test_save_options_and_positional_order(tmp_path):
    kv = _kv()
    kv.save_word2vec_format(tmp_path / "v.txt", tmp_path / "vocab.txt")  # fvocab second, text by default
    assert (tmp_path / "v.txt").read_bytes().startswith(b"6 4\n")
    order = np.argsort(-kv.expandos["count"], kind="stable")
    back = KeyedVectors.load_word2vec_format(tmp_path / "v.txt", tmp_path / "vocab.txt")
    assert back.index_to_key == [kv.index_to_key[i] for i in order]
    assert [back.get_vecattr(k, "count") for k in back.index_to_key] == kv.expandos["count"][order].tolist()
    np.testing.assert_array_equal(back.vectors, kv.vectors[order])
    kv.save_word2vec_format(tmp_path / "p.bin", binary=True, prefix="x_", total_vec=9, write_header=True)
    assert (tmp_path / "p.bin").read_bytes().startswith(b"9 4\nx_")
    kv.save_word2vec_format(tmp_path / "n.txt", write_header=False)
    nh = KeyedVectors.load_word2vec_format(tmp_path / "n.txt", no_header=True)
    assert len(nh) == 6
    with pytest.raises(NotImplementedError):
        KeyedVectors.load_word2vec_format(tmp_path / "n.txt", binary=True, no_header=True)
    lim = KeyedVectors.load_word2vec_format(tmp_path / "v.txt", limit=2, datatype=np.float64)
    assert len(lim) == 2 and lim.vectors.dtype == np.float64
    kv.save_word2vec_format(tmp_path / "a.txt", total_vec=12)
    kv.save_word2vec_format(tmp_path / "a.txt", write_header=False, append=True, prefix="b_")
    both = KeyedVectors.load_word2vec_format(tmp_path / "a.txt")
    assert len(both) == 12 and both.index_to_key[6].startswith("b_")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "n.txt", "p.bin", "v.txt", "vocab.txt"]


def test_truncated_file_raises_eof_error(tmp_path):
    _kv().save_word2vec_format(tmp_path / "v.bin", binary=True)
    data = (tmp_path / "v.bin").read_bytes()
    (tmp_path / "v.bin").write_bytes(data[:-9])
    with pytest.raises(EOFError, match="v.bin"):
        KeyedVectors.load_word2vec_format(tmp_path / "v.bin", binary=True)
    assert issubclass(VectorsFileEOFError, ValueError)


def test_undecodable_key_is_a_unicode_error_naming_the_file(tmp_path):
    (tmp_path / "v.txt").write_bytes(b"1 2\nab\xe3\x83 1 2\n")
    with pytest.raises(UnicodeDecodeError, match=r"v.txt.*line 2"):
        KeyedVectors.load_word2vec_format(tmp_path / "v.txt")
    assert KeyedVectors.load_word2vec_format(tmp_path / "v.txt", unicode_errors="ignore").index_to_key == ["ab"]


def _printf_lines(keys, block):
    return "".join(f"{k} " + " ".join("%.9g" % v for v in row) + "\n" for k, row in zip(keys, block.tolist())).encode()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_text_matches_printf_and_round_trips(dtype):
    rng = np.random.default_rng(1)
    # Every bit pattern is as likely: subnormals, huge and tiny exponents, inf and nan included.
    ints = np.int32 if dtype == np.float32 else np.int64
    block = rng.integers(np.iinfo(ints).min, np.iinfo(ints).max, (60, 30), dtype=ints).view(dtype)
    block[0, :14] = [0, -0.0, np.inf, -np.inf, np.nan, 1e-5, 1e-4, 123456789, 1e9, 0.1, 999999999.5,
                     np.finfo(dtype).max, np.finfo(dtype).smallest_subnormal, -np.finfo(dtype).tiny]
    # Small integers times powers of two: many have exactly ten significant digits ending in 5 (ties,
    # which printf rounds to even) or lie next to one, where the kernel defers to Python.
    ties = np.ldexp(rng.integers(1, 4096, 600).astype(np.float64), rng.integers(-60, 60, 600)).astype(dtype)
    block[30:50] = ties.reshape(20, 30)
    keys = [f"w{i}é" for i in range(len(block))]
    digits, exps = np.empty(block.shape, np.int64), np.empty(block.shape, np.int64)
    assert textio.decimal_digits(block, digits, exps) > 0  # the deferred path is exercised
    text = bytes(format_rows(keys, block))
    assert text == _printf_lines(keys, block)
    if dtype == np.float32:  # every finite float32 comes back bit for bit (-0 included), nan as nan
        back = np.array([line.split()[1:] for line in text.decode().splitlines()], dtype=np.float32)
        finite = np.isfinite(block)
        assert np.array_equal(back.view(np.int32)[finite], block.view(np.int32)[finite])
        assert np.array_equal(np.isnan(back), np.isnan(block))


@pytest.mark.parametrize("sort", ["descending", "shuffled"])
def test_written_text_file_is_printf_lines(tmp_path, sort):
    rng = np.random.default_rng(2)
    n = 5000  # several blocks of rows
    vectors = (rng.standard_normal((n, 7)) * 10.0 ** rng.integers(-6, 10, (n, 7))).astype(np.float32)
    counts = np.arange(n, 0, -1) // 3  # ties: kept in row order, as gensim's stable sort does
    if sort == "shuffled":
        counts = rng.permutation(counts)
    kv = KeyedVectors.from_arrays(vectors, [f"k{i}" for i in range(n)], counts=counts)
    kv.save_word2vec_format(tmp_path / "v.txt", tmp_path / "vocab.txt", prefix="p_")
    order = np.argsort(-counts, kind="stable")
    assert (tmp_path / "v.txt").read_bytes() == f"{n} 7\n".encode() + _printf_lines([f"p_k{i}" for i in order],
                                                                                   vectors[order])
    assert (tmp_path / "vocab.txt").read_text() == "".join(f"p_k{i} {counts[i]}\n" for i in order)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("option", ["plain", "fvocab", "prefix", "no_header", "limit", "append", "total_vec"])
def test_files_cross_with_live_gensim(tmp_path, binary, option):
    gensim_kv = pytest.importorskip("gensim.models").KeyedVectors
    if option == "no_header" and binary:
        pytest.skip("no_header is text only, in both")
    ours = _kv(30, 5, seed=2)
    theirs = gensim_kv(5)
    theirs.add_vectors(ours.index_to_key, ours.vectors)
    for k in ours.index_to_key:
        theirs.set_vecattr(k, "count", int(ours.get_vecattr(k, "count")))
    save = {"plain": {}, "fvocab": {"fvocab": "VOCAB"}, "prefix": {"prefix": "p_"}, "limit": {},
            "no_header": {"write_header": False}, "append": {}, "total_vec": {}}[option]
    load = {"fvocab": {"fvocab": "VOCAB"}, "no_header": {"no_header": True}, "limit": {"limit": 7},
            "total_vec": {"limit": 20}}.get(option, {})  # 30 vectors under a header of 20: read 20
    for writer, reader in ((ours, gensim_kv), (theirs, KeyedVectors)):
        path, vocab = str(tmp_path / f"{id(writer)}.w2v"), str(tmp_path / f"{id(writer)}.vocab")
        sk = {k: (vocab if v == "VOCAB" else v) for k, v in save.items()}
        lk = {k: (vocab if v == "VOCAB" else v) for k, v in load.items()}
        if option == "append":
            writer.save_word2vec_format(path, binary=binary, total_vec=60)
            writer.save_word2vec_format(path, binary=binary, write_header=False, append=True, prefix="again_")
        elif option == "total_vec":
            writer.save_word2vec_format(path, binary=binary, total_vec=20)
        else:
            writer.save_word2vec_format(path, binary=binary, **sk)
        got = reader.load_word2vec_format(path, binary=binary, **lk)
        ref = KeyedVectors.load_word2vec_format(path, binary=binary, **lk) if reader is gensim_kv else \
            gensim_kv.load_word2vec_format(path, binary=binary, **lk)
        assert list(got.index_to_key) == list(ref.index_to_key)
        np.testing.assert_array_equal(np.asarray(got.vectors), np.asarray(ref.vectors))
        assert [int(got.get_vecattr(k, "count")) for k in got.index_to_key] == \
            [int(ref.get_vecattr(k, "count")) for k in ref.index_to_key]
        expected = {"append": 60, "total_vec": 20, "limit": 7}.get(option, 30)
        assert len(got) == expected


def test_intersect_word2vec_format(tmp_path, wv):
    other = _kv(4, 8, seed=5)
    other.index_to_key[1] = wv.index_to_key[2]
    other.key_to_index = {k: i for i, k in enumerate(other.index_to_key)}
    other.save_word2vec_format(tmp_path / "o.bin", binary=True, sort_attr="none")
    before = wv.vectors.copy()
    wv.intersect_word2vec_format(tmp_path / "o.bin", binary=True)
    np.testing.assert_array_equal(wv.vectors[2], other.vectors[1])
    np.testing.assert_array_equal(np.delete(wv.vectors, 2, 0), np.delete(before, 2, 0))
    assert wv.vectors_lockf[2] == 0 and wv.vectors_lockf[0] == 1
    with pytest.raises(ValueError, match="incompatible vector size"):
        wv.intersect_word2vec_format(tmp_path / "o.bin", binary=False) if False else \
            KeyedVectors(3).intersect_word2vec_format(tmp_path / "o.bin", binary=True)


# -- persistence --------------------------------------------------------------------------------------

def test_save_load_own_format_and_mmap(tmp_path, wv):
    wv.set_vecattr(wv.index_to_key[0], "tag", "x")
    wv.save(tmp_path / "w.kv")
    assert json.loads((tmp_path / "w.kv").read_text(encoding="utf-8"))["format"] == "sparsemb.KeyedVectors"
    back = KeyedVectors.load(tmp_path / "w.kv", mmap="r")
    assert isinstance(back.vectors, np.memmap) and back.index_to_key == wv.index_to_key
    np.testing.assert_array_equal(back.vectors, wv.vectors)
    assert back.get_vecattr(wv.index_to_key[1], "count") == wv.get_vecattr(wv.index_to_key[1], "count")
    assert back.get_vecattr(wv.index_to_key[0], "tag") == "x"
    _same(back.most_similar(wv.index_to_key[0], topn=4), wv.most_similar(wv.index_to_key[0], topn=4))
    with pytest.raises(ValueError, match="read-only"):
        back.vectors[0, 0] = 1


def test_mmap_load_reads_only_what_a_query_touches(tmp_path):
    script = f"""
import os, sys, numpy as np
sys.path.insert(0, {ROOT!r})
from sparsemb.word2vec import KeyedVectors
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024
n, dim = 400_000, 64          # a 100 MB table
kv = KeyedVectors.from_arrays(np.ones((n, dim), np.float32), [str(i) for i in range(n)])
kv.save(sys.argv[1]); del kv
import gc; gc.collect()
kv = KeyedVectors.load(sys.argv[1], mmap='r')
before = rss()
s = kv.similarity('5', '399999'); d = kv.distance('17', '18'); v = kv['123456']
top = kv.most_similar('3', topn=3, restrict_vocab=1000)
print(rss() - before, n * dim * 4)
"""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "big.kv")], capture_output=True, text=True,
                         check=True).stdout.split()
    grown, table = int(out[0]), int(out[1])
    assert grown < table / 10, (grown, table)


def test_gensim_saved_kv_loads_without_gensim(tmp_path, rec):
    script = f"""
import sys, json
sys.modules['gensim'] = None      # importing gensim now fails
sys.path.insert(0, {ROOT!r})
from sparsemb.word2vec import KeyedVectors
kv = KeyedVectors.load(sys.argv[1])
print(json.dumps([kv.index_to_key, kv.vectors.shape, str(kv.vectors.dtype),
                  [int(kv.get_vecattr(k, 'count')) for k in kv.index_to_key]]))
"""
    out = subprocess.run([sys.executable, "-c", script, os.path.join(FIXTURES, "gensim_kv.kv")],
                         capture_output=True, text=True, check=True).stdout
    keys, shape, dtype, counts = json.loads(out)
    assert keys == rec["kv_keys"] and shape == [10, 8] and dtype == "float32"
    assert counts == [100 - 3 * i for i in range(10)]


@pytest.mark.parametrize("name", ["old_keyedvectors_320.dat", "word2vec_pre_kv_sep_py3", "model-from-gensim-3.8.0.w2v"])
def test_gensim_test_data_loads(name):
    datapath = pytest.importorskip("gensim.test.utils").datapath
    obj = _io.load_gensim(datapath(name))
    assert isinstance(obj, _io.PickledObject)
    if name.endswith(".dat"):
        kv = KeyedVectors.load(datapath(name))
        assert kv.get_vector("computer") is not None and kv.vectors.shape[0] == len(kv)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo owned > /dev/null",))


def test_a_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.kv"
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(_io.UnsafePickleError, match=r"evil.kv.*(posix|os)\.system"):
        KeyedVectors.load(path)
    path.write_bytes(pickle.dumps({"x": np.zeros(2)}) + b"")
    with pytest.raises(ValueError, match="not gensim KeyedVectors"):
        KeyedVectors.load(path)
    eval_pickle = b"cbuiltins\neval\n(S'1+1'\ntR."
    path.write_bytes(eval_pickle)
    with pytest.raises(_io.UnsafePickleError, match="builtins.eval"):
        _io.load_pickle(path)
