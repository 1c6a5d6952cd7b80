"""The peak resident memory of a piece of work, measured in a fresh Python process: Linux's
VmHWM after resetting it (``/proc/self/clear_refs``), minus the resident memory before, so
that what the imports once held does not hide the work's own peak."""

import os
import subprocess
import sys

import pytest

_SCRIPT = """
import pathlib, sys, torch
from qtomo.models import build
L, chi, rows, K = map(int, sys.argv[1:])
model = build("mps", L=L, K=K, povm=f"pauli{K}", chi=chi, real=1)
a = torch.randint(0, K, (rows, L), generator=torch.Generator().manual_seed(0))
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


def mps_peak_bytes(work: str, L: int, chi: int, rows: int, *, K: int = 4,
                   freed_returned: bool = False) -> int:
    """Peak growth in bytes of ``work`` (a line of Python using ``model``, a real ``mps`` of
    L qubits and bond χ with ``pauli4`` or ``pauli6`` (K), and ``a``, ``rows`` random
    records); skips the test where the peak cannot be reset.

    ``freed_returned``: glibc's heap keeps freed blocks below its mmap threshold (which grows
    up to 32 MiB) for reuse, so at test sizes the resident peak also counts arrays already
    freed, while at the sizes a memory guard is for (arrays of hundreds of MB) every freed array
    goes back to the system. Fixing the threshold at 128 KiB (``MALLOC_MMAP_THRESHOLD_``)
    measures small work as large work behaves: one ``model.sweep`` at (L, χ, N) =
    (100, 4, 5·10^4) peaks at 466 MB with the heap's retention and at 253 MB without."""
    environment = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072") if freed_returned else None
    out = subprocess.run([sys.executable, "-c", _SCRIPT.replace("WORK", work), str(L),
                          str(chi), str(rows), str(K)], capture_output=True, text=True,
                         check=True, env=environment).stdout.strip()
    if out == "unsupported":
        pytest.skip("this kernel does not let a process reset its peak resident memory")
    return int(out)
