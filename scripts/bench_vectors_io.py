"""Peak memory and time of writing and reading word2vec files: sparsemb against gensim, same file.

Each measurement runs in a fresh subprocess: it imports the library, notes its RSS (the fixed floor),
builds or reads the table, and reports the wall time of the operation and the peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``). The table is random float32, keys ``w0``... .

    python scripts/bench_vectors_io.py --words 500000 --dim 50
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, ROOT)
import numpy as np
lib, op, fmt, path, words, dim = sys.argv[1:7]
words, dim = int(words), int(dim)
if lib in ("sparsemb", "before"):
    from sparsemb.word2vec import KeyedVectors
else:
    from gensim.models import KeyedVectors
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
binary = fmt == "bin"
if op == "write":
    rng = np.random.default_rng(0)
    vectors = (rng.standard_normal((words, dim)) * 0.1).astype(np.float32)
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
    del vectors
    floor = rss()
    t = time.perf_counter()
    kv.save_word2vec_format(path, binary=binary)
else:
    floor = rss()
    t = time.perf_counter()
    kv = KeyedVectors.load_word2vec_format(path, binary=binary)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak": peak, "floor": floor, "after": rss()}))
"""


def run(lib, op, fmt, path, words, dim, root=ROOT):
    out = subprocess.run([sys.executable, "-c", CHILD.replace("ROOT", repr(root), 1), lib, op, fmt, path,
                          str(words), str(dim)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=500_000)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--dir", default=None, help="where the files go (a temporary directory by default)")
    parser.add_argument("--before", default=None, metavar="DIR",
                        help="also run an older sparsemb checkout (e.g. git archive of the commit before issue 12)")
    args = parser.parse_args()
    table = args.words * args.dim * 4
    directory = args.dir or tempfile.mkdtemp()
    print(f"{args.words} words x {args.dim} dims: table {table / 2**20:.0f} MiB")
    print(f"{'op':6} {'fmt':4} {'library':9} {'seconds':>8} {'peak MiB':>9} {'floor MiB':>9} "
          f"{'peak-floor':>10} {'/table':>7}")
    for fmt in ("txt", "bin"):
        # Both read the file sparsemb wrote, then both read gensim's (the rows shown are the former).
        for op in ("write", "read"):
            for lib in ("sparsemb", "gensim") + (("before",) if args.before else ()):
                path = os.path.join(directory, f"{'sparsemb' if op == 'read' else lib}.{fmt}")
                r = run(lib, op, fmt, path, args.words, args.dim, args.before if lib == "before" else ROOT)
                extra = r["peak"] - r["floor"]
                print(f"{op:6} {fmt:4} {lib:9} {r['seconds']:8.2f} {r['peak'] / 2**20:9.0f} "
                      f"{r['floor'] / 2**20:9.0f} {extra / 2**20:10.0f} {extra / table:7.2f}", flush=True)


if __name__ == "__main__":
    main()
