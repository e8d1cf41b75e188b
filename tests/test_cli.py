"""The sparsemb command line, end to end, including every bad input of the issue."""
import os
import stat
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


#: Modules a training run has no use for: Numba's linear algebra and array maths (and scipy.linalg, which
#: they import), the optional extras.
_UNNEEDED = ("scipy.linalg", "numba.np.linalg", "numba.np.arraymath", "dask", "distributed", "torch", "matplotlib")


def test_console_script_exits_without_teardown_after_writing_and_flushing(corpus, tmp_path):
    # run() leaves with os._exit once the command is done: the interpreter's teardown (here an atexit
    # handler) does not run, yet the output file, stdout through a pipe (block-buffered: no
    # PYTHONUNBUFFERED) and the exit status are complete; and the run loaded none of _UNNEEDED.
    out = tmp_path / "v.bin"
    script = f"""
import atexit, sys
atexit.register(lambda: print("teardown", flush=True))
import sparsemb.cli as cli
main = cli.main
def checked(argv=None):
    status = main(argv)
    print("loaded:", *[m for m in {_UNNEEDED!r} if m in sys.modules])
    return status
cli.main = checked
sys.argv = ["sparsemb"] + sys.argv[1:]
cli.run()
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    args = ["--dim", "6", "--epochs", "1", "--threads", "1"]
    result = subprocess.run([sys.executable, "-c", script, "train", corpus, "-o", str(out)] + args,
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2].startswith("wrote ") and lines[-1] == "loaded:" and "teardown" not in result.stdout
    kv = KeyedVectors.load_word2vec_format(str(out), binary=True)
    assert kv.vector_size == 6 and len(kv) == int(lines[-2].split()[1])
    missing = str(tmp_path / "missing.txt")
    failed = subprocess.run([sys.executable, "-c", script, "train", missing, "-o", str(out)] + args,
                            capture_output=True, text=True, env=env)
    assert failed.returncode == 1 and "teardown" not in failed.stdout
    assert failed.stderr.strip() == f"sparsemb train: error: corpus file not found: {missing}"
    usage = subprocess.run([sys.executable, "-c", script, "train", corpus], capture_output=True, text=True, env=env)
    assert usage.returncode == 2 and "-o/--output" in usage.stderr


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and "sparsemb" in capsys.readouterr().out
    assert main([]) == 0 and "train" in capsys.readouterr().out


# -- issue 10: nothing lost, nothing left behind, no traceback ------------------------------------------

def _no_leftovers(directory):
    return not [p for p in directory.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("how", ["same", "hardlink", "symlink"])
@pytest.mark.parametrize("suffix", [".txt", ".vec"])
def test_train_refuses_to_write_over_its_corpus(tmp_path, capsys, how, suffix, monkeypatch):
    corpus = tmp_path / f"corpus{suffix}"
    generate_corpus(corpus, n_sentences=200, seed=0)
    before = corpus.read_bytes()
    out = corpus if how == "same" else tmp_path / f"out{suffix}"
    if how == "hardlink":
        os.link(corpus, out)
    elif how == "symlink":
        os.symlink(corpus, out)
    import sparsemb.word2vec
    monkeypatch.setattr(sparsemb.word2vec, "Word2Vec", None)  # refused before any training starts
    code, _, err = _run(capsys, "train", str(corpus), "-o", str(out), "--quiet")
    assert code == 1 and "is the input" in err and len(err.strip().splitlines()) == 1
    assert corpus.read_bytes() == before and _no_leftovers(tmp_path)


def test_train_checks_the_output_before_reading_the_corpus(corpus, tmp_path, capsys, monkeypatch):
    import sparsemb.word2vec
    monkeypatch.setattr(sparsemb.word2vec, "Word2Vec", None)
    (tmp_path / "dir.bin").mkdir()
    code, _, err = _run(capsys, "train", corpus, "-o", str(tmp_path / "dir.bin"))
    assert code == 1 and "is a directory" in err
    code, _, err = _run(capsys, "train", corpus, "-o", str(tmp_path / ("x" * 300 + ".bin")))
    assert code == 1 and "too long" in err
    os.mkfifo(tmp_path / "fifo.bin")
    code, _, err = _run(capsys, "train", corpus, "-o", str(tmp_path / "fifo.bin"))
    assert code == 1 and "not a regular file" in err


def test_train_output_gets_the_umask_mode(corpus, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert main(["train", corpus, "-o", str(tmp_path / "v.bin"), "--dim", "4", "--epochs", "1",
                     "--quiet"]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "v.bin").st_mode) == 0o644


def _can_mount_tmpfs(where):
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                                               capture_output=True).returncode == 0


def test_full_disk_exits_1_naming_the_output_and_leaves_nothing(corpus, tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    if not _can_mount_tmpfs(full):
        pytest.skip("needs root and tmpfs (tests/test_io.py simulates a full disk with /dev/full always)")
    try:
        for _ in range(2):  # a second attempt must not find the disk fuller
            code, _, err = _run(capsys, "train", corpus, "-o", str(full / "v.txt"), "--quiet")
            assert code == 1
            assert err.strip() == f"sparsemb train: error: No space left on device: {full / 'v.txt'}"
            assert list(full.iterdir()) == []
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_sigterm_during_a_save_leaves_no_temporary_file(corpus, tmp_path):
    # The save is made to stall once its temporary file exists; SIGTERM then arrives mid-write.
    script = f"""
import sys, time
from sparsemb.word2vec import KeyedVectors
real = KeyedVectors.save_word2vec_format
def slow(self, path, binary=False):
    import sparsemb._io as io
    with io.atomic_write(path) as f:
        f.write(b"partial"); f.flush()
        print("saving", flush=True); time.sleep(60)
KeyedVectors.save_word2vec_format = slow
from sparsemb.cli import run
sys.argv = ["sparsemb", "train", {corpus!r}, "-o", {str(tmp_path / "v.bin")!r}, "--dim", "4", "--epochs", "1",
            "--quiet"]
run()
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saving"
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.strip() == "sparsemb train: terminated"
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_the_package_loads_is_one_line(corpus, tmp_path, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "word2vec" or name.startswith("sparsemb.word2vec"):
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    code, _, err = _run(capsys, "train", corpus, "-o", str(tmp_path / "v.bin"))
    assert code == 130 and err.strip() == "sparsemb train: interrupted"


def test_import_of_the_command_line_loads_no_numba():
    result = subprocess.run([sys.executable, "-c", "import sys, sparsemb.cli; print('numba' in sys.modules)"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_demo_refuses_to_overwrite_the_users_files(tmp_path, capsys):
    mine = tmp_path / "corpus.txt"
    mine.write_text("my own corpus\n")
    code, _, err = _run(capsys, "demo", "--model", "cbow", "--quiet", "--dir", str(tmp_path), "--epochs", "1")
    assert code == 1 and "corpus.txt already exists" in err and "--force" in err
    assert mine.read_text() == "my own corpus\n" and sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]
    code, _, _ = _run(capsys, "demo", "--model", "both", "--quiet", "--dir", str(tmp_path), "--epochs", "1",
                      "--force")
    assert code == 0 and mine.read_text() != "my own corpus\n" and _no_leftovers(tmp_path)


@pytest.mark.parametrize("flag, value", [
    ("--window", "1000000000"), ("--window", "99999999999999999999"), ("--negative", "99999999999999999999"),
    ("--negative", "100000"), ("--sample", "inf"), ("--sample", "nan"), ("--alpha", "inf"),
    ("--min-alpha", "inf"), ("--alpha", "nan"), ("--seed", "-1"), ("--threads", "100000"),
    ("--epochs", "99999999999999999999"), ("--min-count", "99999999999999999999"),
    ("--dim", "99999999999999999999")])
def test_out_of_range_numbers_are_usage_errors_naming_the_flag(corpus, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", corpus, "-o", str(tmp_path / "v.bin"), flag, value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and flag in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    assert "e+" not in err  # bounds are written as integers, not 4.61169e+18


def test_a_bound_nobody_reaches_is_named_only_past_it(corpus, tmp_path, capsys):
    for value, said in (("0", "must be an integer >= 1, got '0'"),
                        ("99999999999999999999", f"must be an integer >= 1 and <= {2**62}, got")):
        with pytest.raises(SystemExit):
            main(["train", corpus, "-o", str(tmp_path / "v.bin"), "--dim", value])
        assert said in capsys.readouterr().err


def test_tables_that_cannot_fit_are_refused_with_their_size(corpus, tmp_path, capsys):
    code, _, err = _run(capsys, "train", corpus, "-o", str(tmp_path / "v.bin"), "--dim", "1000000000")
    assert code == 1 and "GiB" in err and "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_worker_threads_that_cannot_start_are_one_line(corpus, tmp_path, capsys, monkeypatch):
    import threading
    real_start = threading.Thread.start
    started = []

    def limited(self):
        if getattr(self, "_target", None) is not None and "work" in getattr(self._target, "__name__", ""):
            if started:
                raise RuntimeError("can't start new thread")
            started.append(self)
        return real_start(self)

    monkeypatch.setattr(threading.Thread, "start", limited)
    code, _, err = _run(capsys, "train", corpus, "-o", str(tmp_path / "v.bin"), "--threads", "3", "--quiet")
    assert code == 1 and "could not start worker thread 2 of 3" in err
    assert list(tmp_path.iterdir()) == []


def test_a_header_promising_more_than_the_file_holds_is_refused(tmp_path, capsys):
    vec = tmp_path / "huge.txt"
    vec.write_text("1000000000000 8\na 1 2 3 4 5 6 7 8\n")
    pairs = tmp_path / "p.tsv"
    pairs.write_text("a\ta\t1\n")
    for argv in (["similar", str(vec), "a"], ["evaluate", str(vec), "--pairs", str(pairs)]):
        code, _, err = _run(capsys, *argv)
        assert code == 1 and "huge.txt" in err and "truncated" in err and "Traceback" not in err


def test_evaluate_says_when_nothing_could_be_scored(vectors, tmp_path, capsys):
    analogies = tmp_path / "q.txt"
    analogies.write_text(": none\nzz yy xx ww\n")
    code, _, err = _run(capsys, "evaluate", vectors, "--analogies", str(analogies))
    assert code == 1 and "no analogy" in err and "q.txt" in err
    pairs = tmp_path / "p.tsv"
    pairs.write_text("paris\tfrance\t9\nzz\tyy\t1\n")
    code, _, err = _run(capsys, "evaluate", vectors, "--pairs", str(pairs))
    assert code == 1 and "only one pair" in err and "at least two" in err
    pairs.write_bytes(b"paris\tfrance\t9\nking\tqueen\t8\nk\xffng\tqueen\t1\n")
    code, _, err = _run(capsys, "evaluate", vectors, "--pairs", str(pairs))
    assert code == 1 and "p.tsv" in err and "line 3" in err and "UTF-8" in err


def test_a_text_file_named_bin_is_refused(vectors, tmp_path, capsys):
    kv = KeyedVectors.load_word2vec_format(vectors, binary=True)
    text = tmp_path / "text.bin"
    kv.save_word2vec_format(text, binary=False)
    code, _, err = _run(capsys, "similar", str(text), "paris")
    assert code == 1 and "text vectors file, not binary" in err
