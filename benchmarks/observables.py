"""Observable errors of fitted models against the data-only estimate from the same records.

The reason to fit a model at all: does Q estimate ⟨X_i⟩, ⟨Z_iZ_j⟩ and the energy better than the
model-free (classical-shadow-style) average over the very records it was trained on?

For the TFIM (h = J = 1, open chain, ``pauli4``) at L = 10 (exact path) and L = 50 (MPS path),
one dataset of max(N) records is simulated per L; for each N in 10^3, 10^4, 10^5 the first N rows
are

- fitted by each family (``gru``, ``transformer`` and ``mps`` where the registry has it) with
  ``qtomo.train.fit`` and the options ``qtomo fit`` uses for the family on those N records
  (:func:`qtomo.recipe.recipe`, its selection grid aside: one model per family), the epochs
  set by a budget of ``--steps`` optimizer steps (epochs = steps / batches per epoch); the
  model's observables are exact sums over all 4^L records at L ≤ 10 and Monte Carlo over
  ``--samples`` model samples above (their mean standard error is reported beside, as
  ``model_stderr``: it is part of the error);
- averaged directly (data only): mean_n Π_i Tr(O_i Q_{a_i^(n)}) over the same N records.

Each row gives, against the exact reference values of the dataset: max and RMS error of ⟨X_i⟩
over the L sites, of ⟨Z_iZ_j⟩ over the L(L−1)/2 pairs i < j, and |Δ⟨H⟩| / L. The summary line per
L is the best family's RMS ⟨Z_iZ_j⟩ error over the data-only one at N = 10^4 (the issue's target:
≤ ½).

Usage::

    python benchmarks/observables.py [--L 10 50] [--records 1000 10000 100000]
        [--families gru transformer mps] [--steps 4000] [--samples 100000] [--quick]

``--quick`` (L = 6 and 14, N = 10^3 and 3·10^3, 150 steps, 2 000 model samples) only checks that
it runs. Prints a table and writes ``benchmarks/results/observables.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import report, step_budget_options

from qtomo.data import read_dataset
from qtomo.distribution import ENUMERATE_MAX_L
from qtomo.models import build
from qtomo.models.registry import FAMILIES
from qtomo.observables import Observables, estimate_observables, model_observables
from qtomo.simulate import simulate
from qtomo.states.hamiltonians import TFIM
from qtomo.train import fit


def errors(observables: Observables, reference: dict, L: int) -> dict:
    """Max and RMS errors of ⟨X_i⟩ and ⟨Z_iZ_j⟩ (i < j) and |Δ⟨H⟩| / L against the reference."""
    upper = np.triu_indices(L, k=1)
    dx = np.asarray(observables.X.value) - reference["X"]
    dzz = (np.asarray(observables.ZZ.value) - reference["ZZ"])[upper]
    return {"X_max": float(np.abs(dx).max()), "X_rms": float(np.sqrt(np.mean(dx**2))),
            "ZZ_max": float(np.abs(dzz).max()), "ZZ_rms": float(np.sqrt(np.mean(dzz**2))),
            "energy_per_site": abs(float(observables.energy.value)
                                   - float(reference["energy"])) / L}


def fitted_observables(family: str, dataset, n: int, args, out: Path) -> tuple[dict, float]:
    """Train ``family`` on the first n rows; its observables' errors and the training time."""
    head = dataclasses.replace(dataset, n_records=n)  # the trainer sees rows [0, n) only
    options = step_budget_options(family, head, args.steps, {"seed": args.seed})
    torch.manual_seed(args.seed)
    model = build(family, L=dataset.L, K=dataset.K, povm=dataset.povm)
    started = time.perf_counter()
    result = fit(model, head, options, out=out, device=args.device, quiet=True)
    seconds = time.perf_counter() - started
    exact = dataset.L <= ENUMERATE_MAX_L
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    observables = model_observables(result.model, dataset.povm, samples=args.samples,
                                    exact=exact, hamiltonian=TFIM(dataset.L),
                                    generator=generator)
    row = errors(observables, dataset.reference, dataset.L)
    row["model_stderr"] = float(np.mean(observables.X.stderr))  # 0 for exact sums
    row["epochs_run"] = len(result.history)
    return row, seconds


def run_size(L: int, args, families: list[str]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = simulate("tfim", L, h=1.0, povm="pauli4", samples=max(args.records), seed=L,
                        device="cpu", out=Path(folder) / f"tfim_L{L}.h5", quiet=True)
        dataset = read_dataset(path)
        for n in args.records:
            data = estimate_observables(dataset.outcomes(0, n), dataset.povm,
                                        hamiltonian=TFIM(L))
            rows.append({"L": L, "N": n, "estimator": "data only",
                         **errors(data, dataset.reference, L)})
            print(rows[-1], flush=True)
            for family in families:
                row, seconds = fitted_observables(family, dataset, n, args,
                                                  Path(folder) / f"{family}_{n}.pt")
                rows.append({"L": L, "N": n, "estimator": family, **row, "train_s": seconds})
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", nargs="+", type=int, default=[10, 50])
    parser.add_argument("--records", nargs="+", type=int, default=[1_000, 10_000, 100_000])
    parser.add_argument("--families", nargs="+", default=["gru", "transformer", "mps"],
                        help="model families (those missing from the registry are skipped)")
    parser.add_argument("--steps", type=int, default=4_000, help="optimizer steps per fit")
    parser.add_argument("--samples", type=int, default=100_000,
                        help="model samples for Monte Carlo observables above the exact limit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a short check that it runs")
    args = parser.parse_args()
    if args.quick:
        args.L, args.records, args.steps, args.samples = [6, 14], [1_000, 3_000], 150, 2_000
    torch.set_num_threads(args.threads)
    families = [family for family in args.families if family in FAMILIES]
    skipped = sorted(set(args.families) - set(families))
    if skipped:
        print(f"not in the registry, skipped: {', '.join(skipped)}")
    rows = [row for L in args.L for row in run_size(L, args, families)]
    summary = {}
    reference_n = 10_000 if 10_000 in args.records else args.records[len(args.records) // 2]
    for L in args.L:
        at = [row for row in rows if row["L"] == L and row["N"] == reference_n]
        data = next(row for row in at if row["estimator"] == "data only")
        best = min((row for row in at if row["estimator"] != "data only"),
                   key=lambda row: row["ZZ_rms"], default=None)
        if best is not None:
            summary[L] = {"N": reference_n, "best": best["estimator"],
                          "ZZ_rms_ratio": best["ZZ_rms"] / data["ZZ_rms"],
                          "X_rms_ratio": best["X_rms"] / data["X_rms"]}
            print(f"L = {L}, N = {reference_n}: best family {best['estimator']}, RMS error "
                  f"ratio to data only: ZZ {summary[L]['ZZ_rms_ratio']:.3g}, "
                  f"X {summary[L]['X_rms_ratio']:.3g} (target ≤ 0.5)")
    name = "observables" + ("_quick" if args.quick else "")
    report(name, rows, {"options": vars(args), "families": families, "summary": summary})


if __name__ == "__main__":
    main()
