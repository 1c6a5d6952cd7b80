"""Records needed to reach classical fidelity F_c ≥ 0.99 on GHZ states with ``pauli6`` data.

For each L, one dataset of GHZ records (exact MPS sampling, exact ln P per record) is simulated;
its last ``--test`` rows are the test set, never trained on. For a ladder of training-set sizes
N, a model is trained by ``qtomo.train.fit`` on the first N rows (which include its 10 %
validation split, so N counts every record the model saw) and F_c is estimated on the test rows::

    F_c = (E_P[√(Q(a)/P(a))])²         (delta-method standard error; a ~ P, exact ln P(a))

The smallest N with F_c ≥ 0.99 is reported next to the Transformer numbers of Cha et al.,
"Attention-based quantum tomography", Mach. Learn.: Sci. Technol. 3, 01LT01 (2022):
6 000 / 8 000 / 10 000 / 11 500 / 13 000 records for L = 10 / 20 / 40 / 60 / 80.

Usage::

    python benchmarks/sample_efficiency.py [--model gru] [--hp hidden=16 layers=1]
        [--L 10 20 40] [--slow] [--device auto]

``--slow`` adds L = 60 and 80. Each training run takes a fixed budget of ``--steps`` optimizer
steps (epochs = steps / steps per epoch), with early stopping on the validation NLL. Writes a table
and ``benchmarks/results/sample_efficiency_<model>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from qtomo.data import read_dataset
from qtomo.metrics import classical_fidelity, log_prob_batched
from qtomo.models import build
from qtomo.simulate import simulate
from qtomo.train import TrainOptions, fit

CHA_ET_AL = {10: 6_000, 20: 8_000, 40: 10_000, 60: 11_500, 80: 13_000}
LADDER = [500, 1_000, 2_000, 3_000, 4_000, 6_000, 8_000, 10_000, 13_000]
RESULTS = Path(__file__).parent / "results"


def fidelity_at(dataset, n: int, test: tuple[int, int], args, out: Path) -> dict:
    """Train on the first n rows of ``dataset``; F_c (value, stderr) on the test rows."""
    head = dataclasses.replace(dataset, n_records=n)  # the trainer sees rows [0, n) only
    batch = min(args.batch_size, int(0.9 * n))
    epochs = max(1, math.ceil(args.steps / math.ceil(0.9 * n / batch)))
    options = TrainOptions(epochs=epochs, batch_size=batch, lr=args.lr, patience=args.patience)
    torch.manual_seed(0)
    model = build(args.model, L=dataset.L, K=dataset.K, **args.hp)
    started = time.perf_counter()
    result = fit(model, head, options, out=out, device=args.device, quiet=True)
    log_q = log_prob_batched(result.model, dataset.outcomes(*test))
    estimate = classical_fidelity(dataset.log_prob(*test), log_q)
    return {"n": n, "fidelity": estimate.value, "stderr": estimate.stderr,
            "epochs_run": len(result.history), "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gru")
    parser.add_argument("--hp", nargs="*", default=[], metavar="NAME=INT",
                        help="model hyperparameters, e.g. --hp hidden=16 layers=1")
    parser.add_argument("--L", nargs="+", type=int, default=[10, 20, 40])
    parser.add_argument("--slow", action="store_true", help="also L = 60 and 80")
    parser.add_argument("--test", type=int, default=10_000, help="test records")
    parser.add_argument("--steps", type=int, default=1_500, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    args.hp = {name: int(value) for name, value in (item.split("=") for item in args.hp)}
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = sorted(set(args.L + ([60, 80] if args.slow else [])))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for L in sizes:
            total = LADDER[-1] + args.test
            path = simulate("ghz", L, povm="pauli6", samples=total, seed=L,
                            out=Path(folder) / f"ghz_L{L}.h5", quiet=True)
            dataset = read_dataset(path)
            test = (total - args.test, total)
            runs, needed = [], None
            for n in LADDER:
                runs.append(fidelity_at(dataset, n, test, args, Path(folder) / f"L{L}_{n}.pt"))
                run = runs[-1]
                print(f"L = {L:3d}  N = {n:6d}  F_c = {run['fidelity']:.5f} ± {run['stderr']:.5f}"
                      f"  ({run['epochs_run']} epochs, {run['seconds']:.0f} s)", flush=True)
                if run["fidelity"] >= 0.99:
                    needed = n
                    break
            rows.append({"L": L, "records_needed": needed, "cha_et_al": CHA_ET_AL.get(L),
                         "runs": runs})

    print(f"\n{'L':>4}{'records needed':>16}{'Cha et al.':>12}   ({args.model} {args.hp}, "
          "F_c ≥ 0.99)")
    for row in rows:
        needed = row["records_needed"] or f">{LADDER[-1]}"
        print(f"{row['L']:>4}{needed:>16}{row['cha_et_al'] or '-':>12}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"sample_efficiency_{args.model}.json"
    out.write_text(json.dumps({"model": args.model, "options": vars(args), "ladder": LADDER,
                               "results": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
