"""Record gensim's answers on a small corpus so the test suite can check sparsemb without gensim.

Writes, under tests/fixtures/:

* gensim_word2vec.json -- the corpus (a few thousand Zipf-distributed tokens with ties, rare words and
  one over-long line), gensim's vocabulary (words in order, counts, subsampling thresholds) for several
  min_count / max_vocab_size / max_final_vocab settings, small evaluation files, and gensim's results
  for most_similar, most_similar_cosmul, doesnt_match, evaluate_word_analogies and evaluate_word_pairs
  on the vectors below;
* gensim_vectors.bin, gensim_vectors.txt -- those vectors as gensim writes word2vec binary and text.

    python scripts/record_gensim_fixtures.py
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


if __name__ == "__main__":
    main()
