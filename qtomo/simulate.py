"""Simulate a measured state: build it, sample POVM records with exact ln P, write a dataset.

``simulate`` is the Python API behind ``qtomo simulate``. States:

- ``tfim``: ground state of H = −J Σ Z_i Z_{i+1} − h Σ X_i (open, or periodic on request);
- ``ghz``: (|0…0⟩ + |1…1⟩)/√2;
- ``product``: ⊗_i |φ⟩ with |φ⟩ one of 0, 1, +, -, +i, -i;
- ``w``, ``cluster``, ``xxz`` (J Σ (XX + YY + Δ ZZ)): :mod:`qtomo.states.named`;
- ``random-circuit`` (Haar brickwork of ``depth`` layers) and ``circuit`` (an OpenQASM 2 file or
  a qiskit ``QuantumCircuit``): :mod:`qtomo.states.circuit` (docs/states-and-circuits.md).

Each is an entry of :mod:`qtomo.states.registry`, which says how to build it on either path.

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
from qtomo.states.registry import (
    NAMED_STATES,
    NamedState,
    StateParameters,
    named_state_entry,
    prepare_state,
)

__all__ = ["DEFAULT_SAMPLES", "METHODS", "STATES", "SimulationWarning", "default_output",
           "simulate"]

#: the named states (:data:`qtomo.states.registry.NAMED_STATES`)
STATES = tuple(NAMED_STATES)
METHODS = ("auto", "exact", "mps")
DEFAULT_SAMPLES = 100_000
SAMPLE_CHUNK = 2**16


class SimulationWarning(UserWarning):
    """A physics caveat about a simulated state (e.g. an unresolved near-degeneracy)."""


def default_output(state: str, L: int, h: float, povm: str, *, delta: float | None = None,
                   depth: int | None = None) -> Path:
    """``data/<state>_L<L>[_h<h>|_delta<Δ>|_d<depth>]_<povm>.h5``: the field the state's
    registry entry names (``_h`` for the TFIM, ``_delta`` for the XXZ chain, ``_d`` for the
    random circuit), left out when its value is not given (docs/simulate.md "Simulating data").

    Example:
        >>> str(default_output("tfim", 50, 1.0, "pauli4"))
        'data/tfim_L50_h1_pauli4.h5'
    """
    field = named_state_entry(state).file_field({"h": h, "delta": delta, "depth": depth})
    return Path("data") / f"{state}_L{L}{field}_{povm}.h5"


def simulate(
    state: str = "tfim", L: int | None = None, *, J: float = 1.0, h: float = 1.0,
    delta: float = 1.0, depth: int | None = None, circuit=None, boundary: str = "open",
    product_state: str = "+", povm: str = "pauli4", samples: int = DEFAULT_SAMPLES,
    method: str = "auto", chi_max: int | None = None, svd_min: float | None = None,
    dmrg_seconds: float | None = None, depolarizing: float = 0.0, dephasing: float = 0.0,
    amplitude_damping: float = 0.0,
    readout_error: Sequence[float] | Sequence[Sequence[float]] | None = None, seed: int = 0,
    device: str | torch.device = "auto", out: str | os.PathLike | None = None,
    quiet: bool = False,
) -> Path:
    """Sample ``samples`` POVM records of a state and write them, with references, to ``out``.

    Args:
        state: one of :data:`STATES`; ``circuit`` when ``circuit`` is given.
        L: qubits (default 50; for a circuit the register size, which L must equal if given).
        J, h, delta, depth, circuit, boundary, product_state: the state's parameters, each
            read by the states that take it (:class:`~qtomo.states.registry.StateParameters`:
            J, h, boundary of the TFIM, J and Δ of the XXZ chain, ``depth`` layers of
            ``random-circuit`` (required there), ``circuit`` an OpenQASM 2 file or a qiskit
            ``QuantumCircuit``, the product state's single-qubit label).
        povm: POVM name (``pauli4``, ``pauli6``, ``tetra``).
        samples: N ≥ 1 records.
        method: ``auto``, ``exact`` or ``mps``.
        chi_max, svd_min, dmrg_seconds: MPS bond-dimension cap (DMRG and circuits), discarded
            weight per DMRG truncation (which sets the accuracy of the stored ln P) and DMRG
            time budget, past which the run stops with a ``ConvergenceError`` naming this
            option; MPS path, None: the defaults of :func:`qtomo.states.mps.tfim_mps`,
            :func:`qtomo.states.named.xxz_mps`, :data:`qtomo.states.circuit.CHI_MAX`,
            :data:`qtomo.states.dmrg.DMRG_SECONDS`.
        depolarizing, dephasing, amplitude_damping: the local channel on every qubit, each in
            [0, 1] (:class:`qtomo.states.noise.LocalNoise`); stored as root attributes when any
            is non-zero.
        readout_error: (e0, e1) = (P(read 1 | 0), P(read 0 | 1)) of every qubit's bit, or an
            (L, 2) table of them per qubit, for ``povm="pauli6"``: the records are those of
            :func:`qtomo.readout.readout_povms`, which the file stores (docs/measured-data.md
            "Measured data"); the references stay the state's.
        seed: seeds the sampler and a random circuit (DMRG's initial state is deterministic).
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
    named, L, parameters = prepare_state(state, L, StateParameters(
        J=J, h=h, delta=delta, boundary=boundary, product_state=product_state, depth=depth,
        seed=seed, circuit=circuit, chi_max=chi_max, svd_min=svd_min, dmrg_seconds=dmrg_seconds))
    _check_arguments(method, L, samples, parameters)
    channel = LocalNoise(depolarizing, dephasing, amplitude_damping)
    measurement = _measurement(povm, readout_error, L)
    method = _resolve_method(method, L, povm, measurement.K, channel)
    target = check_writable(out if out is not None else default_output(
        named.name, L, h, povm, delta=delta, depth=depth))
    check_space(target, 8 * samples, "the ln P column alone (8 bytes per record)")

    built = noisy_state(_build_state(named, L, parameters, method), channel)
    if built.attrs.get("warning"):
        warnings.warn(built.attrs["warning"], SimulationWarning, stacklevel=2)
    sampler_device = resolve_device(device) if method == "mps" else torch.device("cpu")
    distribution = built.distribution(measurement, device=sampler_device)
    generator = torch.Generator(sampler_device).manual_seed(seed)
    attrs = {**built.attrs, "L": L, "seed": seed, "method": method,
             "readout_error": None if readout_error is None else np.asarray(
                 readout_error, dtype=np.float64).tolist()}
    return write_dataset(target, povm=measurement, attrs=attrs, n_records=samples,
                         chunks=_record_chunks(distribution, samples, generator),
                         reference=named.references(built, L, parameters), quiet=quiet)


def _check_arguments(method: str, L, samples, parameters: StateParameters) -> None:
    """QtomoError unless the method is known, L and samples are positive integers, J, h and Δ
    are finite and chi_max (if given) is at least 1."""
    if method not in METHODS:
        raise QtomoError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
        raise QtomoError(f"L must be a positive integer; got {L!r}")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise QtomoError(f"the number of samples must be a positive integer; got {samples!r}")
    for name in ("J", "h", "delta"):
        if not math.isfinite(getattr(parameters, name)):
            raise QtomoError(f"{name} must be finite; got {getattr(parameters, name)}")
    if parameters.chi_max is not None and parameters.chi_max < 1:
        raise QtomoError(f"--chi-max must be at least 1; got {parameters.chi_max}")


def _measurement(povm: str, readout_error, L: int):
    """The POVM named ``povm``, or with a readout error the per-qubit POVMs of
    :func:`qtomo.readout.readout_povms` (pauli6 only)."""
    if readout_error is None:
        return get_povm(povm)
    if povm != "pauli6":
        raise QtomoError(f"--readout-error flips the bits of Pauli-basis shots and needs "
                         f"--povm pauli6; got {povm}")
    return readout_povms(readout_error, L)


def _resolve_method(method: str, L: int, povm: str, K: int, channel: LocalNoise) -> str:
    """``exact`` or ``mps``: ``auto`` is exact up to :func:`qtomo.states.exact.exact_limit`
    of the K outcomes of POVM ``povm`` (with noise at most :data:`NOISY_EXACT_MAX_L`), MPS
    above.

    Raises:
        QtomoError: ``exact`` asked for an L above that limit.
    """
    limit = exact.exact_limit(K)
    if channel.active:
        limit = min(limit, NOISY_EXACT_MAX_L)
    if method == "auto":
        return "exact" if L <= limit else "mps"
    if method == "exact" and L > limit:
        what = " with a noise channel (dense 2^L × 2^L ρ)" if channel.active else ""
        raise QtomoError(
            f"the exact method handles L <= {limit} for POVM {povm!r} (K = {K}){what}; "
            f"got L = {L}; use --method mps"
        )
    return method


def _build_state(named: NamedState, L: int, parameters: StateParameters, method: str):
    """The state on the ``exact`` or ``mps`` path, as its registry entry builds it (the one
    step that may take long: DMRG, a deep circuit)."""
    return named.build(L, parameters, method)


def _record_chunks(distribution, samples: int, generator: torch.Generator):
    """(outcomes (b, L) uint8, ln P (b,) float64) numpy chunks of at most
    :data:`SAMPLE_CHUNK` records, ``samples`` in all, drawn from ``distribution``."""
    for start in range(0, samples, SAMPLE_CHUNK):
        size = min(SAMPLE_CHUNK, samples - start)
        outcomes, log_prob = distribution.sample_with_log_prob(size, generator)
        yield outcomes.cpu().numpy().astype(np.uint8), log_prob.cpu().numpy()
