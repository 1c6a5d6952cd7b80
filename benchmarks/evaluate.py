"""Evaluation throughput: exact ρ at L = 10 and Monte Carlo observables / fidelity at L = 50.

Targets (issue 5): the exact ρ_model for L = 10 (4^10 records enumerated through a GRU, inverted,
diagonalised) in under 10 s; observables for L = 50 from 10^5 GRU samples in under a minute.
The model is an untrained GRU of the default size (hidden 64, 2 layers): evaluation cost does not
depend on the weights.

Usage: python benchmarks/evaluate.py [--samples N] [--device auto]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from common import matmul_peak_gflops, report

from qtomo.device import resolve_device
from qtomo.distribution import enumerate_probabilities
from qtomo.models import build
from qtomo.observables import estimate_observables
from qtomo.povm import get_povm
from qtomo.reconstruct import FidelityWarning, density_matrix, mps_fidelity
from qtomo.states.exact import tfim_ground_state
from qtomo.states.hamiltonians import TFIM
from qtomo.states.mps import tfim_mps


def _timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def exact_rho(L: int, device: torch.device) -> dict:
    povm = get_povm("pauli4")
    torch.manual_seed(0)
    model = build("gru", L=L, K=4).to(device).eval()
    probabilities, enumerate_s = _timed(lambda: enumerate_probabilities(model))
    reconstruction, invert_s = _timed(lambda: density_matrix(probabilities, povm))
    min_eigenvalue, eigen_s = _timed(lambda: reconstruction.min_eigenvalue)
    psi = tfim_ground_state(L).psi
    fidelity, fidelity_s = _timed(lambda: reconstruction.fidelity(psi))
    return {"task": f"exact rho, L={L}", "records": 4**L, "enumerate_s": enumerate_s,
            "invert_s": invert_s, "eigvalsh_s": eigen_s, "fidelity_s": fidelity_s,
            "total_s": enumerate_s + invert_s + eigen_s + fidelity_s, "target_s": 10.0,
            "min_eigenvalue": min_eigenvalue}


def monte_carlo(L: int, samples: int, device: torch.device) -> list[dict]:
    povm = get_povm("pauli4")
    torch.manual_seed(0)
    model = build("gru", L=L, K=4).to(device).eval()
    generator = torch.Generator(device=device).manual_seed(0)

    def draw():
        with torch.no_grad():
            return torch.cat([model.sample(16384, generator=generator)
                              for _ in range(-(-samples // 16384))])[:samples].cpu()

    records, sample_s = _timed(draw)
    observables, estimate_s = _timed(lambda: estimate_observables(
        records, povm, hamiltonian=TFIM(L), pauli_strings=["X0 Z10 Z20"]))
    rows = [{"task": f"MC observables, L={L}", "records": samples, "sample_s": sample_s,
             "estimate_s": estimate_s, "total_s": sample_s + estimate_s, "target_s": 60.0,
             "energy": observables.energy.value, "energy_stderr": observables.energy.stderr}]
    state, dmrg_s = _timed(lambda: tfim_mps(L))
    fidelity_samples = samples // 10
    with warnings.catch_warnings():  # an untrained model's fidelity estimate is expected noise
        warnings.simplefilter("ignore", FidelityWarning)
        fidelity, fidelity_s = _timed(lambda: mps_fidelity(
            model, state.mps, povm, samples=fidelity_samples,
            generator=torch.Generator(device=device).manual_seed(1)))
    rows.append({"task": f"MC MPS fidelity, L={L}, chi={max(state.bond_dimensions)}",
                 "records": fidelity_samples, "total_s": fidelity_s, "dmrg_s": dmrg_s,
                 "fidelity": fidelity.value, "fidelity_stderr": fidelity.stderr})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=10**5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    # the float32 matrix-product rate before and after: these timings scale with it
    peak_before = matmul_peak_gflops(torch.float32, device=device)
    rows = [exact_rho(10, device), *monte_carlo(50, args.samples, device)]
    peak_after = matmul_peak_gflops(torch.float32, device=device)
    report("evaluate", rows, {"device": str(device),
                              "matmul_float32_gflops": [peak_before, peak_after]})
    print(f"float32 matrix-product rate {peak_before:.1f} / {peak_after:.1f} GFLOP/s "
          f"(before / after)")


if __name__ == "__main__":
    main()
