"""Corpus reading, vocabulary and sampling tables against gensim's rules and the formulas."""
import math
import os
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsemb.kernels.tokenizer import first_invalid_utf8
from sparsemb.kernels.word2vec import draw_negatives
from sparsemb.word2vec import Word2Vec
from sparsemb.word2vec import corpus as C
from sparsemb.word2vec.model import VocabularyError
from sparsemb.word2vec.vocab import Vocabulary, count_words

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(scope="module")
def corpus_path(recorded, tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(recorded["corpus"]) + "\n", encoding="utf-8")
    return str(path)


def _case_kwargs(case):
    return {k: case[k] for k in ("min_count", "max_vocab_size", "max_final_vocab") if k in case}


def test_vocabulary_matches_recorded_gensim(recorded, corpus_path):
    for case in recorded["vocab"]:
        model = Word2Vec(vector_size=4, **_case_kwargs(case))
        model.build_vocab(corpus_file=corpus_path)
        assert model.vocab.index_to_key == case["words"], case
        assert model.vocab.counts.tolist() == case["counts"], case
        for sample, expected in case["sample_int"].items():
            assert model.vocab.keep_thresholds(float(sample)).tolist() == expected, (case, sample)


def test_sentences_iterable_gives_the_same_vocabulary(recorded):
    sentences = [line.split() for line in recorded["corpus"]]
    for case in recorded["vocab"]:
        model = Word2Vec(vector_size=4, **_case_kwargs(case))
        model.build_vocab(sentences=sentences)
        assert model.vocab.index_to_key == case["words"]


def test_corpus_count_splits_long_lines_like_linesentence(recorded, corpus_path):
    model = Word2Vec(vector_size=4, min_count=1)
    model.build_vocab(corpus_file=corpus_path)
    assert model.corpus_count == recorded["vocab"][0]["corpus_count"]


def test_vocabulary_matches_live_gensim_on_lee_corpus():
    gensim = pytest.importorskip("gensim")
    from gensim.models.word2vec import LineSentence

    path = os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", "lee_background.cor")
    for kwargs in ({"min_count": 5}, {"min_count": 2, "max_vocab_size": 3000}, {"max_final_vocab": 400}):
        ours = Word2Vec(vector_size=4, **kwargs)
        ours.build_vocab(corpus_file=path)
        theirs = gensim.models.Word2Vec(vector_size=4, **kwargs)
        theirs.build_vocab(LineSentence(path))
        assert ours.vocab.index_to_key == theirs.wv.index_to_key
        assert ours.vocab.counts.tolist() == [theirs.wv.get_vecattr(w, "count") for w in theirs.wv.index_to_key]


def test_ties_come_in_reverse_first_seen_order():
    model = Word2Vec(vector_size=4, min_count=1)
    model.build_vocab(sentences=[["b", "a", "c", "a"], ["d", "c"]])
    assert model.vocab.index_to_key == ["c", "a", "d", "b"]
    assert model.vocab.counts.tolist() == [2, 2, 1, 1]


def test_file_reader_splits_lines_and_replaces_invalid_utf8_with_one_warning(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"a b\n\n  \nc \xff d\r\ne \xfe\n" + b"x " * 10001 + b"\n")
    with pytest.warns(UnicodeWarning, match="invalid UTF-8") as record:
        sentences = list(C.file_sentences(path))
    assert len(record) == 1
    assert sentences[:3] == [["a", "b"], ["c", "\ufffd", "d"], ["e", "\ufffd"]]
    assert [len(s) for s in sentences[3:]] == [10000, 1]


def test_missing_and_empty_corpus_errors(tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        Word2Vec(corpus_file=tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(VocabularyError, match="empty"):
        Word2Vec(corpus_file=empty)
    rare = tmp_path / "rare.txt"
    rare.write_text("a b c\n")
    with pytest.raises(VocabularyError, match="min_count=5"):
        Word2Vec(corpus_file=rare)
    # gensim's reading of a string as a sentence: its characters, with gensim's warning.
    model = Word2Vec(vector_size=4, min_count=1)
    model.build_vocab(["ab", "ba"])
    assert "Each 'sentences' item should be a list of words" in caplog.text
    assert sorted(model.vocab.index_to_key) == ["a", "b"]
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match="regular file"):
        Word2Vec(corpus_file=tmp_path / "fifo")


def test_keep_probability_formula():
    vocab = Vocabulary(["a", "b", "c"], [9000, 900, 100])
    t = 1e-3 * 10000
    expected = [min(1.0, (math.sqrt(c / t) + 1) * t / c) for c in (9000, 900, 100)]
    np.testing.assert_allclose(vocab.keep_probabilities(1e-3), expected, rtol=1e-12)
    assert vocab.keep_probabilities(0).tolist() == [1.0, 1.0, 1.0]


def test_subsampling_keeps_the_expected_number_of_tokens():
    # 200 000 tokens of 4 words; the kept count is a sum of Bernoullis with known mean and variance.
    rng = np.random.default_rng(0)
    words = rng.choice(["a", "b", "c", "d"], size=(2000, 100), p=[0.7, 0.2, 0.07, 0.03])
    model = Word2Vec(sentences=words.tolist(), vector_size=4, min_count=1, sample=1e-2, epochs=1,
                     workers=1, quiet=True)
    p = model.vocab.keep_probabilities(1e-2)
    mean = float((model.vocab.counts * p).sum())
    sd = math.sqrt(float((model.vocab.counts * p * (1 - p)).sum()))
    assert p.min() < 0.5  # the test is about subsampling actually dropping words
    assert abs(model.effective_words - mean) < 5 * sd  # 5 sigma: fails by chance < 1e-6


def test_negative_sampling_follows_counts_to_the_power():
    counts = np.array([5000, 1200, 300, 300, 40, 7, 1])
    vocab = Vocabulary([str(i) for i in range(len(counts))], counts)
    neg_prob, neg_alias = vocab.noise_table(0.75)
    n = 2_000_000
    drawn = np.bincount(draw_negatives(neg_prob, neg_alias, 12345, n), minlength=len(counts))
    p = counts**0.75 / (counts**0.75).sum()
    z = (drawn - n * p) / np.sqrt(n * p * (1 - p))
    assert np.abs(z).max() < 5  # each frequency within 5 standard errors of counts**0.75


def test_encoded_corpus_drops_out_of_vocabulary_words_inside_sentences():
    encoded = C.encode(C.iterable_sentences([["a", "x", "b"], ["y"], ["b"]]), {"a": 0, "b": 1})
    assert encoded.ids.tolist() == [0, 1, 1]
    assert encoded.starts.tolist() == [0, 2, 2, 3]


def _python_reading(path, key_to_index=None):
    """Reference: the pure-Python reader (file_sentences, str.split, dict lookups)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnicodeWarning)
        raw, n_tokens, n_sentences = count_words(C.file_sentences(path))
        words = {w: i for i, w in enumerate(raw.names)}
        encoded = C.encode(C.file_sentences(path), words if key_to_index is None else key_to_index)
    assert (encoded.n_sentences, key_to_index is not None or encoded.n_tokens == n_tokens) == (n_sentences, True)
    return raw.names, raw.counts, encoded


def _numba_encoding(path, table, offsets=(0, None)):
    ids, starts = [], [0]
    for lo, hi in zip(offsets[:-1], offsets[1:]):
        for batch, batch_starts in C.encode_file(path, table, lo, hi, warn=False):
            ids.extend(batch.tolist())
            starts.extend((batch_starts[1:] + starts[-1]).tolist())
    return ids, starts


@pytest.fixture()
def tricky_corpus(tmp_path):
    """Every character str.split() treats as whitespace, look-alikes that are not, \\r, invalid UTF-8,
    empty lines, a line of more than 10000 tokens, and many distinct words (the table must grow)."""
    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace() and c != 10]
    not_spaces = ["\u200b", "\u180e", "\u00e9", "\u2030", "\u3001", "\ufeff"]
    rng = np.random.default_rng(0)
    lines = []
    for i in range(300):
        toks = [f"w{int(rng.zipf(1.3)) % 5000}{rng.choice(not_spaces)}" for _ in range(rng.integers(0, 40))]
        seps = rng.choice(spaces, size=len(toks))
        lines.append("".join(t + s for t, s in zip(toks, seps)))
    lines.insert(7, "")
    lines.insert(50, " ".join(f"long{i % 300}" for i in range(23456)))
    path = tmp_path / "tricky.txt"
    data = "\n".join(lines).encode("utf-8")
    path.write_bytes(data[:1000] + b"\xff\xfe bad\xc3 \n" + data[1000:])  # and no final newline
    return str(path)


def test_numba_reader_counts_and_encodes_like_the_python_reader(tricky_corpus):
    words, counts, encoded = _python_reading(tricky_corpus)
    with pytest.warns(UnicodeWarning, match="invalid UTF-8"):
        table, n_tokens, n_sentences = C.count_file(tricky_corpus)
    assert table.words(range(table.n_words)) == words
    assert table.counts.tolist() == counts.tolist()
    assert (n_tokens, n_sentences) == (encoded.n_tokens, encoded.n_sentences)
    # Encoding against a vocabulary leaves other words out, keeping sentence boundaries.
    vocab = words[::3]
    _, _, expected = _python_reading(tricky_corpus, {w: i for i, w in enumerate(vocab)})
    ids, starts = _numba_encoding(tricky_corpus, C.WordTable.from_words(vocab))
    assert ids == expected.ids.tolist()
    assert starts == expected.starts.tolist()


_PREFIXES = ["", "abcdefg", "abcdefgh", "abcdefghi", "abcdefghabcdefgh", "\0", "\0\0a", "\u00e9t\u00e9\u00e9t\u00e9"]
_SUFFIXES = ["", "a", "b", "\0", "ab", "\u00e9", "abcdefgh", "abcdefghb"]


@given(st.lists(st.tuples(st.sampled_from(_PREFIXES), st.sampled_from(_SUFFIXES)), min_size=1, max_size=60),
       st.integers(1, 3))
def test_words_that_share_their_first_eight_bytes_or_a_length_stay_distinct(tmp_path_factory, pairs, workers):
    # The table confirms a match by length and first eight bytes (heads) before the bytes after them:
    # words alike in one or both, NUL bytes and characters cut at byte 8 must still be told apart.
    tokens = [p + s for p, s in pairs if p + s]
    if not tokens:
        return
    path = tmp_path_factory.mktemp("heads") / "corpus.txt"
    path.write_bytes("\n".join(" ".join(tokens[i : i + 7]) for i in range(0, len(tokens), 7)).encode("utf-8"))
    expected = {}
    for t in tokens:
        expected[t] = expected.get(t, 0) + 1
    table, n_tokens, _ = C.count_file(str(path), workers)
    assert dict(zip(table.words(range(table.n_words)), table.counts.tolist())) == expected
    assert table.words(range(table.n_words)) == list(expected) and n_tokens == len(tokens)
    vocab = list(expected)[::2]
    ids, _ = _numba_encoding(str(path), C.WordTable.from_words(vocab))
    assert ids == [vocab.index(t) for t in tokens if t in vocab]


# Well-formed characters of every length, and the edges of each byte range UTF-8 allows.
_UTF8_PIECES = [s.encode() for s in ("a", "\n", "\u00e9", "\u20ac", "\U0001f600", "\ud7ff", "\U0010ffff")] + [
    bytes([b]) for b in (0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0,
                         0xF4, 0xF5, 0xFF)]


@given(st.lists(st.sampled_from(_UTF8_PIECES) | st.binary(max_size=3), max_size=12))
def test_utf8_check_finds_the_byte_python_reports(parts):
    data = b"".join(parts)
    try:
        data.decode("utf-8")
        expected = -1
    except UnicodeDecodeError as err:
        expected = err.start
    assert first_invalid_utf8(np.frombuffer(data, dtype=np.uint8)) == expected


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_byte_ranges_start_at_lines_and_together_read_the_whole_file(tricky_corpus, n):
    offsets = C.byte_ranges(tricky_corpus, n)
    data = open(tricky_corpus, "rb").read()
    assert offsets[0] == 0 and offsets[-1] == len(data) and offsets == sorted(offsets)
    assert all(o == 0 or o == len(data) or data[o - 1 : o] == b"\n" for o in offsets)
    table = C.WordTable.from_words(_python_reading(tricky_corpus)[0])
    assert _numba_encoding(tricky_corpus, table, offsets) == _numba_encoding(tricky_corpus, table)


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_counting_in_threads_gives_the_same_table_and_one_warning(tricky_corpus, workers, monkeypatch):
    monkeypatch.setattr(C, "COUNT_RANGE_BYTES", 1)  # the corpus is small: let every thread count
    with pytest.warns(UnicodeWarning, match="invalid UTF-8") as one_record:
        one, one_tokens, one_sentences = C.count_file(tricky_corpus)
    with pytest.warns(UnicodeWarning, match="invalid UTF-8") as record:
        table, n_tokens, n_sentences = C.count_file(tricky_corpus, workers)
    assert [str(w.message) for w in record] == [str(w.message) for w in one_record]
    # Merged in file order: the same ids (first-seen order), counts and totals as one thread.
    assert table.words(range(table.n_words)) == one.words(range(one.n_words))
    assert table.counts.tolist() == one.counts.tolist()
    assert (n_tokens, n_sentences) == (one_tokens, one_sentences)


def test_merging_word_tables_grows_the_target_and_adds_counts():
    a = C.WordTable.from_words(["x", "y"])
    a.counts[:2] = [5, 1]
    b = C.WordTable.from_words([f"w{i}" for i in range(100)] + ["y"])
    b.counts[:101] = np.arange(1, 102)
    a.merge(b)
    assert a.words(range(a.n_words)) == ["x", "y"] + [f"w{i}" for i in range(100)]
    assert a.counts[: a.n_words].tolist() == [5, 1 + 101] + list(range(1, 101))


def test_a_small_file_is_counted_in_one_piece(tricky_corpus, monkeypatch):
    """Below COUNT_RANGE_BYTES a thread each is not worth its start: no tables to merge."""
    merged = []
    monkeypatch.setattr(C.WordTable, "merge", lambda self, other: merged.append(other))
    with pytest.warns(UnicodeWarning, match="invalid UTF-8"):  # the corpus has some, on purpose
        table, n_tokens, _ = C.count_file(tricky_corpus, 8)
    assert merged == [] and n_tokens > 0 and table.n_words > 0
