"""Quantum fidelity and wall time against the number of records: physical families vs networks.

For each case one dataset of N_max records is simulated (exact ln P, reference state); a model is
trained by ``qtomo.train.fit`` on its first N rows (10 % of them validate) for N in
``--records`` (default 10^3, 3·10^3, 10^4, 3·10^4, 10^5), and its state is compared with the
reference state ψ:

- ``mps`` / ``lpdo`` (docs/models.md "Physical model families"): F = ⟨ψ|ρ|ψ⟩ contracted exactly from
the
  tensors at any L (``qtomo.states.mps.pure_state_fidelity``); χ is chosen by validation NLL among
  ``--chis`` (``train_s`` is the chosen fit's time, ``seconds`` sums all of them), tensors real for
  the TFIM cases and complex for GHZ (see ``REAL_PRIOR``; ``--complex`` everywhere); training
  options are the family defaults (lr 0.03, batch 1024 or a quarter of the training rows, weight
  average 0.9, ≤ 50 epochs, patience 5, then ≤ 500 L-BFGS iterations; ``qtomo.recipe.recipe``);
- ``dense`` / ``linear`` (the full-state baselines, docs/targets-and-baselines.md: the
  maximum-likelihood ρ and linear inversion + SGS projection; L ≤ 10, family defaults): F from
  their exact ρ, as for the networks below;
- ``data only``: the dual-frame estimate of ⟨ψ|ρ|ψ⟩ from the N records alone
  (``qtomo.data_fidelity``), its standard error and the records it would need for ±0.01 (pure
  references only);
- ``gru`` / ``transformer`` (default hyperparameters and training options, as a new user gets
  them): ρ = Σ_a Q(a) Q_a built from all K^L probabilities (L ≤ 10 only); F = ⟨ψ|ρ|ψ⟩ as built,
  its smallest eigenvalue and the fidelity of the closest physical state (SGS) beside it.

Cases: ``tfim4``, ``tfim6``, ``tfim8`` (TFIM, ``pauli4``), ``ghz4``, ``ghz6`` (``pauli6``),
``tfim4_noisy``, ``tfim6_noisy`` (depolarizing p = 0.05): the full-state comparison at L = 4, 6, 8;
``tfim10`` (TFIM L = 10, h = 1, ``pauli4``), ``ghz8`` (GHZ L = 8, ``pauli6``), ``tfim50``
(TFIM L = 50 from DMRG, ``mps`` only; also max |Δ⟨X_i⟩| and max_r |Δ⟨Z_0 Z_r⟩| against the
reference), ``tfim100`` (the same at L = 100, with ``--records 100000``), ``tfim8_noisy`` (TFIM
L = 8 under local depolarizing noise p = 0.05, the case for ``lpdo``: Uhlmann fidelity
(Tr √(√σ ρ √σ))² to the noisy σ, dense).

The peers' published numbers on the same record budget (QuCumber and NetKet RBMs, measured on this
project's machine, medians of 3 seeds; GHZ at L = 10 from Pauli + Z shots) are printed beside.

Usage::

    python benchmarks/physical.py [--cases tfim10 ghz8 tfim8_noisy tfim50]
        [--families mps lpdo dense linear gru transformer]
        [--records 1000 3000 10000 30000 100000] [--chis 2 4] [--complex] [--quick]

``--quick`` (a smoke test): N = 1 000 only, the small cases, 3 epochs. Prints a table and
writes ``benchmarks/results/physical.json`` (``physical_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import print_row, report

from qtomo.data import Dataset, read_dataset
from qtomo.data_fidelity import data_fidelity
from qtomo.distribution import PhysicalState, enumerate_probabilities
from qtomo.models import build
from qtomo.recipe import recipe
from qtomo.reconstruct import Reconstruction, density_matrix
from qtomo.simulate import simulate
from qtomo.states.mps import (
    pure_state_fidelity,
    state_density_matrix,
    state_references,
    vector_to_mps,
)
from qtomo.targets import dataset_target
from qtomo.train import TrainOptions, fit

#: (state, L, POVM, depolarizing p) per case
CASES = {"tfim4": ("tfim", 4, "pauli4", 0.0), "tfim6": ("tfim", 6, "pauli4", 0.0),
         "tfim8": ("tfim", 8, "pauli4", 0.0), "ghz4": ("ghz", 4, "pauli6", 0.0),
         "ghz6": ("ghz", 6, "pauli6", 0.0), "tfim4_noisy": ("tfim", 4, "pauli4", 0.05),
         "tfim6_noisy": ("tfim", 6, "pauli4", 0.05),
         "tfim10": ("tfim", 10, "pauli4", 0.0), "ghz8": ("ghz", 8, "pauli6", 0.0),
         "tfim8_noisy": ("tfim", 8, "pauli4", 0.05),
         "tfim50": ("tfim", 50, "pauli4", 0.0), "tfim100": ("tfim", 100, "pauli4", 0.0)}
PHYSICAL = ("mps", "lpdo")
#: cases whose physical models use real tensors by default (``--complex`` lifts it everywhere):
#: the TFIM's amplitudes are real and the prior helps; GHZ's are real too, but real tensors can
#: settle on the wrong relative sign (GHZ−, fidelity ≈ 0) with no continuous path to GHZ+, which
#: complex tensors have (measured: 0.38 real against 0.998 complex at N = 10^4)
REAL_PRIOR = {"tfim4": True, "tfim6": True, "tfim8": True, "ghz4": False, "ghz6": False,
              "tfim4_noisy": True, "tfim6_noisy": True, "tfim10": True, "ghz8": False,
              "tfim8_noisy": True, "tfim50": True, "tfim100": True}
#: measured peers, /work/shared/notes/measured-baselines.md (first table): case → text
PEERS = {
    "tfim10": "10^4 Z shots: QuCumber RBM 0.9905 (3.7 s), NetKet RBM 0.9856 (26.9 s)",
    "ghz8": "GHZ L = 10, 10^3 Pauli + 10^3 Z shots: QuCumber 0.22, NetKet 0.50 (Metropolis), "
            "0.991 (exact sampler, 62 s); 10^4 + 10^4: QuCumber 0.24, NetKet out of memory",
}


def options_for(family: str, head: Dataset, args) -> TrainOptions:
    """The family's ``qtomo fit`` options (:func:`qtomo.recipe.recipe`), with ``--epochs``."""
    given = {"seed": args.seed, **({"epochs": args.epochs} if args.epochs else {})}
    return recipe(family, head, given)[0]


def train(family: str, hp: dict, head: Dataset, args, out: Path):
    torch.manual_seed(args.seed)
    model = build(family, L=head.L, K=head.K, povm=head.povm, **hp)
    started = time.perf_counter()
    result = fit(model, head, options_for(family, head, args), out=out, device=args.device,
                 quiet=True)
    return result, time.perf_counter() - started


def state_figures(model, dataset: Dataset) -> dict:
    """Quantum fidelity to the reference (and, for physical models at large L, observables)."""
    reference = dataset.reference
    if "rho" in reference:  # a noisy state: Uhlmann fidelity to the mixed σ, dense
        rho = (Reconstruction(state_density_matrix(model.tensors()))
               if isinstance(model, PhysicalState) else
               density_matrix(enumerate_probabilities(model), dataset.povm))
        return {"fidelity": rho.fidelity(reference["rho"]).value}
    if isinstance(model, PhysicalState):
        target = reference["mps"] if "mps" in reference else vector_to_mps(reference["psi"])
        tensors = model.tensors()
        row = {"fidelity": pure_state_fidelity(target, tensors)}
        if dataset.L > 10:
            values = state_references(tensors)
            row["max_dX"] = float(np.abs(values["X"] - reference["X"]).max())
            row["max_dZ0Zr"] = float(np.abs(values["ZZ"][0] - reference["ZZ"][0]).max())
        return row
    psi = reference["psi"]
    with torch.no_grad():
        rho = density_matrix(enumerate_probabilities(model), dataset.povm)
    fidelity = rho.fidelity(psi)
    return {"fidelity": fidelity.value, "min_eigenvalue": fidelity.min_eigenvalue,
            "sgs_fidelity": fidelity.projected}


def data_only_rows(case: str, dataset: Dataset, records: list[int]) -> list[dict]:
    """The data-only fidelity from the first N records, for each N (pure references only)."""
    target = dataset_target(dataset)
    if target is None or not target.pure:
        return []
    rows = []
    for n in records:
        figure = data_fidelity([dataset.outcomes(0, n)], target, dataset.povm)
        rows.append({"case": case, "family": "data only", "N": n,
                     "fidelity": figure.estimate.value, "stderr": figure.estimate.stderr,
                     "records_for_0.01": figure.records_for_0_01})
        print_row(rows[-1])
    return rows


def run_case(case: str, args, folder: Path) -> list[dict]:
    state, L, povm, depolarizing = CASES[case]
    records = [n for n in args.records if n <= args.max_records]
    path = simulate(state, L, povm=povm, samples=max(records), depolarizing=depolarizing,
                    seed=args.seed, device="cpu", out=folder / f"{case}.h5", quiet=True)
    dataset = read_dataset(path)
    rows = data_only_rows(case, dataset, records)
    for family in args.families:
        if (L > 10 and family not in PHYSICAL) or (family == "lpdo" and not depolarizing):
            continue  # no exact ρ of a network at this L; lpdo is for mixed states
        for n in records:
            head = dataclasses.replace(dataset, n_records=n)  # the trainer sees rows [0, n)
            candidates = []
            for chi in (args.chis if family in PHYSICAL else [None]):
                real = REAL_PRIOR[case] and not args.complex
                hp = {} if chi is None else {"chi": chi, "real": int(real)}
                if family == "lpdo":
                    hp["kraus"] = args.kraus
                result, seconds = train(family, hp, head, args, folder / f"{case}.pt")
                candidates.append((result.best_val_nll, hp, result, seconds))
            val_nll, hp, result, chosen_s = min(candidates, key=lambda c: c[0])
            row = {"case": case, "family": family, "N": n,
                   **({"chi": hp["chi"], "real": hp["real"]} if "chi" in hp else {}),
                   **state_figures(result.model, dataset), "val_nll": val_nll,
                   "epochs": len(result.history), "train_s": chosen_s,
                   "seconds": sum(c[3] for c in candidates)}
            rows.append(row)
            print_row(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES),
                        default=["tfim4", "tfim6", "tfim8", "ghz4", "ghz6", "ghz8", "tfim4_noisy",
                                 "tfim6_noisy", "tfim10", "tfim8_noisy", "tfim50"])
    parser.add_argument("--families", nargs="+",
                        default=["mps", "lpdo", "dense", "linear", "gru", "transformer"],
                        help="lpdo runs on the noisy cases only")
    parser.add_argument("--records", nargs="+", type=int,
                        default=[1_000, 3_000, 10_000, 30_000, 100_000])
    parser.add_argument("--max-records", type=int, default=100_000)
    parser.add_argument("--chis", nargs="+", type=int, default=[2, 4],
                        help="bond dimensions tried; the best by validation NLL is kept")
    parser.add_argument("--kraus", type=int, default=2, help="lpdo Kraus dimension")
    parser.add_argument("--complex", action="store_true", help="complex tensors (default real)")
    parser.add_argument("--epochs", type=int, default=0, help="override the maximum epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="smoke test: N = 1000, 3 epochs")
    args = parser.parse_args()
    if args.quick:
        args.records, args.epochs = [1_000], 3
        args.cases = [case for case in args.cases if CASES[case][1] <= 10]
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for case in args.cases:
            rows += run_case(case, args, Path(folder))
    for case in args.cases:
        if case in PEERS:
            print(f"peers, {case}: {PEERS[case]}")
    report("physical_quick" if args.quick else "physical", rows,
           {"options": vars(args), "peers": PEERS})


if __name__ == "__main__":
    main()
