"""The worked examples in examples/ run end to end (small sizes; docs/examples.md "Examples")."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# each example at a size that runs in seconds, and what its output must show
CASES = {
    "tfim_chain.py": (["--L", "14", "--samples", "4000", "--epochs", "2"],
                      ["<Z_0 Z_r> exact", "energy per site", "(contracted)",
                       "2-site blocks: fidelity", "z (model - data)", "tfim_L14_mps.png"]),
    "ghz_coherence.py": (["--L", "4", "--samples", "3000", "--epochs", "2"],
                         ["gru", "mixture", "classical fidelity F_c", "closed form: 0.942981"]),
    "lab_data.py": (["--L", "4", "--samples", "2000", "--epochs", "2"],
                    ["POVM pauli6+readout", "exact ln P in the file: False",
                     "measured data (no exact ln P", "lab_counts.json", "exact ⟨X_1⟩"]),
    "noisy_state.py": (["--samples", "4000", "--epochs", "2"],
                       ["depolarizing 0.1", "mixed target", "lpdo", "gru"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs(script, tmp_path):
    arguments, expected = CASES[script]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "examples" / script), *arguments,
                          "--out-dir", str(tmp_path)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    for text in expected:
        assert text in run.stdout, text
