"""Helpers shared by the benchmark scripts (scripts/bench_*.py); not part of the package.

Timing is interleaved: every case runs once per round, round after round, and each case reports
the median of its rounds, so that drift in the machine (frequency, other processes) hits every case
alike. A memory copy runs as one more case, giving the bandwidth that speeds are compared against.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
import time

import numpy as np

#: The benchmarks' fixed workload (issues 2 and 3).
NUM_EMBEDDINGS = 1_000_000
DIM = 64
BATCH = 65_536
ZIPF_A = 1.1
THREADS = 2
SEED = 0


def zipf_ids(n: int, num_embeddings: int, a: float = ZIPF_A, seed: int = SEED) -> np.ndarray:
    """``n`` Zipf(a) ids folded into ``[0, num_embeddings)``: ``(zipf - 1) % num_embeddings``, int64."""
    rng = np.random.default_rng(seed)
    return ((rng.zipf(a, n) - 1) % num_embeddings).astype(np.int64)


def try_torch(threads: int = THREADS, enabled: bool = True):
    """``torch`` with ``threads`` intra-op threads, or ``None`` when not installed (or not enabled)."""
    if not enabled:
        return None
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def _cpu_pressure() -> float:
    """Seconds (machine-wide, cumulative) during which some runnable task waited for a CPU (Linux PSI),
    or NaN where the kernel does not report it."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().split("total=")[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return float("nan")


#: Rounds that :func:`interleaved` discarded because tasks were kept waiting for a CPU (shared machine).
DISCARDED = [0]


def interleaved(cases: dict, rounds: int, warmup: int = 2, max_wait: float = 0.05, between=None) -> dict:
    """Median seconds per call of each callable in ``cases`` ({name: fn}), run round-robin.

    ``warmup`` untimed rounds come first (JIT compilation, page faults, allocator warm-up). A round
    during which runnable tasks waited for a CPU for more than ``max_wait`` of its duration (another
    process competing for the cores, by Linux's CPU pressure counter) is discarded and rerun, up to
    ten times ``rounds`` attempts; the count is kept in ``DISCARDED``. Each round runs the cases in
    a new order (seeded), so that no case always follows the same one: what a case leaves behind
    (caches filled, memory freed to the system that the next one faults in again) falls on all.
    ``between``, if given, is called (untimed) before each case, to start each from the same state.
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times = {name: [] for name in cases}
    names = list(cases)
    rng = np.random.default_rng(0)
    for _ in range(10 * rounds):
        if len(times[names[0]]) >= rounds:
            break
        p0, w0 = _cpu_pressure(), time.perf_counter()
        sample = {}
        for name in (names[k] for k in rng.permutation(len(names))):
            fn = cases[name]
            if between is not None:
                between()
            t0 = time.perf_counter()
            fn()
            sample[name] = time.perf_counter() - t0
        if (_cpu_pressure() - p0) > max_wait * (time.perf_counter() - w0):
            DISCARDED[0] += 1
            time.sleep(0.5)
            continue
        for name, t in sample.items():
            times[name].append(t)
    if not times[names[0]]:  # never quiet: time anyway, and say so through DISCARDED
        return interleaved(cases, rounds, warmup=0, max_wait=float("inf"), between=between)
    return {name: float(np.median(t)) for name, t in times.items()}


def copy_case(nbytes: int, threads: int = 1):
    """A callable that copies an ``nbytes`` buffer (the bandwidth anchor).

    One thread: ``np.copyto``. More: the buffer cut into ``threads`` contiguous slices copied by
    that many Numba threads, the machine's bandwidth for a kernel running on as many threads.
    A copy moves ``2 * nbytes`` (read source, write destination); see :func:`bandwidth`.
    """
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.zeros_like(src)
    if threads == 1:
        return lambda: np.copyto(dst, src)
    copy = _parallel_copy()
    copy(dst, src, threads)  # compile outside the timed rounds
    return lambda: copy(dst, src, threads)


def _parallel_copy():
    from numba import njit, prange

    @njit(parallel=True)
    def copy(dst, src, parts):
        for p in prange(parts):
            lo, hi = src.size * p // parts, src.size * (p + 1) // parts
            dst[lo:hi] = src[lo:hi]
    return copy


def bandwidth(bytes_moved: float, seconds: float) -> float:
    """GB/s (10**9 bytes per second)."""
    return bytes_moved / seconds / 1e9


def _cpu_seconds():
    """(busy CPU seconds of the whole machine, CPU seconds of this process, wall seconds)."""
    busy = float("nan")
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # not idle/iowait
    except (OSError, ValueError):
        pass
    t = os.times()
    return busy, t.user + t.system, time.perf_counter()


_START = _cpu_seconds()


def other_cpu() -> float:
    """Fraction of all cores used by other processes since this module was imported (noise check)."""
    busy, own, wall = (b - a for a, b in zip(_START, _cpu_seconds()))
    return max(0.0, (busy - own) / (wall * (os.cpu_count() or 1)))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(torch=None) -> str:
    import numba
    import scipy

    import sparsemb

    parts = [f"Python {platform.python_version()}", f"numpy {np.__version__}",
             f"numba {numba.__version__}", f"scipy {scipy.__version__}",
             f"sparsemb {getattr(sparsemb, '__version__', '?')}",
             f"torch {torch.__version__ if torch is not None else 'not used'}"]
    return ", ".join(parts)


def machine(torch=None) -> list:
    """Lines describing the machine and software, for the report header."""
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    return [f"machine: {cpu_model()}, {cores} logical cores ({usable} usable), "
            f"{platform.system()} {platform.release()}",
            f"software: {versions(torch)}",
            f"date: {datetime.date.today().isoformat()}",
            f"other processes' CPU use during the run: {other_cpu():.0%} of the machine; "
            f"{DISCARDED[0]} rounds discarded and rerun because tasks waited for a CPU",
            "command: python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])]


def fmt(x, spec: str = ".2f", suffix: str = "") -> str:
    """Format a number followed by ``suffix``, or 'n/a' for None / NaN."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return format(x, spec) + suffix


def table(headers: list, rows: list, markdown: bool) -> str:
    """A plain-text (aligned) or Markdown table of string cells."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def report(title: str, header_lines: list, blocks: list, markdown: bool) -> str:
    """The whole report: title, machine lines, then blocks (tables and notes, already formatted)."""
    if markdown:
        out = [f"## {title}", ""] + [f"- {h}" for h in header_lines] + [""]
        for b in blocks:
            out += [b, ""]
    else:
        out = [title, "=" * len(title)] + header_lines + [""]
        for b in blocks:
            out += [b, ""]
    return "\n".join(out).rstrip() + "\n"


_START_CHILDREN = os.times()


def other_cpu_with_children() -> float:
    """Like :func:`other_cpu`, counting the CPU time of this process's finished children as its own.

    For benchmarks whose work runs in subprocesses.
    """
    busy, own, wall = (b - a for a, b in zip(_START, _cpu_seconds()))
    now = os.times()
    children = (now.children_user + now.children_system
                - _START_CHILDREN.children_user - _START_CHILDREN.children_system)
    return max(0.0, (busy - own - children) / (wall * (os.cpu_count() or 1)))
