"""Record gensim's answers on a small corpus so the test suite can check sparsemb without gensim.

Writes, under tests/fixtures/:

* gensim_word2vec.json -- the corpus (a few thousand Zipf-distributed tokens with ties, rare words and
  one over-long line), gensim's vocabulary (words in order, counts, subsampling thresholds) for several
  min_count / max_vocab_size / max_final_vocab settings, small evaluation files, and gensim's results
  for most_similar, most_similar_cosmul, doesnt_match, evaluate_word_analogies and evaluate_word_pairs
  on the vectors below;
* gensim_vectors.bin, gensim_vectors.txt -- those vectors as gensim writes word2vec binary and text;
* gensim_keyedvectors.json -- gensim's answers of the KeyedVectors methods (distance, n_similarity,
  closer_than, rank, get_mean_vector, most_similar with vectors / clip / topn=None, ...) on
  gensim_vectors.bin, and gensim_kv.kv (+ .npy side file): those vectors as gensim's ``save`` pickles them.

* gensim_model/ (+ gensim_model.npz) -- a small Word2Vec as gensim saves it (pickle and .npy side
  files), and gensim_trainer.json -- gensim's vocabulary after build_vocab(update=True) and its loss;
* gensim_hs.npz -- gensim's Huffman tree (codes, points) of lee_background's vocabulary, and a small
  hierarchical-softmax model's tables and sentence scores.

    python scripts/record_gensim_fixtures.py                 # everything (retrains the small model)
    python scripts/record_gensim_fixtures.py keyedvectors    # only the KeyedVectors files, from the .bin
    python scripts/record_gensim_fixtures.py hs              # only gensim_hs.npz
    python scripts/record_gensim_fixtures.py model           # only the saved model and trainer answers
"""
from __future__ import annotations

import json
import os
import tempfile

import gensim
import numpy as np
from gensim.models import Word2Vec
from gensim.models.word2vec import LineSentence

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")

VOCAB_CASES = [
    {"min_count": 1}, {"min_count": 3}, {"min_count": 5},
    {"min_count": 1, "max_vocab_size": 40}, {"min_count": 2, "max_vocab_size": 25},
    {"min_count": 1, "max_final_vocab": 30},
]
SAMPLES = [1e-3, 1e-2, 0.0, 5.0]


def make_corpus(seed=0):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(120)] + ["Über", "naïve", "東京"]
    p = 1.0 / np.arange(1, len(words) + 1)
    p /= p.sum()
    lines = []
    for _ in range(300):
        n = int(rng.integers(0, 25))
        lines.append(" ".join(rng.choice(words, n, p=p)))
    lines.append(" ".join(rng.choice(words[:10], 10050)))  # split at 10000 tokens, as gensim does
    return lines


def main():
    lines = make_corpus()
    tmp = tempfile.mkdtemp()
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

    vocab = []
    for case in VOCAB_CASES:
        model = Word2Vec(vector_size=4, **case)
        model.build_vocab(LineSentence(corpus))
        entry = dict(case, words=list(model.wv.index_to_key),
                     counts=[int(model.wv.get_vecattr(w, "count")) for w in model.wv.index_to_key],
                     corpus_count=model.corpus_count)
        entry["sample_int"] = {}
        for sample in SAMPLES:
            model = Word2Vec(vector_size=4, sample=sample, **case)
            model.build_vocab(LineSentence(corpus))
            entry["sample_int"][repr(sample)] = [int(model.wv.get_vecattr(w, "sample_int"))
                                                 for w in model.wv.index_to_key]
        vocab.append(entry)

    model = Word2Vec(LineSentence(corpus), vector_size=8, min_count=3, sg=1, epochs=20, workers=1, seed=3)
    wv = model.wv
    model.wv.save_word2vec_format(os.path.join(OUT, "gensim_vectors.bin"), binary=True)
    model.wv.save_word2vec_format(os.path.join(OUT, "gensim_vectors.txt"), binary=False)

    words = wv.index_to_key
    analogies = os.path.join(tmp, "analogies.txt")
    with open(analogies, "w", encoding="utf-8") as f:
        f.write(": first\n")
        for i in range(0, 24, 4):
            f.write(" ".join(w.upper() for w in words[i : i + 4]) + "\n")
        f.write(f"{words[0]} {words[1]} unknownword {words[2]}\n")
        f.write(": second\n")
        for i in range(1, 29, 3):
            a, b, c, d = words[i : i + 4]
            if i % 2:  # half the questions get gensim's own answer, so some are right
                d = wv.most_similar(positive=[b, c], negative=[a], topn=1)[0][0]
            f.write(f"{a} {b} {c} {d}\n")
    pairs = os.path.join(tmp, "pairs.tsv")
    rng = np.random.default_rng(1)
    with open(pairs, "w", encoding="utf-8") as f:
        f.write("# word1\tword2\tscore\n")
        for i in range(40):
            a, b = rng.choice(words, 2, replace=False)
            f.write(f"{a}\t{b}\t{rng.random() * 10:.2f}\n")
        f.write("unknownword\tw1\t3.0\n")

    score, sections = wv.evaluate_word_analogies(analogies)
    pearson, spearman, oov = wv.evaluate_word_pairs(pairs)
    queries = [w for w in ("w0", "w5", "Über") if w in wv]
    fixture = {
        "gensim_version": gensim.__version__,
        "corpus": lines,
        "vocab": vocab,
        "vectors_words": list(words),
        "analogies_file": open(analogies, encoding="utf-8").read(),
        "pairs_file": open(pairs, encoding="utf-8").read(),
        "analogy_score": score,
        "analogy_sections": [{"section": s["section"], "correct": len(s["correct"]),
                              "incorrect": len(s["incorrect"])} for s in sections],
        "pairs": [float(pearson[0]), float(spearman[0]), float(oov)],
        "most_similar": {w: wv.most_similar(w, topn=5) for w in queries},
        "most_similar_neg": wv.most_similar(positive=[words[1], words[2]], negative=[words[0]], topn=5),
        "most_similar_cosmul": wv.most_similar_cosmul(positive=[words[1], words[2]], negative=[words[0]], topn=5),
        "doesnt_match": [words[:4] + [words[20]], wv.doesnt_match(words[:4] + [words[20]])],
        "similarity": [words[0], words[1], float(wv.similarity(words[0], words[1]))],
    }
    with open(os.path.join(OUT, "gensim_word2vec.json"), "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False)
    print("wrote", os.path.abspath(OUT))


def record_keyedvectors():
    from gensim.models import KeyedVectors

    wv = KeyedVectors.load_word2vec_format(os.path.join(OUT, "gensim_vectors.bin"), binary=True)
    words = wv.index_to_key
    a, b, c, d = words[0], words[3], words[7], words[12]

    def pairs(result):
        return [[k, float(s)] for k, s in result]

    fixture = {
        "gensim_version": gensim.__version__,
        "distance": float(wv.distance(a, b)),
        "similarity_self": float(wv.similarity(a, a)),
        "distances": wv.distances(a, [b, c, d]).tolist(),
        "distances_all": wv.distances(a).tolist(),
        "n_similarity": float(wv.n_similarity([a, b], [c, d])),
        "closer_than": wv.closer_than(a, c),
        "rank": wv.rank(a, c),
        "most_similar_to_given": wv.most_similar_to_given(a, [b, c, d]),
        "relative_cosine_similarity": float(wv.relative_cosine_similarity(a, b, 5)),
        "mean": wv.get_mean_vector([a, b, "not-a-word"], weights=[1, 2, 5]).tolist(),
        "mean_raw_post": wv.get_mean_vector([a, b], pre_normalize=False, post_normalize=True).tolist(),
        "most_similar_vector": pairs(wv.most_similar(wv[a], topn=5)),
        "most_similar_rows": pairs(wv.most_similar(positive=wv.vectors[:3], topn=5)),
        "most_similar_weighted": pairs(wv.most_similar(positive=[(a, 2.0), b], negative=[(c, 0.5)], topn=5)),
        "most_similar_all": wv.most_similar(a, topn=None).tolist(),
        "most_similar_clip": pairs(wv.most_similar(a, topn=5, clip_start=5, clip_end=40)),
        "most_similar_restrict": pairs(wv.most_similar(a, topn=5, restrict_vocab=20)),
        "similar_by_vector": pairs(wv.similar_by_vector(wv[b], topn=5)),
        "rank_by_centrality": [[float(s), w] for s, w in wv.rank_by_centrality([a, b, c, d])],
        "cosine_similarities": KeyedVectors.cosine_similarities(wv[a], wv.vectors[:6]).tolist(),
        "words": [a, b, c, d],
    }
    wv.sort_by_descending_frequency()
    fixture["sorted_keys"] = wv.index_to_key
    small = KeyedVectors(8)
    small.add_vectors(words[:10], wv.vectors[:10])
    for i, w in enumerate(words[:10]):
        small.set_vecattr(w, "count", 100 - 3 * i)
    small.save(os.path.join(OUT, "gensim_kv.kv"), separately=["vectors"])
    fixture["kv_keys"] = small.index_to_key
    with open(os.path.join(OUT, "gensim_keyedvectors.json"), "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False)
    print("wrote gensim_keyedvectors.json, gensim_kv.kv")


def record_hierarchical_softmax():
    """gensim_hs.npz: gensim's Huffman tree of lee_background's vocabulary (min_count 5) and, for a small
    hs model trained on it (sg and CBOW), its tables and ``score`` of the first 30 sentences."""
    lee = os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", "lee_background.cor")
    corpus = list(LineSentence(lee))
    arrays = {}
    for sg in (1, 0):
        model = Word2Vec(corpus, vector_size=8, min_count=5, hs=1, negative=0, sg=sg, epochs=2, workers=1, seed=5)
        wv = model.wv
        codes = [np.asarray(wv.get_vecattr(i, "code"), np.uint8) for i in range(len(wv))]
        points = [np.asarray(wv.get_vecattr(i, "point"), np.int32) for i in range(len(wv))]
        arrays.update(words=np.array(wv.index_to_key), counts=np.array([wv.get_vecattr(i, "count")
                                                                       for i in range(len(wv))]),
                      codes=np.concatenate(codes), points=np.concatenate(points),
                      offsets=np.concatenate([[0], np.cumsum([len(c) for c in codes])]))
        arrays[f"syn0_sg{sg}"], arrays[f"syn1_sg{sg}"] = wv.vectors, model.syn1
        arrays[f"score_sg{sg}"] = model.score(corpus[:30], total_sentences=30)
    lengths = [len(s) for s in corpus[:30]]
    arrays["sentences"] = np.array([w for s in corpus[:30] for w in s])
    arrays["sentence_starts"] = np.concatenate([[0], np.cumsum(lengths)])
    np.savez_compressed(os.path.join(OUT, "gensim_hs.npz"), **arrays)
    print("wrote gensim_hs.npz")


def record_model():
    """gensim_model/: a small gensim Word2Vec (hs and negative sampling) saved with every array in a
    side file, and gensim_model.npz, its arrays to check a load against; gensim_trainer.json: gensim's
    vocabulary after ``build_vocab(update=True)`` and its running loss, on the fixture corpus."""
    lines = make_corpus()
    sentences = [line.split() for line in lines]
    model = Word2Vec(sentences, vector_size=8, min_count=2, hs=1, negative=3, epochs=1, workers=1, seed=4)
    os.makedirs(os.path.join(OUT, "gensim_model"), exist_ok=True)
    model.save(os.path.join(OUT, "gensim_model", "w2v.model"), sep_limit=0)
    np.savez_compressed(os.path.join(OUT, "gensim_model.npz"), words=np.array(model.wv.index_to_key),
                        counts=np.array([model.wv.get_vecattr(i, "count") for i in range(len(model.wv))]),
                        vectors=model.wv.vectors, syn1neg=model.syn1neg, syn1=model.syn1)
    first, second = sentences[:150], sentences[150:300] + [["brand", "new", "words", "brand", "new"]] * 3
    grown = Word2Vec(vector_size=8, min_count=3, workers=1)
    grown.build_vocab(first)
    before = list(grown.wv.index_to_key)
    grown.build_vocab(second, update=True)
    lossy = Word2Vec(sentences, vector_size=8, min_count=2, epochs=3, workers=1, seed=4, compute_loss=True)
    trainer = {"gensim_version": gensim.__version__, "update_before": before, "update_words": grown.wv.index_to_key,
               "update_counts": [int(grown.wv.get_vecattr(w, "count")) for w in grown.wv.index_to_key],
               "loss": float(lossy.get_latest_training_loss()), "loss_words": int(lossy.corpus_total_words)}
    with open(os.path.join(OUT, "gensim_trainer.json"), "w", encoding="utf-8") as f:
        json.dump(trainer, f, ensure_ascii=False)
    print("wrote gensim_model/, gensim_model.npz, gensim_trainer.json")


if __name__ == "__main__":
    import sys

    parts = sys.argv[1:] or ["word2vec", "keyedvectors", "hs", "model"]
    if "word2vec" in parts:
        main()
    if "keyedvectors" in parts:
        record_keyedvectors()
    if "hs" in parts:
        record_hierarchical_softmax()
    if "model" in parts:
        record_model()
