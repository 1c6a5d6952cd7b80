"""Simulate a measured state: build it, sample POVM records with exact ln P, write a dataset.

``simulate`` is the Python API behind ``qtomo simulate``. States:

- ``tfim``: ground state of H = −J Σ Z_i Z_{i+1} − h Σ X_i (open, or periodic on request);
- ``ghz``: (|0…0⟩ + |1…1⟩)/√2;
- ``product``: ⊗_i |φ⟩ with |φ⟩ one of 0, 1, +, -, +i, -i.

Methods: ``exact`` (dense ψ and the full table of K^L probabilities, L ≤ :func:`exact_limit`),
``mps`` (TeNPy DMRG for the TFIM, exact bond-dimension-2 MPS for GHZ, bond dimension 1 for
product states; batched ancestral sampling), and ``auto`` = exact up to the limit, MPS above.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from qtomo.data import write_dataset
from qtomo.device import resolve_device
from qtomo.errors import QtomoError
from qtomo.povm import get_povm
from qtomo.states import exact

__all__ = ["DEFAULT_SAMPLES", "METHODS", "STATES", "SimulationWarning", "default_output",
           "simulate"]

STATES = ("tfim", "ghz", "product")
METHODS = ("auto", "exact", "mps")
DEFAULT_SAMPLES = 100_000
SAMPLE_CHUNK = 2**16


class SimulationWarning(UserWarning):
    """A physics caveat about a simulated state (e.g. an unresolved near-degeneracy)."""


def default_output(state: str, L: int, h: float, povm: str) -> Path:
    """``data/<state>_L<L>[_h<h>]_<povm>.h5`` (``_h`` for the TFIM only; README "Simulating data").

    Example:
        >>> str(default_output("tfim", 50, 1.0, "pauli4"))
        'data/tfim_L50_h1_pauli4.h5'
    """
    field = f"_h{h:g}" if state == "tfim" else ""
    return Path("data") / f"{state}_L{L}{field}_{povm}.h5"


def simulate(
    state: str = "tfim",
    L: int = 50,
    *,
    J: float = 1.0,
    h: float = 1.0,
    boundary: str = "open",
    product_state: str = "+",
    povm: str = "pauli4",
    samples: int = DEFAULT_SAMPLES,
    method: str = "auto",
    chi_max: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    out: str | os.PathLike | None = None,
    quiet: bool = False,
) -> Path:
    """Sample ``samples`` POVM records of a state and write them, with references, to ``out``.

    Args:
        state: one of :data:`STATES`.
        L: qubits.
        J, h, boundary: TFIM parameters (ignored by other states).
        product_state: single-qubit label for ``state="product"``.
        povm: POVM name (``pauli4``, ``pauli6``, ``tetra``).
        samples: N ≥ 1 records.
        method: ``auto``, ``exact`` or ``mps``.
        chi_max: MPS bond-dimension cap for DMRG (MPS path; default of
            :func:`qtomo.states.mps.tfim_mps` when None).
        seed: seeds the sampler (and DMRG's initial state choice is deterministic).
        device: sampler device for the MPS path (``auto`` = CUDA when present).
        out: output file; default :func:`default_output`.
        quiet: no progress bars.

    Returns:
        Path of the dataset written (atomically).

    Raises:
        QtomoError: impossible parameters, an L beyond the exact limit with ``method="exact"``,
            an output folder that cannot be written.
    """
    if state not in STATES:
        raise QtomoError(f"unknown state {state!r}; expected one of {', '.join(STATES)}")
    if method not in METHODS:
        raise QtomoError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
        raise QtomoError(f"L must be a positive integer; got {L!r}")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise QtomoError(f"the number of samples must be a positive integer; got {samples!r}")
    for name, value in (("J", J), ("h", h)):
        if not math.isfinite(value):
            raise QtomoError(f"{name} must be finite; got {value}")
    if chi_max is not None and chi_max < 1:
        raise QtomoError(f"--chi-max must be at least 1; got {chi_max}")
    measurement = get_povm(povm)
    limit = exact.exact_limit(measurement.K)
    if method == "auto":
        method = "exact" if L <= limit else "mps"
    if method == "exact" and L > limit:
        raise QtomoError(
            f"the exact method handles L <= {limit} for POVM {povm!r} (K = {measurement.K}); "
            f"got L = {L}; use --method mps"
        )
    target = Path(out) if out is not None else default_output(state, L, h, povm)

    built = _build_state(state, L, J, h, boundary, product_state, method, chi_max)
    sampler_device = resolve_device(device) if method == "mps" else torch.device("cpu")
    if built.attrs.get("warning"):
        warnings.warn(built.attrs["warning"], SimulationWarning, stacklevel=2)
    distribution = built.distribution(measurement, device=sampler_device)
    generator = torch.Generator(sampler_device).manual_seed(seed)

    def chunks():
        for start in range(0, samples, SAMPLE_CHUNK):
            size = min(SAMPLE_CHUNK, samples - start)
            outcomes, log_prob = distribution.sample_with_log_prob(size, generator)
            yield outcomes.cpu().numpy().astype(np.uint8), log_prob.cpu().numpy()

    reference = built.references()
    if state == "ghz" and "mps" not in reference:
        from qtomo.states.mps import ghz_mps

        reference["mps"] = ghz_mps(L).references()["mps"]
    attrs = {**built.attrs, "L": L, "seed": seed, "method": method}
    return write_dataset(target, povm=measurement, attrs=attrs, n_records=samples,
                         chunks=chunks(), reference=reference, quiet=quiet)


def _build_state(state, L, J, h, boundary, product_state, method, chi_max):
    if method == "exact":
        if state == "tfim":
            return exact.tfim_ground_state(L, J, h, boundary)
        if state == "ghz":
            return exact.ghz_state(L)
        return exact.product_state(L, product_state)
    from qtomo.states import mps  # TeNPy is imported only when the MPS path is used

    if state == "tfim":
        options = {} if chi_max is None else {"chi_max": chi_max}
        return mps.tfim_mps(L, J, h, boundary=boundary, **options)
    if state == "ghz":
        return mps.ghz_mps(L)
    return mps.product_mps(L, product_state)
