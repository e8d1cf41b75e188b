"""The sparsemb command line, end to end, including every bad input of the issue."""
import subprocess
import sys

import pytest

from sparsemb.cli import main
from sparsemb.word2vec import KeyedVectors, Word2Vec
from sparsemb.word2vec.demo import generate_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "corpus.txt"
    generate_corpus(path, n_sentences=3000, seed=0)
    return str(path)


@pytest.fixture(scope="module")
def vectors(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("vec") / "v.bin")
    assert main(["train", corpus, "-o", out, "--dim", "20", "--epochs", "10", "--model", "skipgram",
                 "--threads", "1", "--quiet"]) == 0
    return out


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("suffix, binary", [(".bin", True), (".txt", False), (".vec", False)])
def test_train_writes_word2vec_files(corpus, tmp_path, capsys, suffix, binary):
    out = tmp_path / f"v{suffix}"
    code, stdout, _ = _run(capsys, "train", corpus, "-o", str(out), "--model", "skipgram", "--dim", "12",
                           "--epochs", "2", "--min-count", "3", "--optimizer", "adagrad", "--quiet")
    assert code == 0 and stdout == ""
    kv = KeyedVectors.load_word2vec_format(out, binary=binary)
    assert kv.vector_size == 12 and "paris" in kv


def test_train_npz_keeps_the_full_model(corpus, tmp_path, capsys):
    out = tmp_path / "m.npz"
    code, stdout, _ = _run(capsys, "train", corpus, "-o", str(out), "--dim", "8", "--epochs", "1", "--threads", "1",
                           "--seed", "3", "--window", "3", "--negative", "2", "--sample", "0",
                           "--alpha", "0.05", "--min-alpha", "0.001", "--max-vocab", "1000")
    assert code == 0 and "wrote" in stdout
    model = Word2Vec.load(out)
    assert (model.window, model.negative, model.seed, model.alpha, model.max_vocab_size) == (3, 2, 3, 0.05, 1000)


@pytest.mark.parametrize("flag, shared", [((), True), (("--shared-negatives",), True),
                                          (("--no-shared-negatives",), False)])
def test_train_shared_negatives_flag(corpus, tmp_path, capsys, flag, shared):
    out = tmp_path / "m.npz"
    code, _, _ = _run(capsys, "train", corpus, "-o", str(out), "--model", "skipgram", "--dim", "8", "--epochs", "1",
                      *flag, "--quiet")
    assert code == 0 and Word2Vec.load(out).shared_negatives is shared


def test_similar_analogy_evaluate(vectors, tmp_path, capsys):
    code, out, _ = _run(capsys, "similar", vectors, "paris", "queen", "-n", "3")
    assert code == 0 and out.startswith("paris:") and "queen:" in out and len(out.splitlines()) == 8
    code, out, _ = _run(capsys, "analogy", vectors, "france", "paris", "japan", "-n", "1")
    assert code == 0 and "tokyo" in out
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("paris\tfrance\t9\nparis\tqueen\t1\nking\tqueen\t8\nwalk\tcar\t2\n")
    analogies = tmp_path / "q.txt"
    analogies.write_text(": caps\nfrance paris japan tokyo\nfrance paris italy rome\n")
    code, out, _ = _run(capsys, "evaluate", vectors, "--analogies", str(analogies), "--pairs", str(pairs))
    assert code == 0 and "analogy accuracy: 100.00%" in out and "Spearman" in out


def test_demo_command(tmp_path, capsys):
    code, out, _ = _run(capsys, "demo", "--model", "cbow", "--quiet", "--dir", str(tmp_path))
    assert code == 0 and "planted-analogy accuracy" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analogies.txt", "corpus.txt", "vectors.bin"]


@pytest.mark.parametrize("flag, value", [("--dim", "0"), ("--window", "0"), ("--epochs", "-1"),
                                         ("--negative", "x"), ("--alpha", "0"), ("--threads", "0")])
def test_invalid_numbers_are_usage_errors_naming_the_flag(corpus, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", corpus, "-o", str(tmp_path / "v.bin"), flag, value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert flag in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def _fails(capsys, tmp_path, argv, *needles):
    code, out, err = _run(capsys, *argv)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("v.", ".tmp"))]


def test_bad_corpus_inputs(tmp_path, capsys):
    out = str(tmp_path / "v.bin")
    _fails(capsys, tmp_path, ["train", str(tmp_path / "missing.txt"), "-o", out], "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    _fails(capsys, tmp_path, ["train", str(empty), "-o", out], "empty")
    rare = tmp_path / "rare.txt"
    rare.write_text("one two three\n")
    _fails(capsys, tmp_path, ["train", str(rare), "-o", out], "--min-count")
    _fails(capsys, tmp_path, ["train", str(rare), "-o", str(tmp_path / "nodir" / "v.bin"), "--min-count", "1"],
           "nodir")


def test_unknown_words_and_corrupt_vectors(vectors, tmp_path, capsys):
    _fails(capsys, tmp_path, ["similar", vectors, "paris", "zzzz"], "zzzz")
    _fails(capsys, tmp_path, ["analogy", vectors, "france", "paris", "qqqq"], "qqqq")
    corrupt = tmp_path / "corrupt.bin"
    with open(vectors, "rb") as f:
        corrupt.write_bytes(f.read()[:500])
    _fails(capsys, tmp_path, ["similar", str(corrupt), "paris"], "corrupt.bin")
    _fails(capsys, tmp_path, ["evaluate", str(tmp_path / "none.bin"), "--pairs", vectors], "none.bin")


def test_console_script_prints_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sparsemb.cli", "train", str(tmp_path / "nope.txt"),
                             "-o", str(tmp_path / "v.bin")], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == f"sparsemb train: error: corpus file not found: {tmp_path / 'nope.txt'}"
    assert list(tmp_path.iterdir()) == []


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and "sparsemb" in capsys.readouterr().out
    assert main([]) == 0 and "train" in capsys.readouterr().out
