"""A built-in demonstration: a small generated language with planted analogies.

Each word of the language belongs to a *pair* (france/paris, king/queen, walk/walked) and plays one
of the two *roles* of its family (country/capital, masculine/feminine, present/past). A sentence
about a word mixes words of its pair's topic, words of its role, and filler, so a trained vector is
roughly topic + role, and ``paris - france + germany`` lands on ``berlin``. The corpus is generated
deterministically from a seed, written to a text file, trained on like any user corpus, and the planted
analogies are scored with :meth:`KeyedVectors.evaluate_word_analogies`.
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
import time

import numpy as np

from .._io import atomic_write
from .corpus import WordTable, count_file
from .keyedvectors import KeyedVectors
from .model import Word2Vec

#: family -> (role words of the first member, role words of the second, [(first, second, topic words)])
FAMILIES = {
    "capital-country": (
        ["country", "nation", "borders", "government", "province", "population"],
        ["city", "capital", "mayor", "streets", "downtown", "metro"],
        [("france", "paris", ["french", "wine"]), ("germany", "berlin", ["german", "beer"]),
         ("italy", "rome", ["italian", "pasta"]), ("spain", "madrid", ["spanish", "flamenco"]),
         ("japan", "tokyo", ["japanese", "sushi"]), ("china", "beijing", ["chinese", "tea"]),
         ("russia", "moscow", ["russian", "winter"]), ("egypt", "cairo", ["egyptian", "nile"]),
         ("greece", "athens", ["greek", "olives"]), ("canada", "ottawa", ["canadian", "maple"]),
         ("peru", "lima", ["peruvian", "andes"]), ("kenya", "nairobi", ["kenyan", "safari"])],
    ),
    "gender": (
        ["he", "his", "him", "mr", "gentleman"],
        ["she", "her", "hers", "mrs", "lady"],
        [("king", "queen", ["royal", "throne"]), ("man", "woman", ["adult", "job"]),
         ("boy", "girl", ["young", "school"]), ("father", "mother", ["parent", "home"]),
         ("son", "daughter", ["child", "born"]), ("brother", "sister", ["sibling", "childhood"]),
         ("uncle", "aunt", ["relative", "visit"]), ("husband", "wife", ["marriage", "wedding"]),
         ("prince", "princess", ["castle", "heir"]), ("actor", "actress", ["film", "stage"]),
         ("waiter", "waitress", ["restaurant", "tips"]), ("nephew", "niece", ["cousin", "holiday"])],
    ),
    "past-tense": (
        ["today", "now", "usually", "often", "tomorrow"],
        ["yesterday", "ago", "once", "earlier", "last"],
        [("walk", "walked", ["park", "path"]), ("eat", "ate", ["food", "dinner"]),
         ("go", "went", ["trip", "station"]), ("see", "saw", ["view", "eyes"]),
         ("write", "wrote", ["letter", "pen"]), ("run", "ran", ["race", "track"]),
         ("sing", "sang", ["song", "choir"]), ("swim", "swam", ["pool", "lake"]),
         ("take", "took", ["bag", "keys"]), ("give", "gave", ["gift", "present"]),
         ("speak", "spoke", ["words", "speech"]), ("drive", "drove", ["car", "road"])],
    ),
}

FILLER = ["the", "a", "of", "and", "in", "is", "to", "with", "that", "for"]


def generate_corpus(path, n_sentences=20000, seed=0):
    """Write the demo corpus to ``path``: one sentence per line, the same text for the same seed.

    Returns
    -------
    int
        Number of tokens written.
    """
    rng = np.random.default_rng(seed)
    entries = [(first_roles, second_roles, pair)
               for first_roles, second_roles, pairs in FAMILIES.values() for pair in pairs]
    tokens = 0
    with atomic_write(path) as raw, io.TextIOWrapper(raw, encoding="utf-8") as f:
        for _ in range(n_sentences):
            first_roles, second_roles, (a, b, topic) = entries[rng.integers(len(entries))]
            second = rng.random() < 0.5
            words = [b if second else a]
            words += list(rng.choice(second_roles if second else first_roles, 2))
            words += list(rng.choice(topic, 2))
            words += list(rng.choice(FILLER, 3))
            rng.shuffle(words)
            f.write(" ".join(words) + "\n")
            tokens += len(words)
    return tokens


def write_analogies(path):
    """Write every planted analogy (both directions within each family) in questions-words format."""
    with atomic_write(path) as raw, io.TextIOWrapper(raw, encoding="utf-8") as f:
        for family, (_, _, pairs) in FAMILIES.items():
            f.write(f": {family}\n")
            for a1, b1, _ in pairs:
                for a2, b2, _ in pairs:
                    if a1 != a2:
                        f.write(f"{a1} {b1} {a2} {b2}\n{b1} {a1} {b2} {a2}\n")


def compile_counting(seed=1):
    """Compile (or load from the cache) the tokenizer's kernels that count :func:`run_demo`'s corpus
    file, ``count_block`` and ``insert_words`` (with ``_wide_space``), by counting a small demo corpus:
    for a first run that compiles its other kernels in another process at the same time.

    Parameters
    ----------
    seed : int
        Seed of the small corpus (any seed compiles the same kernels).
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "corpus.txt")
        generate_corpus(path, n_sentences=200, seed=seed)
        table, _, _ = count_file(path)
        WordTable.from_words(table.words(range(table.n_words)))  # as a training pass makes its table


def compile_kernels(sg=1, vector_size=50, seed=1, quiet=False, shared_negatives=True):
    """Compile (or load from the cache) what :func:`run_demo` with these settings trains with, but none
    of the tokenizer's kernels: the training kernel and the alias table.

    Trains a throwaway model for one epoch on one sentence per planted pair, held in memory (an
    iterable corpus is counted and encoded in Python, a file by the tokenizer's kernels), so that a
    first demo can compile its training kernel here while another process compiles the tokenizer.
    The kernels' argument types are those of :func:`run_demo`'s run, whatever the corpus.

    Parameters
    ----------
    sg, vector_size, seed, shared_negatives
        As :func:`run_demo`.
    quiet : bool
        No notice that a first run compiles.
    """
    sentences = [[a, b, *topic] for _, _, pairs in FAMILIES.values() for a, b, topic in pairs]
    model = Word2Vec(sg=sg, vector_size=vector_size, window=5, min_count=1, workers=1, seed=seed,
                     shared_negatives=shared_negatives, quiet=quiet)
    model.build_vocab(sentences)  # says, unless quiet, that a first run compiles
    model.train(sentences, total_examples=len(sentences), epochs=1, quiet=True)


def run_demo(sg=1, vector_size=50, epochs=10, workers=None, seed=1, n_sentences=20000, directory=None,
             quiet=False, out=None, shared_negatives=True, overwrite=False):
    """Generate the demo corpus, train on it, save and reload the vectors, and report.

    Parameters
    ----------
    sg : {0, 1}
        Skip-gram (1) or CBOW (0).
    vector_size, epochs, workers, seed
        Training settings (see :class:`Word2Vec`).
    n_sentences : int
        Size of the generated corpus.
    directory : str, optional
        Where to write corpus.txt, analogies.txt and vectors.bin; a temporary directory by default.
    quiet : bool
        No progress bar.
    out : file, optional
        Where the report goes; default standard output.
    shared_negatives : bool
        Skip-gram with one set of noise words per centre word (see :class:`Word2Vec`).
    overwrite : bool
        Replace those three files if ``directory`` has them already.

    Returns
    -------
    float
        Accuracy on the planted analogies, in [0, 1].

    Raises
    ------
    FileExistsError
        If ``directory`` holds one of the three files and ``overwrite`` is false (checked before
        anything is written).
    """
    out = sys.stdout if out is None else out
    with tempfile.TemporaryDirectory() as tmp:
        where = directory or tmp
        corpus = os.path.join(where, "corpus.txt")
        questions = os.path.join(where, "analogies.txt")
        vectors = os.path.join(where, "vectors.bin")
        for path in (corpus, questions, vectors):
            if directory and not overwrite and os.path.lexists(path):
                raise FileExistsError(f"{path} already exists; choose another directory or allow "
                                      f"replacing the demo's files (--force)")
        n_tokens = generate_corpus(corpus, n_sentences=n_sentences, seed=seed)
        write_analogies(questions)
        name = "skip-gram" if sg else "CBOW"
        print(f"{name}: training on {n_tokens} tokens of a generated language ({corpus})", file=out)
        t0 = time.perf_counter()
        model = Word2Vec(corpus_file=corpus, sg=sg, vector_size=vector_size, window=5, min_count=5,
                         epochs=epochs, workers=workers, seed=seed, shared_negatives=shared_negatives,
                         quiet=quiet)
        model.wv.save_word2vec_format(vectors, binary=True)
        wv = KeyedVectors.load_word2vec_format(vectors, binary=True)
        print(f"trained in {time.perf_counter() - t0:.1f} s, final loss "
              f"{model.epoch_losses[-1]:.3f}; vectors written to {vectors} and read back", file=out)
        for word in ("paris", "queen", "went"):
            near = ", ".join(f"{w} {s:.2f}" for w, s in wv.most_similar(word, topn=5))
            print(f"  nearest to {word}: {near}", file=out)
        for a, b, c in (("france", "paris", "japan"), ("man", "woman", "king"), ("go", "went", "eat")):
            guess = wv.most_similar(positive=[b, c], negative=[a], topn=1)[0][0]
            print(f"  {a} is to {b} as {c} is to {guess}", file=out)
        score, sections = wv.evaluate_word_analogies(questions)
        for s in sections:
            right, wrong = len(s["correct"]), len(s["incorrect"])
            print(f"  {s['section']}: {right}/{right + wrong} analogies right", file=out)
        print(f"{name}: planted-analogy accuracy {100 * score:.1f}%", file=out)
        return score
