"""Which family wins on which state: W, cluster, XXZ, random circuits (docs/states-and-circuits.md).

For every state, L and record count, one dataset is simulated (``pauli6``, seed 0) and fitted by
what ``qtomo fit`` does (:func:`qtomo.recipe.fit_recipe`: the ``mps`` with its size chosen from
the records, the networks with their training defaults) on the same rows. Reported per fit:

- ``F``: the quantum fidelity to the generating state from :func:`qtomo.evaluate.evaluate`:
  exact contraction for ``mps`` (``method = contraction``), the exact ρ's at small L for the
  networks (``F`` as built, ``F_projected`` of the closest physical state), Monte Carlo with its
  standard error ``F_err`` above;
- ``fit_s``: wall time of the fit (size search included); ``S_max``: the target's largest bond
  entropy (nats), the entanglement the families face; ``chi`` of the ``mps``.

States: ``w``, ``cluster``, ``xxz`` (Δ = 1, the Heisenberg chain), ``rc2``, ``rc4``, ``rc8``
(Haar brickwork of depth 2, 4, 8), and ``quench0.25``, ``quench0.5``: a quench circuit like the
20-ion experiment of Kurmapu et al. (2022; a long-range XY chain there), the Néel
state |0101…⟩ evolved for J t = 0.25, 0.5 under the nearest-neighbour XY chain
H = (J/2) Σ_i (X_i X_{i+1} + Y_i Y_{i+1}) in 4 Trotter steps, each a brickwork of
rxx(J dt)·ryy(J dt) gates, written as an OpenQASM 2 file and read by ``simulate(circuit=…)``.
Families: ``mps``, ``gru``, ``transformer`` and, at L ≤ 8,
``dense`` where the registry has it. The ``targets`` case list checks the issue's targets:
``w8``/``cluster8`` (10^4 records, default ``mps`` fit, F ≥ 0.99), ``brickwork20`` (depth-4
brickwork, L = 20, 2.7·10^4 records, F ≥ 0.99) and the quenches ``quench20_t0.25``,
``quench20_t0.5`` (L = 20, 2.7·10^4 records).

Usage::

    python benchmarks/states.py [--states w cluster xxz rc2 rc4 rc8] [--L 8 16]
        [--records 10000 100000] [--families mps gru transformer] [--fit-seeds 0 1 …]
        [--targets] [--quick]
    python benchmarks/states.py --rescore results/states_N10000.json   # winners from its rows

``--quick`` runs L = 4, 2 000 records, one epoch for the networks (its numbers mean nothing).
Writes a table to stdout and
``benchmarks/results/states[_targets][_N<records>][_<families>][_seeds<…>][_quick].json``
(``_N…`` where ``--records`` is not the default, ``_<families>`` where ``--families`` is not,
``_seeds…`` where ``--fit-seeds`` is not; each dataset is then fitted from every seed, and the
rows carry it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import print_row, report

from qtomo.data import read_dataset
from qtomo.evaluate import evaluate
from qtomo.models import FAMILIES
from qtomo.recipe import fit_recipe
from qtomo.simulate import simulate

STATES = {
    "w": {"state": "w"}, "cluster": {"state": "cluster"}, "xxz": {"state": "xxz", "delta": 1.0},
    "rc2": {"state": "random-circuit", "depth": 2}, "rc4": {"state": "random-circuit", "depth": 4},
    "rc8": {"state": "random-circuit", "depth": 8},
    "quench0.25": {"quench_time": 0.25}, "quench0.5": {"quench_time": 0.5},
}
#: the issue's targets: (state, L, records, families)
TARGETS = {"w8": ("w", 8, 10_000), "cluster8": ("cluster", 8, 10_000),
           "brickwork20": ("rc4", 20, 27_000), "quench20_t0.25": ("quench0.25", 20, 27_000),
           "quench20_t0.5": ("quench0.5", 20, 27_000)}
TROTTER_STEPS = 4


def quench_qasm(L: int, time: float, steps: int = TROTTER_STEPS) -> str:
    """OpenQASM 2 of the Néel state |0101…⟩ evolved for J t = ``time`` under
    H = (J/2) Σ_i (X_i X_{i+1} + Y_i Y_{i+1}) (J = 1) by ``steps`` Trotter steps: per step, the
    even then the odd bonds get exp(−i dt (XX + YY)/2) = rxx(dt) ryy(dt) (XX and YY commute)."""
    dt = time / steps
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{L}];"]
    lines += [f"x q[{i}];" for i in range(1, L, 2)]
    for _ in range(steps):
        for first in (0, 1):
            for i in range(first, L - 1, 2):
                lines += [f"rxx({dt!r}) q[{i}],q[{i + 1}];", f"ryy({dt!r}) q[{i}],q[{i + 1}];"]
    return "\n".join(lines) + "\n"


def state_options(name: str, L: int, folder: Path) -> dict:
    """The keyword arguments of :func:`qtomo.simulate.simulate` for the state ``name``."""
    options = dict(STATES[name])
    if "quench_time" in options:
        path = folder / f"{name}_L{L}.qasm"
        path.write_text(quench_qasm(L, options.pop("quench_time")))
        options["circuit"] = path
    return options
DENSE_MAX_L = 8
RECORDS = [10_000, 100_000]


def fit_and_score(family: str, dataset, *, epochs: int | None, samples: int, seed: int) -> dict:
    """Fit ``family`` as ``qtomo fit --seed <seed>`` does and score its quantum fidelity to the
    truth."""
    options = {"seed": seed, **({"epochs": epochs} if epochs is not None and family != "mps"
                                else {})}
    started = time.perf_counter()
    selection = fit_recipe(family, dataset, options, device="cpu", quiet=True)
    fit_s = time.perf_counter() - started
    evaluation = evaluate(selection.best.model, dataset, samples=samples, seed=0, blocks=())
    figures = evaluation.fidelity.as_dict()
    return {"family": family, "F": figures["value"], "F_err": figures.get("stderr", 0.0),
            "F_projected": figures.get("projected"), "F_method": figures["method"],
            "fit_s": fit_s, **{name: value for name, value in selection.hyperparameters.items()
                               if name in ("chi", "real")}}


def run_case(name: str, L: int, records: int, families: list[str], folder: Path, *,
             epochs: int | None, samples: int, seeds: tuple[int, ...] = (0,)) -> list[dict]:
    path = simulate(L=L, povm="pauli6", samples=records, seed=0, device="cpu", quiet=True,
                    method="mps", out=folder / f"{name}_L{L}_N{records}.h5",
                    **state_options(name, L, folder))
    dataset = read_dataset(path)
    s_max = float(np.max(dataset.reference["entropy"]))
    rows = []
    for family in families:
        if family == "dense" and L > DENSE_MAX_L:
            continue
        for seed in seeds:
            row = {"state": name, "L": L, "N": records, "S_max": s_max, "seed": seed,
                   **fit_and_score(family, dataset, epochs=epochs, samples=samples, seed=seed)}
            print_row(row, 5)
            rows.append(row)
    return rows


def winners(rows: list[dict]) -> list[dict]:
    """Per (state, L, N): the mps's F beside the best network's F, and the ``winner``: the family
    of the highest F where its F − 2 F_err exceeds every other family's F + 2 F_err, else
    ``within 2σ: …`` naming the families the errors cannot separate."""
    summary = []
    for key in dict.fromkeys((row["state"], row["L"], row["N"]) for row in rows):
        case = [row for row in rows if (row["state"], row["L"], row["N"]) == key]
        mps = [row for row in case if row["family"] == "mps"]
        networks = [row for row in case if row["family"] in ("gru", "transformer")]
        best = max(networks, key=lambda row: row["F"], default=None)
        summary.append({
            "state": key[0], "L": key[1], "N": key[2], "S_max": case[0]["S_max"],
            "F_mps": mps[0]["F"] if mps else None,
            "network": best["family"] if best else None, "F_network": best["F"] if best else None,
            "F_network_err": best["F_err"] if best else None, "winner": _winner(case)})
    return summary


def _winner(case: list[dict]) -> str:
    """The family of the highest F, or the families whose 2σ intervals reach its own."""
    best = max(case, key=lambda row: row["F"])
    low = best["F"] - 2 * best["F_err"]
    close = [row["family"] for row in case
             if row is not best and row["F"] + 2 * row["F_err"] >= low]
    return ", ".join([best["family"], *close]) + " (within 2σ)" if close else best["family"]


def rescore(path: Path) -> None:
    """Recompute the ``winners`` of a results file from its rows (by :func:`winners`' rule)."""
    results = json.loads(path.read_text())
    results["winners"] = winners(results["rows"])
    results["rescored_by"] = " ".join(["python", *sys.argv])
    path.write_text(json.dumps(results, indent=2))
    for row in results["winners"]:
        print_row(row, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", nargs="+", choices=tuple(STATES), default=list(STATES))
    parser.add_argument("--L", nargs="+", type=int, default=[8, 16])
    parser.add_argument("--records", nargs="+", type=int, default=RECORDS)
    default_families = ["mps", "gru", "transformer"] + (["dense"] if "dense" in FAMILIES else [])
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES),
                        default=default_families)
    parser.add_argument("--targets", action="store_true",
                        help="run the issue's target cases (default mps fit) instead")
    parser.add_argument("--samples", type=int, default=20_000,
                        help="model samples of the Monte Carlo fidelity (default 20 000)")
    parser.add_argument("--fit-seeds", nargs="+", type=int, default=[0], metavar="SEED",
                        help="fit every dataset from each of these seeds (default 0)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rescore", type=Path, metavar="FILE",
                        help="only recompute the winners of a results file from its rows")
    args = parser.parse_args()
    if args.rescore is not None:
        return rescore(args.rescore)
    epochs = 1 if args.quick else None
    with tempfile.TemporaryDirectory() as folder:
        rows = []
        if args.targets:
            for case, (name, L, records) in TARGETS.items():
                L, records = (4, 2000) if args.quick else (L, records)
                for row in run_case(name, L, records, ["mps"], Path(folder), epochs=epochs,
                                    samples=args.samples):
                    rows.append({"case": case, **row, "target_met": row["F"] >= 0.99})
        else:
            sizes = [4] if args.quick else args.L
            counts = [2000] if args.quick else args.records
            for name in args.states:
                for L in sizes:
                    for records in counts:
                        rows += run_case(name, L, records, args.families, Path(folder),
                                         epochs=epochs, samples=args.samples,
                                         seeds=tuple(args.fit_seeds))
    extra = {} if args.targets or len(args.families) < 2 else {"winners": winners(rows)}
    for row in extra.get("winners", []):
        print_row(row, 5)
    counts = "" if args.targets or args.records == RECORDS else "_N" + "_".join(
        map(str, args.records))
    families = "" if args.targets or args.families == default_families else "_" + "_".join(
        args.families)
    seeds = "" if args.fit_seeds == [0] else "_seeds" + "_".join(map(str, args.fit_seeds))
    report("states" + ("_targets" if args.targets else "") + counts + families + seeds
           + ("_quick" if args.quick else ""), rows, extra)


if __name__ == "__main__":
    main()
