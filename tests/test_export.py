"""The TensorFlow Embedding Projector export: vectors.tsv + metadata.tsv as the Projector parses them."""
import os

import numpy as np
import pytest

from sparsemb.cli import main
from sparsemb.word2vec import KeyedVectors, Word2Vec, viz


def parse_like_the_projector(directory):
    """The Projector's parsing rules: lines split on "\\n", blank (trimmed) lines skipped, fields on tabs;
    a metadata first line that holds a tab is the header, otherwise every line is a label."""
    with open(os.path.join(directory, "vectors.tsv"), "rb") as f:
        text = f.read().decode("utf-8")  # strict: the files are UTF-8
    rows = [line.strip().split("\t") for line in text.split("\n") if line.strip()]
    vectors = np.array([[float(v) for v in r] for r in rows])
    with open(os.path.join(directory, "metadata.tsv"), "rb") as f:
        lines = [line for line in f.read().decode("utf-8").split("\n") if line.strip()]
    if "\t" in lines[0]:
        return vectors, lines[0].split("\t"), [line.split("\t") for line in lines[1:]]
    return vectors, None, [[line] for line in lines]


def _kv(words, dim=5, dtype=np.float32, counts=None, seed=0):
    rng = np.random.default_rng(seed)
    vectors = (rng.normal(size=(len(words), dim)) * 10.0 ** rng.integers(-8, 4, size=(len(words), 1))).astype(dtype)
    return KeyedVectors.from_arrays(vectors, words, counts=counts)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_exact_words_and_vectors(tmp_path, dtype):
    words = ["the", "café", "東京", "naïve", "😀", "1.5", "-"]
    kv = _kv(words, dim=7, dtype=dtype)
    paths = viz.export_projector(kv, tmp_path / "p")
    assert [os.path.basename(p) for p in paths] == ["vectors.tsv", "metadata.tsv"]
    vectors, header, rows = parse_like_the_projector(tmp_path / "p")
    assert header is None  # one column: no header row
    assert [r[0] for r in rows] == words
    assert vectors.shape == kv.vectors.shape
    # 9 significant digits for float32, 17 for float64: the text reads back to the same bits.
    assert np.array_equal(vectors.astype(dtype), kv.vectors)
    back_words, back, counts = viz.read_projector(tmp_path / "p")
    assert back_words == words and counts is None and np.array_equal(back.astype(dtype), kv.vectors)


def test_counts_give_a_header_and_a_second_column(tmp_path):
    kv = _kv(["a", "b", "c", "d"], counts=[5, 50, 7, 50])
    viz.export_projector(kv, tmp_path, counts=kv.expandos["count"], overwrite=True)
    vectors, header, rows = parse_like_the_projector(tmp_path)
    assert header == ["word", "count"]
    assert rows == [["b", "50"], ["d", "50"], ["c", "7"], ["a", "5"]]  # most frequent first, ties in order
    assert np.array_equal(vectors.astype(np.float32), kv.vectors[[1, 3, 2, 0]])
    first = (tmp_path / "metadata.tsv").read_bytes().split(b"\n")[0]
    assert first == b"word\tcount"
    assert (tmp_path / "vectors.tsv").read_bytes().endswith(b"\n") and b"\r" not in (tmp_path / "vectors.tsv").read_bytes()


def test_top_keeps_the_most_frequent(tmp_path):
    kv = _kv([f"w{i}" for i in range(10)])
    viz.export_projector(kv, tmp_path / "p", top=3)
    vectors, _, rows = parse_like_the_projector(tmp_path / "p")
    assert [r[0] for r in rows] == ["w0", "w1", "w2"] and vectors.shape == (3, 5)


@pytest.mark.parametrize("word", ["a\tb", "line\nbreak", "cr\rhere", "", " ", "\u3000", "\ufeff"])
def test_words_the_projector_cannot_hold_are_refused_before_writing(tmp_path, word):
    kv = _kv(["ok", word, "fine"])
    with pytest.raises(ValueError, match="row 1"):
        viz.export_projector(kv, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_vectors_the_projector_cannot_read_are_refused(tmp_path):
    kv = _kv(["a", "b"])
    kv.vectors[1, 2] = np.nan
    with pytest.raises(ValueError, match="'b'.*not finite"):
        viz.export_projector(kv, tmp_path / "p")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        viz.export_projector(_kv(["a", "b"], dim=1), tmp_path / "p")
    with pytest.raises(ValueError, match="no vectors"):
        viz.export_projector(KeyedVectors.from_arrays(np.zeros((0, 3), np.float32), []), tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_existing_export_files_are_kept_unless_overwrite(tmp_path):
    (tmp_path / "vectors.tsv").write_text("mine\n")
    (tmp_path / "notes.txt").write_text("unrelated\n")
    kv = _kv(["a", "b"])
    with pytest.raises(FileExistsError, match="vectors.tsv"):
        viz.export_projector(kv, tmp_path)
    assert (tmp_path / "vectors.tsv").read_text() == "mine\n" and not (tmp_path / "metadata.tsv").exists()
    viz.export_projector(kv, tmp_path, overwrite=True)
    assert parse_like_the_projector(tmp_path)[2] == [["a"], ["b"]]
    assert (tmp_path / "notes.txt").read_text() == "unrelated\n"
    assert sorted(os.listdir(tmp_path)) == ["metadata.tsv", "notes.txt", "vectors.tsv"]  # no temporaries left


def test_bad_directories(tmp_path):
    kv = _kv(["a", "b"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        viz.export_projector(kv, tmp_path / "file")
    with pytest.raises(FileNotFoundError, match="parent"):
        viz.export_projector(kv, tmp_path / "no" / "such")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    sentences = [["king", "queen", "rules", "the", "land"], ["the", "queen", "sings"]] * 40
    model = Word2Vec(sentences, vector_size=8, min_count=1, epochs=2, workers=1, seed=1)
    path = tmp_path_factory.mktemp("m") / "m.npz"
    model.save(path)
    return str(path)


def test_cli_export_of_a_model_carries_its_counts(model_path, tmp_path, capsys):
    out = tmp_path / "proj"
    assert main(["export", model_path, "--projector", str(out)]) == 0
    assert "vectors.tsv" in capsys.readouterr().out
    model = Word2Vec.load(model_path)
    vectors, header, rows = parse_like_the_projector(out)
    assert header == ["word", "count"]
    assert rows == [[w, str(model.wv.get_vecattr(w, "count"))] for w in model.wv.index_to_key]
    assert np.array_equal(vectors.astype(np.float32), model.wv.vectors)


def test_cli_export_of_a_vectors_file_has_words_only(model_path, tmp_path, capsys):
    vec = tmp_path / "v.txt"
    Word2Vec.load(model_path).wv.save_word2vec_format(vec)
    out = tmp_path / "proj"
    assert main(["export", str(vec), "--projector", str(out), "--top", "2"]) == 0
    vectors, header, rows = parse_like_the_projector(out)
    assert header is None and [r[0] for r in rows] == KeyedVectors.load_word2vec_format(vec).index_to_key[:2]


def test_cli_export_refusals_are_one_line(model_path, tmp_path, capsys):
    out = tmp_path / "proj"
    assert main(["export", model_path, "--projector", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", model_path, "--projector", str(out)]) == 1
    err = capsys.readouterr().err
    assert "already exist" in err and "--force" in err and len(err.splitlines()) == 1
    assert main(["export", model_path, "--projector", str(out), "--force"]) == 0
    assert main(["export", str(tmp_path / "none.bin"), "--projector", str(out)]) == 1
    assert "none.bin" in capsys.readouterr().err
    # the vectors file is an input: an export that would replace it is refused, even with --force
    text = tmp_path / "vectors.tsv"
    KeyedVectors.from_arrays(np.ones((2, 3), np.float32), ["a", "b"]).save_word2vec_format(text)
    assert main(["export", str(text), "--projector", str(tmp_path), "--force"]) == 1
    assert "input" in capsys.readouterr().err
