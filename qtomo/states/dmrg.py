"""Ground states of Pauli-sum Hamiltonians (TFIM, XXZ) by two-site DMRG with TeNPy, as
right-canonical MPS tensors in qtomo's conventions (docs/simulate.md "MPS path (large L)")."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from qtomo.errors import ConvergenceError, QtomoError
from qtomo.states.hamiltonians import TFIM, XXZ

__all__ = ["DMRG_SECONDS", "dmrg_ground_state"]

_MAX_SWEEPS = 60
DMRG_SECONDS = 1800.0  # default wall-clock budget of the sweeps

#: a Hamiltonian with ``L``, ``conserve``, ``tenpy_terms()`` and ``check_ground_state_defined()``
Hamiltonian = TFIM | XXZ


def dmrg_ground_state(
    hamiltonian: Hamiltonian, start: Sequence[np.ndarray], chi_max: int = 64,
    svd_min: float = 1e-14, energy_tol: float = 1e-10, max_seconds: float = DMRG_SECONDS,
) -> tuple[list[np.ndarray], float, float]:
    """Ground state of a Pauli-sum Hamiltonian by two-site DMRG (TeNPy) from a product state.

    The TeNPy model is built term by term from ``hamiltonian.tenpy_terms()`` on
    ``SpinHalfSite(conserve=hamiltonian.conserve)`` (basis up, down = our |0⟩, |1⟩, possibly
    stored in another order, which ``site.perm`` undoes); with ``Sz`` conserved the sweeps stay
    in the Σ Z sector of the start state (e.g. Σ Z = 0 from a Néel state).

    Args:
        hamiltonian: a :class:`~qtomo.states.hamiltonians.TFIM` or
            :class:`~qtomo.states.hamiltonians.XXZ`.
        start: L single-qubit states (2,) of the initial product state.
        chi_max: largest bond dimension χ, at least 1.
        svd_min: largest discarded weight per truncation, Σ_discarded λ² ≤ svd_min (TeNPy's
            ``trunc_cut`` = √svd_min), in [0, 1).
        energy_tol: convergence when the relative energy change per sweep is below it, in (0, 1).
        max_seconds: wall-clock budget of the sweeps (> 0); DMRG stops at the end of the sweep
            that passes it (docs/simulate.md "At scale": L = 200 takes minutes).

    Returns:
        (right-canonical tensors (χ_i, 2, χ_{i+1}) complex128, the last sweep's energy, the
        largest discarded λ² of the last sweep).

    Raises:
        QtomoError: for bad options or a Hamiltonian without a unique ground state.
        ConvergenceError: when the relative energy change after 60 sweeps, or when the time
            budget stopped them, exceeds energy_tol (the message names the option to change).
    """
    hamiltonian.check_ground_state_defined()
    if isinstance(chi_max, bool) or not isinstance(chi_max, (int, np.integer)) or chi_max < 1:
        raise QtomoError(f"chi_max must be an integer >= 1; got {chi_max!r}")
    for name, value, ok in (("svd_min", svd_min, lambda v: 0 <= v < 1),
                            ("energy_tol", energy_tol, lambda v: 0 < v < 1),
                            ("max_seconds", max_seconds, lambda v: 0 < v < math.inf)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
            interval = {"svd_min": "[0, 1)", "energy_tol": "(0, 1)"}.get(name, "(0, inf)")
            raise QtomoError(f"{name} must lie in {interval}; got {value!r}")
    tensors, energies, truncation_error, out_of_time = _run_dmrg(
        hamiltonian, start, int(chi_max), svd_min, energy_tol, max_seconds)
    change = (abs(energies[-1] - energies[-2]) / max(abs(energies[-1]), 1.0)
              if len(energies) > 1 else math.inf)
    if out_of_time and change > energy_tol:
        raise ConvergenceError(
            f"DMRG at L = {hamiltonian.L} used its time budget of {max_seconds:g} s after "
            f"{len(energies)} sweep{'s' if len(energies) != 1 else ''} (relative energy change "
            f"{change:.2e} > energy_tol {energy_tol:.1e}); raise --dmrg-seconds or lower L")
    if change > energy_tol:
        raise ConvergenceError(
            f"DMRG did not converge in {_MAX_SWEEPS} sweeps: relative energy change {change:.2e} "
            f"> energy_tol {energy_tol:.1e}; raise chi_max ({chi_max}) or energy_tol"
        )
    return tensors, energies[-1], truncation_error


def _run_dmrg(
    hamiltonian: Hamiltonian, start: Sequence[np.ndarray], chi_max: int, svd_min: float,
    energy_tol: float, max_seconds: float,
) -> tuple[list[np.ndarray], list[float], float, bool]:
    """Two-site DMRG from the product state ``start``; returns (B tensors, energy after each
    sweep, last largest discarded λ², whether the sweeps stopped at the time budget)."""
    # TeNPy is imported here: it is slow to load and only this function needs it.
    from tenpy.algorithms.dmrg import TwoSiteDMRGEngine
    from tenpy.models.model import CouplingMPOModel
    from tenpy.networks.mps import MPS
    from tenpy.networks.site import SpinHalfSite

    site = SpinHalfSite(conserve=hamiltonian.conserve)
    to_ours = np.argsort(site.perm)  # internal basis index of our |0⟩, |1⟩ (up, down)

    class _PauliSum(CouplingMPOModel):
        def init_sites(self, model_params):
            return site

        def init_terms(self, model_params):
            for coefficient, factors in hamiltonian.tenpy_terms():
                if len(factors) == 1:
                    self.add_onsite_term(coefficient, *factors[0])
                else:
                    (i, op_i), (j, op_j) = factors
                    self.add_coupling_term(coefficient, i, j, op_i, op_j)

    L = hamiltonian.L
    model = _PauliSum({"L": L, "lattice": "Chain", "bc_MPS": "finite", "bc_x": "open"})
    psi = MPS.from_product_state(
        model.lat.mps_sites(), [np.asarray(vector)[site.perm] for vector in start],
        bc="finite", unit_cell_width=1
    )
    options = {
        "trunc_params": {"chi_max": chi_max, "trunc_cut": math.sqrt(svd_min), "svd_min": 1e-14},
        "max_E_err": energy_tol,
        "min_sweeps": min(3, _MAX_SWEEPS),
        "max_sweeps": _MAX_SWEEPS,
        "max_hours": max_seconds / 3600,
        "mixer": False,
    }
    engine = TwoSiteDMRGEngine(psi, model, options)
    engine.run()
    engine.options.touch("max_E_err")  # unread when the time budget stops the first sweeps
    energies = [float(E) for E in engine.sweep_stats["E"]]
    truncation_error = float(engine.sweep_stats["max_trunc_err"][-1])
    # legs vL, p, vR, p in TeNPy's internal order
    tensors = [psi.get_B(i, form="B").to_ndarray()[:, to_ours, :] for i in range(L)]
    return tensors, energies, truncation_error, bool(engine.shelve)
