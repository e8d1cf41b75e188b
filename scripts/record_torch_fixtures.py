"""Record PyTorch reference values for tests/test_torch_parity.py.

Run from the repository root, with torch installed (``pip install -e .[compare]``)::

    python scripts/record_torch_fixtures.py

It runs every case of tests/_torch_cases.py (nn.Embedding and nn.EmbeddingBag with each of their
options; SGD, Adagrad and SparseAdam on sparse gradients; optimizer state dicts; learning-rate
schedules) through torch and writes the inputs and the results to tests/fixtures/<family>.npz, one compressed file per family, so the test suite can
compare sparsemb against torch without torch installed. Re-record when a case is added or changed
(tests/test_torch_parity.py::test_fixtures_are_current says so) and commit the .npz files with that
change.

The stored inputs are the fixture, not a cache of the case list: the tests replay them, and a case
whose rebuilt inputs are the stored ones (within ``_torch_cases.INPUT_ULPS``: np.geomspace and libm
round differently on another CPU) keeps its stored inputs here. With torch on one thread, a re-run
with the same torch then rewrites byte-identical files on any machine; only added or changed cases
get new inputs.
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
        path = out_dir / f"{family}.npz"
        stored = cases.load_cases(path) if path.exists() else []
        inputs, kept = cases.stored_inputs(stored, cases.build_cases(family))
        recorded = [dict(case, expected=cases.run_torch(case)) for case in inputs]
        cases.save_cases(path, recorded)
        print(f"{path.relative_to(ROOT)}: {len(recorded)} cases ({kept} with their stored inputs), "
              f"{path.stat().st_size:,} bytes (torch {torch.__version__})")
    # Optimizer state dicts (loaded here, tests/test_torch_state.py) and learning-rate schedules
    # (tests/test_lr_scheduler.py): small and deterministic, rebuilt on every run.
    extra = {
        "torch_optim_state": [dict(case, expected=cases.run_torch_state(case))
                              for case in cases.build_state_cases()],
        "torch_lr_scheduler": [{"case": list(case), "expected": cases.run_torch_scheduler(case)}
                               for case in cases.SCHEDULER_CASES],
    }
    for family, recorded in extra.items():
        path = out_dir / f"{family}.npz"
        cases.save_cases(path, recorded)
        print(f"{path.relative_to(ROOT)}: {len(recorded)} cases, {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
