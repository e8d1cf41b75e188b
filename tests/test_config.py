"""Where compiled kernels are cached (issue 10 §6) and the cold-cache check behind the first-run notice (§7).

Each case runs in a fresh interpreter: the cache folder is chosen when the kernels are defined, at
import, from the environment of that process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import sparsemb
from sparsemb import _config

PACKAGE = os.path.dirname(os.path.abspath(sparsemb.__file__))
ROOT = os.path.dirname(PACKAGE)

# Compiles one small kernel (first_out_of_range, through kernels.lookup's id check), the word2vec
# alias table and its sampler (which allocates its output through Numba's runtime), and reports where their caches are and whether they were cold.
PROBE = textwrap.dedent("""
    import json, numpy as np
    from sparsemb import _config, kernels
    from sparsemb.kernels import embedding, word2vec
    before = _config.cache_is_cold(embedding.first_out_of_range)
    kernels.lookup(np.ones((3, 2), np.float32), [0, 2])
    word2vec.draw_negatives(*word2vec.alias_table(np.ones(4)), 1, 3)
    print(json.dumps({"dir": _config.cache_dir(), "cold_before": before,
                      "cold_after": _config.cache_is_cold(embedding.first_out_of_range),
                      "path": embedding.first_out_of_range.stats.cache_path,
                      "hits": sum(embedding.first_out_of_range.stats.cache_hits.values())}))
""")


def run(env_changes, code=PROBE, tmp_home=None):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update({k: v for k, v in env_changes.items() if v is not None})
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def files_in(folder):
    return [os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs]


def test_cache_is_outside_the_package_under_xdg_cache_home_keyed_by_versions(tmp_path):
    import numba

    out, _ = run({"XDG_CACHE_HOME": str(tmp_path)})
    expected = os.path.join(str(tmp_path), "sparsemb", sparsemb.__version__,
                            f"numba-{numba.__version__}-py{sys.version_info[0]}.{sys.version_info[1]}")
    assert out["dir"] == expected
    assert out["path"].startswith(expected + os.sep)
    assert not os.path.commonpath([out["path"], PACKAGE]) == PACKAGE
    names = [os.path.basename(f) for f in files_in(expected)]
    assert any(n.startswith("embedding.first_out_of_range") and n.endswith(".nbi") for n in names)
    assert any(n.startswith("word2vec._alias_table") and n.endswith(".nbc") for n in names)


def test_numba_cache_dir_is_honoured(tmp_path):
    nc = tmp_path / "numba"
    out, _ = run({"NUMBA_CACHE_DIR": str(nc), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert out["dir"] == str(nc)
    assert out["path"].startswith(str(nc) + os.sep)
    assert files_in(str(nc)) and not (tmp_path / "xdg").exists()


def test_nothing_is_written_inside_the_package(tmp_path):
    before = set(files_in(PACKAGE))
    run({"XDG_CACHE_HOME": str(tmp_path)})
    new = [f for f in set(files_in(PACKAGE)) - before if f.endswith((".nbi", ".nbc"))]
    assert new == []


def test_second_run_loads_from_the_cache_and_the_check_sees_it(tmp_path):
    first, _ = run({"XDG_CACHE_HOME": str(tmp_path)})
    assert first["cold_before"] is True and first["cold_after"] is False and first["hits"] == 0
    second, _ = run({"XDG_CACHE_HOME": str(tmp_path)})
    assert second["cold_before"] is False and second["hits"] == 1


def test_a_cache_hit_loads_none_of_numbas_lowering_modules_and_compiling_after_it_works(tmp_path):
    # Loading cached machine code skips Numba's context refresh (its lowering modules, scipy.linalg):
    # the loaded kernels must still run (draw_negatives allocates through Numba's runtime), and a kernel
    # compiled afterwards in the same process (a signature not in the cache) must still compile.
    run({"XDG_CACHE_HOME": str(tmp_path)})
    code = textwrap.dedent("""
        import json, sys, numpy as np
        from sparsemb import kernels
        from sparsemb.kernels import word2vec
        w = np.arange(6, dtype=np.float32).reshape(3, 2)
        ok = kernels.lookup(w, [0, 2]).tolist() == [[0, 1], [4, 5]]
        prob, alias = word2vec.alias_table(np.array([1.0, 3.0]))
        ok = ok and prob.shape == (2,) and alias.shape == (2,)
        ok = ok and set(word2vec.draw_negatives(prob, alias, 1, 50).tolist()) == {0, 1}
        loaded = sorted(m for m in ("numba.np.arraymath", "numba.np.linalg", "scipy.linalg") if m in sys.modules)
        ok = ok and kernels.lookup(w.astype(np.float64), np.array([1], np.int32)).tolist() == [[2, 3]]
        print(json.dumps({"ok": ok, "loaded": loaded}))
    """)
    out, _ = run({"XDG_CACHE_HOME": str(tmp_path)}, code=code)
    assert out == {"ok": True, "loaded": []}


def test_two_checkouts_do_not_share_entries(tmp_path):
    # Numba's layout: a sub-folder per source folder, named after a hash of its path.
    from numba.core.caching import _CacheLocator

    a = _CacheLocator.get_suitable_cache_subpath("/one/checkout/sparsemb/kernels/word2vec.py")
    b = _CacheLocator.get_suitable_cache_subpath("/other/checkout/sparsemb/kernels/word2vec.py")
    assert a != b and a.startswith("kernels_") and b.startswith("kernels_")


def test_unwritable_cache_home_falls_back_without_error(tmp_path):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        blocked = tmp_path / "file-not-dir"  # root may write anywhere: a file where a folder should be
        blocked.write_text("")
    else:
        blocked = tmp_path / "ro"
        blocked.mkdir(mode=0o500)
    out, _ = run({"XDG_CACHE_HOME": str(blocked), "NUMBA_CACHE_DIR": str(blocked / "numba")})
    assert out["dir"] is not None and not out["dir"].startswith(str(blocked))
    assert out["path"].startswith(out["dir"])


def test_no_writable_folder_at_all_still_runs(tmp_path):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    code = "import tempfile; tempfile.tempdir = %r\n" % str(blocked) + PROBE
    out, err = run({"XDG_CACHE_HOME": str(blocked), "NUMBA_CACHE_DIR": str(blocked / "n")}, code=code)
    assert out["dir"] is None and out["cold_after"] is False  # compiled in this process
    assert "compiled again on every run" in err


def test_corrupt_index_is_a_miss_not_an_error(tmp_path):
    first, _ = run({"XDG_CACHE_HOME": str(tmp_path)})
    for f in files_in(first["dir"]):
        if f.endswith((".nbi", ".nbc")):
            with open(f, "wb") as fh:
                fh.write(b"\x80garbage")
    again, _ = run({"XDG_CACHE_HOME": str(tmp_path)})
    assert again["cold_before"] is True and again["hits"] == 0


def test_editing_a_neighbour_module_invalidates_the_stamp(tmp_path):
    src = tmp_path / "kernels"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    (src / "b.py").write_text("y = 1\n")
    s1 = _config._kernel_sources_stamp(str(src / "a.py"))
    (src / "b.py").write_text("y = 2\n")
    os.utime(src / "b.py", ns=(1, 1))
    assert _config._kernel_sources_stamp(str(src / "a.py")) != s1


def test_two_first_compiles_at_once_both_succeed(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "shared")
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    procs = [subprocess.Popen([sys.executable, "-c", PROBE], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    outs = [p.communicate() for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["cold_after"] is False
    third, _ = run({"NUMBA_CACHE_DIR": str(tmp_path / "shared")})
    assert third["cold_before"] is False and third["hits"] == 1


def test_cache_is_cold_on_plain_functions_is_false():
    assert _config.cache_is_cold(len) is False
    assert _config.cache_is_cold() is False


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX ownership check")
def test_temp_fallback_refuses_a_folder_others_can_write(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    shared = tmp_path / f"sparsemb-{os.getuid()}"
    shared.mkdir()
    os.chmod(shared, 0o777)
    assert _config._private_temp_root() is None
    os.chmod(shared, 0o700)
    assert _config._private_temp_root() == str(shared)
