"""The one place for Numba flags and thread control.

Every kernel in :mod:`sparsemb.kernels` is compiled through :func:`jit` so that caching, fastmath and
parallelism are decided here and nowhere else.
"""
from __future__ import annotations

import contextlib

import numba

#: Flags shared by every kernel. ``cache`` keeps compiled code between runs; ``nogil`` lets Python
#: threads run kernels concurrently.
FLAGS = {"cache": True, "nogil": True}

#: Extra flags for kernels whose inner loops may be reassociated (dot products, updates). Kernels whose
#: results are compared bit for bit (coalesce, optimizers) do not use it.
FAST = {"fastmath": True}


#: For reductions that may be reassociated (so that they vectorise) but must keep IEEE semantics
#: otherwise. The order is then fixed by the compiled code, not by the thread count.
REASSOC = {"fastmath": {"reassoc"}}


def jit(*, parallel: bool = False, fastmath: bool = False, reassoc: bool = False, inline: str = "never"):
    """Return the ``numba.njit`` decorator with the project's flags."""
    flags = dict(FLAGS)
    if parallel:
        flags["parallel"] = True
    if fastmath:
        flags.update(FAST)
    elif reassoc:
        flags.update(REASSOC)
    if inline != "never":
        flags["inline"] = inline
    return numba.njit(**flags)


@contextlib.contextmanager
def num_threads(n: int | None):
    """Run the body with ``n`` Numba threads, restoring the previous count afterwards.

    ``None`` leaves the count unchanged. ``n`` is clipped to Numba's configured maximum.
    """
    if n is None:
        yield numba.get_num_threads()
        return
    if int(n) < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    previous = numba.get_num_threads()
    numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
    try:
        yield numba.get_num_threads()
    finally:
        numba.set_num_threads(previous)


def max_threads() -> int:
    """The number of threads Numba was started with (all cores unless NUMBA_NUM_THREADS says otherwise)."""
    return numba.config.NUMBA_NUM_THREADS
