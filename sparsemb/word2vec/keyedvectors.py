"""KeyedVectors: words and their vectors, similarity queries, evaluation, and word2vec C files.

Queries and evaluations follow gensim 4's definitions, so scores computed here can be compared with
scores computed by gensim. Vectors files are the word2vec C tool's text and binary formats.
"""
from __future__ import annotations

import itertools
import os
import warnings
from numbers import Integral

import numpy as np

from .._io import atomic_write

_KEY_TYPES = (str, Integral)


def _as_list(items):
    if items is None:
        return []
    if isinstance(items, (str, Integral, np.ndarray)):
        return [items]
    return list(items)


def _unit(v):
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


class KeyedVectors:
    """Vectors looked up by key.

    Parameters
    ----------
    vectors : ndarray, shape (V, dim)
        One row per key (kept, not copied).
    index_to_key : list of str
        The keys, in row order.
    counts : array-like of int, shape (V,), optional
        Corpus counts of the keys, when known.

    Attributes
    ----------
    vectors : ndarray, shape (V, dim)
    index_to_key : list of str
    key_to_index : dict of str to int
    """

    def __init__(self, vectors, index_to_key, counts=None):
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(index_to_key):
            raise ValueError(
                f"vectors must have shape ({len(index_to_key)}, dim) for {len(index_to_key)} keys, "
                f"got {vectors.shape}"
            )
        self.vectors = vectors
        self.index_to_key = list(index_to_key)
        self.key_to_index = {k: i for i, k in enumerate(self.index_to_key)}
        if len(self.key_to_index) != len(self.index_to_key):
            raise ValueError("keys must be distinct")
        self.counts = None if counts is None else np.asarray(counts, dtype=np.int64)
        self.norms = None

    # -- lookup ---------------------------------------------------------------------------------
    @property
    def vector_size(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self):
        return len(self.index_to_key)

    def __contains__(self, key):
        return key in self.key_to_index

    def has_index_for(self, key) -> bool:
        return key in self.key_to_index

    def get_index(self, key) -> int:
        """Row of ``key`` (an int is taken as a row already).

        Raises
        ------
        KeyError
            If the key is not in the vocabulary.
        """
        if isinstance(key, Integral) and not isinstance(key, str):
            if not 0 <= key < len(self.index_to_key):
                raise KeyError(f"index {key} out of range for {len(self.index_to_key)} keys")
            return int(key)
        try:
            return self.key_to_index[key]
        except KeyError:
            raise KeyError(f"word {key!r} not in vocabulary") from None

    def get_vector(self, key, norm=False):
        """Vector of ``key``, shape (dim,); unit length when ``norm``."""
        i = self.get_index(key)
        if norm:
            self.fill_norms()
            return self.vectors[i] / self.norms[i] if self.norms[i] > 0 else self.vectors[i]
        return self.vectors[i]

    def __getitem__(self, keys):
        if isinstance(keys, _KEY_TYPES):
            return self.get_vector(keys)
        return np.vstack([self.get_vector(k) for k in keys])

    def fill_norms(self, force=False):
        """Compute (and cache) the L2 norm of every row; ``force`` recomputes after the vectors changed."""
        if self.norms is None or force:
            self.norms = np.linalg.norm(self.vectors, axis=1)

    def get_normed_vectors(self):
        """All vectors scaled to unit length (zero rows stay zero), shape (V, dim)."""
        self.fill_norms()
        return self.vectors / np.where(self.norms > 0, self.norms, 1)[:, None]

    # -- queries --------------------------------------------------------------------------------
    def _mean(self, positive, negative):
        """gensim's get_mean_vector: weighted mean of unit vectors (raw ndarrays as given), unit length."""
        items = [(k, 1.0) for k in _as_list(positive)] + [(k, -1.0) for k in _as_list(negative)]
        if not items:
            raise ValueError("cannot compute similarity with no input")
        mean = np.zeros(self.vector_size, dtype=np.float64)
        total = 0.0
        exclude = set()
        for key, weight in items:
            if isinstance(key, tuple):
                key, weight = key
            if isinstance(key, np.ndarray):
                vec = key
            else:
                vec = self.get_vector(key, norm=True)
                exclude.add(self.get_index(key))
            mean += weight * vec
            total += abs(weight)
        return _unit(mean / total), exclude

    def _top(self, dists, exclude, topn):
        best = np.argsort(-dists, kind="stable")[: topn + len(exclude)]
        return [(self.index_to_key[i], float(dists[i])) for i in best if i not in exclude][:topn]

    def most_similar(self, positive=None, negative=None, topn=10, restrict_vocab=None):
        """Keys closest (cosine) to the mean of the unit vectors of ``positive`` minus ``negative``.

        Parameters
        ----------
        positive, negative : key, ndarray, (key, weight) or a list of them
            Keys weigh +1 (positive) or -1 (negative) unless a weight is given.
        topn : int or None
            Number of results; None returns the similarity to every key, shape (V,) or (restrict_vocab,).
        restrict_vocab : int, optional
            Search only the first ``restrict_vocab`` keys.

        Returns
        -------
        list of (str, float)
            Input keys are left out.

        Raises
        ------
        KeyError
            If a key is not in the vocabulary.
        """
        if isinstance(topn, Integral) and topn < 1:
            return []
        mean, exclude = self._mean(positive, negative)
        self.fill_norms()
        end = restrict_vocab or len(self.vectors)
        with np.errstate(invalid="ignore", divide="ignore"):
            dists = (self.vectors[:end] @ mean) / self.norms[:end]
        if not topn:
            return dists
        return self._top(dists, exclude, topn)

    def similar_by_word(self, word, topn=10, restrict_vocab=None):
        """Alias of ``most_similar(word, topn=topn, restrict_vocab=restrict_vocab)``."""
        return self.most_similar(word, topn=topn, restrict_vocab=restrict_vocab)

    def most_similar_cosmul(self, positive=None, negative=None, topn=10, restrict_vocab=None):
        """3CosMul (Levy and Goldberg 2014): product of ``(1 + cos) / 2`` over positive keys divided by
        that over negative keys (+1e-6), as gensim defines it. Arguments as :meth:`most_similar`."""
        if isinstance(topn, Integral) and topn < 1:
            return []
        positive, negative = _as_list(positive), _as_list(negative)
        if not positive:
            raise ValueError("cannot compute similarity with no input")
        self.fill_norms()
        end = restrict_vocab or len(self.vectors)
        normed = self.vectors[:end] / np.where(self.norms[:end] > 0, self.norms[:end], 1)[:, None]
        exclude = {self.get_index(k) for k in positive + negative if not isinstance(k, np.ndarray)}

        def shifted(keys):
            vecs = [k if isinstance(k, np.ndarray) else self.get_vector(k, norm=True) for k in keys]
            return [(1 + normed @ v) / 2 for v in vecs]

        dists = np.prod(shifted(positive), axis=0) / (np.prod(shifted(negative), axis=0) + 0.000001)
        if not topn:
            return dists
        return self._top(dists, exclude, topn)

    def similarity(self, w1, w2) -> float:
        """Cosine similarity of two keys."""
        return float(np.dot(self.get_vector(w1, norm=True), self.get_vector(w2, norm=True)))

    def doesnt_match(self, words):
        """The key furthest from the mean of the unit vectors of ``words`` (unknown words are ignored)."""
        used = [w for w in words if w in self.key_to_index]
        if len(used) != len(words):
            warnings.warn(f"ignoring words not in the vocabulary: {sorted(set(words) - set(used))}")
        if not used:
            raise ValueError("cannot select a word from an empty list")
        vecs = np.vstack([self.get_vector(w, norm=True) for w in used])
        dists = vecs @ _unit(vecs.mean(axis=0))
        return sorted(zip(dists, used), reverse=True)[-1][1]

    # -- evaluation -----------------------------------------------------------------------------
    def _ok_vocab(self, restrict_vocab, case_insensitive):
        keys = self.index_to_key[:restrict_vocab]
        fold = str.upper if case_insensitive else (lambda k: k)
        # Reversed, so that the most frequent of several case variants wins, as in gensim.
        return {fold(k): i for i, k in reversed(list(enumerate(keys)))}, fold

    def evaluate_word_analogies(self, analogies, restrict_vocab=300000, case_insensitive=True,
                                dummy4unknown=False):
        """Accuracy on an analogy file ("a b c d": a is to b as c is to d), as gensim computes it.

        Each question is answered by 3CosAdd over the first ``restrict_vocab`` keys, ignoring the three
        question words; questions with a word outside them are skipped (counted wrong if
        ``dummy4unknown``).

        Parameters
        ----------
        analogies : str or os.PathLike
            File with ``: section`` lines followed by 4-word lines (e.g. questions-words.txt).
        restrict_vocab : int
        case_insensitive : bool
            Compare words upper-cased; a key's most frequent case variant stands for it.
        dummy4unknown : bool

        Returns
        -------
        score : float
            Overall accuracy in [0, 1] (0.0 when nothing was evaluated).
        sections : list of dict
            ``{"section": name, "correct": [...], "incorrect": [...]}`` per section, then a
            ``"Total accuracy"`` entry.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            If a question comes before any section header, or a line is not valid UTF-8 (naming the
            file and line).
        """
        ok_vocab, fold = self._ok_vocab(restrict_vocab, case_insensitive)
        sections, questions = [], []
        for line_no, line in _lines(analogies):
            if line.startswith(": "):
                sections.append({"section": line.lstrip(": ").strip(), "correct": [], "incorrect": []})
                continue
            if not sections:
                raise ValueError(f"{analogies}: missing section header before line {line_no}")
            words = [fold(w) for w in line.split()]
            if len(words) != 4:
                continue
            if all(w in ok_vocab for w in words):
                questions.append((sections[-1], tuple(words)))
            elif dummy4unknown:
                sections[-1]["incorrect"].append(tuple(words))
        predicted = self._answer([q for _, q in questions], ok_vocab, fold, restrict_vocab)
        for (section, quad), guess in zip(questions, predicted):
            section["correct" if guess == quad[3] else "incorrect"].append(quad)
        total = {
            "section": "Total accuracy",
            "correct": list(itertools.chain.from_iterable(s["correct"] for s in sections)),
            "incorrect": list(itertools.chain.from_iterable(s["incorrect"] for s in sections)),
        }
        sections.append(total)
        n = len(total["correct"]) + len(total["incorrect"])
        return (len(total["correct"]) / n if n else 0.0), sections

    def _answer(self, quads, ok_vocab, fold, restrict_vocab, batch=512):
        """3CosAdd answers to (a, b, c, _) questions, in batches of matrix products."""
        if not quads:
            return []
        normed = self.get_normed_vectors()[:restrict_vocab]
        idx = np.array([[ok_vocab[w] for w in q[:3]] for q in quads], dtype=np.int64)
        answers = []
        for lo in range(0, len(quads), batch):
            a, b, c = idx[lo : lo + batch].T
            mean = (normed[b] + normed[c] - normed[a]) / 3.0
            mean /= np.linalg.norm(mean, axis=1, keepdims=True)
            sims = mean @ normed.T
            rows = np.arange(sims.shape[0])
            for col in (a, b, c):
                sims[rows, col] = -np.inf
            k = min(5, sims.shape[1] - 1)
            top = np.argpartition(-sims, k, axis=1)[:, :k] if k > 0 else np.zeros((len(rows), 0), int)
            for r, q in enumerate(quads[lo : lo + batch]):
                cand = top[r][np.argsort(-sims[r, top[r]], kind="stable")]
                guess = None
                for i in cand:
                    guess = fold(self.index_to_key[i])
                    if guess in ok_vocab and guess not in q[:3]:
                        break
                answers.append(guess)
        return answers

    def evaluate_word_pairs(self, pairs, delimiter="\t", restrict_vocab=300000, case_insensitive=True,
                            dummy4unknown=False):
        """Correlation of cosine similarities with human judgements, as gensim computes it.

        Parameters
        ----------
        pairs : str or os.PathLike
            Lines ``word1<delimiter>word2<delimiter>score``; lines starting with ``#`` are comments.
        delimiter : str
        restrict_vocab : int
        case_insensitive : bool
        dummy4unknown : bool
            Give pairs with unknown words similarity 0 instead of skipping them.

        Returns
        -------
        pearson, spearman : scipy results
            ``(statistic, pvalue)`` pairs.
        oov_ratio : float
            Percentage of pairs with a word outside the first ``restrict_vocab`` keys.

        Raises
        ------
        ValueError
            If fewer than two pairs could be scored, or a line is not valid UTF-8 (naming the file and
            line).
        """
        from scipy import stats  # costs most of a second to import; only evaluation needs it

        ok_vocab, fold = self._ok_vocab(restrict_vocab, case_insensitive)
        gold, model = [], []
        oov = 0
        for _, line in _lines(pairs):
            if not line or line.startswith("#"):
                continue
            try:
                a, b, sim = [fold(w) for w in line.split(delimiter)]
                sim = float(sim)
            except ValueError:
                continue
            if a not in ok_vocab or b not in ok_vocab:
                oov += 1
                if dummy4unknown:
                    gold.append(sim)
                    model.append(0.0)
                continue
            gold.append(sim)
            model.append(self.similarity(ok_vocab[a], ok_vocab[b]))
        if len(gold) < 2:
            found = "no pair" if not gold else "only one pair"
            raise ValueError(f"{pairs}: {found} could be scored (bad format or words outside the vocabulary); "
                             f"a correlation needs at least two")
        spearman = stats.spearmanr(gold, model)
        pearson = stats.pearsonr(gold, model)
        oov_ratio = 100.0 * oov / (len(gold) if dummy4unknown else len(gold) + oov)
        return pearson, spearman, oov_ratio

    # -- word2vec C files -----------------------------------------------------------------------
    def save_word2vec_format(self, path, binary=False):
        """Write the word2vec C format: a ``"V dim"`` header, then one key and its vector per entry.

        Text: ``key v1 ... vdim`` per line, numbers with 9 significant digits (float32 round-trips).
        Binary: ``key`` UTF-8, a space, ``dim`` little-endian float32, a newline (as the C tool writes).
        The file is written under a temporary name in the same directory and then renamed.

        Raises
        ------
        ValueError
            If a key is empty or contains whitespace (the format could not be read back).
        FileNotFoundError
            If the directory does not exist.
        """
        path = os.fspath(path)
        for key in self.index_to_key:
            if not isinstance(key, str) or len(key.split()) != 1 or key.split()[0] != key:
                raise ValueError(f"key {key!r} cannot be stored in a word2vec file (empty or has whitespace)")
        vectors = np.ascontiguousarray(self.vectors, dtype="<f4")
        header = f"{vectors.shape[0]} {vectors.shape[1]}\n".encode()
        with atomic_write(path) as fout:
            fout.write(header)
            if binary:
                for key, row in zip(self.index_to_key, vectors):
                    fout.write(key.encode("utf-8") + b" " + row.tobytes() + b"\n")
            else:
                fmt = " ".join(["%.9g"] * vectors.shape[1])
                for key, row in zip(self.index_to_key, vectors.tolist()):
                    fout.write((key + " " + fmt % tuple(row) + "\n").encode("utf-8"))

    @classmethod
    def load_word2vec_format(cls, path, binary=False, unicode_errors="strict"):
        """Read a word2vec C text or binary file (as written by the C tool, gensim or this class).

        Parameters
        ----------
        path : str or os.PathLike
        binary : bool
        unicode_errors : str
            How to treat invalid UTF-8 in keys ("strict" raises, "replace", "ignore").

        Returns
        -------
        KeyedVectors
            float32 vectors. A repeated key keeps its first vector (with a warning).

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            If the file is truncated or corrupt; the message names the file and where it broke.
        """
        path = os.fspath(path)
        with open(path, "rb") as fin:
            data = fin.read()
        end = data.find(b"\n")
        try:
            n, dim = (int(x) for x in data[: end if end >= 0 else len(data)].split())
            if n < 0 or dim < 1:
                raise ValueError
        except ValueError:
            raise ValueError(f"{path}: bad header {data[:60]!r}, expected 'count dim'") from None
        # The smallest entry is a one-byte word, a separator and the numbers (with a newline, in text):
        # no more rows are allocated than the file can hold, however many the header promises.
        rows = min(n, (len(data) - end) // (4 * dim + 2 if binary else 2 * dim + 2) + 1)
        reader = _read_binary if binary else _read_text
        keys, vectors = reader(path, data, end + 1, n, np.empty((rows, dim), dtype=np.float32), unicode_errors)
        seen = {}
        for i, key in enumerate(keys):
            seen.setdefault(key, i)
        if len(seen) != len(keys):
            warnings.warn(f"{path}: repeated words; keeping the first vector of each")
            rows = np.fromiter(seen.values(), dtype=np.int64)
            keys, vectors = list(seen), vectors[rows]
        return cls(vectors, keys)


def _lines(path):
    """Yield (line number from 1, text) of a UTF-8 file; invalid UTF-8 raises ValueError naming the line."""
    path = os.fspath(path)
    with open(path, "rb") as fin:
        for line_no, raw in enumerate(fin, 1):
            yield line_no, _decode(raw, path, f"line {line_no}", "strict")


def _decode(raw, path, where, errors):
    try:
        return raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: invalid UTF-8 at {where}") from None


#: Printable ASCII and line whitespace: a "binary" vector of 16 or more bytes made only of these is text
#: read as binary (random float bytes are all printable with odds below 1 in 10^6).
_TEXT_BYTES = frozenset(b"\t\n\r" + bytes(range(32, 127)))
#: No word has control characters: in a binary file, a word that does is float bytes read as a word,
#: because an earlier word contained a space (the format's one separator) or the file is corrupt.
_CONTROL = bytes(range(32))


def _read_binary(path, data, pos, n, vectors, errors):
    """Read ``n`` binary entries from ``data[pos:]`` into ``vectors`` (rows as many as can fit)."""
    dim = vectors.shape[1]
    width = 4 * dim
    keys = []
    for i in range(n):
        while pos < len(data) and data[pos] in b"\n\r":
            pos += 1
        space = data.find(b" ", pos)
        if space <= pos or space + 1 + width > len(data) or i == vectors.shape[0]:
            raise ValueError(f"{path}: truncated or corrupt at word {i + 1} of {n} (byte {pos})")
        if i == 0 and width >= 16 and set(data[space + 1 : space + 1 + width]) <= _TEXT_BYTES:
            raise ValueError(f"{path}: this is a text vectors file, not binary (read it as text: name it "
                             f".txt or .vec, or pass binary=False)")
        raw = data[pos:space]
        if len(raw.translate(None, _CONTROL)) != len(raw):
            raise ValueError(f"{path}: word {i + 1} of {n} (byte {pos}) has control characters: corrupt, or "
                             f"an earlier word contains a space")
        keys.append(_decode(raw, path, f"byte {pos}", errors))
        vectors[i] = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1)
        pos = space + 1 + width
    if data[pos:].strip():
        raise ValueError(f"{path}: {len(data) - pos} bytes after the last of the {n} vectors the header "
                         f"promises: corrupt, or a word contains a space")
    return keys, vectors


def _read_text(path, data, pos, n, vectors, errors):
    """Read ``n`` text lines from ``data[pos:]`` into ``vectors`` (rows as many as can fit)."""
    dim = vectors.shape[1]
    lines = data[pos:].split(b"\n")
    keys = []
    for i in range(n):
        line_no = i + 2
        if i >= len(lines) or not lines[i].strip() or i == vectors.shape[0]:
            raise ValueError(f"{path}: truncated at line {line_no}: expected {n} words, found {i}")
        parts = _decode(lines[i], path, f"line {line_no}", errors).rstrip().split(" ")
        if len(parts) != dim + 1:
            raise ValueError(
                f"{path}: line {line_no} has {len(parts) - 1} numbers, expected {dim} (corrupt, or binary?)"
            )
        try:
            vectors[i] = np.array(parts[1:], dtype=np.float32)
        except ValueError:
            raise ValueError(f"{path}: line {line_no} has a value that is not a number") from None
        keys.append(parts[0])
    return keys, vectors
