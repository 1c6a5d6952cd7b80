"""A user's three commands on a large case, each timed as its own process: ``qtomo simulate``,
``qtomo fit --model mps`` with the defaults (size search, sweeps: docs/physical-fits.md) and
``qtomo evaluate``.

Case ``tfim100``: TFIM L = 100, h = 1, open chain, 10^6 ``pauli4`` records of the DMRG state
kept at χ ≤ 32 and discarded weight 10^-10 per truncation (bond 20 reached; the simulate
defaults, χ ≤ 64 and 10^-14, would sample the records for more than an hour on 2 cores).

``--fit-args`` adds options to ``qtomo fit`` (e.g. ``"--chi 4 --real 0"``: one size, no
search); ``--reuse`` keeps ``FOLDER/<case>.h5`` when it is there (no simulate row then).

Per command: the wall seconds and the peak resident memory of its process (``wait4``'s
``ru_maxrss``). From the evaluation: the quantum fidelity of the fit to the DMRG state, the
classical fidelity and KL(P‖Q) on the held-out rows; from the checkpoint: the seconds of fitting
(of every stage of a size search), the sweeps of the kept fit and, after a search, the chosen
size, its stages (sizes, ``*`` where kept) and why it stopped.

Usage::

    python benchmarks/cli_pipeline.py [--case tfim100] [--folder FOLDER] [--fit-args ARGS]
                                      [--reuse]

Writes ``benchmarks/results/cli_pipeline_<case>.json`` (the default fit), or with ``--fit-args``
``cli_pipeline_<case>_<options>.json`` (``--chi 4 --real 0``: ``..._chi4_real0.json``).
FOLDER is ``data/bench`` of the repository unless given.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from common import print_row, report, search_text

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "tfim100": {"simulate": ["--state", "tfim", "--L", "100", "--h", "1", "--povm", "pauli4",
                             "--samples", "1000000", "--chi-max", "32", "--svd-min", "1e-10",
                             "--seed", "1"],
                "fit": ["--model", "mps"]},
}


def timed(arguments: list[str]) -> dict:
    """Run ``qtomo <arguments>`` (output passed through); its wall seconds and peak resident
    memory in GB. Exits with the command's status if it fails."""
    command = [sys.executable, "-m", "qtomo", *arguments]
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code:
        sys.exit(f"qtomo {' '.join(arguments)} failed with status {code}")
    row = {"command": f"qtomo {' '.join(arguments)}", "wall_s": wall,
           "peak_rss_GB": usage.ru_maxrss * 1024 / 1e9}
    print_row(row)
    return row


def summary(evaluation: dict) -> dict:
    """The figures of an evaluation JSON and of its model's training summary."""
    training = evaluation["model"]["training"]
    figures = {
        "F_quantum": evaluation["quantum_fidelity"]["value"],
        "F_classical": evaluation["classical_fidelity"]["value"],
        "F_classical_stderr": evaluation["classical_fidelity"]["stderr"],
        "KL": evaluation["kl"]["value"], "KL_stderr": evaluation["kl"]["stderr"],
        "hyperparameters": evaluation["model"]["hyperparameters"],
        "fit_s": training["time_s"], "sweeps": training["sweeps"],
    }
    search = training.get("size_search")
    if search:
        figures.update(
            chosen=search["chosen"], stopped=search["reason"],
            fit_s=sum(stage["time_s"] for stage in search["stages"]),
            search=search_text(search["stages"]))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=tuple(CASES), default="tfim100")
    parser.add_argument("--folder", type=Path, default=ROOT / "data" / "bench",
                        help="where the dataset, checkpoint and evaluation go")
    parser.add_argument("--fit-args", default="", help="more options of qtomo fit, quoted")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the dataset of an earlier run when it is there")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    data, model = args.folder / f"{args.case}.h5", args.folder / f"{args.case}_mps.pt"
    evaluation = args.folder / f"{args.case}_evaluation.json"
    case = CASES[args.case]
    rows = []
    if not (args.reuse and data.is_file()):
        rows.append(timed(["simulate", *case["simulate"], "--out", str(data), "--quiet"]))
    rows += [timed(["fit", *case["fit"], *shlex.split(args.fit_args), "--data", str(data),
                    "--out", str(model), "--quiet"]),
             timed(["evaluate", "--model", str(model), "--json", str(evaluation), "--quiet"])]
    report(results_name(args.case, args.fit_args), rows,
           summary(json.loads(evaluation.read_text())))


def results_name(case: str, fit_args: str) -> str:
    """``cli_pipeline_<case>``, with the fit's extra options after it where there are any: each
    ``--flag`` with the values that follow it.

    >>> results_name("tfim100", "--chi 4 --real 0")
    'cli_pipeline_tfim100_chi4_real0'
    >>> results_name("tfim100", "--no-amp --chi 4")
    'cli_pipeline_tfim100_no-amp_chi4'
    """
    parts: list[str] = []
    for token in shlex.split(fit_args):
        if token.startswith("--") or not parts:
            parts.append(token.lstrip("-"))
        else:
            parts[-1] += token
    return "_".join([f"cli_pipeline_{case}", *parts])


if __name__ == "__main__":
    main()
