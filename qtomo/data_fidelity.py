"""Fidelity to a pure target from the measured records alone (docs/targets-and-baselines.md).

With the canonical duals Q_k of the POVM, ρ = Σ_a P(a) Q_a (docs/conventions.md "Conventions"), so
for a pure target |ψ⟩ and records a^(1) … a^(N) drawn from P(a) = Tr(M_a ρ)::

    g(a) = ⟨ψ|Q_{a_0} ⊗ … ⊗ Q_{a_{L-1}}|ψ⟩        F̂ = (1/N) Σ_n g(a^(n))

is an unbiased estimate of F = ⟨ψ|ρ|ψ⟩ (E_P[g] = Σ_a P(a) ⟨ψ|Q_a|ψ⟩ = ⟨ψ|ρ|ψ⟩), with standard
error std(g)/√N. g(a) is a product of per-site transfer matrices through the target's MPS
(:func:`qtomo.reconstruct.pure_state_overlaps`), so it works at any L; but Var g grows roughly
like 3^L for Pauli measurements, and the records needed for a standard error of 0.01,
N_0.01 = Var(g) / 0.01², show from which L a model is needed.

Example (|0⟩ measured with ``pauli6``: outcome 0 (|0⟩) has P = 1/3, outcomes 2…5 (±, ±i)
P = 1/6 each; six records in exactly these proportions give F̂ = 1):
    >>> import numpy as np
    >>> from qtomo.povm import get_povm
    >>> from qtomo.targets import parse_target
    >>> records = np.array([[0], [0], [2], [3], [4], [5]])
    >>> round(records_fidelity(records, parse_target("product:0", 1), get_povm("pauli6")).value, 12)
    1.0
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from qtomo.errors import QtomoError
from qtomo.estimate import Estimate
from qtomo.povm import POVM, PerQubitPOVM
from qtomo.reconstruct import pure_state_overlaps
from qtomo.targets import Target

__all__ = ["CONTRACTION_BUDGET", "DataFidelity", "affordable_records", "data_fidelity",
           "records_fidelity"]

#: the standard error that ``records_for_0.01`` refers to
_RESOLUTION = 0.01
#: multiply-adds one evaluation spends on the data-only fidelity (about 10 s on a 2-core CPU:
#: measured 5·10^8 per second for the L = 50 TFIM MPS, χ = 29)
CONTRACTION_BUDGET = 5e9
_MIN_RECORDS = 1000


@dataclass(frozen=True)
class DataFidelity:
    """F̂ = mean g(a) over the records ± std(g)/√N, and N_0.01 = ⌈Var(g) / 0.01²⌉.

    Attributes:
        estimate: the unbiased estimate with its standard error.
        n_records: N, the records used (the first N of the dataset).
        records_for_0_01: records needed for a standard error of 0.01 at this L and state.
    """

    estimate: Estimate
    n_records: int
    records_for_0_01: int

    def as_dict(self) -> dict:
        """The JSON ``data_fidelity`` field: ``{"value", "stderr", "records_for_0.01",
        "records"}`` (``records``: N used)."""
        return {**self.estimate.as_dict(), "records_for_0.01": self.records_for_0_01,
                "records": self.n_records}


def affordable_records(target: Target) -> int:
    """Records whose overlaps g(a) fit :data:`CONTRACTION_BUDGET`: one record costs about
    Σ_i 2 χ_i χ_{i+1} (χ_i + χ_{i+1}) multiply-adds through the target's MPS; at least 1000.

    Example (GHZ, χ = 2: millions of records; a bond dimension of 30 at L = 50: a few thousand):
        >>> from qtomo.targets import parse_target
        >>> affordable_records(parse_target("ghz", 8)) > 10**7
        True
    """
    cost = sum(2 * B.shape[0] * B.shape[2] * (B.shape[0] + B.shape[2]) for B in target.mps)
    return max(_MIN_RECORDS, int(CONTRACTION_BUDGET / cost))


def records_fidelity(records: np.ndarray, target: Target, povm: POVM | PerQubitPOVM) -> Estimate:
    """F̂ ± stderr from one array of records (N, L) (module docstring)."""
    return data_fidelity([records], target, povm).estimate


def data_fidelity(chunks: Iterable[np.ndarray], target: Target, povm: POVM | PerQubitPOVM, *,
                  max_records: int | None = None) -> DataFidelity:
    """The data-only fidelity to a pure target from chunks of records (module docstring).

    Args:
        chunks: arrays (b, L) of integer outcomes in 0..K-1 (e.g. a dataset's chunks).
        target: a pure :class:`~qtomo.targets.Target` of the records' L.
        povm: the records' POVM (its duals Q_k).
        max_records: use only the first this many records (None: all).

    Returns:
        :class:`DataFidelity`; the sums are accumulated per chunk (Σ g, Σ g²), so memory is
        that of one chunk.

    Raises:
        QtomoError: a mixed target (⟨ψ|ρ|ψ⟩ needs a pure ψ) or fewer than 2 records.
    """
    if not target.pure:
        raise QtomoError(f"target {target.spec!r} is mixed; the data-only fidelity ⟨ψ|ρ|ψ⟩ "
                         f"needs a pure target")
    n, total, squares = 0, 0.0, 0.0
    for records in chunks:
        if max_records is not None:
            records = records[:max(0, max_records - n)]
        if len(records) == 0:
            break
        g = pure_state_overlaps(np.asarray(records), list(target.mps), povm)
        n, total, squares = n + g.size, total + float(g.sum()), squares + float(g @ g)
    if n < 2:
        raise QtomoError(f"the data-only fidelity needs at least 2 records; got {n}")
    mean = total / n
    variance = max(squares - n * mean**2, 0.0) / (n - 1)
    needed = int(np.ceil(variance / _RESOLUTION**2))
    return DataFidelity(Estimate(mean, float(np.sqrt(variance / n))), n, max(needed, 1))
