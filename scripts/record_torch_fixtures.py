"""Record PyTorch reference values for tests/test_torch_parity.py.

Run from the repository root, with torch installed (``pip install -e .[compare]``)::

    python scripts/record_torch_fixtures.py

It runs every case of tests/_torch_cases.py (nn.Embedding and nn.EmbeddingBag with each of their
options; SGD, Adagrad and SparseAdam on sparse gradients) through torch and writes the inputs and
the results to tests/fixtures/<family>.npz, one compressed file per family, so the test suite can
compare sparsemb against torch without torch installed. The cases are seeded and torch runs on one
thread, so re-running with the same torch rewrites byte-identical files; re-record when a case is
added or changed (tests/test_torch_parity.py::test_fixtures_are_current says so) and commit the .npz
files with that change.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import _torch_cases as cases  # noqa: E402


def main():
    import torch

    # One thread: torch's CPU kernels then sum in a fixed order, so a re-run gives the same bits.
    torch.set_num_threads(1)
    out_dir = ROOT / "tests" / "fixtures"
    out_dir.mkdir(parents=True, exist_ok=True)
    for family in cases.FAMILIES:
        recorded = [dict(case, expected=cases.run_torch(case))
                    for case in cases.build_cases(family)]
        path = out_dir / f"{family}.npz"
        cases.save_cases(path, recorded)
        print(f"{path.relative_to(ROOT)}: {len(recorded)} cases, {path.stat().st_size:,} bytes "
              f"(torch {torch.__version__})")


if __name__ == "__main__":
    main()
