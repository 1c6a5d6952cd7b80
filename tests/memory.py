"""The peak resident memory of a piece of work, measured in a fresh Python process: Linux's
VmHWM after resetting it (``/proc/self/clear_refs``), minus the resident memory before, so
that what the imports once held does not hide the work's own peak."""

import subprocess
import sys

import pytest

_SCRIPT = """
import pathlib, sys, torch
from qtomo.models import build
L, chi, rows = map(int, sys.argv[1:])
model = build("mps", L=L, K=4, povm="pauli4", chi=chi, real=1)
a = torch.randint(0, 4, (rows, L), generator=torch.Generator().manual_seed(0))
status = pathlib.Path("/proc/self/status")
def kib(field):
    return next(int(line.split()[1]) for line in status.read_text().splitlines()
                if line.startswith(field))
try:
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from here
except OSError:
    print("unsupported")
    sys.exit()
before = kib("VmRSS:")
WORK
print((kib("VmHWM:") - before) * 1024)
"""


def mps_peak_bytes(work: str, L: int, chi: int, rows: int) -> int:
    """Peak growth in bytes of ``work`` (a line of Python using ``model``, a real ``mps`` of
    L qubits and bond χ with pauli4, and ``a``, ``rows`` random records); skips the test where
    the peak cannot be reset."""
    out = subprocess.run([sys.executable, "-c", _SCRIPT.replace("WORK", work), str(L),
                          str(chi), str(rows)], capture_output=True, text=True,
                         check=True).stdout.strip()
    if out == "unsupported":
        pytest.skip("this kernel does not let a process reset its peak resident memory")
    return int(out)
