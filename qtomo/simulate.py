"""Simulate a measured state: build it, sample POVM records with exact ln P, write a dataset.

``simulate`` is the Python API behind ``qtomo simulate``. States:

- ``tfim``: ground state of H = −J Σ Z_i Z_{i+1} − h Σ X_i (open, or periodic on request);
- ``ghz``: (|0…0⟩ + |1…1⟩)/√2;
- ``product``: ⊗_i |φ⟩ with |φ⟩ one of 0, 1, +, -, +i, -i;
- ``w``, ``cluster``, ``xxz`` (J Σ (XX + YY + Δ ZZ)): :mod:`qtomo.states.named`;
- ``random-circuit`` (Haar brickwork of ``depth`` layers) and ``circuit`` (an OpenQASM 2 file or
  a qiskit ``QuantumCircuit``): :mod:`qtomo.states.circuit` (docs/states-and-circuits.md).

Methods: ``exact`` (dense ψ and the full table of K^L probabilities, L ≤ :func:`exact_limit`),
``mps`` (TeNPy DMRG for the TFIM, exact bond-dimension-2 MPS for GHZ, bond dimension 1 for
product states; batched ancestral sampling), and ``auto`` = exact up to the limit, MPS above.

Noise (``depolarizing``, ``dephasing``, ``amplitude_damping``; :mod:`qtomo.states.noise`) acts on
every qubit after the state is prepared: the exact path applies it to the dense ρ (L ≤
:data:`~qtomo.states.noise.NOISY_EXACT_MAX_L`), the MPS path measures the pure MPS with the
Heisenberg-picture POVM E†(M_k). All parameters 0 is the pure state, file for file.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from qtomo.atomic import check_space, check_writable
from qtomo.data import write_dataset
from qtomo.device import resolve_device
from qtomo.errors import QtomoError
from qtomo.povm import get_povm
from qtomo.readout import readout_povms
from qtomo.states import exact
from qtomo.states.noise import NOISY_EXACT_MAX_L, LocalNoise, noisy_state

__all__ = ["DEFAULT_SAMPLES", "METHODS", "STATES", "SimulationWarning", "default_output",
           "simulate"]

STATES = ("tfim", "ghz", "product", "w", "cluster", "xxz", "random-circuit", "circuit")
METHODS = ("auto", "exact", "mps")
DEFAULT_SAMPLES = 100_000
SAMPLE_CHUNK = 2**16


class SimulationWarning(UserWarning):
    """A physics caveat about a simulated state (e.g. an unresolved near-degeneracy)."""


def default_output(state: str, L: int, h: float, povm: str, tag: str = "") -> Path:
    """``data/<state>_L<L>[_h<h>]<tag>_<povm>.h5`` (``_h`` for the TFIM only; ``tag`` e.g.
    ``_delta0.5`` or ``_d4``; docs/simulate.md "Simulating data").

    Example:
        >>> str(default_output("tfim", 50, 1.0, "pauli4"))
        'data/tfim_L50_h1_pauli4.h5'
    """
    field = f"_h{h:g}" if state == "tfim" else ""
    return Path("data") / f"{state}_L{L}{field}{tag}_{povm}.h5"


def simulate(
    state: str = "tfim",
    L: int | None = None,
    *,
    J: float = 1.0,
    h: float = 1.0,
    delta: float = 1.0,
    depth: int | None = None,
    circuit=None,
    boundary: str = "open",
    product_state: str = "+",
    povm: str = "pauli4",
    samples: int = DEFAULT_SAMPLES,
    method: str = "auto",
    chi_max: int | None = None,
    svd_min: float | None = None,
    dmrg_seconds: float | None = None,
    depolarizing: float = 0.0,
    dephasing: float = 0.0,
    amplitude_damping: float = 0.0,
    readout_error: Sequence[float] | Sequence[Sequence[float]] | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    out: str | os.PathLike | None = None,
    quiet: bool = False,
) -> Path:
    """Sample ``samples`` POVM records of a state and write them, with references, to ``out``.

    Args:
        state: one of :data:`STATES`; ``circuit`` when ``circuit`` is given.
        L: qubits (default 50; for a circuit the register size, which L must equal if given).
        J, h, boundary: TFIM parameters; J is also the XXZ coupling.
        delta: XXZ anisotropy Δ.
        depth: layers of ``random-circuit`` (required there).
        circuit: an OpenQASM 2 file (path) or a qiskit ``QuantumCircuit`` (qiskit installed:
            the optional extra ``circuits``).
        product_state: single-qubit label for ``state="product"``.
        povm: POVM name (``pauli4``, ``pauli6``, ``tetra``).
        samples: N ≥ 1 records.
        method: ``auto``, ``exact`` or ``mps``.
        svd_min: discarded weight allowed per DMRG truncation (MPS path; default of
            :func:`qtomo.states.mps.tfim_mps`, which sets the accuracy of the stored ln P).
        chi_max: MPS bond-dimension cap for DMRG and circuits (MPS path; default of
            :func:`qtomo.states.mps.tfim_mps`, of the XXZ DMRG, or
            :data:`qtomo.states.circuit.CHI_MAX` when None).
        dmrg_seconds: wall-clock budget of the DMRG sweeps (TFIM, XXZ; MPS path; default
            :data:`qtomo.states.dmrg.DMRG_SECONDS`); past it the run stops with a
            ``ConvergenceError`` that names this option.
        depolarizing, dephasing, amplitude_damping: the local channel on every qubit, each in
            [0, 1] (:class:`qtomo.states.noise.LocalNoise`); stored as root attributes when any
            is non-zero.
        readout_error: (e0, e1) = (P(read 1 | 0), P(read 0 | 1)) of every qubit's bit, or an
            (L, 2) table of them per qubit, for ``povm="pauli6"``: the records are those of
            :func:`qtomo.readout.readout_povms`, which the file stores (docs/measured-data.md
            "Measured data"); the references stay the state's.
        seed: seeds the sampler (and DMRG's initial state choice is deterministic).
        device: sampler device for the MPS path (``auto`` = CUDA when present).
        out: output file; default :func:`default_output`.
        quiet: no progress bars.

    Returns:
        Path of the dataset written (atomically).

    Raises:
        QtomoError: impossible parameters (a channel parameter outside [0, 1] or NaN), an L
            beyond the exact limit with ``method="exact"`` (with noise:
            min(exact_limit(K), NOISY_EXACT_MAX_L)), an output folder that cannot be written,
            a circuit that cannot be read or simulated within the bond cap.
    """
    state, L, gates, label = _circuit_gates(state, L, circuit, depth, seed)
    if state not in STATES:
        raise QtomoError(f"unknown state {state!r}; expected one of {', '.join(STATES)}")
    if method not in METHODS:
        raise QtomoError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
        raise QtomoError(f"L must be a positive integer; got {L!r}")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise QtomoError(f"the number of samples must be a positive integer; got {samples!r}")
    for name, value in (("J", J), ("h", h), ("delta", delta)):
        if not math.isfinite(value):
            raise QtomoError(f"{name} must be finite; got {value}")
    if chi_max is not None and chi_max < 1:
        raise QtomoError(f"--chi-max must be at least 1; got {chi_max}")
    channel = LocalNoise(depolarizing, dephasing, amplitude_damping)
    measurement = get_povm(povm)
    if readout_error is not None:
        if povm != "pauli6":
            raise QtomoError(f"--readout-error flips the bits of Pauli-basis shots and needs "
                             f"--povm pauli6; got {povm}")
        measurement = readout_povms(readout_error, L)
    limit = exact.exact_limit(measurement.K)
    if channel.active:
        limit = min(limit, NOISY_EXACT_MAX_L)
    if method == "auto":
        method = "exact" if L <= limit else "mps"
    if method == "exact" and L > limit:
        what = " with a noise channel (dense 2^L × 2^L ρ)" if channel.active else ""
        raise QtomoError(
            f"the exact method handles L <= {limit} for POVM {povm!r} (K = {measurement.K})"
            f"{what}; got L = {L}; use --method mps"
        )
    tag = {"xxz": f"_delta{delta:g}", "random-circuit": f"_d{depth}"}.get(state, "")
    target = check_writable(out if out is not None else default_output(state, L, h, povm, tag))
    check_space(target, 8 * samples, "the ln P column alone (8 bytes per record)")

    if gates is not None:
        built = _circuit_state(state, gates, L, label, method, chi_max, depth)
    else:
        dmrg = {"chi_max": chi_max, "svd_min": svd_min, "max_seconds": dmrg_seconds}
        built = _build_state(state, L, J, h, delta, boundary, product_state, method,
                             {key: value for key, value in dmrg.items() if value is not None})
    built = noisy_state(built, channel)
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
    attrs = {**built.attrs, "L": L, "seed": seed, "method": method,
             "readout_error": None if readout_error is None else np.asarray(
                 readout_error, dtype=np.float64).tolist()}
    return write_dataset(target, povm=measurement, attrs=attrs, n_records=samples,
                         chunks=chunks(), reference=reference, quiet=quiet)


def _circuit_gates(state, L, circuit, depth, seed):
    """(state, L, gates, label): the circuit's gates (None for a state that is not a circuit)
    and L (default 50; for a circuit its register, which a given L must equal)."""
    if circuit is not None:
        from qtomo.states.circuit import circuit_gates

        size, gates, label = circuit_gates(circuit)
        if L is not None and L != size:
            raise QtomoError(f"the circuit {label} has a register of {size} qubits; got L = {L}")
        return "circuit", size, gates, label
    if state == "circuit":
        raise QtomoError("--state circuit needs a circuit (--circuit FILE.qasm)")
    L = 50 if L is None else L
    if state != "random-circuit":
        return state, L, None, ""
    from qtomo.states.circuit import random_brickwork

    if depth is None:
        raise QtomoError("--state random-circuit needs --depth (layers of the brickwork)")
    return state, L, random_brickwork(L, depth, seed), f"random brickwork depth {depth}"


def _circuit_state(state, gates, L, label, method, chi_max, depth):
    """The circuit's MPS (bond cap chi_max), contracted to a dense ψ on the exact path."""
    from qtomo.states.circuit import CHI_MAX, circuit_state
    from qtomo.states.mps import mps_to_vector

    attrs = {"state": state, "circuit": label}
    if depth is not None and state == "random-circuit":
        attrs["depth"] = int(depth)
    built = circuit_state(gates, L, attrs, CHI_MAX if chi_max is None else chi_max)
    if method == "exact":
        return exact.ExactState(mps_to_vector(built.tensors), built.attrs)
    return built


def _build_state(state, L, J, h, delta, boundary, product_state, method, dmrg):
    """The state on the exact or MPS path; ``dmrg``: the DMRG options given (chi_max, svd_min,
    max_seconds)."""
    if state in ("w", "cluster", "xxz"):
        from qtomo.states.named import named_state

        return named_state(state, L, method, J=J, delta=delta, **dmrg)
    if method == "exact":
        if state == "tfim":
            return exact.tfim_ground_state(L, J, h, boundary)
        if state == "ghz":
            return exact.ghz_state(L)
        return exact.product_state(L, product_state)
    from qtomo.states import mps  # TeNPy is imported only when the MPS path is used

    if state == "tfim":
        return mps.tfim_mps(L, J, h, boundary=boundary, **dmrg)
    if state == "ghz":
        return mps.ghz_mps(L)
    return mps.product_mps(L, product_state)
