"""Peak memory and time of writing and reading word2vec files: sparsemb against gensim, same file.

Each measurement runs in a fresh subprocess. A write builds the table (random float32, keys ``w0``...)
and its KeyedVectors, notes the RSS (the floor: interpreter, libraries and the table), resets the
kernel's peak-RSS mark (``/proc/self/clear_refs``) and writes. A read notes the RSS after imports (the
floor), resets the mark and reads. The peak is ``VmHWM`` afterwards.

A read's result (the table, the keys as Python strings, their list, their dict and its int values, the
counts) is what is being loaded, so its own size (``sys.getsizeof`` of each part, the arrays'
``nbytes``) is taken off: what is left, ``peak - floor - result``, is the reader's transient memory,
shown against the table's size. It includes the allocator's rounding of millions of small objects,
which ``getsizeof`` does not see. A write's transient is ``peak - floor``. ``peak - after`` is what
the process gave back (RSS after the call and a ``gc.collect()``): a lower bound of the transient,
since freed memory may stay mapped.

Seconds are the wall time of the call and its CPU time (user + system: less sensitive to other jobs on
a shared machine); with ``--rounds`` the runs of the libraries are interleaved and the medians shown.
With ``--warm`` each process first reads (and, for a write, writes) a two-word file, so that one-time
costs are in the floor (sparsemb's compiled kernels loaded from the cache: about 0.4 s and 60 MiB,
once per process whatever the size).

    git archive b1a37e8 | tar -x -C /tmp/before
    python scripts/bench_vectors_io.py --words 2000000 --dim 50 --before /tmp/before --dir /tmp
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import gc, json, os, resource, sys, time
sys.path.insert(0, ROOT)
import numpy as np
lib, op, fmt, path, words, dim, warm = sys.argv[1:8]
words, dim, warm = int(words), int(dim), warm == "1"
if lib in ("sparsemb", "before"):
    from sparsemb.word2vec import KeyedVectors
else:
    from gensim.models import KeyedVectors
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
binary = fmt == "bin"
result = 0
if warm:  # pay one-time costs (compiled kernels loaded, lazy imports) on a two-word file first
    tiny = path + ".warm"
    with open(tiny, "wb") as f:
        f.write(b"2 3\n")
        for word in (b"a", b"b"):
            f.write(word + b" " + (np.ones(3, "<f4").tobytes() + b"\n" if binary else b"1 2 3\n"))
    small = KeyedVectors.load_word2vec_format(tiny, binary=binary)
    if op == "write":
        small.save_word2vec_format(tiny, binary=binary)
    os.unlink(tiny)
    del small
if op == "write":
    vectors = np.random.default_rng(0).standard_normal((words, dim), dtype=np.float32)
    vectors *= 0.1
    keys = [f"w{i}" for i in range(words)]
    if lib == "sparsemb":
        kv = KeyedVectors.from_arrays(vectors, keys)
    elif lib == "before":  # sparsemb before issue 12: KeyedVectors(vectors, keys)
        kv = KeyedVectors(vectors, keys)
    else:
        kv = KeyedVectors(dim)
        kv.index_to_key = keys
        kv.key_to_index = {k: i for i, k in enumerate(keys)}
        kv.vectors = vectors
    del vectors, keys
    gc.collect()
    floor = status("VmRSS")
    reset_peak()
    t, c = time.perf_counter(), cpu()
    kv.save_word2vec_format(path, binary=binary)
    seconds, cpu_seconds = time.perf_counter() - t, cpu() - c
else:
    gc.collect()
    floor = status("VmRSS")
    reset_peak()
    t, c = time.perf_counter(), cpu()
    kv = KeyedVectors.load_word2vec_format(path, binary=binary)
    seconds, cpu_seconds = time.perf_counter() - t, cpu() - c
    keys = kv.index_to_key
    result = (kv.vectors.nbytes + sys.getsizeof(keys) + sum(map(sys.getsizeof, keys))
              + sys.getsizeof(kv.key_to_index) + sum(map(sys.getsizeof, kv.key_to_index.values()))
              + sum(getattr(a, "nbytes", 0) for a in getattr(kv, "expandos", {}).values()))
    assert kv.vectors.shape == (words, dim)
peak = status("VmHWM")
gc.collect()
after = status("VmRSS")
print(json.dumps({"seconds": seconds, "cpu": cpu_seconds, "peak": peak, "after": after, "floor": floor, "result": result,
                  "module": sys.modules[KeyedVectors.__module__].__file__}))
"""


def run(lib, op, fmt, path, words, dim, root=ROOT, warm=False):
    out = subprocess.run([sys.executable, "-c", CHILD.replace("ROOT", repr(root), 1), lib, op, fmt, path,
                          str(words), str(dim), str(int(warm))], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{lib} {op} {fmt} failed:\n{out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if lib != "gensim" and not r["module"].startswith(root):
        raise RuntimeError(f"{lib} ran {r['module']}, not the tree in {root}")
    return r


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=500_000)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved runs per row; medians shown")
    parser.add_argument("--formats", default="txt,bin")
    parser.add_argument("--ops", default="write,read", help="reads read the file sparsemb wrote: write first")
    parser.add_argument("--libs", default="sparsemb,gensim", help="also 'before' with --before")
    parser.add_argument("--warm", action="store_true",
                        help="each run first reads (and writes) a two-word file: one-time costs go in the floor")
    parser.add_argument("--dir", default=None, help="where the files go (in a new folder, deleted after)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--before", default=None, metavar="DIR",
                        help="also run an older sparsemb checkout (e.g. git archive of the commit before issue 12)")
    args = parser.parse_args()
    table = args.words * args.dim * 4
    libs = tuple(args.libs.split(",")) + (("before",) if args.before else ())
    if "read" in args.ops and not ("write" in args.ops and "sparsemb" in libs):
        parser.error("reads read the file sparsemb writes: --ops needs write and --libs sparsemb")
    directory = tempfile.mkdtemp(prefix="bench_vectors_io-", dir=args.dir)
    print(f"{args.words} words x {args.dim} dims: table {table / 2**20:.0f} MiB")
    print(f"{'op':6} {'fmt':4} {'library':9} {'seconds':>8} {'cpu s':>7} {'floor MiB':>9} {'peak-floor':>10} "
          f"{'result':>7} {'transient':>9} {'/table':>7} {'peak-after':>10}")
    try:
        for fmt in args.formats.split(","):
            # Every library reads the file sparsemb wrote.
            for op in args.ops.split(","):
                results = {lib: [] for lib in libs}
                for _ in range(args.rounds):
                    for lib in libs:
                        path = os.path.join(directory, f"{'sparsemb' if op == 'read' else lib}.{fmt}")
                        results[lib].append(run(lib, op, fmt, path, args.words, args.dim,
                                                args.before if lib == "before" else ROOT, args.warm))
                for lib in libs:
                    rs = results[lib]
                    seconds = statistics.median(r["seconds"] for r in rs)
                    cpu = statistics.median(r["cpu"] for r in rs)
                    floor = statistics.median(r["floor"] for r in rs)
                    extra = max(r["peak"] - r["floor"] for r in rs)
                    result = rs[0]["result"]
                    transient = max(r["peak"] - r["floor"] - r["result"] for r in rs)
                    freed = max(r["peak"] - r["after"] for r in rs)
                    print(f"{op:6} {fmt:4} {lib:9} {seconds:8.2f} {cpu:7.2f} {floor / 2**20:9.0f} {extra / 2**20:10.0f} "
                          f"{result / 2**20:7.0f} {transient / 2**20:9.0f} {transient / table:7.2f} {freed / 2**20:10.0f}",
                          flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
