"""Every model family on the same records, side by side (docs/models.md "Which family when").

Two datasets, simulated once into ``benchmarks/results/data/`` (seed 0):

- TFIM L = 10, h = 1, ``pauli4``, 10^5 records (exact path);
- GHZ L = 8, ``pauli6``, 5·10^3 records.

Each family is built with its default hyperparameters, trained by :func:`qtomo.train.fit` with
the family's ``train_defaults`` (what ``qtomo fit`` uses; default training options otherwise: up
to 20 epochs, early stopping after 5 without a better validation figure, the last 10 % of rows
held out) and evaluated by
:func:`qtomo.evaluate.evaluate` on the held-out rows (exact sums over all K^L records where the
family has a likelihood; from model samples for ``gan``). Reported per family and dataset:

- ``F_c`` and ``KL``: the classical fidelity and KL(P‖Q) on the held-out records, with the label
  ``log_prob``: ``exact``, ``estimate`` (flow, vae: importance-weighted; rbm above 2^21 records:
  AIS) or ``none`` (gan: F_c from a histogram of model samples, no KL);
- ``F_projected``: the quantum fidelity ⟨ψ|σ|ψ⟩ of the closest physical state σ to ρ_model
  (Smolin–Gambetta–Smith); for ``gan`` (no table of Q) the Monte Carlo ⟨ψ|ρ_model|ψ⟩ instead,
  labelled ``F_kind = "monte-carlo, as built"``;
- ``max_dZZ``: max_r |⟨Z_0 Z_r⟩_model − ⟨Z_0 Z_r⟩_exact|;
- ``train_s``: training wall time up to the end of the best epoch; ``epochs`` run;
- ``sample_per_s``: records/s of ``model.sample`` at L = 50 (untrained, default hyperparameters,
  K of the dataset's POVM, best of 3 draws of ``--sample-n`` records);
- ``parameters``.

Usage::

    python benchmarks/families.py [--families cnn rbm …] [--device auto] [--method auto]
        [--quick]

The exact evaluation enumerates all K^L records through ``log_prob``: for ``vae`` and ``flow``
that is S importance samples per record (256 and 64), 4^10 · S network passes at L = 10 — minutes
on a GPU, hours on a CPU; ``--method monte-carlo`` evaluates from samples instead (then
``F_projected`` is the Monte Carlo fidelity as built, labelled so).

``--quick`` checks the script end to end in a minute or two (L = 4 TFIM and L = 3 GHZ, 2 000
records, 1 epoch, 2 000 evaluation samples); its numbers mean nothing. Writes a table to stdout and
``benchmarks/results/families[_quick].json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, best_time, report

from qtomo.data import read_dataset
from qtomo.device import resolve_device
from qtomo.evaluate import evaluate
from qtomo.models import FAMILIES, build, family_classes, load_checkpoint
from qtomo.povm import POVM
from qtomo.recipe import recipe
from qtomo.reconstruct import QuantumFidelity
from qtomo.simulate import simulate
from qtomo.train import fit

#: (name, simulate arguments): the two datasets
DATASETS = {
    "tfim10": {"state": "tfim", "L": 10, "h": 1.0, "povm": "pauli4", "samples": 100_000},
    "ghz8": {"state": "ghz", "L": 8, "povm": "pauli6", "samples": 5_000},
}
QUICK = {
    "tfim10": {"state": "tfim", "L": 4, "h": 1.0, "povm": "pauli4", "samples": 2_000},
    "ghz8": {"state": "ghz", "L": 3, "povm": "pauli6", "samples": 2_000},
}


def dataset_path(name: str, spec: dict, folder: Path) -> Path:
    """The dataset ``name``, simulated into ``folder`` unless it is already there."""
    path = folder / f"{name}_L{spec['L']}_{spec['povm']}_{spec['samples']}.h5"
    if not path.is_file():
        arguments = {key: value for key, value in spec.items() if key not in ("state", "L")}
        simulate(spec["state"], spec["L"], seed=0, out=path, quiet=True, **arguments)
    return path


def sampling_rate(family: str, povm: POVM, n: int, device: torch.device) -> float:
    """Records/s of an untrained default model at L = 50 (best of 3 draws of n)."""
    torch.manual_seed(0)
    model = build(family, L=50, K=povm.K, povm=povm).to(device).eval()
    generator = torch.Generator(device=device).manual_seed(0)

    def draw() -> None:
        model.sample(n, generator=generator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return n / best_time(draw)


def run(family: str, data_name: str, path: Path, *, quick: bool, samples: int, sample_n: int,
        method: str, device: torch.device, out: Path) -> dict:
    dataset = read_dataset(path)
    # what qtomo fit uses for the family (its selection grid aside: one model per family)
    options = recipe(family, dataset, {"epochs": 1} if quick else {})[0]
    torch.manual_seed(0)
    model = build(family, L=dataset.L, K=dataset.K, povm=dataset.povm)
    result = fit(model, dataset, options, out=out / f"{data_name}_{family}.pt", device=device,
                 quiet=True)
    train_s = sum(epoch["time_s"] for epoch in result.history[:result.best_epoch])
    evaluation = evaluate(load_checkpoint(result.checkpoint, map_location=device), dataset,
                          samples=samples, method=method, seed=0)
    classical, fidelity = evaluation.classical, evaluation.fidelity
    zz_model = evaluation.observables.model.ZZ.value[0]  # (L,) ⟨Z_0 Z_r⟩
    zz_exact = np.asarray(evaluation.observables.reference["ZZ"])[0]
    if isinstance(fidelity, QuantumFidelity):
        f_value, f_kind = fidelity.projected, "closest physical state (exact ρ)"
    else:
        f_value, f_kind = fidelity.estimate.value, "monte-carlo, as built"
    return {
        "data": data_name, "family": family, "log_prob": evaluation.model["log_prob"],
        "F_c": None if classical.classical_fidelity is None
        else classical.classical_fidelity.value,
        "F_c_err": None if classical.classical_fidelity is None
        else classical.classical_fidelity.stderr,
        "KL": None if classical.kl is None else classical.kl.value,
        "KL_err": None if classical.kl is None else classical.kl.stderr,
        "F_projected": f_value, "F_kind": f_kind,
        "max_dZZ": float(np.max(np.abs(zz_model - zz_exact))),
        "train_s": train_s, "epochs": len(result.history), "best_epoch": result.best_epoch,
        "sample_per_s": sampling_rate(family, dataset.povm, sample_n, device),
        "parameters": sum(p.numel() for p in result.model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--data", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--samples", type=int, default=None,
                        help="evaluation samples (default 10^5; 2 000 with --quick)")
    parser.add_argument("--sample-n", type=int, default=None,
                        help="records per timed draw at L = 50 (default 10 000; 200 --quick)")
    parser.add_argument("--method", choices=("auto", "exact", "monte-carlo"), default="auto",
                        help="evaluation method (auto: exact sums over K^L records at these L)")
    parser.add_argument("--quick", action="store_true", help="tiny data and 1 epoch: a smoke test")
    args = parser.parse_args()
    device = resolve_device(args.device)
    samples = args.samples or (2_000 if args.quick else 100_000)
    sample_n = args.sample_n or (200 if args.quick else 10_000)
    specs = QUICK if args.quick else DATASETS
    folder = RESULTS / "data"
    folder.mkdir(parents=True, exist_ok=True)
    runs = RESULTS / ("families_runs_quick" if args.quick else "families_runs")
    rows = []
    for data_name in args.data:
        path = dataset_path(data_name, specs[data_name], folder)
        for family in args.families:
            started = time.perf_counter()
            row = run(family, data_name, path, quick=args.quick, samples=samples,
                      sample_n=sample_n, method=args.method, device=device, out=runs)
            print(f"{data_name} {family}: {time.perf_counter() - started:.0f} s",
                  json.dumps({k: v for k, v in row.items() if k in ("F_c", "KL")}), flush=True)
            rows.append(row)
    report("families_quick" if args.quick else "families", rows,
           {"datasets": {name: specs[name] for name in args.data},
            "recipes": {family: family_classes(family)[0].train_defaults
                        for family in args.families},
            "device": str(device)})


if __name__ == "__main__":
    main()
