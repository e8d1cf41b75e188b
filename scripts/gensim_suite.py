"""Run gensim's own Word2Vec and KeyedVectors tests with sparsemb's classes swapped in.

Copies the installed ``gensim/test/test_word2vec.py`` and ``gensim/test/test_keyedvectors.py`` into a
temporary directory, rewrites every reference to gensim's ``Word2Vec`` and ``KeyedVectors`` classes
(``word2vec.Word2Vec``, ``keyedvectors.KeyedVectors``, ``gensim.models.KeyedVectors``, ``from
gensim.models.keyedvectors import KeyedVectors``, ...) into sparsemb's, and leaves everything else
gensim's: LineSentence, the helpers, ``gensim.test.utils.datapath`` and the data it finds in the
installed ``gensim/test/test_data``. Then it runs pytest on the copies and prints the counts and the
failures grouped by cause (exception type and the first line of its message, normalized), most
frequent first.

    python scripts/gensim_suite.py                       # both modules, sparsemb's classes
    python scripts/gensim_suite.py --gensim              # the unmodified copies: gensim's baseline
    python scripts/gensim_suite.py --module keyedvectors -k most_similar -v --json kv.json

A reference is swapped when its dotted name, resolved in the installed gensim, *is* one of the two
classes, so aliases (``keyedvectors.Word2VecKeyedVectors``) are swapped and nothing else is; line
numbers are kept, so tracebacks point at gensim's source lines. Use ``--keep`` to keep the copies
and run pytest on them directly.

pytest runs in a subprocess that loads this same file as a plugin (``-p gensim_suite``): the hooks
at the end of this file append each test's start, reports and finish to a JSON-lines log. A watchdog
kills the subprocess when a test makes no progress for ``--timeout`` seconds (no pytest-timeout
needed; a hung compiled kernel cannot be interrupted from inside), records that test as timed out,
and resumes the run without the tests already done. With sparsemb's classes the plugin also notes
whether any sparsemb code runs during a test, to list the tests that pass without reaching sparsemb
(gensim's own LineSentence tests, say).

Exit status: 0 when the suite ran, whatever its results; 2 when gensim is not installed; 1 when
pytest could not run (a bad ``-k`` expression, say).
"""
from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict

MODULES = {"word2vec": "test_word2vec.py", "keyedvectors": "test_keyedvectors.py"}
SWAPPED = ("Word2Vec", "KeyedVectors")
LOG_ENV = "GENSIM_SUITE_LOG"  # the JSON-lines log the plugin appends to
WATCH_ENV = "GENSIM_SUITE_WATCH"  # a directory: a test "reaches" it when it calls code there
SCRIPTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(SCRIPTS_DIR)
NAMES_SHOWN = 3  # test names listed under each cause without -v
CAUSE_WIDTH = 150
OUTSIDE_A_TEST = "(outside a test)"  # where the watchdog saw a stall between tests or in collection


# --- the rewrite ------------------------------------------------------------------------------------

def swap_classes(source, resolve):
    """Rewrite the references to gensim's ``Word2Vec`` / ``KeyedVectors`` in ``source`` into sparsemb's.

    Parameters
    ----------
    source : str
        A Python module.
    resolve : callable
        ``resolve(dotted_name) -> "Word2Vec" | "KeyedVectors" | None``: which swapped class a fully
        qualified name such as ``"gensim.models.keyedvectors.KeyedVectors"`` is, if any.

    Returns
    -------
    new_source : str
        Attribute references become ``sparsemb.<Class>`` (with ``import sparsemb`` put before the
        first top-level import); names imported with ``from gensim... import`` are imported from
        sparsemb instead. Line numbers are unchanged.
    count : int
        How many references and imported names were swapped.
    """
    data = source.encode("utf-8")  # ast column offsets count UTF-8 bytes
    line_starts = [0]
    for line in data.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))

    def span(node):
        return (line_starts[node.lineno - 1] + node.col_offset,
                line_starts[node.end_lineno - 1] + node.end_col_offset)

    tree = ast.parse(source)
    bound = {}  # name -> the dotted name an import statement bound it to (scopes are not told apart)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                bound[name] = alias.name if alias.asname else name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    edits, count = [], 0  # edits: (start, end, text)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "gensim":
            swapped = [(a, resolve(f"{node.module}.{a.name}")) for a in node.names]
            if not any(cls for _, cls in swapped):
                continue
            kept = [a for a, cls in swapped if cls is None]
            new = [f"{cls} as {a.asname or a.name}" if (a.asname or a.name) != cls else cls
                   for a, cls in swapped if cls is not None]
            statements = [ast.unparse(ast.ImportFrom(module=node.module, names=kept, level=0))] if kept else []
            statements.append("from sparsemb import " + ", ".join(new))
            count += len(new)
            start, end = span(node)
            edits.append((start, end, "; ".join(statements) + "\n" * (node.end_lineno - node.lineno)))
        elif isinstance(node, ast.Attribute):
            parts, inner = [], node
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if not isinstance(inner, ast.Name) or inner.id not in bound:
                continue
            dotted = ".".join([bound[inner.id], *reversed(parts)])
            cls = resolve(dotted) if dotted.startswith("gensim.") else None
            if cls is not None:
                edits.append((*span(node), f"sparsemb.{cls}"))
                count += 1

    if any(text.startswith("sparsemb.") for _, _, text in edits):
        first_import = next((node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                             and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")), None)
        if first_import is None:
            raise ValueError("cannot swap the classes: no top-level import to put 'import sparsemb' before")
        start, _ = span(first_import)
        edits.append((start, start, "import sparsemb; "))
    # Back to front, so earlier offsets stay valid; at one offset the insertion goes before the replacement.
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1] > e[0]), reverse=True):
        data = data[:start] + text.encode("utf-8") + data[end:]
    new_source = data.decode("utf-8")
    ast.parse(new_source)  # the rewrite must still be Python
    return new_source, count


def gensim_resolver():
    """A ``resolve`` for :func:`swap_classes` that looks dotted names up in the installed gensim."""
    from gensim.models.keyedvectors import KeyedVectors
    from gensim.models.word2vec import Word2Vec

    classes = {"Word2Vec": Word2Vec, "KeyedVectors": KeyedVectors}

    def resolve(dotted):
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for attr in parts[i:]:
                obj = getattr(obj, attr, None)
            return next((name for name, cls in classes.items() if obj is cls), None)
        return None

    return resolve


# --- results -----------------------------------------------------------------------------------------

def cause_of(message):
    """The cause a failure is grouped under: the first line of ``"Type: message"``, normalized.

    Memory addresses and absolute paths are blanked, so that one cause met in several tests (each
    with its own temporary file or object) is counted once; the line is cut to ``CAUSE_WIDTH``.
    """
    lines = (message or "").strip().splitlines()
    line = lines[0].strip() if lines else "(no message)"
    line = re.sub(r"0x[0-9a-fA-F]+", "0x...", line)
    line = re.sub(r"(?<![\w.])/(?:[^\s'\"/:]+/)+[^\s'\"/:]*", "<path>", line)
    return line if len(line) <= CAUSE_WIDTH else line[:CAUSE_WIDTH - 3] + "..."


def read_log(path):
    """The events the plugin wrote, in order (a line cut short by a kill is dropped)."""
    if not os.path.exists(path):
        return []
    events = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return events


def outcomes(events):
    """One record per test from the plugin's events, with pytest's rules for what counts as what.

    Returns a list of dicts ``{nodeid, outcome, cause, message, where, duration, reached}``, in run
    order; ``outcome`` is ``passed``, ``failed``, ``skipped`` or ``error`` (a failed setup or
    teardown, or a module that could not be collected); ``reached`` says whether any sparsemb code
    ran during the test (None when not tracked; a call refused at argument binding runs none).
    """
    tests = {}
    for event in events:
        record = tests.setdefault(event["nodeid"], {"nodeid": event["nodeid"], "outcome": None, "message": None,
                                                    "where": None, "duration": 0.0, "reached": None})
        kind = event["event"]
        if kind == "report":
            record["duration"] += event["duration"]
            when, outcome = event["when"], event["outcome"]
            if when == "call" or (outcome != "passed" and record["outcome"] in (None, "passed")):
                # A failed setup or teardown is an error; a skip in setup is a skip.
                record["outcome"] = "error" if outcome == "failed" and when != "call" else outcome
                record["message"], record["where"] = event["message"], event["where"]
        elif kind == "finish":
            record["reached"] = event["reached"]
        elif kind in ("timeout", "collect_error"):  # written with their outcome
            record["outcome"], record["message"], record["where"] = event["outcome"], event["message"], None
    records = [r for r in tests.values() if r["outcome"] is not None]
    for r in records:
        r["cause"] = cause_of(r["message"]) if r["outcome"] in ("failed", "error") else None
    return records


def summary(records, verbose, tracked):
    """The report printed at the end: counts, then the failures grouped by cause."""
    counts = Counter(r["outcome"] for r in records)
    lines = [f"{len(records)} tests: {counts['passed']} passed, {counts['failed']} failed, "
             f"{counts['skipped']} skipped, {counts['error']} errors"]
    if tracked:
        never = [r["nodeid"] for r in records if r["outcome"] == "passed" and r["reached"] is False]
        lines.append(f"{len(never)} of the {counts['passed']} passed tests never run sparsemb code"
                     + (":" if never else ""))
        lines += [f"    {nodeid}" for nodeid in never]
    skipped = [r for r in records if r["outcome"] == "skipped"]
    if skipped:
        lines.append("skipped:")
        lines += [f"    {r['nodeid']}  ({cause_of(r['message'])})" for r in skipped]
    groups = defaultdict(list)
    for r in records:
        if r["cause"] is not None:
            groups[r["cause"]].append(r["nodeid"])
    if groups:
        lines.append(f"failures and errors by cause ({len(groups)} causes):")
    for cause, names in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        lines.append(f"{len(names):5d}  {cause}")
        shown = names if verbose else names[:NAMES_SHOWN]
        lines += [f"         {name}" for name in shown]
        if len(shown) < len(names):
            lines.append(f"         ... and {len(names) - len(shown)} more (-v lists them all)")
    return "\n".join(lines)


# --- running pytest ----------------------------------------------------------------------------------

def run_suite(workdir, files, pytest_args, timeout, track):
    """Run pytest on ``files`` in ``workdir`` under the watchdog; return (events, pytest exit code, output).

    When a test makes no progress for ``timeout`` seconds, pytest is killed, a ``timeout`` event is
    logged for that test, and pytest is started again; the plugin deselects the tests the log has done.
    """
    log_path = os.path.join(workdir, "events.jsonl")
    output_path = os.path.join(workdir, "pytest.out")
    env = dict(os.environ, **{LOG_ENV: log_path})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SCRIPTS_DIR, REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
    if track:
        env[WATCH_ENV] = os.path.join(REPO_ROOT, "sparsemb")
    else:
        env.pop(WATCH_ENV, None)
    while True:
        cmd = [sys.executable, "-m", "pytest", *files, "-p", "gensim_suite", "-p", "no:cacheprovider",
               "-q", "--continue-on-collection-errors", "--rootdir", workdir, *pytest_args]
        with open(output_path, "a", encoding="utf-8") as out:
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            hung = watch(proc, log_path, timeout)
        if hung is not None:
            inside = hung != OUTSIDE_A_TEST
            message = f"Timeout: no progress for {timeout:g} s, pytest was killed"
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"event": "timeout", "nodeid": hung, "outcome": "failed" if inside else "error",
                                    "message": message}) + "\n")
            print(f"  {hung}: no progress for {timeout:g} s, killed" + ("; resuming" if inside else ""),
                  flush=True)
        # A stall outside a test (collection, the session's end) would only stall again.
        if hung is None or not inside:
            break
    with open(output_path, encoding="utf-8", errors="replace") as f:
        return read_log(log_path), proc.returncode, f.read()


def watch(proc, log_path, timeout):
    """Wait for ``proc``; return None when it exits, or the node id of a test that stalled and was killed.

    Progress is a new line in the log; a stall outside any test (collection, say) is reported as
    ``OUTSIDE_A_TEST``.
    """
    last_progress, size, current = time.monotonic(), 0, OUTSIDE_A_TEST
    while proc.poll() is None:
        time.sleep(0.2)
        new_size = os.path.getsize(log_path) if os.path.exists(log_path) else 0
        if new_size != size:
            size, last_progress = new_size, time.monotonic()
            for event in read_log(log_path)[::-1]:
                if event["event"] in ("start", "finish"):
                    current = event["nodeid"] if event["event"] == "start" else OUTSIDE_A_TEST
                    break
        elif time.monotonic() - last_progress > timeout:
            os.killpg(proc.pid, signal.SIGKILL)  # the session we started: pytest and its children
            proc.wait()
            return current
    return None


def main(argv=None):
    paragraphs = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(description="\n\n".join(paragraphs[:3]), epilog=paragraphs[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gensim", action="store_true",
                        help="run the unmodified copies (gensim's own classes): the baseline")
    parser.add_argument("--module", choices=("word2vec", "keyedvectors", "both"), default="both",
                        help="which of gensim's test modules to run (default: both)")
    parser.add_argument("-k", metavar="EXPR", help="passed to pytest: run only the tests matching EXPR")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every test name under each cause")
    parser.add_argument("--json", metavar="PATH", help="write the per-test outcomes to PATH")
    parser.add_argument("--timeout", type=float, default=180.0, metavar="SECONDS",
                        help="kill a test that makes no progress for this long (default: 180)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory with the copies and print its path")
    args = parser.parse_args(argv)

    try:
        import gensim
    except ImportError:
        print("gensim_suite: gensim is not installed (pip install gensim); its tests are what this runs",
              file=sys.stderr)
        return 2
    test_dir = os.path.join(os.path.dirname(gensim.__file__), "test")
    names = list(MODULES.values()) if args.module == "both" else [MODULES[args.module]]
    workdir = tempfile.mkdtemp(prefix="gensim_suite_")
    try:
        resolve = None if args.gensim else gensim_resolver()
        for name in names:
            source_path = os.path.join(test_dir, name)
            if resolve is None:
                shutil.copyfile(source_path, os.path.join(workdir, name))
                continue
            with open(source_path, encoding="utf-8") as f:
                source, count = swap_classes(f.read(), resolve)
            with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
                f.write(source)
            print(f"{name}: {count} references to Word2Vec / KeyedVectors swapped for sparsemb's")
        classes = "gensim's own classes" if args.gensim else f"sparsemb's Word2Vec and KeyedVectors ({REPO_ROOT})"
        print(f"gensim {gensim.__version__} tests from {test_dir}, with {classes}", flush=True)

        started = time.monotonic()
        events, code, output = run_suite(workdir, names, ["-k", args.k] if args.k else [], args.timeout,
                                         track=not args.gensim)
        records = outcomes(events)
        if code in (3, 4) or (code not in (0, 1, 5) and not records):  # 3, 4: pytest's internal and usage errors
            print(output.rstrip())
            print(f"gensim_suite: pytest could not run the suite (exit code {code}); its output is above",
                  file=sys.stderr)
            return 1
        print(summary(records, args.verbose, tracked=not args.gensim))
        print(f"({time.monotonic() - started:.0f} s)")
        if args.json:
            result = {"gensim": gensim.__version__, "classes": "gensim" if args.gensim else "sparsemb",
                      "modules": names, "k": args.k, "tests": records}
            with open(args.json + ".part", "w", encoding="utf-8") as f:
                json.dump(result, f, indent=1)
            os.replace(args.json + ".part", args.json)
        return 0
    finally:
        if args.keep:
            print(f"copies, pytest output and event log kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# --- the pytest plugin (loaded in the subprocess with -p gensim_suite) -------------------------------

_reached = False


def _emit(event):
    with open(os.environ[LOG_ENV], "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


def _watch_calls(frame, event, arg):
    global _reached
    if event == "call" and frame.f_code.co_filename.startswith(os.environ[WATCH_ENV]):
        _reached = True
        sys.setprofile(None)  # one call is enough to know; no cost for the rest of the test


def _failure(report):
    """(message, where) of a report that did not pass."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, lineno, reason)
        return longrepr[2], f"{longrepr[0]}:{longrepr[1]}"
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message, f"{crash.path}:{crash.lineno}"
    text = str(longrepr).strip().splitlines()  # a collection error: pytest's text, "E   Type: message" last
    return (text[-1].removeprefix("E").strip() if text else None), None


def pytest_collection_modifyitems(config, items):
    # After a kill, the run resumes without the tests the log has finished (or timed out). Exact ids:
    # --deselect matches prefixes, so it would drop test_x_from_file with test_x.
    if LOG_ENV not in os.environ:
        return
    done = {e["nodeid"] for e in read_log(os.environ[LOG_ENV]) if e["event"] in ("finish", "timeout")}
    if done:
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid in done])
        items[:] = [item for item in items if item.nodeid not in done]


def pytest_runtest_logstart(nodeid, location):
    global _reached
    if LOG_ENV not in os.environ:
        return
    _emit({"event": "start", "nodeid": nodeid})
    if WATCH_ENV in os.environ:
        _reached = False
        sys.setprofile(_watch_calls)


def pytest_runtest_logreport(report):
    if LOG_ENV not in os.environ:
        return
    message, where = (None, None) if report.passed else _failure(report)
    _emit({"event": "report", "nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
           "message": message, "where": where, "duration": report.duration})


def pytest_runtest_logfinish(nodeid, location):
    if LOG_ENV not in os.environ:
        return
    sys.setprofile(None)
    _emit({"event": "finish", "nodeid": nodeid, "reached": _reached if WATCH_ENV in os.environ else None})


def pytest_collectreport(report):
    if LOG_ENV in os.environ and report.failed:
        _emit({"event": "collect_error", "nodeid": report.nodeid, "outcome": "error", "message": _failure(report)[0]})


if __name__ == "__main__":
    sys.exit(main())
