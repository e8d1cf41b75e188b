"""scripts/gensim_suite.py: the class swap, and how results are read and grouped (no gensim needed)."""
import importlib.util
import os

import pytest

_path = os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "gensim_suite.py")
_spec = importlib.util.spec_from_file_location("gensim_suite", _path)
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)

CLASSES = {"gensim.models.word2vec.Word2Vec": "Word2Vec", "gensim.models.Word2Vec": "Word2Vec",
           "gensim.models.keyedvectors.KeyedVectors": "KeyedVectors", "gensim.models.KeyedVectors": "KeyedVectors",
           "gensim.models.keyedvectors.Word2VecKeyedVectors": "KeyedVectors"}


def test_swap_classes_only_the_two_classes_and_keeps_lines():
    source = (
        '"""Doc mentioning Word2Vec."""\n'
        "import os\n"
        "import gensim.models.keyedvectors\n"
        "from gensim.models import word2vec, keyedvectors\n"
        "from gensim.models.keyedvectors import (KeyedVectors as KV, REAL,\n"
        "                                        Word2VecKeyedVectors)\n"
        "m = word2vec.Word2Vec(word2vec.LineSentence('x'), hs=1)  # word2vec.Word2Vec in a comment\n"
        "kv = keyedvectors.KeyedVectors.load('y'); n = gensim.models.KeyedVectors(2)\n"
        "f = gensim.models.keyedvectors._load_word2vec_format(cls=gensim.models.KeyedVectors)\n"
        "other.Word2Vec(); KV(3); Word2VecKeyedVectors(4)\n"
    )
    new, count = suite.swap_classes(source, CLASSES.get)
    assert count == 6
    lines = new.splitlines()
    assert len(lines) == len(source.splitlines())
    assert lines[0] == '"""Doc mentioning Word2Vec."""'
    assert lines[1] == "import sparsemb; import os"
    assert lines[4] == ("from gensim.models.keyedvectors import REAL; "
                        "from sparsemb import KeyedVectors as KV, KeyedVectors as Word2VecKeyedVectors")
    assert lines[5] == ""
    assert lines[6] == "m = sparsemb.Word2Vec(word2vec.LineSentence('x'), hs=1)  # word2vec.Word2Vec in a comment"
    assert lines[7] == "kv = sparsemb.KeyedVectors.load('y'); n = sparsemb.KeyedVectors(2)"
    assert lines[8] == "f = gensim.models.keyedvectors._load_word2vec_format(cls=sparsemb.KeyedVectors)"
    assert lines[9] == "other.Word2Vec(); KV(3); Word2VecKeyedVectors(4)"


def test_swap_classes_leaves_a_module_without_them_alone():
    source = "import numpy as np\nfrom gensim.models import word2vec\nx = word2vec.LineSentence('a')\n"
    assert suite.swap_classes(source, CLASSES.get) == (source, 0)


@pytest.mark.parametrize("message, cause", [
    ("TypeError: Word2Vec.__init__() got an unexpected keyword argument 'hs'\nmore",
     "TypeError: Word2Vec.__init__() got an unexpected keyword argument 'hs'"),
    ("ValueError: /tmp/abc_12/gensim_word2vec.tst: truncated at line 14",
     "ValueError: <path>: truncated at line 14"),
    ("FileNotFoundError: [Errno 2] No such file: '/tmp/x/y.npy'",
     "FileNotFoundError: [Errno 2] No such file: '<path>'"),
    ("AssertionError: <object at 0x7f3a2b> != 3", "AssertionError: <object at 0x...> != 3"),
    ("AssertionError: 9 not less than 6", "AssertionError: 9 not less than 6"),
    (None, "(no message)"),
])
def test_cause_of_normalizes_the_first_line(message, cause):
    assert suite.cause_of(message) == cause


def test_cause_of_cuts_long_lines():
    cause = suite.cause_of("ValueError: " + "x" * 500)
    assert len(cause) == suite.CAUSE_WIDTH and cause.endswith("...")


def _report(nodeid, when, outcome, message=None):
    return {"event": "report", "nodeid": nodeid, "when": when, "outcome": outcome, "message": message,
            "where": None, "duration": 0.5}


def _test(nodeid, setup="passed", call="passed", teardown="passed", message=None, reached=True):
    events = [{"event": "start", "nodeid": nodeid}]
    for when, outcome in (("setup", setup), ("call", call), ("teardown", teardown)):
        if outcome is not None:
            events.append(_report(nodeid, when, outcome, None if outcome == "passed" else message))
    return events + [{"event": "finish", "nodeid": nodeid, "reached": reached}]


HS = "TypeError: Word2Vec.__init__() got an unexpected keyword argument 'hs'"
CANNED = (
    _test("t.py::A::ok")
    + _test("t.py::A::gensim_only", reached=False)
    + _test("t.py::A::hs1", call="failed", message=HS, reached=False)
    + _test("t.py::A::hs2", call="failed", message=HS + "\nsecond line")
    + _test("t.py::A::attr", call="failed", message="AttributeError: 'KeyedVectors' object has no attribute 'rank'")
    + _test("t.py::A::no_pot", setup="skipped", call=None, message="Skipped: POT not installed", reached=False)
    + _test("t.py::A::bad_setup", setup="failed", call=None, message="OSError: no data")
    + _test("t.py::A::bad_teardown", teardown="failed", message="OSError: cannot remove")
    + [{"event": "start", "nodeid": "t.py::A::hangs"}, _report("t.py::A::hangs", "setup", "passed"),
       {"event": "timeout", "nodeid": "t.py::A::hangs", "outcome": "failed",
        "message": "Timeout: no progress for 5 s, pytest was killed"},
       {"event": "collect_error", "nodeid": "u.py", "outcome": "error",
        "message": "ModuleNotFoundError: No module named 'testfixtures'"}]
)


def test_outcomes_follow_pytest_rules():
    records = {r["nodeid"]: r for r in suite.outcomes(CANNED)}
    assert {n: r["outcome"] for n, r in records.items()} == {
        "t.py::A::ok": "passed", "t.py::A::gensim_only": "passed", "t.py::A::hs1": "failed",
        "t.py::A::hs2": "failed", "t.py::A::attr": "failed", "t.py::A::no_pot": "skipped",
        "t.py::A::bad_setup": "error", "t.py::A::bad_teardown": "error", "t.py::A::hangs": "failed",
        "u.py": "error"}
    assert records["t.py::A::hs2"]["cause"] == HS
    assert records["t.py::A::bad_teardown"]["cause"] == "OSError: cannot remove"
    assert records["t.py::A::ok"]["cause"] is None and records["t.py::A::ok"]["duration"] == 1.5
    assert records["t.py::A::hangs"]["cause"].startswith("Timeout:")


def test_summary_counts_and_groups_most_frequent_first():
    records = suite.outcomes(CANNED)
    text = suite.summary(records, verbose=False, tracked=True)
    lines = text.splitlines()
    assert lines[0] == "10 tests: 2 passed, 4 failed, 1 skipped, 3 errors"
    assert lines[1] == "1 of the 2 passed tests never run sparsemb code:"
    assert lines[2].strip() == "t.py::A::gensim_only"
    causes = [line for line in lines if line[:5].strip().isdigit()]
    assert causes[0] == f"    2  {HS}"
    assert sorted(causes[1:]) == causes[1:] and all(line.startswith("    1  ") for line in causes[1:])
    assert "no_pot  (Skipped: POT not installed)" in text
    assert "sparsemb" not in suite.summary(records, verbose=False, tracked=False)


def test_summary_lists_all_names_only_when_verbose():
    many = [e for i in range(5) for e in _test(f"t.py::A::t{i}", call="failed", message=HS)]
    records = suite.outcomes(many)
    short = suite.summary(records, verbose=False, tracked=False)
    assert short.count("t.py::A::t") == suite.NAMES_SHOWN and "... and 2 more (-v lists them all)" in short
    assert suite.summary(records, verbose=True, tracked=False).count("t.py::A::t") == 5
