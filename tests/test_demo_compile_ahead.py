"""A first `sparsemb demo` compiles the kernels that count its corpus and its second model's kernel in
a helper process while it compiles the first model's kernel (issue 10 §7).

The helper only fills the on-disk cache: the demo's own results do not depend on it, and a helper that
fails or hangs costs the demo nothing but the wait.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import sparsemb
from sparsemb import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sparsemb.__file__)))

# Runs the demo (both models) and reports what this process compiled and whether a helper was started.
DEMO = textwrap.dedent("""
    import contextlib, io, json
    from numba.core import event as ev
    compiled = []

    class Compiled(ev.Listener):
        def on_start(self, event):
            pass

        def on_end(self, event):
            compiled.append(event.data["dispatcher"].py_func.__qualname__)

    ev.register("numba:compile", Compiled())
    from sparsemb import cli
    helpers = []
    start = cli._compile_ahead

    def spy(*args):
        helper = start(*args)
        helpers.append(helper is not None)
        return helper

    cli._compile_ahead = spy
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = cli.main(["demo", "--epochs", "1", "--dim", "8", "--threads", "1", "--quiet"])
    print(json.dumps({"status": status, "compiled": compiled, "helpers": helpers, "out": out.getvalue()}))
""")


def _demo(cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "-c", DEMO], env=env, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_second_models_kernel_is_compiled_by_the_helper_and_only_on_a_cold_cache(tmp_path):
    first = _demo(tmp_path / "cache")
    assert first["status"] == 0 and first["out"].count("planted-analogy accuracy") == 2
    assert first["helpers"] == [True]
    # The demo compiled the skip-gram kernel (from sentences in memory) and the encoder itself, and
    # loaded the counting kernels and CBOW's, which the helper compiled with the very signatures the
    # demo's run asks for.
    assert {"_train_sg_shared", "encode_block"} <= set(first["compiled"])
    assert not {"count_block", "insert_words", "_wide_space", "_train_cbow"} & set(first["compiled"])
    # ... and each once: the kernels compiled ahead from sentences in memory have the real run's types.
    assert len(first["compiled"]) == len(set(first["compiled"])), first["compiled"]
    second = _demo(tmp_path / "cache")
    assert second["helpers"] == [False] and second["compiled"] == []
    assert _results(second["out"]) == _results(first["out"])


def _results(out):
    """The demo's report without its temporary paths and timings: the loss, neighbours and accuracies (one
    thread: the same for the same seed)."""
    lines = [line.split("final loss ")[-1].split(";")[0] if "final loss" in line else line
             for line in out.splitlines() if "training on" not in line]
    return lines


def test_a_helper_that_hangs_is_stopped_and_the_demo_compiles_itself(tmp_path, capsys, monkeypatch):
    hung = []

    def hang(later, dim, seed):
        hung.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]))
        return hung[-1]

    monkeypatch.setattr(cli, "_compile_ahead", hang)
    monkeypatch.setattr(cli, "_COMPILE_AHEAD_WAIT", 0.5)
    assert cli.main(["demo", "--epochs", "1", "--dim", "8", "--quiet", "--dir", str(tmp_path), "--force"]) == 0
    assert capsys.readouterr().out.count("planted-analogy accuracy") == 2
    assert hung and hung[0].poll() is not None  # killed after the wait, not left running


def test_no_helper_for_one_model():
    assert cli._compile_ahead([], 8, 1) is None
