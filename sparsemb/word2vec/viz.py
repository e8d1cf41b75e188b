"""Looking at vectors: the loss curve as text, a labelled 2-D map, the TensorFlow Projector export.

Only :func:`plot_map` and :func:`plot_loss` need matplotlib (the ``plot`` extra,
``pip install 'sparsemb[plot]'``); it is imported inside them, so this module, the text loss curve
and the Projector export work without it. Figures are drawn on an Agg canvas of their own (never
pyplot), so nothing here touches a user's matplotlib state or needs a display.

The map is a t-SNE of the words' unit vectors, computed exactly in NumPy (no scikit-learn). The
cosine is the similarity every sparsemb query uses; t-SNE keeps near words near, which is what a map
of words is read for. On the demo's 186 vectors and the top 300 words of gensim's Lee corpus
(100 dims, 20 epochs) it keeps 55% and 58% of each word's 10 cosine neighbours among its 10 nearest
points on the map (:func:`neighbour_agreement`), against 47% and 46% for a PCA of the same unit
vectors, whose map is a dense core where labels pile up; scikit-learn's TSNE keeps 68% and 59%, not
enough to make it a dependency. Its start is the PCA, so a map is the same on every run.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .. import _io

#: What a user without matplotlib is told to install.
PLOT_EXTRA = "pip install 'sparsemb[plot]'"

#: More labelled words than this make an unreadable map (and t-SNE is O(n²) in time and memory);
#: the Projector export is the tool for more.
MAX_MAP_WORDS = 1000

#: Output formats of the figures, from the file's extension.
FIGURE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}

_SPARKS = "▁▂▃▄▅▆▇█"


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra provides it."""


def _matplotlib():
    """matplotlib's Figure and Agg canvas, or MissingExtraError naming the ``plot`` extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise MissingExtraError(f"matplotlib is needed to draw ({err}): install the plot extra: "
                                f"{PLOT_EXTRA}") from None
    return Figure, FigureCanvasAgg


def require_matplotlib():
    """Raise :class:`MissingExtraError` (one line naming the extra) if matplotlib cannot be imported."""
    _matplotlib()


# -- the loss curve as text ------------------------------------------------------------------------

def sparkline(values, width=60):
    """A one-line text chart of ``values``: one block character per value, lowest ``▁``, highest ``█``.

    Parameters
    ----------
    values : sequence of float
    width : int
        At most this many characters: longer series are averaged in ``width`` equal bins.

    Returns
    -------
    str
        ``""`` for no values; a non-finite value is a space.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return ""
    if v.size > width:
        edges = np.linspace(0, v.size, width + 1).astype(np.int64)
        v = np.array([v[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    finite = np.isfinite(v)
    if not finite.any():
        return " " * v.size
    low, high = v[finite].min(), v[finite].max()
    span = high - low
    chars = []
    for x, ok in zip(v, finite):
        if not ok:
            chars.append(" ")
        elif span == 0:
            chars.append(_SPARKS[len(_SPARKS) // 2])
        else:
            chars.append(_SPARKS[min(int((x - low) / span * len(_SPARKS)), len(_SPARKS) - 1)])
    return "".join(chars)


def loss_lines(losses, max_lines=30):
    """The lines ``sparsemb train`` prints at its end: each epoch's mean loss, then a sparkline.

    Parameters
    ----------
    losses : sequence of float
        Each epoch's mean loss per training example (``Word2Vec.epoch_losses``).
    max_lines : int
        With more epochs than this, the first and last ``max_lines // 2`` are listed and the others
        counted in one line (the sparkline still covers all of them).

    Returns
    -------
    list of str
        ``[]`` for no epochs.
    """
    losses = [float(x) for x in losses]
    if not losses:
        return []
    n = len(losses)
    width = len(str(n))
    shown = range(n) if n <= max_lines else [*range(max_lines // 2), None, *range(n - max_lines // 2, n)]
    lines = []
    for i in shown:
        if i is None:
            lines.append(f"  {'':>{width + 6}}  ({n - 2 * (max_lines // 2)} more epochs)")
        else:
            lines.append(f"  epoch {i + 1:>{width}}  loss {losses[i]:.4f}")
    first, last = losses[0], losses[-1]
    change = f" ({(last - first) / first:+.1%})" if n > 1 and first and math.isfinite(first) else ""
    lines.append(f"  {sparkline(losses)}  {first:.4f} -> {last:.4f}{change}")
    return lines


# -- choosing the words ----------------------------------------------------------------------------

def frequency_order(wv, counts=None):
    """Row indices of ``wv`` from the most to the least frequent.

    ``counts`` (one per row) orders them when known, ties in file order; without counts the file's
    order is kept, which word2vec files (the C tool's, gensim's, sparsemb's) write most frequent first.
    """
    if counts is None:
        return np.arange(len(wv))
    counts = np.asarray(counts)
    return np.lexsort((np.arange(len(counts)), -counts.astype(np.int64)))


def select_words(wv, top=None, words=None, neighbours=10, counts=None, source="the vectors"):
    """The words a map shows: the ``top`` most frequent, or ``words`` each followed by its neighbours.

    Parameters
    ----------
    wv : KeyedVectors
    top : int, optional
        The ``top`` most frequent words (all of them if there are fewer).
    words : sequence of str, optional
        Words to show, each followed by its ``neighbours`` nearest (cosine) words; a word already
        shown is not repeated. Exactly one of ``top`` and ``words`` is given.
    neighbours : int
        Neighbours per word of ``words`` (0: just the words).
    counts : array of int, optional
        Corpus counts, to order ``top`` (see :func:`frequency_order`).
    source : str
        Names the vectors in error messages (the file).

    Returns
    -------
    words : list of str
        In order: the asked words first, each followed by its neighbours.
    groups : ndarray of int64, shape (len(words),)
        For ``words``: the index of the asked word each one belongs to; for ``top``: zeros.

    Raises
    ------
    KeyError
        For a word of ``words`` not in the vocabulary (named).
    ValueError
        For an empty selection: no words asked, an empty vocabulary, ``top`` < 1.
    """
    if (top is None) == (words is None):
        raise ValueError("give either top or words")
    if len(wv) == 0:
        raise ValueError(f"{source} has no words")
    if words is None:
        if top < 1:
            raise ValueError(f"top must be at least 1, got {top}")
        order = frequency_order(wv, counts)[:top]
        return [wv.index_to_key[i] for i in order], np.zeros(len(order), dtype=np.int64)
    words = list(dict.fromkeys(words))  # repeated words once, in order
    if not words:
        raise ValueError("no words to show: give at least one word")
    for word in words:
        if word not in wv:
            raise KeyError(f"word {word!r} is not in the vocabulary of {source}")
    chosen, groups, seen = [], [], set()
    for g, word in enumerate(words):
        near = [w for w, _ in wv.most_similar(word, topn=neighbours)] if neighbours > 0 and len(wv) > 1 else []
        for w in [word, *near]:
            if w not in seen:
                seen.add(w)
                chosen.append(w)
                groups.append(g)
    # An asked word that was another's neighbour keeps its own group: it is what was asked for.
    asked = {w: g for g, w in enumerate(words)}
    groups = np.array([asked.get(w, g) for w, g in zip(chosen, groups)], dtype=np.int64)
    return chosen, groups


# -- projecting to 2-D -----------------------------------------------------------------------------

def _unit_rows(vectors):
    x = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def pca_2d(vectors):
    """The first two principal components of the rows' unit vectors, shape (n, 2), float64.

    Signs are fixed (each component's largest coordinate positive), so the result is reproducible.
    """
    u = _unit_rows(vectors)
    n = len(u)
    out = np.zeros((n, 2))
    if n < 2:
        return out
    c = u - u.mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    k = min(2, vt.shape[0])
    proj = c @ vt[:k].T
    for j in range(k):
        col = proj[:, j]
        if col[np.argmax(np.abs(col))] < 0:
            col *= -1
    out[:, :k] = proj
    return out


def _perplexity_rows(d2, perplexity, tol=1e-5, steps=100):
    """Rows of Gaussian affinities whose entropy is log(perplexity): a bisection on each row's precision.

    d2: (n, n) squared distances (diagonal ignored). All rows are searched at once.
    """
    n = len(d2)
    diag = np.eye(n, dtype=bool)
    # Shifted by each row's smallest distance so that exp never overflows; the diagonal is left out
    # (exp(-inf) = 0 in the affinities, 0 in the entropy's sum).
    d = d2 - np.where(diag, np.inf, d2).min(axis=1, keepdims=True)
    d_exp = np.where(diag, np.inf, d)
    d[diag] = 0.0
    target = math.log(perplexity)
    beta = np.ones((n, 1))
    lo = np.zeros((n, 1))
    hi = np.full((n, 1), np.inf)
    for _ in range(steps):
        p = np.exp(-d_exp * beta)
        s = p.sum(axis=1, keepdims=True)
        # entropy of p/s: log s + beta * E[d]
        h = np.log(s) + beta * (p * d).sum(axis=1, keepdims=True) / s
        if np.all(np.abs(h - target) < tol):
            break
        too_flat = h > target  # entropy too high: sharpen
        lo = np.where(too_flat, beta, lo)
        hi = np.where(too_flat, hi, beta)
        beta = np.where(too_flat, np.where(np.isinf(hi), beta * 2, (beta + hi) / 2), (beta + lo) / 2)
    return p / s


def tsne_2d(vectors, perplexity=30.0, iterations=1000):
    """Exact t-SNE (van der Maaten & Hinton, 2008) of the rows' unit vectors, shape (n, 2), float64.

    Affinities from squared distances of unit vectors (2 - 2 cos, so cosine neighbours are near),
    perplexity ``min(perplexity, (n - 1) / 3)``; optimised as scikit-learn's exact method: 250
    iterations with early exaggeration 12 and momentum 0.5, then momentum 0.8, per-coordinate gains,
    learning rate max(n / 48, 50). Started from :func:`pca_2d` scaled down, so no randomness: the same
    vectors give the same map. O(n²) time and memory per iteration; meant for up to a few thousand
    rows. Fewer than 4 rows are returned as :func:`pca_2d`.
    """
    u = _unit_rows(vectors)
    n = len(u)
    init = pca_2d(u)
    if n < 4:
        return init
    g = u @ u.T
    d2 = np.maximum(2.0 - 2.0 * g, 0.0)
    cond = _perplexity_rows(d2, min(perplexity, (n - 1) / 3))
    p = (cond + cond.T) / (2.0 * n)
    p = np.maximum(p, np.finfo(np.float64).eps)
    np.fill_diagonal(p, 0.0)
    spread = init[:, 0].std()
    y = init / spread * 1e-4 if spread > 0 else init
    lr = max(n / 12.0 / 4.0, 50.0)
    exaggeration, explore = 12.0, 250
    p_explore = p * exaggeration
    update = np.zeros_like(y)
    gains = np.ones_like(y)
    eps = np.finfo(np.float64).eps
    num = np.empty_like(p)
    w = np.empty_like(p)
    diag = np.arange(n)
    ones = np.ones(n)
    for it in range(iterations):
        if it == explore:  # the second phase starts afresh, as scikit-learn's
            update[:] = 0.0
            gains[:] = 1.0
        # num = 1 / (1 + |y_i - y_j|²), in place: these n x n arrays are the whole cost.
        # (a BLAS y @ y.T with an inner dimension of 2 is several times slower than two outer differences)
        y0, y1 = np.ascontiguousarray(y[:, 0]), np.ascontiguousarray(y[:, 1])
        np.subtract.outer(y0, y0, out=num)
        np.square(num, out=num)
        np.subtract.outer(y1, y1, out=w)
        np.square(w, out=w)
        num += w
        num += 1.0
        np.reciprocal(num, out=num)
        num[diag, diag] = 0.0
        # w = (P - Q) * num with Q = max(num / sum(num), eps)
        np.multiply(num, 1.0 / num.sum(), out=w)
        np.maximum(w, eps, out=w)
        np.subtract(p if it >= explore else p_explore, w, out=w)
        w *= num
        # matrix-vector products: (n, n) @ (n, 2) goes through a slower BLAS path
        grad = 4.0 * ((w @ ones)[:, None] * y - np.column_stack([w @ y0, w @ y1]))
        inc = update * grad < 0.0
        gains = np.maximum(np.where(inc, gains + 0.2, gains * 0.8), 0.01)
        update = (0.5 if it < explore else 0.8) * update - lr * gains * grad
        y = y + update
    return y - y.mean(axis=0)


PROJECTIONS = {"tsne": tsne_2d, "pca": pca_2d}


def neighbour_agreement(vectors, xy, k=10):
    """Mean fraction of each row's ``k`` nearest cosine neighbours that are among its ``k`` nearest on the map.

    How much of the neighbourhood structure a 2-D projection keeps (1 is all of it); what the
    choice of t-SNE over PCA was measured with.
    """
    u = _unit_rows(vectors)
    n = len(u)
    k = min(k, n - 1)
    if k < 1:
        return 1.0
    s = u @ u.T
    np.fill_diagonal(s, -np.inf)
    high = np.argsort(-s, axis=1, kind="stable")[:, :k]
    xy = np.asarray(xy, dtype=np.float64)
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=-1)
    np.fill_diagonal(d, np.inf)
    low = np.argsort(d, axis=1, kind="stable")[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(high, low)]))


# -- label placement -------------------------------------------------------------------------------

# Where a label may go around its point, as (x, y) of the box's lower-left corner for a box w x h at
# gap r: right, left, above, below, then the diagonals. Radii in pixels at 100 dpi.
_SLOTS = (
    lambda x, y, w, h, r: (x + r, y - h / 2),
    lambda x, y, w, h, r: (x - r - w, y - h / 2),
    lambda x, y, w, h, r: (x - w / 2, y + r),
    lambda x, y, w, h, r: (x - w / 2, y - r - h),
    lambda x, y, w, h, r: (x + 0.7 * r, y + 0.7 * r),
    lambda x, y, w, h, r: (x - 0.7 * r - w, y + 0.7 * r),
    lambda x, y, w, h, r: (x + 0.7 * r, y - 0.7 * r - h),
    lambda x, y, w, h, r: (x - 0.7 * r - w, y - 0.7 * r - h),
)
_RADII = (3.0, 10.0, 20.0, 34.0, 52.0)


def place_labels(points, sizes, bounds, point_radius=3.0, pad=1.0):
    """Greedy label placement: each label in turn takes the first free slot around its point.

    Parameters
    ----------
    points : ndarray, shape (n, 2)
        Points in pixels, in priority order (the first is placed first).
    sizes : ndarray, shape (n, 2)
        Each label's width and height in pixels.
    bounds : (x0, y0, x1, y1)
        Labels stay inside this box.
    point_radius, pad : float
        Pixels kept free around each point and each label.

    Returns
    -------
    corners : ndarray, shape (n, 2)
        Lower-left corner of each label's box; NaN for a label no slot could take (its point stays,
        unlabelled).
    far : ndarray of bool, shape (n,)
        Labels placed beyond the first ring of slots, which want a leader line to their point.

    Notes
    -----
    A slot is free if its box overlaps no placed label and covers no other point; if no slot is, a
    slot that only covers points is taken; if none, the label is left out. Slots are tried ring by
    ring (right, left, above, below, diagonals), so a label sits next to its point when it can.
    """
    points = np.asarray(points, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    n = len(points)
    x0, y0, x1, y1 = bounds
    boxes = np.empty((n, 4))  # placed boxes: x0, y0, x1, y1
    placed = 0
    corners = np.full((n, 2), np.nan)
    far = np.zeros(n, dtype=bool)
    px, py = points[:, 0], points[:, 1]
    for i in range(n):
        (x, y), (w, h) = points[i], sizes[i]
        fallback = None
        for ring, r in enumerate(_RADII):
            for slot in _SLOTS:
                bx, by = slot(x, y, w, h, r)
                if bx < x0 or by < y0 or bx + w > x1 or by + h > y1:
                    continue
                b = boxes[:placed]
                if np.any((b[:, 0] < bx + w + pad) & (b[:, 2] > bx - pad)
                          & (b[:, 1] < by + h + pad) & (b[:, 3] > by - pad)):
                    continue
                covers = ((px > bx - point_radius) & (px < bx + w + point_radius)
                          & (py > by - point_radius) & (py < by + h + point_radius))
                covers[i] = False
                if covers.any():
                    if fallback is None:
                        fallback = (bx, by, ring)
                    continue
                fallback = (bx, by, ring)
                break
            else:
                continue
            break
        if fallback is not None:
            bx, by, ring = fallback
            corners[i] = bx, by
            far[i] = ring > 0
            boxes[placed] = bx, by, bx + w, by + h
            placed += 1
    return corners, far


# -- figures ---------------------------------------------------------------------------------------

def figure_format(path):
    """The matplotlib format for ``path``'s extension (png, svg, pdf), or ValueError naming it."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FIGURE_FORMATS:
        raise ValueError(f"cannot tell the figure format of {os.fspath(path)}: end it in "
                         f"{', '.join(FIGURE_FORMATS)}")
    return FIGURE_FORMATS[ext]


def _save(fig, canvas_cls, path, inputs):
    fmt = figure_format(path)
    canvas_cls(fig)
    with _io.atomic_write(path, inputs=inputs) as f:
        # dpi fixed to the figure's so the image has exactly the pixels asked for (no tight bbox).
        fig.savefig(f, format=fmt, dpi=fig.dpi)


_DPI = 100


def default_map_size(n):
    """Pixels (width, height) of a map of ``n`` words when none is asked: about 95 px² per word."""
    side = int(min(max(95 * math.sqrt(max(n, 1)), 900), 3000))
    return side, side


def plot_map(wv, path, words, groups=None, projection="tsne", size=None, title=None, inputs=()):
    """Draw ``words`` of ``wv`` on a labelled 2-D map and write it to ``path`` (png, svg or pdf).

    Parameters
    ----------
    wv : KeyedVectors
    path : str or os.PathLike
        The figure, written atomically (:func:`sparsemb._io.atomic_write`); the extension is the format.
    words : sequence of str
        The words to show, in priority order for labels (:func:`select_words` gives them); every
        word is a point, and a label unless no free place was left for it.
    groups : sequence of int, optional
        A colour group per word (the asked word each belongs to); the first word of each group is
        drawn in bold. None: one colour.
    projection : {"tsne", "pca"}
    size : (int, int), optional
        Width and height in pixels; :func:`default_map_size` by default.
    title : str, optional
    inputs : iterable of paths
        Files the output may not be (:func:`sparsemb._io.check_output`).

    Returns
    -------
    dict
        ``words`` (the words plotted, in order), ``xy`` (their map coordinates, (n, 2) float64),
        ``labelled`` (bool per word), ``size`` (pixels).

    Raises
    ------
    MissingExtraError
        Without matplotlib (the ``plot`` extra).
    KeyError, ValueError
        An unknown word, no words, too many words (> :data:`MAX_MAP_WORDS`), a bad path or projection.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    words = list(words)
    if not words:
        raise ValueError("no words to plot")
    if len(words) > MAX_MAP_WORDS:
        raise ValueError(f"{len(words)} words are too many for a readable map (at most {MAX_MAP_WORDS}); "
                         f"use the Projector export to explore more")
    for word in words:
        if word not in wv:
            raise KeyError(f"word {word!r} is not in the vocabulary")
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {sorted(PROJECTIONS)}, got {projection!r}")
    figure_format(path)
    _io.check_output(path, inputs=inputs)
    groups = np.zeros(len(words), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    if groups.shape != (len(words),):
        raise ValueError(f"need one group per word: {len(words)} words, groups of shape {groups.shape}")
    vectors = np.stack([wv.get_vector(w) for w in words])
    xy = PROJECTIONS[projection](vectors)

    width, height = size or default_map_size(len(words))
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    canvas = FigureCanvasAgg(fig)
    top_room = 34 if title else 8
    ax = fig.add_axes([8 / width, 8 / height, 1 - 16 / width, 1 - (8 + top_room) / height])
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#cccccc")
    if title:
        fig.text(0.5, 1 - 8 / height, title, ha="center", va="top", fontsize=12)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    # Room at the sides for the labels of the outermost points.
    ax.set_xlim(lo[0] - 0.10 * span[0], hi[0] + 0.10 * span[0])
    ax.set_ylim(lo[1] - 0.05 * span[1], hi[1] + 0.05 * span[1])

    multi = len(np.unique(groups)) > 1
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
               "#7f7f7f", "#bcbd22"]
    colours = [palette[g % len(palette)] if multi else "#1f77b4" for g in groups]
    first = np.zeros(len(words), dtype=bool)
    if multi:
        first[np.unique(groups, return_index=True)[1]] = True
    ax.scatter(xy[:, 0], xy[:, 1], s=9, c=colours, linewidths=0, zorder=2)

    fontsize = 8 if len(words) > 60 else 10
    texts = [ax.text(0, 0, w, fontsize=fontsize, ha="left", va="bottom",
                     fontweight="bold" if f else "normal", color="#222222", zorder=3)
             for w, f in zip(words, first)]
    renderer = canvas.get_renderer()
    sizes = np.array([[b.width, b.height] for b in (t.get_window_extent(renderer) for t in texts)])
    points = ax.transData.transform(xy)
    frame = ax.get_window_extent(renderer)
    corners, far = place_labels(points, sizes, (frame.x0 + 2, frame.y0 + 2, frame.x1 - 2, frame.y1 - 2))
    inverse = ax.transData.inverted()
    for i, text in enumerate(texts):
        if np.isnan(corners[i, 0]):
            text.set_visible(False)
            continue
        text.set_position(inverse.transform(corners[i]))
        if far[i]:
            # A thin line from the point to the nearest point of its label's box.
            (bx, by), (w, h) = corners[i], sizes[i]
            px, py = points[i]
            end = inverse.transform((min(max(px, bx), bx + w), min(max(py, by), by + h)))
            ax.plot([xy[i, 0], end[0]], [xy[i, 1], end[1]], color="#999999", linewidth=0.5, zorder=1)
    _save(fig, FigureCanvasAgg, path, inputs)
    return {"words": words, "xy": xy, "labelled": ~np.isnan(corners[:, 0]), "size": (width, height)}


def plot_loss(losses, path, size=(900, 540), title=None, inputs=()):
    """Draw per-epoch losses (``Word2Vec.epoch_losses``) as a line and write it to ``path``.

    Parameters
    ----------
    losses : sequence of float
        Each epoch's mean loss.
    path : str or os.PathLike
        png, svg or pdf by the extension; written atomically.
    size : (int, int)
        Width and height in pixels.
    title : str, optional
    inputs : iterable of paths
        Files the output may not be.

    Raises
    ------
    MissingExtraError
        Without matplotlib.
    ValueError
        No losses, or a bad path.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    losses = np.asarray(losses, dtype=np.float64).ravel()
    if losses.size == 0:
        raise ValueError("no epoch losses to plot")
    figure_format(path)
    _io.check_output(path, inputs=inputs)
    from matplotlib.ticker import MaxNLocator

    width, height = size
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    epochs = np.arange(1, losses.size + 1)
    ax.plot(epochs, losses, color="#1f77b4", marker="o" if losses.size <= 50 else None, markersize=4)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss per training example")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, color="#eeeeee")
    if title:
        ax.set_title(title)
    _save(fig, FigureCanvasAgg, path, inputs)


# -- the TensorFlow Embedding Projector ------------------------------------------------------------

#: The two files the Projector's "Load" dialog takes.
PROJECTOR_FILES = ("vectors.tsv", "metadata.tsv")

# What JavaScript's String.prototype.trim removes: the Projector skips a line that trims to nothing,
# so a word made only of these would shift every later label by one.
_JS_SPACE = frozenset("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"
                      + "".join(chr(c) for c in range(0x2000, 0x200b)))


def _check_projector_word(word, index):
    if "\t" in word or "\n" in word or "\r" in word:
        raise ValueError(f"word {word!r} (row {index}) contains a tab or line break, which the Projector's "
                         f"tab-separated files cannot hold")
    if all(c in _JS_SPACE for c in word):
        raise ValueError(f"word {word!r} (row {index}) is empty or only spaces: the Projector skips such "
                         f"lines, which would misalign every later label")


def export_projector(wv, directory, top=None, counts=None, overwrite=False, inputs=()):
    """Write ``vectors.tsv`` and ``metadata.tsv`` in ``directory``, as projector.tensorflow.org loads them.

    ``vectors.tsv``: one row per word, its components tab-separated, no header; float32 written with
    9 significant digits and float64 with 17, so the text reads back to the same bits.
    ``metadata.tsv``: the words in the same order, one per line, with no header (the Projector takes
    a first line without a tab as data); with ``counts``, a ``word\\tcount`` header and two columns
    (with a tab in its first line the Projector reads it as column names). UTF-8, ``\\n`` line ends.

    Parameters
    ----------
    wv : KeyedVectors
    directory : str or os.PathLike
        Made if missing (its parent must exist).
    top : int, optional
        Only the ``top`` most frequent words (:func:`frequency_order`).
    counts : array of int, optional
        The words' corpus counts (one per row of ``wv``); give them only when they are real (a full
        model's), not the stand-ins a word2vec file gets on loading.
    overwrite : bool
        Replace ``vectors.tsv`` / ``metadata.tsv`` already in ``directory``. Without it they are refused,
        so that a user's files are never replaced by surprise; no other file in ``directory`` is touched.
    inputs : iterable of paths
        Files the outputs may not be.

    Returns
    -------
    (str, str)
        The paths of vectors.tsv and metadata.tsv.

    Raises
    ------
    ValueError
        A word with a tab or line break, or only spaces (named, with its row); non-finite vectors;
        fewer than 2 dimensions (the Projector refuses them); an empty selection.
    FileExistsError
        The files exist and not ``overwrite``.
    FileNotFoundError, NotADirectoryError
        A bad directory.
    """
    directory = os.fspath(directory)
    if top is not None and top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    if len(wv) == 0:
        raise ValueError("no vectors to export")
    if wv.vector_size < 2:
        raise ValueError(f"the Projector needs at least 2 dimensions; these vectors have {wv.vector_size}")
    rows = frequency_order(wv, counts)[:top]
    keys = [str(wv.index_to_key[i]) for i in rows]
    for i, word in zip(rows, keys):
        _check_projector_word(word, int(i))
    vectors = np.asarray(wv.vectors)[rows]
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise ValueError(f"the vector of {keys[int(np.argmax(bad))]!r} is not finite (NaN or infinity); "
                         f"the Projector would read it as a label")

    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(f"not a directory: {directory}")
    paths = tuple(os.path.join(directory, name) for name in PROJECTOR_FILES)
    if not overwrite:
        there = [p for p in paths if os.path.lexists(p)]
        if there:
            raise FileExistsError(f"{' and '.join(there)} already exist{'s' if len(there) == 1 else ''}: "
                                  f"refusing to replace {'it' if len(there) == 1 else 'them'}")
    if not os.path.isdir(directory):
        parent = os.path.dirname(os.path.abspath(directory))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"output directory's parent does not exist: {parent}")
        made = True
    else:
        made = False

    digits = 17 if vectors.dtype == np.float64 else 9
    fmt = "\t".join([f"%.{digits}g"] * vectors.shape[1])
    if vectors.dtype not in (np.float32, np.float64):
        vectors = vectors.astype(np.float32)
    vector_text = "".join(fmt % tuple(row) + "\n" for row in vectors.tolist()).encode("utf-8")
    if counts is None:
        meta = "".join(k + "\n" for k in keys)
    else:
        c = np.asarray(counts, dtype=np.int64)[rows]
        meta = "word\tcount\n" + "".join(f"{k}\t{n}\n" for k, n in zip(keys, c.tolist()))
    meta_bytes = meta.encode("utf-8")

    if made:
        os.mkdir(directory)
    try:
        # Both files are written in full before either is renamed into place, so a failed write
        # leaves neither; only a failure of the second rename can leave the first alone.
        with _io.atomic_write(paths[0], inputs=inputs) as fv, _io.atomic_write(paths[1], inputs=inputs) as fm:
            fv.write(vector_text)
            fm.write(meta_bytes)
    except BaseException:
        if made:
            for p in paths:
                if os.path.exists(p):
                    os.unlink(p)
            try:
                os.rmdir(directory)
            except OSError:
                pass
        raise
    return paths


def read_projector(directory):
    """Read back an export: (words, vectors float64, counts or None). For tests and checks.

    Parses as the Projector does: blank lines skipped, a metadata first line with a tab is the header.
    """
    directory = os.fspath(directory)
    with open(os.path.join(directory, PROJECTOR_FILES[0]), encoding="utf-8", newline="") as f:
        rows = [line.split("\t") for line in f.read().split("\n") if line.strip()]
    vectors = np.array([[float(x) for x in r] for r in rows], dtype=np.float64)
    with open(os.path.join(directory, PROJECTOR_FILES[1]), encoding="utf-8", newline="") as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    counts = None
    if lines and "\t" in lines[0]:
        header = lines[0].split("\t")
        table = [line.split("\t") for line in lines[1:]]
        words = [r[0] for r in table]
        if "count" in header:
            counts = np.array([int(r[header.index("count")]) for r in table], dtype=np.int64)
    else:
        words = lines
    return words, vectors, counts
