"""The plain maximum-likelihood ρ (``dense``) and linear inversion (``linear``) on all records.

For each case, N records are simulated and both full-state estimators are fitted to all of them
(no validation rows: ``qtomo.models.dense.maximum_likelihood``, L-BFGS to convergence). Printed
per case: the wall time, the L-BFGS iterations and why it stopped, the gradient norm of the mean
NLL at the end (≈ 0 at the maximum), the smallest eigenvalue of ρ (≥ 0 by construction), the
fidelity ⟨ψ|ρ|ψ⟩ to the reference for both estimators, and the data-only estimate
(``qtomo.data_fidelity``) with its standard error (docs/targets-and-baselines.md).

Usage::

    python benchmarks/full_state.py [--cases tfim6 ghz6] [--records 100000] [--seed 0]

Writes ``benchmarks/results/full_state.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import print_row, report

from qtomo.data import read_dataset
from qtomo.data_fidelity import data_fidelity
from qtomo.models import build
from qtomo.models.dense import maximum_likelihood
from qtomo.simulate import simulate
from qtomo.targets import dataset_target

#: (state, L, POVM) per case
CASES = {"tfim4": ("tfim", 4, "pauli4"), "tfim6": ("tfim", 6, "pauli4"),
         "ghz6": ("ghz", 6, "pauli6"), "tfim8": ("tfim", 8, "pauli4"),
         "ghz8": ("ghz", 8, "pauli6")}


def run_case(case: str, records: int, seed: int, folder: Path) -> dict:
    state, L, povm = CASES[case]
    path = simulate(state, L, povm=povm, samples=records, seed=seed, out=folder / f"{case}.h5",
                    quiet=True)
    dataset = read_dataset(path)
    outcomes = torch.from_numpy(dataset.outcomes().astype(np.int64))
    psi = dataset_target(dataset).vector()
    torch.manual_seed(seed)
    dense = build("dense", L=L, K=dataset.K, povm=dataset.povm)
    started = time.perf_counter()
    fitted = maximum_likelihood(dense, outcomes)
    seconds = time.perf_counter() - started
    dense.T.grad = None
    dense.training_nll(outcomes).mean().backward()
    linear = build("linear", L=L, K=dataset.K, povm=dataset.povm)
    started = time.perf_counter()
    linear.add_records(outcomes)
    linear_seconds = time.perf_counter() - started
    rho = dense.density_matrix().detach().numpy()
    data = data_fidelity([dataset.outcomes()], dataset_target(dataset), dataset.povm)
    return {"case": case, "L": L, "N": records, "dense_s": seconds,
            "iterations": fitted.iterations, "stopped": fitted.stopped,
            "grad_norm": float(dense.T.grad.norm()),
            "min_eigenvalue": float(np.linalg.eigvalsh(rho)[0]),
            "dense_fidelity": float((psi.conj() @ rho @ psi).real),
            "linear_fidelity": float((psi.conj() @ linear.density_matrix().numpy() @ psi).real),
            "linear_s": linear_seconds, "data_fidelity": data.estimate.value,
            "data_stderr": data.estimate.stderr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES), default=["tfim6", "ghz6"])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for case in args.cases:
            rows.append(run_case(case, args.records, args.seed, Path(folder)))
            print_row(rows[-1])
    report("full_state", rows, {"options": vars(args)})


if __name__ == "__main__":
    main()
