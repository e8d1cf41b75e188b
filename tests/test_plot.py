"""Looking at vectors: the text loss curve, the 2-D map and loss figures, and the plot extra's absence.

Tests that draw need matplotlib and skip without it; the no-matplotlib path is tested in every run
(by hiding matplotlib from the import system in-process, and by a child process that cannot import it).
"""
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sparsemb.cli import main
from sparsemb.word2vec import KeyedVectors, Word2Vec, viz
from sparsemb.word2vec.demo import generate_corpus

try:
    import matplotlib  # noqa: F401
    HAVE_MPL = True
except ImportError:
    HAVE_MPL = False

needs_mpl = pytest.mark.skipif(not HAVE_MPL, reason="matplotlib (the plot extra) is not installed")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_MAGIC, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", head[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("plot") / "corpus.txt"
    generate_corpus(path, n_sentences=3000, seed=0)
    return str(path)


@pytest.fixture(scope="module")
def model_path(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("model") / "m.npz")
    assert main(["train", corpus, "-o", out, "--dim", "16", "--epochs", "4", "--model", "skipgram",
                 "--threads", "1", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def vectors_path(model_path, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("vec") / "v.bin")
    Word2Vec.load(model_path).wv.save_word2vec_format(out, binary=True)
    return out


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _usage(capsys, *argv):
    """A usage error: exit 2 and one line on stderr (argparse raises SystemExit)."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


# -- the text loss curve -----------------------------------------------------------------------------

def test_sparkline_maps_lowest_to_lowest_block_and_highest_to_highest():
    line = viz.sparkline([4.0, 3.0, 2.0, 1.0])
    assert len(line) == 4
    assert line[0] == "█" and line[-1] == "▁"
    assert list(line) == sorted(line, reverse=True)  # block characters are in code-point order
    assert viz.sparkline([]) == ""
    assert len(set(viz.sparkline([2.5] * 5))) == 1
    assert viz.sparkline([1.0, float("nan"), 0.0])[1] == " "


def test_sparkline_bins_long_series_to_its_width():
    line = viz.sparkline(np.linspace(10, 0, 500), width=40)
    assert len(line) == 40 and line[0] == "█" and line[-1] == "▁"


def test_loss_lines_one_per_epoch_then_the_curve():
    losses = [4.08604, 3.5, 3.0, 2.578149]
    lines = viz.loss_lines(losses)
    assert len(lines) == len(losses) + 1
    for i, (line, loss) in enumerate(zip(lines, losses)):
        assert line.split() == ["epoch", str(i + 1), "loss", f"{loss:.4f}"]
    assert lines[-1].split()[0] == viz.sparkline(losses)
    assert "4.0860 -> 2.5781" in lines[-1] and "-36.9%" in lines[-1]
    assert viz.loss_lines([]) == []


def test_loss_lines_elide_the_middle_of_long_runs():
    lines = viz.loss_lines(np.linspace(5, 1, 100), max_lines=10)
    epochs = [int(line.split()[1]) for line in lines if line.split()[0] == "epoch"]
    assert epochs == [1, 2, 3, 4, 5, 96, 97, 98, 99, 100]
    assert any("90 more epochs" in line for line in lines)


def test_train_prints_each_epoch_loss_and_the_sparkline(corpus, tmp_path, capsys):
    out = tmp_path / "v.npz"
    code, stdout, _ = _run(capsys, "train", corpus, "-o", str(out), "--dim", "8", "--epochs", "3", "--threads", "1")
    assert code == 0
    losses = Word2Vec.load(out).epoch_losses
    for line in viz.loss_lines(losses):
        assert line in stdout.splitlines()
    assert stdout.splitlines()[-1].startswith("wrote ")
    code, stdout, _ = _run(capsys, "train", corpus, "-o", str(out), "--dim", "8", "--epochs", "3", "--quiet")
    assert code == 0 and stdout == ""


# -- choosing the words ------------------------------------------------------------------------------

def _toy(n=12, dim=6, counts=None, seed=0):
    rng = np.random.default_rng(seed)
    return KeyedVectors.from_arrays(rng.normal(size=(n, dim)).astype(np.float32), [f"w{i}" for i in range(n)],
                                    counts=counts)


def test_top_words_follow_the_counts_when_known_else_the_file_order():
    kv = _toy()
    assert viz.select_words(kv, top=5)[0] == ["w0", "w1", "w2", "w3", "w4"]
    counts = np.array([1, 9, 3, 9, 0, 5, 2, 2, 2, 2, 2, 2])
    assert viz.select_words(kv, top=4, counts=counts)[0] == ["w1", "w3", "w5", "w2"]  # ties in file order
    assert viz.select_words(kv, top=100)[0] == kv.index_to_key


def test_asked_words_come_first_each_with_its_neighbours():
    kv = _toy(30)
    words, groups = viz.select_words(kv, words=["w3", "w7", "w3"], neighbours=4)
    near3 = [w for w, _ in kv.most_similar("w3", topn=4)]
    near7 = [w for w, _ in kv.most_similar("w7", topn=4)]
    expected = list(dict.fromkeys(["w3", *near3, "w7", *near7]))
    assert words == expected
    assert groups[words.index("w3")] == 0 and groups[words.index("w7")] == 1
    assert viz.select_words(kv, words=["w5", "w2"], neighbours=0)[0] == ["w5", "w2"]


def test_selection_errors():
    kv = _toy()
    with pytest.raises(KeyError, match="'nope'"):
        viz.select_words(kv, words=["w1", "nope"], source="v.bin")
    with pytest.raises(ValueError, match="no words"):
        viz.select_words(kv, words=[])
    with pytest.raises(ValueError, match="at least 1"):
        viz.select_words(kv, top=0)
    with pytest.raises(ValueError, match="has no words"):
        viz.select_words(KeyedVectors.from_arrays(np.zeros((0, 3), np.float32), []), top=3)


# -- projections and labels --------------------------------------------------------------------------

def _clusters(k=4, per=15, dim=20, seed=1):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 4
    x = np.concatenate([c + rng.normal(size=(per, dim)) for c in centres])
    return x, np.repeat(np.arange(k), per)


@pytest.mark.parametrize("name", ["tsne", "pca"])
def test_projections_keep_clusters_apart_and_are_reproducible(name):
    x, label = _clusters()
    xy = viz.PROJECTIONS[name](x)
    assert xy.shape == (len(x), 2) and xy.dtype == np.float64 and np.isfinite(xy).all()
    assert np.array_equal(xy, viz.PROJECTIONS[name](x))  # no randomness
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (label[d.argmin(axis=1)] == label).mean() > 0.95  # each point's map neighbour is of its cluster


def test_tsne_keeps_more_neighbours_than_pca_on_mixed_clusters():
    x, _ = _clusters(k=8, per=12, dim=30, seed=3)
    assert viz.neighbour_agreement(x, viz.tsne_2d(x)) > viz.neighbour_agreement(x, viz.pca_2d(x))


def test_projections_of_tiny_and_degenerate_inputs():
    for n in range(0, 5):
        x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
        for f in viz.PROJECTIONS.values():
            xy = f(x)
            assert xy.shape == (n, 2) and np.isfinite(xy).all()
    zeros = np.zeros((6, 4), np.float32)
    assert np.isfinite(viz.tsne_2d(zeros)).all()


def test_labels_never_overlap_and_stay_inside():
    rng = np.random.default_rng(0)
    points = rng.uniform(100, 900, size=(300, 2))
    sizes = np.column_stack([rng.uniform(20, 70, 300), np.full(300, 11.0)])
    bounds = (0, 0, 1000, 1000)
    corners, far = viz.place_labels(points, sizes, bounds)
    ok = ~np.isnan(corners[:, 0])
    assert ok.mean() > 0.9
    b = np.column_stack([corners[ok], corners[ok] + sizes[ok]])
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 1000).all() and (b[:, 3] <= 1000).all()
    overlap = ((b[:, None, 0] < b[None, :, 2]) & (b[None, :, 0] < b[:, None, 2])
               & (b[:, None, 1] < b[None, :, 3]) & (b[None, :, 1] < b[:, None, 3]))
    np.fill_diagonal(overlap, False)
    assert not overlap.any()


def test_sparse_labels_sit_next_to_their_points():
    points = np.array([[100.0, 100.0], [400.0, 400.0], [700.0, 200.0]])
    corners, far = viz.place_labels(points, np.full((3, 2), 20.0), (0, 0, 1000, 1000))
    assert not far.any()
    assert np.allclose(corners, points + [3.0, -10.0])  # right of the point, centred on it


# -- figures -----------------------------------------------------------------------------------------

@needs_mpl
def test_plot_words_writes_a_png_of_the_asked_size_with_the_asked_words(vectors_path, tmp_path, capsys):
    out = tmp_path / "map.png"
    code, stdout, _ = _run(capsys, "plot", vectors_path, "-o", str(out), "--words", "paris,queen,went",
                           "--neighbours", "0", "--size", "640x480")
    assert code == 0 and "3 words" in stdout
    assert png_size(out) == (640, 480)
    kv = KeyedVectors.load_word2vec_format(vectors_path, binary=True)
    result = viz.plot_map(kv, tmp_path / "again.png", ["paris", "queen", "went"], size=(320, 200))
    assert result["words"] == ["paris", "queen", "went"] and result["labelled"].all()
    assert png_size(tmp_path / "again.png") == (320, 200)


@needs_mpl
def test_plot_top_words_of_a_model(model_path, tmp_path, capsys):
    out = tmp_path / "top.png"
    code, stdout, _ = _run(capsys, "plot", model_path, "-o", str(out), "--top", "40")
    assert code == 0 and "40 words" in stdout
    width, height = png_size(out)
    assert (width, height) == viz.default_map_size(40)
    kv = Word2Vec.load(model_path).wv
    words, _ = viz.select_words(kv, top=40, counts=kv.expandos["count"])
    result = viz.plot_map(kv, tmp_path / "top2.png", words)
    assert result["words"] == words and result["xy"].shape == (40, 2)


@needs_mpl
@pytest.mark.parametrize("ext", [".svg", ".pdf"])
def test_other_figure_formats(vectors_path, tmp_path, capsys, ext):
    out = tmp_path / f"map{ext}"
    assert _run(capsys, "plot", vectors_path, "-o", str(out), "--top", "10")[0] == 0
    data = out.read_bytes()
    if ext == ".pdf":
        assert data.startswith(b"%PDF-")
    else:
        assert data.startswith(b"<?xml") and b"<svg" in data[:1000]


@needs_mpl
def test_plot_loss_of_a_model(model_path, tmp_path, capsys):
    out = tmp_path / "loss.png"
    code, stdout, _ = _run(capsys, "plot", "--loss", model_path, "-o", str(out))
    assert code == 0 and "4 epochs" in stdout
    assert png_size(out) == (900, 540)
    assert _run(capsys, "plot", "--loss", model_path, "-o", str(out), "--size", "400x300")[0] == 0
    assert png_size(out) == (400, 300)


@needs_mpl
def test_plot_errors_name_what_is_wrong(vectors_path, model_path, tmp_path, capsys):
    out = tmp_path / "x.png"
    code, _, err = _run(capsys, "plot", vectors_path, "-o", str(out), "--words", "paris,zzzz")
    assert code == 1 and "'zzzz'" in err and len(err.splitlines()) == 1
    assert "--words" in _usage(capsys, "plot", vectors_path, "-o", str(out), "--words", ",,")
    assert "not both" in _usage(capsys, "plot", vectors_path, "-o", str(out), "--words", "paris", "--top", "3")
    assert "--neighbours" in _usage(capsys, "plot", vectors_path, "-o", str(out), "--neighbours", "3")
    assert "--top" in _usage(capsys, "plot", vectors_path, "-o", str(out), "--top", str(viz.MAX_MAP_WORDS + 1))
    assert ".npz" in _usage(capsys, "plot", "--loss", vectors_path, "-o", str(out))
    assert "VECTORS" in _usage(capsys, "plot", "-o", str(out))
    assert ".png" in _usage(capsys, "plot", vectors_path, "-o", str(tmp_path / "x.jpg"))
    assert "WIDTHxHEIGHT" in _usage(capsys, "plot", vectors_path, "-o", str(out), "--size", "12x10")
    code, _, err = _run(capsys, "plot", vectors_path, "-o", str(tmp_path / "nodir" / "x.png"))
    assert code == 1 and "nodir" in err
    code, _, err = _run(capsys, "plot", str(tmp_path / "none.bin"), "-o", str(out))
    assert code == 1 and "none.bin" in err
    assert not out.exists()
    with pytest.raises(ValueError, match="no words"):
        viz.plot_map(KeyedVectors.load_word2vec_format(vectors_path, binary=True), out, [])


@needs_mpl
def test_a_model_without_losses_is_named(tmp_path, capsys):
    model = Word2Vec([["a", "b", "c"]] * 20, vector_size=4, min_count=1, epochs=1, workers=1)
    model.epoch_losses = []
    path = tmp_path / "m.npz"
    model.save(path)
    code, _, err = _run(capsys, "plot", "--loss", str(path), "-o", str(tmp_path / "l.png"))
    assert code == 1 and "no epoch losses" in err


# -- without the plot extra --------------------------------------------------------------------------

@pytest.fixture
def no_matplotlib(monkeypatch):
    """matplotlib unimportable, as for a user who never installed it (a None entry stops the import)."""
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_without_matplotlib_plot_says_which_extra_and_exits_2(no_matplotlib, vectors_path, model_path, tmp_path,
                                                              capsys):
    for argv in (["plot", vectors_path, "-o", str(tmp_path / "m.png")],
                 ["plot", "--loss", model_path, "-o", str(tmp_path / "l.png")]):
        err = _usage(capsys, *argv)
        assert "pip install 'sparsemb[plot]'" in err
    assert os.listdir(tmp_path) == []
    with pytest.raises(viz.MissingExtraError, match=r"sparsemb\[plot\]"):
        viz.plot_loss([1.0, 0.5], tmp_path / "l.png")


def test_without_matplotlib_the_rest_works(no_matplotlib, vectors_path, tmp_path, capsys):
    assert viz.loss_lines([2.0, 1.0])
    code, _, _ = _run(capsys, "export", vectors_path, "--projector", str(tmp_path / "p"))
    assert code == 0 and sorted(os.listdir(tmp_path / "p")) == ["metadata.tsv", "vectors.tsv"]


def test_without_matplotlib_in_a_fresh_process(vectors_path, tmp_path):
    """The console path a user without the extra takes: one line, exit 2, no traceback."""
    block = textwrap.dedent("""
        import sys
        class NoMatplotlib:
            def find_spec(self, name, path=None, target=None):
                if name == "matplotlib" or name.startswith("matplotlib."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, NoMatplotlib())
        sys.argv = ["sparsemb"] + sys.argv[1:]
        from sparsemb.cli import run
        run()
    """)
    result = subprocess.run([sys.executable, "-c", block, "plot", vectors_path, "-o", str(tmp_path / "m.png")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "pip install 'sparsemb[plot]'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m.png").exists()
