"""Cold compile time of ``sparsemb demo``: where Numba's first-run time goes, kernel by kernel.

Each run is a fresh process (``python -c``) with an empty temporary ``NUMBA_CACHE_DIR``: it imports
sparsemb and runs ``sparsemb demo --quiet`` (:func:`sparsemb.cli.main`: skip-gram, then CBOW, on the
generated corpus). A listener on Numba's ``numba:compile`` event times every compilation of that
process, in CPU seconds of the compiling thread (less disturbed by other work on the machine than
wall seconds): per kernel and signature, *inclusive* (the kernel's own compile call) and *self* (minus the
sparsemb kernels compiled inside it, which a non-inlined callee is; Numba's own implementations it
pulls in, np.empty or the formatting of an error message, count as its own). A second process on the
now full cache gives the warm time; cold minus warm is what compiling costs a first run. Runs
alternate cold, warm, cold, warm, ...; the table shows the medians over rounds.

Wall time is what a user waits; CPU time (user + system of the run and of every process it started
and waited for) is what the machine spent, and is less disturbed by other work on it. They differ
when the demo compiles its second model's kernel in a helper process beside the first
(:func:`sparsemb.cli._compile_ahead`): its CPU time is counted, its compilations are not in the
per-kernel tables, which are those of the demo's own process.

    python scripts/bench_compile.py                      # 3 rounds
    python scripts/bench_compile.py --rounds 5 --markdown  # a section for BENCHMARKS.md
    python scripts/bench_compile.py --cli                 # also time `sparsemb demo --quiet` end to end
    python scripts/bench_compile.py --tree /tmp/old --tree .  # two checkouts, interleaved, side by side
    python scripts/bench_compile.py --rounds 1 --tree /tmp/old --tree . --save r.jsonl  # again when quiet
    python scripts/bench_compile.py --results r.jsonl --markdown  # the medians of the saved rounds

On a machine shared with other work a compile's wall time depends on what else runs: each run reports
the share of the cores that other processes used meanwhile, and ``--save`` / ``--results`` let rounds
be run one at a time, at quiet moments, and summarized together.

``--tree`` runs the children with that checkout first on ``sys.path`` (``git worktree add /tmp/old
<commit>`` gives an earlier version), so a change is measured against its parent in the same rounds.

The demo's threads are left at their default (all cores), as a user runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: Run inside the child: time imports, the demo and each compilation; print one JSON line.
CHILD = r"""
import io, json, sys, time
t0 = time.perf_counter()
from numba.core import event as ev

stack, records = [], []

class Timer(ev.Listener):
    def on_start(self, event):
        f = event.data["dispatcher"].py_func
        name = f.__module__.rsplit(".", 1)[-1] + "." + f.__qualname__
        ours = f.__module__.startswith("sparsemb")
        # Numba's own implementations (np.empty, string formatting for error messages, ...) compiled
        # while a kernel compiles are that kernel's cost: charged to the nearest sparsemb caller.
        sig = ", ".join(str(a) for a in event.data["args"])
        owner = [name, sig] if ours or not stack else stack[-1][4]
        stack.append([name, sig, time.thread_time(), 0.0, owner])

    def on_end(self, event):
        name, sig, start, inner, owner = stack.pop()
        total = time.thread_time() - start
        if stack:
            stack[-1][3] += total
        records.append({"kernel": name, "owner": owner, "sig": sig, "inclusive": total,
                        "self": total - inner})

ev.register("numba:compile", Timer())
import contextlib
import sparsemb.cli
t_import = time.perf_counter() - t0
with contextlib.redirect_stdout(io.StringIO()):
    status = sparsemb.cli.main(["demo", "--quiet"])
assert status == 0, status
print(json.dumps({"import": t_import, "total": time.perf_counter() - t0, "compiles": records}))
"""


def child(cache_dir, tree):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env["PYTHONPATH"] = os.pathsep.join([tree] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    t0, cpu0, busy0 = time.perf_counter(), _children_cpu(), _machine_busy()
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, cwd=tree)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        sys.exit(f"child failed ({tree}):\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall"], out["cpu"] = wall, cpu
    # The share of the machine's cores that other processes used meanwhile: on a shared machine, what
    # tells a quiet round from one that competed for the cores.
    out["other"] = max(0.0, (_machine_busy() - busy0 - cpu) / (wall * (os.cpu_count() or 1)))
    return out


def _machine_busy():
    """Busy CPU seconds of the whole machine so far (Linux /proc/stat; NaN elsewhere)."""
    import _benchutil as bu

    return bu._cpu_seconds()[0]


def _children_cpu():
    """CPU seconds (user + system) of this process's finished children and of theirs (a helper
    process that compiles beside the demo is counted when its parent has waited for it)."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def cli_run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    t0 = time.perf_counter()
    proc = subprocess.run(["sparsemb", "demo", "--quiet"], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"sparsemb demo failed:\n{proc.stderr}")
    return time.perf_counter() - t0


def summarize(colds, warms):
    """Medians over rounds: whole-process times and each kernel's (and signature's) compile seconds."""
    med = statistics.median
    out = {"cold": med(c["wall"] for c in colds), "warm": med(w["wall"] for w in warms),
           "cold_cpu": med(c["cpu"] for c in colds), "warm_cpu": med(w["cpu"] for w in warms),
           "diff": med(c["wall"] - w["wall"] for c, w in zip(colds, warms)),
           "diff_cpu": med(c["cpu"] - w["cpu"] for c, w in zip(colds, warms)),
           "compile": med(sum(r["self"] for r in c["compiles"]) for c in colds),
           "other": med(r.get("other", float("nan")) for r in colds + warms),
           "count": med(len(c["compiles"]) for c in colds)}
    per = {}
    for c in colds:
        round_ = {}
        for r in c["compiles"]:
            key = tuple(r["owner"])
            round_.setdefault(key, [0.0, 0.0])
            round_[key][0] += r["self"]
            if key == (r["kernel"], r["sig"]):
                round_[key][1] += r["inclusive"]
        for key in round_:
            per.setdefault(key, []).append(round_[key])
    out["signatures"] = {k: (med(s for s, _ in v), med(i for _, i in v)) for k, v in per.items()}
    kernels = {}
    for (kernel, _sig), (s, _) in out["signatures"].items():
        kernels.setdefault(kernel, [0.0, 0])
        kernels[kernel][0] += s
        kernels[kernel][1] += 1
    out["kernels"] = kernels
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--markdown", action="store_true", help="print a section for BENCHMARKS.md")
    ap.add_argument("--cli", action="store_true", help="also time `sparsemb demo --quiet` cold and warm "
                    "(the installed command, whatever --tree says)")
    ap.add_argument("--tree", action="append", default=None,
                    help="checkout to measure (repeatable; default: the one holding this script)")
    ap.add_argument("--top", type=int, default=12, help="signatures shown in the table")
    ap.add_argument("--save", metavar="FILE", help="append each round's measurements to FILE (JSON lines)")
    ap.add_argument("--results", metavar="FILE", help="summarize the rounds saved in FILE (--save) instead of "
                    "running any: rounds run one at a time, whenever the shared machine is quiet")
    ap.add_argument("--max-other", type=float, default=None, metavar="SHARE",
                    help="with --results: leave out the rounds (a tree's cold and warm run) during which "
                    "other processes used more than SHARE (0-1) of the cores")
    args = ap.parse_args(argv)
    trees = [os.path.abspath(t) for t in (args.tree or [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))])]

    runs = {t: ([], []) for t in trees}
    clis = []
    if args.results:
        runs = {}
        with open(args.results) as f:
            for line in f:
                saved = json.loads(line)
                other = max(saved["cold"]["other"], saved["warm"]["other"])
                if args.max_other is not None and other > args.max_other:
                    continue
                runs.setdefault(saved["tree"], ([], []))
                runs[saved["tree"]][0].append(saved["cold"])
                runs[saved["tree"]][1].append(saved["warm"])
        trees = list(runs)
        args.rounds = min(len(cold) for cold, _ in runs.values())
    for _ in range(0 if args.results else args.rounds):
        for tree in trees:
            tmp = tempfile.mkdtemp(prefix="sparsemb-bench-compile-")
            try:
                runs[tree][0].append(child(tmp, tree))
                runs[tree][1].append(child(tmp, tree))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if args.save:
                with open(args.save, "a") as f:
                    f.write(json.dumps({"tree": tree, "cold": runs[tree][0][-1], "warm": runs[tree][1][-1]}) + "\n")
        if args.cli:
            tmp = tempfile.mkdtemp(prefix="sparsemb-bench-compile-")
            try:
                clis.append((cli_run(tmp), cli_run(tmp)))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    for tree, (_, warms) in runs.items():
        if any(w["compiles"] for w in warms):
            names = sorted({r["kernel"] for w in warms for r in w["compiles"]})
            print(f"warning: the warm runs of {tree} compiled again: {names}", file=sys.stderr)

    res = [summarize(*runs[t]) for t in trees]
    names = [os.path.basename(t.rstrip(os.sep)) or t for t in trees]
    cols = " | ".join(names)
    bar = "|---|" + "---:|" * len(trees)
    lines = []
    if args.markdown:
        import _benchutil as bu
        lines += [", ".join(bu.machine()[:2]) + ".",
                  f"Command: `python scripts/bench_compile.py --rounds {args.rounds}"
                  + "".join(f" --tree {n}" for n in names if len(trees) > 1)
                  + (" --save FILE` run round by round, then `--results FILE" if args.results else "")
                  + (f" --max-other {args.max_other:g}" if args.results and args.max_other is not None else "")
                  + (" --cli" if args.cli else "") + "`; medians of "
                  f"{args.rounds} rounds, each a fresh process with an empty `NUMBA_CACHE_DIR`, then one with "
                  "that cache full.", ""]
    def row(label, key, fmt="{:.2f}"):
        return f"| {label} | " + " | ".join(fmt.format(r[key]) for r in res) + " |"
    lines += [f"| seconds | {cols} |", bar,
              row("cold run (empty cache), whole process", "cold"),
              row("warm run (full cache), whole process", "warm"),
              row("cold - warm (median of each round's)", "diff"),
              row("CPU seconds, cold run (the demo's processes)", "cold_cpu"),
              row("CPU seconds, warm run", "warm_cpu"),
              row("CPU seconds, cold - warm (median of each round's)", "diff_cpu"),
              row("inside Numba compiles (CPU seconds of the compiling thread)", "compile"),
              row("compilations (kernel x signature, Numba's own included)", "count", "{:.0f}"),
              row("other processes' share of the cores during the runs", "other", "{:.0%}")]
    if clis:
        med = statistics.median
        lines += [f"| `sparsemb demo --quiet` (installed) cold / warm | {med(a for a, _ in clis):.2f} / "
                  f"{med(b for _, b in clis):.2f} |" + " |" * (len(trees) - 1)]
    all_k = sorted({k for r in res for k in r["kernels"]}, key=lambda k: -max(r["kernels"].get(k, [0])[0] for r in res))
    lines += ["", f"| compile CPU seconds of kernel (signatures) | {cols} |", bar]
    for k in all_k:
        cells = [f"{r['kernels'][k][0]:.2f} ({r['kernels'][k][1]})" if k in r["kernels"] else "-" for r in res]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    for name, r in zip(names, res):
        lines += ["", f"{name}: the costliest signatures", "", "| kernel(signature) | seconds | inclusive |",
                  "|---|---:|---:|"]
        for (kernel, sig), (s, i) in sorted(r["signatures"].items(), key=lambda kv: -kv[1][0])[: args.top]:
            sig = sig if len(sig) < 110 else sig[:107] + "..."
            lines.append(f"| {kernel}({sig}) | {s:.2f} | {i:.2f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
