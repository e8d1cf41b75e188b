"""KeyedVectors: queries and evaluation against recorded gensim results; word2vec C files."""
import os
import warnings

import numpy as np
import pytest

from sparsemb.word2vec import KeyedVectors, keyedvectors

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(scope="module")
def wv():
    return KeyedVectors.load_word2vec_format(os.path.join(FIXTURES, "gensim_vectors.bin"), binary=True)


def _same(ours, theirs):
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-5, atol=1e-6)


def test_gensim_binary_and_text_files_load_identically(wv, recorded):
    text = KeyedVectors.load_word2vec_format(os.path.join(FIXTURES, "gensim_vectors.txt"))
    assert wv.index_to_key == text.index_to_key == recorded["vectors_words"]
    np.testing.assert_allclose(wv.vectors, text.vectors, rtol=1e-6)
    assert wv.vectors.dtype == np.float32 and wv.vectors.shape == (len(wv), 8)


def test_queries_match_gensim(wv, recorded):
    for word, expected in recorded["most_similar"].items():
        _same(wv.most_similar(word, topn=5), expected)
    words = recorded["vectors_words"]
    _same(wv.most_similar(positive=[words[1], words[2]], negative=[words[0]], topn=5), recorded["most_similar_neg"])
    _same(wv.most_similar_cosmul(positive=[words[1], words[2]], negative=[words[0]], topn=5),
          recorded["most_similar_cosmul"])
    query, odd = recorded["doesnt_match"]
    assert wv.doesnt_match(query) == odd
    a, b, sim = recorded["similarity"]
    assert wv.similarity(a, b) == pytest.approx(sim, rel=1e-5)


def test_evaluations_match_gensim(wv, recorded, tmp_path):
    analogies = tmp_path / "analogies.txt"
    analogies.write_text(recorded["analogies_file"], encoding="utf-8")
    score, sections = wv.evaluate_word_analogies(analogies)
    assert score == pytest.approx(recorded["analogy_score"])
    assert [(s["section"], len(s["correct"]), len(s["incorrect"])) for s in sections] == [
        (s["section"], s["correct"], s["incorrect"]) for s in recorded["analogy_sections"]]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(recorded["pairs_file"], encoding="utf-8")
    pearson, spearman, oov = wv.evaluate_word_pairs(pairs)
    np.testing.assert_allclose([pearson[0], spearman[0], oov], recorded["pairs"], rtol=1e-5, atol=1e-7)


def test_lookup_and_unknown_words(wv):
    w = wv.index_to_key[3]
    assert w in wv and "no-such-word" not in wv and len(wv) == len(wv.index_to_key)
    assert np.array_equal(wv[w], wv.vectors[3])
    assert wv[[w, w]].shape == (2, 8)
    with pytest.raises(KeyError, match="no-such-word"):
        wv.most_similar("no-such-word")
    assert len(wv.most_similar(w, topn=None)) == len(wv)


@pytest.mark.parametrize("binary", [True, False])
def test_round_trip_is_exact_with_unicode_words(tmp_path, binary):
    rng = np.random.default_rng(0)
    kv = KeyedVectors.from_arrays(rng.standard_normal((4, 5)).astype(np.float32), ["a", "Über", "東京", "naïve"])
    path = tmp_path / ("v.bin" if binary else "v.txt")
    kv.save_word2vec_format(path, binary=binary)
    back = KeyedVectors.load_word2vec_format(path, binary=binary)
    assert back.index_to_key == kv.index_to_key
    assert np.array_equal(back.vectors, kv.vectors)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_keys_with_whitespace_cannot_be_saved(tmp_path):
    kv = KeyedVectors.from_arrays(np.zeros((1, 2), np.float32), ["two words"])
    with pytest.raises(ValueError, match="two words"):
        kv.save_word2vec_format(tmp_path / "v.txt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("binary", [True, False])
def test_truncated_or_corrupt_files_name_file_and_place(tmp_path, binary):
    kv = KeyedVectors.from_arrays(np.ones((3, 4), np.float32), ["a", "b", "c"])
    path = tmp_path / "v"
    kv.save_word2vec_format(path, binary=binary)
    data = path.read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(data[: len(data) - 10])
    with pytest.raises(ValueError, match=r"cut.*(word 3|line 4)"):
        KeyedVectors.load_word2vec_format(cut, binary=binary)
    header = tmp_path / "header"
    header.write_bytes(b"three 4\n" + data.split(b"\n", 1)[1])
    with pytest.raises(ValueError, match="header.*bad header"):
        KeyedVectors.load_word2vec_format(header, binary=binary)


def test_text_line_with_wrong_count_is_reported(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("2 3\na 1 2 3\nb 1 2\n")
    with pytest.raises(ValueError, match="v.txt: line 3 has 2 numbers, expected 3"):
        KeyedVectors.load_word2vec_format(path)


@pytest.mark.parametrize("binary", [True, False])
def test_files_interoperate_with_live_gensim(tmp_path, binary, wv):
    gensim_kv = pytest.importorskip("gensim.models.keyedvectors").KeyedVectors
    path = tmp_path / "ours"
    wv.save_word2vec_format(path, binary=binary)
    theirs = gensim_kv.load_word2vec_format(str(path), binary=binary)
    assert theirs.index_to_key == wv.index_to_key
    np.testing.assert_allclose(theirs.vectors, wv.vectors, rtol=1e-6)
    back_path = tmp_path / "theirs"
    theirs.save_word2vec_format(str(back_path), binary=binary)
    back = KeyedVectors.load_word2vec_format(back_path, binary=binary)
    np.testing.assert_allclose(back.vectors, wv.vectors, rtol=1e-6)


# -- issue 10 §8: what the writer writes the reader reads; what the reader cannot parse it refuses ------

def test_a_very_long_word_round_trips_in_binary(tmp_path):
    kv = KeyedVectors.from_arrays(np.arange(8, dtype=np.float32).reshape(2, 4), ["w" * 12000, "é" * 6000])
    kv.save_word2vec_format(tmp_path / "v.bin", binary=True)
    back = KeyedVectors.load_word2vec_format(tmp_path / "v.bin", binary=True)
    assert back.index_to_key == kv.index_to_key and np.array_equal(back.vectors, kv.vectors)


def test_a_binary_word_containing_a_space_is_refused_not_misread(tmp_path):
    rng = np.random.default_rng(0)
    for trial in range(50):
        vec = rng.standard_normal((3, 4)).astype("<f4")
        for spaced in range(3):
            words = [b"x", b"y", b"z"]
            words[spaced] = b"foo bar"
            data = b"3 4\n" + b"".join(w + b" " + v.tobytes() + b"\n" for w, v in zip(words, vec))
            (tmp_path / "v.bin").write_bytes(data)
            with pytest.raises(ValueError, match="v.bin"):
                KeyedVectors.load_word2vec_format(tmp_path / "v.bin", binary=True)


def test_a_text_file_read_as_binary_is_refused(tmp_path):
    kv = KeyedVectors.from_arrays(np.arange(8, dtype=np.float32).reshape(2, 4), ["a", "b"])
    kv.save_word2vec_format(tmp_path / "t.bin", binary=False)
    with pytest.raises(ValueError, match="text vectors file, not binary"):
        KeyedVectors.load_word2vec_format(tmp_path / "t.bin", binary=True)


@pytest.mark.parametrize("binary", [True, False])
def test_a_header_promising_more_than_the_file_holds_allocates_nothing_big(tmp_path, binary, monkeypatch):
    path = tmp_path / "v"
    path.write_bytes(b"1000000000000 8\na " + (b"\0" * 32 if binary else b"1 2 3 4 5 6 7 8\n"))
    real_empty = np.empty
    sizes = []
    monkeypatch.setattr(np, "empty", lambda shape, *a, **k: sizes.append(shape) or real_empty(shape, *a, **k))
    with pytest.raises(ValueError, match="truncated"):
        KeyedVectors.load_word2vec_format(path, binary=binary)
    assert max(s[0] for s in sizes) <= 2


def test_trailing_bytes_after_the_promised_vectors_are_refused(tmp_path):
    kv = KeyedVectors.from_arrays(np.arange(8, dtype=np.float32).reshape(2, 4), ["a", "b"])
    kv.save_word2vec_format(tmp_path / "v.bin", binary=True)
    (tmp_path / "v.bin").write_bytes((tmp_path / "v.bin").read_bytes() + b"c \x00\x00\x80?")
    with pytest.raises(ValueError, match="after the last"):
        KeyedVectors.load_word2vec_format(tmp_path / "v.bin", binary=True)


def _python_read(data, dtype):
    """What a text vectors file holds, read line by line with Python's split and NumPy's float parse."""
    lines = data.split(b"\n")
    n, dim = map(int, lines[0].split())
    keys, rows = [], []
    for raw in lines[1 : n + 1]:
        parts = raw.rstrip().split(b" ")
        keys.append(parts[0].decode())
        rows.append(np.array(parts[1:], dtype=np.float64 if np.dtype(dtype).itemsize > 4 else np.float32))
    return keys, np.array(rows).astype(dtype)


@pytest.mark.parametrize("chunk", [64, 1 << 20])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_text_reader_gives_pythons_values_for_every_spelling(tmp_path, monkeypatch, chunk, dtype):
    # Plain numbers go through the compiled parser, the others (nan, 17 digits, exponents beyond the
    # exact powers of ten, underscores) through Python's; both must give float()'s value, bit for bit.
    monkeypatch.setattr(keyedvectors, "CHUNK_BYTES", chunk)  # lines across chunk boundaries, and longer
    rng = np.random.default_rng(3)
    spellings = [lambda v: "%.9g" % v, lambda v: repr(float(v)), lambda v: "%.17g" % v, lambda v: "%.3e" % v,
                 lambda v: "%+.4E" % v, lambda v: ("%.6f" % v).rstrip("0"), lambda v: "%.0f" % v]
    odd = ["nan", "inf", "-inf", "-0", "+1", ".5", "5.", "1E5", "1_0", "0.000", "00012", "1e-400", "3e38"]
    n, dim = 120, 6
    values = rng.standard_normal((n, dim)) * 10.0 ** rng.integers(-45, 40, (n, dim))
    lines = [f"{n} {dim}"]
    for r in range(n):
        numbers = [spellings[rng.integers(len(spellings))](v) for v in values[r]]
        numbers[r % dim] = odd[r % len(odd)] if r % 4 == 0 else numbers[r % dim]
        lines.append(f"k{r}é " + " ".join(numbers) + ["", " ", "\r", " \t"][r % 4])
    data = ("\n".join(lines)).encode()  # no newline after the last line
    (tmp_path / "v.txt").write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "3e38" overflows float32 in both readers
        kv = KeyedVectors.load_word2vec_format(tmp_path / "v.txt", datatype=dtype)
        keys, expected = _python_read(data, dtype)
    assert kv.index_to_key == keys and kv.vectors.dtype == dtype
    assert np.array_equal(kv.vectors.view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("binary", [False, True])
def test_a_repeated_word_keeps_its_first_vector(tmp_path, binary):
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    path = tmp_path / "v"
    with open(path, "wb") as f:
        f.write(b"4 3\n")
        for word, row in zip([b"a", b"b", b"a", b"c"], vectors):
            f.write(word + b" " + (row.tobytes() if binary else " ".join("%.9g" % x for x in row).encode()) + b"\n")
    with pytest.warns(UserWarning, match="1 repeated words"):
        kv = KeyedVectors.load_word2vec_format(path, binary=binary)
    assert kv.index_to_key == ["a", "b", "c"] and kv.get_index("c") == 2
    assert np.array_equal(kv.vectors, vectors[[0, 1, 3]])


def test_the_compiled_parser_takes_plain_lines_and_stops_before_others():
    from sparsemb.kernels import textio

    data = np.frombuffer(b"ab 1.5 -2e-3\r\nc 0.1 7\nd nan 1\ne 1 2\n", dtype=np.uint8)
    out, bounds = np.zeros((4, 2), np.float32), np.zeros((4, 2), np.int64)
    lines, pos = textio.parse_lines(data, 0, 4, out, bounds)
    assert (lines, pos) == (2, 22)  # "d nan 1" is left to Python
    assert np.array_equal(out[:2], np.array([[1.5, -2e-3], [0.1, 7]], np.float32))
    assert bounds[:2].tolist() == [[0, 2], [14, 15]]
    assert textio.parse_lines(data, 30, 4, out, bounds) == (1, 36)
