"""The default physical fit against the statistical limit of its records.

For each case one dataset is simulated (seeded) and fitted twice, on the same training rows:

- **default**: what a plain ``qtomo fit --model mps`` (``lpdo`` for the noisy case) does,
  through :func:`qtomo.recipe.fit_recipe`: real/complex selection, χ (and κ) grown while the
  held-out NLL improves, local sweeps at every size;
- **reference**: the maximum-likelihood state of the same model class (the size and real/complex
  the default chose) started at the true state, truncated to that χ: sweeps on the training
  NLL to convergence (up to 20, kept by the training NLL, no held-out selection). This is the
  state the records support; its fidelity is the statistical limit. (Full-batch L-BFGS from the
  same start had not converged after 3000 iterations at L = 50: it stopped at a higher
  training NLL, nearer the start, docs/physical-fits.md "Sweeps".)

Both fits' training NLL are printed beside the truth's (truncated to the same χ): a default
whose training NLL is at the reference's has reached the maximum of the likelihood.

Printed per case: both quantum fidelities (pure targets: exact contraction; the noisy case: the
Uhlmann fidelity of the dense ρ), the ratio of infidelities (default / reference; ≤ 1.5 is the
target), the chosen size, the default fit's wall time and the kernel's throughput: one full pass
(NLL and gradient) over the training rows at the chosen size, in GFLOP/s (2 χ_l² χ_r² flops per
record and site forward, twice that backward) beside the fp64 matrix-product peak measured in
the same run.

Cases: ``tfim8`` (TFIM L = 8, h = 1, 2·10^5 ``pauli4`` records, ``make demo``'s file),
``tfim10`` (L = 10, 10^4), ``ghz20`` (GHZ L = 20, 10^5 ``pauli6``), ``tfim6_noisy`` (TFIM L = 6,
h = 0.9, depolarizing p = 0.1, 10^5, ``lpdo``), ``tfim50`` (L = 50, 10^5, DMRG), ``tfim100``
(L = 100, 10^6, the case of ``cli_pipeline.py``; not in the default list: hours here).

With ``--reference-sizes χ …`` the reference is also fitted at each of these bond dimensions
(the default's real/complex and κ), from the true state truncated to χ: the statistical limit
at every size, beside how far the held-out rows can tell that size's maximum-likelihood state
from the default's (``F_reference_chi<χ>``; ``z_chi<χ>``, the paired held-out gain over the
default's state in standard errors, :meth:`qtomo.heldout.HeldOut.gain_over`). Whether any size's
maximum-likelihood state reaches a fidelity target, and whether the records could choose it.

With ``--no-reference`` only the default fit runs (its fidelity, size, time and throughput):
the timing of a case whose reference takes much longer than the fit (``tfim50``).

With ``--bootstrap M`` each case also trains the ensemble of ``qtomo fit --ensemble M
--bootstrap`` (:func:`qtomo.recipe.fit_recipe_ensemble`: M bootstrap replicates of the default
fit's state) and prints the mean and spread (standard deviation, ddof 1) of its members'
fidelities and the ensemble's seconds.

Usage::

    python benchmarks/limit.py [--cases tfim8 tfim10 ghz20 tfim6_noisy tfim50] [--seed 1]
                               [--bootstrap M] [--no-reference] [--reference-sizes χ …]

Writes ``benchmarks/results/limit.json`` (``limit_<cases>.json`` for other ``--cases``,
``…_noreference`` without the reference, ``…_sizes<χ…>`` with ``--reference-sizes``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import matmul_peak_gflops, print_row, report, search_text

from qtomo.data import Dataset, read_dataset
from qtomo.heldout import HeldOut
from qtomo.models import build
from qtomo.recipe import fit_recipe, fit_recipe_ensemble
from qtomo.reconstruct import Reconstruction
from qtomo.refine import refine
from qtomo.simulate import simulate
from qtomo.states.exact import tfim_ground_state
from qtomo.states.mps import (
    pure_state_fidelity,
    state_density_matrix,
    truncated,
    vector_to_mps,
)
from qtomo.train import split_rows

#: case → (family, simulate keyword arguments)
CASES = {
    "tfim8": ("mps", dict(state="tfim", L=8, h=1.0, povm="pauli4", samples=200_000)),
    "tfim10": ("mps", dict(state="tfim", L=10, h=1.0, povm="pauli4", samples=10_000)),
    "ghz20": ("mps", dict(state="ghz", L=20, povm="pauli6", samples=100_000)),
    "tfim6_noisy": ("lpdo", dict(state="tfim", L=6, h=0.9, povm="pauli4", samples=100_000,
                                 depolarizing=0.1)),
    "tfim50": ("mps", dict(state="tfim", L=50, h=1.0, povm="pauli4", samples=100_000)),
    # the DMRG state at χ ≤ 32 and 1e-10 (bond 20): the default 64 and 1e-14 sample for hours
    "tfim100": ("mps", dict(state="tfim", L=100, h=1.0, povm="pauli4", samples=1_000_000,
                            chi_max=32, svd_min=1e-10)),
}
_CHUNK = 8192  # rows per pass of the reference fit and the throughput measurement
_REFERENCE_LBFGS = 200  # most L-BFGS iterations after the reference's sweeps


def true_tensors(dataset: Dataset, kind: dict) -> list[np.ndarray]:
    """The generating state as tensors: the pure state's MPS, or for a noisy state the LPDO
    A^{s,q} = Σ_t (K_q)_st B^t of the local channel's Kraus operators K_q."""
    reference = dataset.reference
    if "mps" in reference:
        return reference["mps"]
    if "psi" in reference:
        return vector_to_mps(reference["psi"])
    pure = vector_to_mps(tfim_ground_state(kind["L"], h=kind["h"]).psi)
    return [np.einsum("qst,ctd->csqd", dataset.noise.kraus, B) for B in pure]


def fidelity(model, dataset: Dataset, target: list[np.ndarray]) -> float:
    """Quantum fidelity of the model's state to the generating one."""
    if "rho" in dataset.reference:
        rho = Reconstruction(state_density_matrix(model.tensors()))
        return rho.fidelity(dataset.reference["rho"]).value
    return pure_state_fidelity(target, model.tensors())


def reference_fit(dataset: Dataset, family: str, hp: dict, target: list[np.ndarray],
                  rows: torch.Tensor):
    """The truth-started maximum-likelihood fit at the default's size on the training ``rows``
    (module docstring): the model, its SweepResult and Refinement (whose ``train_nll`` is the
    reference's) and the truth's training NLL."""
    model = build(family, L=dataset.L, K=dataset.K, povm=dataset.povm, **hp)
    if family == "mps":
        model.set_tensors(truncated(target, hp["chi"]))
    else:  # the pure part truncated to χ, the first κ Kraus operators of the channel
        pure = truncated(vector_to_mps(tfim_ground_state(dataset.L, h=dataset.attrs["h"]).psi),
                         hp["chi"])
        kraus = dataset.noise.kraus[:hp["kraus"]]
        model.set_tensors([np.einsum("qst,ctd->csqd", kraus, B) for B in pure])
    truth_nll = mean_nll(model, rows)
    result = model.sweep(rows, len(rows), lambda: HeldOut.of(model, rows, _CHUNK), max_sweeps=20,
                         patience=0)
    polish = refine(model, lambda: ((a, None) for a in rows.split(_CHUNK)), len(rows),
                    lambda: mean_nll(model, rows), max_iter=_REFERENCE_LBFGS, select=False)
    return model, result, polish, truth_nll


def default_split(dataset: Dataset, part: int) -> torch.Tensor:
    """The training (``part`` 0) or validation (1) rows of a default fit, LongTensor (N, L)."""
    return torch.from_numpy(dataset.outcomes(*split_rows(dataset.n_records, 0.1)[part])).long()


def mean_nll(model, rows: torch.Tensor) -> float:
    """−(1/N) Σ ln Q(a_n) over ``rows``."""
    return HeldOut.of(model, rows, _CHUNK).nll


def throughput(model, rows: torch.Tensor) -> float:
    """GFLOP/s of one full pass (NLL and gradient) of the table contraction over the training
    rows (module docstring for the count)."""
    chi = [1] + [A.shape[-1] for A in model.tensors()]  # χ_0 … χ_L
    flops = 3 * 2 * len(rows) * sum(a * a * b * b for a, b in zip(chi[:-1], chi[1:], strict=True))
    model.train()
    started = time.perf_counter()
    for a in rows.split(_CHUNK):
        model.training_nll(a).sum().backward()
    return flops / (time.perf_counter() - started) / 1e9


def bootstrap_spread(family: str, dataset: Dataset, target, members: int,
                     folder: Path) -> dict:
    """Mean and spread of the members' fidelities of a bootstrap ensemble, and its seconds."""
    started = time.perf_counter()
    results = fit_recipe_ensemble(family, dataset, {"bootstrap": True}, members=members,
                                  out=folder, device="cpu", quiet=True)
    seconds = time.perf_counter() - started
    fidelities = [fidelity(result.model, dataset, target) for result in results]
    return {"F_bootstrap_mean": float(np.mean(fidelities)),
            "F_bootstrap_spread": float(np.std(fidelities, ddof=1)), "bootstrap_s": seconds}


def other_sizes(dataset: Dataset, family: str, hp: dict, target: list[np.ndarray],
                rows: torch.Tensor, default_model, sizes: list[int]) -> dict:
    """The reference at each bond dimension of ``sizes`` (module docstring, ``--reference-sizes``):
    its fidelity and its paired held-out gain over the default's state in standard errors."""
    validation = default_split(dataset, 1)
    default_held = HeldOut.of(default_model, validation, _CHUNK)
    columns = {}
    for chi in sizes:
        reference = reference_fit(dataset, family, {**hp, "chi": chi}, target, rows)[0]
        gain, stderr = HeldOut.of(reference, validation, _CHUNK).gain_over(default_held)
        columns.update({f"F_reference_chi{chi}": fidelity(reference, dataset, target),
                        f"z_chi{chi}": gain / stderr})
    return columns


def run_case(case: str, seed: int, folder: Path, members: int, with_reference: bool,
             sizes: list[int]) -> dict:
    family, kind = CASES[case]
    path = simulate(**kind, seed=seed, device="cpu", out=folder / f"{case}.h5", quiet=True)
    dataset = read_dataset(path)
    target = true_tensors(dataset, kind)
    started = time.perf_counter()
    selection = fit_recipe(family, dataset, device="cpu", quiet=True)
    default_s = time.perf_counter() - started
    hp = {name: value for name, value in selection.hyperparameters.items()}
    f_default = fidelity(selection.best.model, dataset, target)
    rows = default_split(dataset, 0)
    row = {"case": case, "family": family, "N": dataset.n_records, **hp, "F_default": f_default,
           "default_s": default_s}
    if with_reference:
        reference, sweeps, polish, truth_nll = reference_fit(dataset, family, hp, target, rows)
        f_reference = fidelity(reference, dataset, target)
        row.update({"F_reference": f_reference,
                    "infidelity_ratio": (1 - f_default) / max(1 - f_reference, 1e-12),
                    "reference_s": sweeps.time_s + polish.time_s,
                    "reference_half_sweeps": sweeps.half_sweeps,
                    "reference_lbfgs": f"{polish.iterations} ({polish.stopped})",
                    "train_nll_truth": truth_nll, "train_nll_reference": polish.train_nll})
        row.update(other_sizes(dataset, family, hp, target, rows, selection.best.model, sizes))
    row.update({"train_nll_default": mean_nll(selection.best.model, rows),
                "val_nll_default": selection.best.best_val_nll,
                "search": search_text(selection.search["stages"]),
                "gflops": throughput(selection.best.model, rows)})
    if members:
        row.update(bootstrap_spread(family, dataset, target, members, folder / f"{case}_ens"))
    print_row(row, 5)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES),
                        default=["tfim8", "tfim10", "ghz20", "tfim6_noisy", "tfim50"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=0, metavar="M",
                        help="also a bootstrap ensemble of M >= 2 members per case (0: none)")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="only the default fit: no truth-started reference")
    parser.add_argument("--reference-sizes", nargs="+", type=int, default=[], metavar="CHI",
                        help="also the reference at these bond dimensions (with the reference)")
    args = parser.parse_args()
    if args.reference_sizes and not args.reference:
        parser.error("--reference-sizes needs the reference; drop --no-reference")
    peak = matmul_peak_gflops()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for case in args.cases:
            rows.append(run_case(case, args.seed, Path(folder), args.bootstrap,
                                 args.reference, args.reference_sizes))
    ratios = [row["infidelity_ratio"] for row in rows if "infidelity_ratio" in row]
    print(f"fp64 matrix-product peak: {peak:.1f} GFLOP/s"
          + (f"; worst infidelity ratio {max(ratios):.3g}" if ratios else ""))
    report(results_name(args, parser.get_default("cases")), rows,
           {"options": vars(args), "fp64_peak_gflops": peak, "command": command_line(args)})


def results_name(args: argparse.Namespace, default_cases: list[str]) -> str:
    """The results file's name (module docstring): ``limit`` for the default cases, else
    ``limit_<cases>``, then ``_bootstrap<M>``, ``_noreference``, ``_sizes<χ…>`` as given."""
    name = "limit" if args.cases == default_cases else "limit_" + "_".join(args.cases)
    name += f"_bootstrap{args.bootstrap}" if args.bootstrap else ""
    name += "" if args.reference else "_noreference"
    return name + ("_sizes" + "_".join(map(str, args.reference_sizes))
                   if args.reference_sizes else "")


def command_line(args: argparse.Namespace) -> str:
    """The command that writes this results file (every option, defaults included)."""
    words = ["python", "benchmarks/limit.py"]
    for name, value in vars(args).items():
        if name != "reference" and value != []:
            words += [f"--{name.replace('_', '-')}",
                      *map(str, value if isinstance(value, list) else [value])]
    return " ".join(words + ([] if args.reference else ["--no-reference"]))


if __name__ == "__main__":
    main()
