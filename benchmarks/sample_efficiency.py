"""Records needed to reach *quantum* fidelity ⟨GHZ|ρ|GHZ⟩ ≥ 0.99 on GHZ states with ``pauli6`` data.

Why quantum: the classical fidelity F_c of the POVM distributions is no evidence of coherence.
The incoherent mixture (|0…0⟩⟨0…0| + |1…1⟩⟨1…1|)/2 has quantum fidelity 0.5 with GHZ, yet

    F_c(mixture) = (1 − (2 − √2)/4 · (2/3)^L)² = (1 − 0.1464 (2/3)^L)²

(records with a Z outcome are identical for both states; of the (2/3)^L all-X/Y records, the half
with an even number of Y outcomes carries the phase; checked by exact enumeration at L = 4, 6 in
``tests/test_products.py``): 0.9886 at L = 8, 0.9949 at L = 10, 0.9998 at L = 20. So
"F_c ≥ 0.99" is met without any coherence from L = 10 on, which is what the earlier version of
this benchmark, and the Transformer numbers of Cha et al. it compared with, measured.

For each L one dataset of GHZ records is simulated (exact ln P per record); its last ``--test``
rows (50 000) are the test set for F_c. A model trained by ``qtomo.train.fit`` on the first N
rows (its 10 % validation split included, so N counts every record the fit consumed) is scored by

- the quantum fidelity F = ⟨GHZ|ρ_model|GHZ⟩ = ½ (ρ_{0…0,0…0} + ρ_{1…1,1…1}) + Re ρ_{0…0,1…1}:
  exact at L ≤ 10 (Σ_a Q(a) ⟨GHZ|Q_a|GHZ⟩ streamed over all 6^L records by the model's tree
  walk, the number ⟨ψ|ρ|ψ⟩ of the explicit ρ without building it), above that the masked
  ancestral-sampling estimate of :mod:`qtomo.products` over ``--samples`` draws per term;
- F_c = (E_P[√(Q/P)])² on the test rows, beside the mixture's F_c.

Search: N walks a ladder of record counts from a start near 50·1.5^L (the phase is learned from
the all-X/Y records, a (2/3)^L share: about 50 of them are needed); down while F ≥ 0.99, up while
F < 0.99. Reported: the smallest passing N (or "> largest tried"), F and F_c there, the mixture's
F_c, and Cha et al.'s record counts for F_c ≥ 0.99 (6 000 / 8 000 / 10 000 at L = 10 / 20 / 40;
Mach. Learn.: Sci. Technol. 3, 01LT01 (2022)), which certify no coherence.

Training: the model of ``--model`` and ``--hp`` (default GRU 1 × 8) with the options ``qtomo fit``
uses for the family on those N records (:func:`qtomo.recipe.recipe`), the epochs set by a budget
of ``--steps`` optimizer steps (default 8 000).

Usage::

    python benchmarks/sample_efficiency.py [--model gru] [--hp hidden=8 layers=1]
        [--L 6 8 10 12] [--slow] [--quick] [--jobs 2] [--device cpu]

``--slow`` adds L = 16 and 20; ``--quick`` (a check that it runs: L = 4 and 12, 300 steps, 2 000
test records, 5 000 draws per term, the ladder stopped at 3 000) is not a measurement. ``--jobs``
runs that many L in parallel processes, each with ``--threads`` torch threads. Prints a table and
writes ``benchmarks/results/sample_efficiency_<model>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from common import report, step_budget_options

from qtomo.data import read_dataset
from qtomo.distribution import ENUMERATE_MAX_L, log_prob_batched
from qtomo.metrics import classical_fidelity
from qtomo.models import build
from qtomo.povm import get_povm
from qtomo.products import ghz_fidelity
from qtomo.simulate import simulate
from qtomo.train import fit

CHA_ET_AL = {10: 6_000, 20: 8_000, 40: 10_000, 60: 11_500, 80: 13_000}
LADDER = [1_000, 2_000, 3_000, 5_000, 7_000, 10_000, 15_000, 20_000, 30_000, 50_000, 70_000,
          100_000, 150_000, 200_000]
TARGET = 0.99


def mixture_classical_fidelity(L: int) -> float:
    """F_c of the incoherent GHZ mixture with pauli6: (1 − (2 − √2)/4 · (2/3)^L)²."""
    return (1 - (2 - math.sqrt(2)) / 4 * (2 / 3) ** L) ** 2


def fidelities_at(dataset, n: int, test: tuple[int, int], args, out: Path) -> dict:
    """Train on the first n rows of ``dataset``; quantum F and F_c (value, stderr)."""
    head = dataclasses.replace(dataset, n_records=n)  # the trainer sees rows [0, n) only
    options = step_budget_options(args.model, head, args.steps, {"seed": args.seed})
    torch.manual_seed(args.seed)
    model = build(args.model, L=dataset.L, K=dataset.K, povm=dataset.povm, **args.hp)
    started = time.perf_counter()
    result = fit(model, head, options, out=out, device=args.device, quiet=True)
    trained = time.perf_counter() - started
    log_q = log_prob_batched(result.model, dataset.outcomes(*test))
    classical = classical_fidelity(dataset.log_prob(*test), log_q)
    exact = dataset.L <= ENUMERATE_MAX_L
    quantum = ghz_fidelity(result.model, get_povm("pauli6"), exact=exact, samples=args.samples,
                           generator=torch.Generator(device=args.device).manual_seed(args.seed))
    return {"n": n, "F": quantum.value, "F_stderr": quantum.stderr,
            "F_method": "exact" if exact else "masked", "F_c": classical.value,
            "F_c_stderr": classical.stderr, "epochs_run": len(result.history),
            "best_epoch": result.best_epoch, "train_s": trained,
            "score_s": time.perf_counter() - started - trained}


def records_needed(L: int, args) -> dict:
    """Walk the ladder to the smallest N with quantum F ≥ 0.99 at this L."""
    torch.set_num_threads(args.threads)
    ladder = [n for n in LADDER if n <= args.max_records]
    with tempfile.TemporaryDirectory() as folder:
        total = ladder[-1] + args.test
        path = simulate("ghz", L, povm="pauli6", samples=total, seed=L, device="cpu",
                        out=Path(folder) / f"ghz_L{L}.h5", quiet=True)
        dataset = read_dataset(path)
        test = (total - args.test, total)
        guess = 50 * 1.5**L
        index = min(range(len(ladder)), key=lambda i: abs(math.log(ladder[i] / guess)))
        runs: dict[int, dict] = {}
        while 0 <= index < len(ladder):
            run = fidelities_at(dataset, ladder[index], test, args, Path(folder) / f"{index}.pt")
            runs[index] = run
            print(f"L = {L:3d}  N = {run['n']:7d}  F = {run['F']:.5f} ± {run['F_stderr']:.5f} "
                  f"({run['F_method']})  F_c = {run['F_c']:.5f} ± {run['F_c_stderr']:.5f}  "
                  f"({run['epochs_run']} epochs, {run['train_s']:.0f} s + {run['score_s']:.0f} s)",
                  flush=True)
            step = -1 if run["F"] >= TARGET else 1
            if index + step in runs:
                break  # the neighbour on the other side of the threshold is known
            index += step
    passing = [i for i, run in runs.items() if run["F"] >= TARGET]
    at = runs[min(passing)] if passing else runs[max(runs)]
    classical_passing = [runs[i]["n"] for i in runs if runs[i]["F_c"] >= TARGET]
    return {"L": L, "records_for_F": at["n"] if passing else f">{at['n']}",
            "F": at["F"], "F_stderr": at["F_stderr"], "F_method": at["F_method"],
            "F_c": at["F_c"], "F_c_mixture": mixture_classical_fidelity(L),
            "fewest_tried_with_F_c": min(classical_passing) if classical_passing else None,
            "cha_et_al_F_c": CHA_ET_AL.get(L), "runs": [runs[i] for i in sorted(runs)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gru")
    parser.add_argument("--hp", nargs="*", default=["hidden=8", "layers=1"], metavar="NAME=INT",
                        help="model hyperparameters (default: hidden=8 layers=1)")
    parser.add_argument("--L", nargs="+", type=int, default=[6, 8, 10, 12])
    parser.add_argument("--slow", action="store_true", help="also L = 16 and 20")
    parser.add_argument("--quick", action="store_true", help="a short check that it runs")
    parser.add_argument("--test", type=int, default=50_000, help="test records for F_c")
    parser.add_argument("--samples", type=int, default=100_000,
                        help="masked draws per GHZ term above the exact limit")
    parser.add_argument("--max-records", type=int, default=LADDER[-1], help="top of the ladder")
    parser.add_argument("--steps", type=int, default=8_000, help="optimizer steps per run")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and shuffling")
    parser.add_argument("--jobs", type=int, default=2, help="L values trained in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    args.hp = {name: int(value) for name, value in (item.split("=") for item in args.hp)}
    sizes = sorted(set(args.L + ([16, 20] if args.slow else [])))
    if args.quick:
        sizes, args.steps, args.test = [4, 12], 300, 2000
        args.samples, args.max_records = 5000, 3000
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        rows = list(pool.map(records_needed, sizes, [args] * len(sizes)))
    print(f"\n{args.model} {args.hp}: records (training + validation) for quantum fidelity "
          f"⟨GHZ|ρ|GHZ⟩ ≥ {TARGET}; F_c of the model there and of the incoherent mixture")
    table = [{key: value for key, value in row.items() if key != "runs"} for row in rows]
    name = f"sample_efficiency_{args.model}" + ("_quick" if args.quick else "")
    report(name, table, {"options": vars(args), "ladder": LADDER, "target": TARGET,
                         "results": rows, "quick": args.quick,
                         "mixture_F_c": {L: mixture_classical_fidelity(L)
                                         for L in range(4, 41, 2)}})


if __name__ == "__main__":
    main()
