"""Hierarchical softmax: gensim's Huffman tree, and score() against gensim's."""
import os

import numpy as np
import pytest

from sparsemb.kernels.huffman import huffman_tree
from sparsemb.word2vec import Word2Vec


def _lee_path(gensim):
    return os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", "lee_background.cor")


def _gensim_paths(model):
    """gensim's codes and points per word, concatenated like a HuffmanTree."""
    codes = [np.asarray(model.wv.get_vecattr(i, "code")) for i in range(len(model.wv))]
    points = [np.asarray(model.wv.get_vecattr(i, "point")) for i in range(len(model.wv))]
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in codes])])
    return np.concatenate(codes), np.concatenate(points), offsets


@pytest.mark.parametrize("counts", [[5], [2, 1], [3, 3, 3, 3, 1], [7, 7, 7, 7, 7, 7, 7, 7], list(range(40, 0, -1))])
def test_huffman_tree_is_a_prefix_code_with_the_shortest_paths_for_the_commonest(counts):
    tree = huffman_tree(np.array(counts))
    paths = [tuple(tree.codes[tree.offsets[i]:tree.offsets[i + 1]]) for i in range(len(counts))]
    assert len(set(paths)) == len(paths)
    for a in paths:  # no code is the start of another
        assert not any(b != a and b[:len(a)] == a for b in paths)
    lengths = np.diff(tree.offsets)
    c = np.array(counts)
    assert not ((c[:, None] > c[None, :]) & (lengths[:, None] > lengths[None, :])).any()  # commoner, not longer
    # Every path starts at the root (inner node V - 2) and uses inner nodes only.
    if len(counts) > 1:
        assert (tree.points[tree.offsets[:-1]] == len(counts) - 2).all()
        assert tree.points.min() >= 0 and tree.points.max() <= len(counts) - 2
    # Kraft's equality: a full binary tree.
    assert np.isclose(sum(2.0 ** -lengths), 1.0) or len(counts) == 1


def test_huffman_codes_equal_gensims_on_lee_background():
    gensim = pytest.importorskip("gensim")
    from gensim.models.word2vec import LineSentence

    theirs = gensim.models.Word2Vec(vector_size=4, min_count=2, hs=1, negative=0)
    theirs.build_vocab(LineSentence(_lee_path(gensim)))
    ours = Word2Vec(vector_size=4, min_count=2, hs=1, negative=0)
    ours.build_vocab(corpus_file=_lee_path(gensim))
    assert ours.vocab.index_to_key == theirs.wv.index_to_key
    codes, points, offsets = _gensim_paths(theirs)
    tree = ours.vocab.tree
    assert np.array_equal(tree.offsets, offsets)
    assert np.array_equal(tree.codes, codes) and np.array_equal(tree.points, points)


@pytest.mark.parametrize("sg, cbow_mean", [(1, 1), (0, 1), (0, 0)])
def test_score_equals_gensims_on_the_same_tables(sg, cbow_mean):
    gensim = pytest.importorskip("gensim")
    from gensim.models.word2vec import LineSentence

    corpus = list(LineSentence(_lee_path(gensim)))
    theirs = gensim.models.Word2Vec(corpus, vector_size=16, min_count=3, hs=1, negative=0, sg=sg,
                                    cbow_mean=cbow_mean, epochs=2, workers=1, seed=3)
    ours = Word2Vec(vector_size=16, min_count=3, hs=1, negative=0, sg=sg, cbow_mean=cbow_mean)
    ours.build_vocab(corpus)
    assert ours.vocab.index_to_key == theirs.wv.index_to_key
    ours.wv.vectors[:] = theirs.wv.vectors
    ours.syn1[:] = theirs.syn1
    sentences = corpus[:50] + [["unknownword", corpus[0][0]], []]
    expected = theirs.score(sentences, total_sentences=len(sentences))
    got = ours.score(sentences, total_sentences=len(sentences))
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-3)
    assert (got < 0).sum() >= 50


def test_score_needs_hierarchical_softmax():
    model = Word2Vec([["a", "b"]] * 20, vector_size=4, min_count=1, workers=1, quiet=True)
    with pytest.raises(RuntimeError, match="hierarchical softmax"):
        model.score([["a", "b"]])


FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "gensim_hs.npz")


@pytest.fixture(scope="module")
def recorded_hs():
    with np.load(FIXTURE) as npz:
        return {k: npz[k] for k in npz.files}


def test_huffman_tree_equals_gensims_recorded_one(recorded_hs):
    tree = huffman_tree(recorded_hs["counts"])
    assert np.array_equal(tree.offsets, recorded_hs["offsets"])
    assert np.array_equal(tree.codes, recorded_hs["codes"]) and np.array_equal(tree.points, recorded_hs["points"])


@pytest.mark.parametrize("sg", [1, 0])
def test_score_equals_gensims_recorded_scores(recorded_hs, sg):
    words = recorded_hs["words"].tolist()
    ours = Word2Vec(vector_size=8, min_count=1, hs=1, negative=0, sg=sg, sorted_vocab=0)
    ours.build_vocab_from_freq(dict(zip(words, recorded_hs["counts"].tolist())))
    assert ours.vocab.index_to_key == words
    ours.wv.vectors[:] = recorded_hs[f"syn0_sg{sg}"]
    ours.syn1[:] = recorded_hs[f"syn1_sg{sg}"]
    tokens, starts = recorded_hs["sentences"].tolist(), recorded_hs["sentence_starts"]
    sentences = [tokens[a:b] for a, b in zip(starts[:-1], starts[1:])]
    np.testing.assert_allclose(ours.score(sentences), recorded_hs[f"score_sg{sg}"], rtol=2e-4, atol=1e-3)
