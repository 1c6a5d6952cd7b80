"""Records needed to reach classical fidelity F_c ≥ 0.99 on GHZ states with ``pauli6`` data.

For each L, one dataset of GHZ records (exact MPS sampling, exact ln P per record) is simulated;
its last ``--test`` rows (50 000 by default, so the standard error is ≈ 5·10⁻⁴, well inside the
0.01 margin) are the test set, never trained on. A model trained by ``qtomo.train.fit`` on the
first N rows (which include its 10 % validation split, so N counts every record the fit consumed)
is scored on the test rows::

    F_c = (E_P[√(Q(a)/P(a))])²         (delta-method standard error; a ~ P, exact ln P(a))

Search: N walks a fixed ladder of record counts, starting at the published number; down while
F_c ≥ 0.99, up while F_c < 0.99 (assumes F_c grows with N). The smallest passing N is reported
next to the Transformer numbers of Cha et al., "Attention-based quantum tomography",
Mach. Learn.: Sci. Technol. 3, 01LT01 (2022): 6 000 / 8 000 / 10 000 / 11 500 / 13 000 records
for L = 10 / 20 / 40 / 60 / 80, with the ratio ours / theirs.

Recipe (the defaults): a small GRU, 1 layer × 8 (``--hp hidden=8 layers=1``); AdamW, lr 4·10⁻²,
no weight decay, batch 128, a budget of 8 000 optimizer steps (epochs = steps / batches per
epoch) with warm-up and cosine decay over that budget, gradient clipping at 1, a moving average
of the weights (``TrainOptions.ema`` = 0.99, decay ramped as min(0.99, (1 + t)/(10 + t))) that is
validated and kept, and early stopping after 20 epochs without a better validation NLL of the
average. Runs stop after 30-80 epochs, while the learning rate is still high: the average of a
noisy high-rate trajectory is the estimate. What limits F_c is overfitting, not capacity: the
GHZ conditionals are exactly uniform except for a deterministic Z outcome after the first Z and,
at the last site only, an X/Y outcome fixed by the phase accumulated along an all-X/Y record
(≈ (2/3)^L of records, 1.7 % at L = 10, where learning that parity is half the remaining
error). In our sweeps (L = 10, 40; N = 4 000-10 000) wider (16-64) GRUs, LSTMs and small
Transformers fit spurious correlations earlier and stopped at a lower F_c, 2 × 8 GRUs did no
better, and weight decay ≥ 1 kept probability on impossible outcomes.

Weight averaging is what moved the numbers (seed 0; F_c at N = 6 000 / 8 000 for L = 10 / 20): the
former recipe (lr 3·10⁻³, 4 000 steps, patience 10, no average) reached 0.9864 / 0.9875 and needed
20 000 / 11 500 / 8 000 records for L = 10 / 20 / 40; the average alone (decay 0.999), 0.9893 /
0.9924; with lr 10⁻² and 8 000 steps, 0.9902 / 0.9944 at N = 6 000 / 5 000; with lr 4·10⁻², 0.9931
/ 0.9970. Without the average, lr 4·10⁻² gives 0.977-0.984 at N = 4 000-5 000. Decays 0.99-0.9998
gave the same F_c to 10⁻⁵ (the ramp binds in runs this short). A width-16 GRU did worse with the
average too (0.985 at L = 10, N = 6 000). Seeds 0 / 1 / 2: L = 10, N = 4 000: 0.9905 / 0.9881 /
0.9906, N = 5 000: 0.9923 / 0.9909 / 0.9921; L = 20, N = 3 000: 0.9894 / 0.9928, N = 4 000: 0.9948
/ 0.9934. So a count near the threshold is uncertain by one rung of the ladder. Measured with these
defaults (2-core CPU, ≈ 3 min): 4 000 / 4 000 / 3 000 records for L = 10 / 20 / 40 (F_c 0.9905 /
0.9948 / 0.9944), ratio 0.67 / 0.50 / 0.30 to Cha et al.

Usage::

    python benchmarks/sample_efficiency.py [--model gru] [--hp hidden=8 layers=1]
        [--L 10 20 40] [--slow] [--jobs 2] [--device cpu]

``--slow`` adds L = 60 and 80. ``--jobs`` runs that many L in parallel processes, each with
``--threads`` torch threads. Prints a table and writes
``benchmarks/results/sample_efficiency_<model>.json``.
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
from common import report

from qtomo.data import read_dataset
from qtomo.distribution import log_prob_batched
from qtomo.metrics import classical_fidelity
from qtomo.models import build
from qtomo.simulate import simulate
from qtomo.train import TrainOptions, fit

CHA_ET_AL = {10: 6_000, 20: 8_000, 40: 10_000, 60: 11_500, 80: 13_000}
LADDER = [1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 7_000, 8_000, 10_000, 11_500, 13_000,
          16_000, 20_000]
TARGET = 0.99


def fidelity_at(dataset, n: int, test: tuple[int, int], args, out: Path) -> dict:
    """Train on the first n rows of ``dataset``; F_c (value, stderr) on the test rows."""
    head = dataclasses.replace(dataset, n_records=n)  # the trainer sees rows [0, n) only
    batch = min(args.batch_size, int(0.9 * n))
    epochs = max(1, math.ceil(args.steps / math.ceil(0.9 * n / batch)))
    options = TrainOptions(epochs=epochs, batch_size=batch, lr=args.lr,
                           weight_decay=args.weight_decay, patience=args.patience, ema=args.ema,
                           seed=args.seed)
    torch.manual_seed(args.seed)
    model = build(args.model, L=dataset.L, K=dataset.K, **args.hp)
    started = time.perf_counter()
    result = fit(model, head, options, out=out, device=args.device, quiet=True)
    log_q = log_prob_batched(result.model, dataset.outcomes(*test))
    estimate = classical_fidelity(dataset.log_prob(*test), log_q)
    return {"n": n, "fidelity": estimate.value, "stderr": estimate.stderr,
            "epochs_run": len(result.history), "best_epoch": result.best_epoch,
            "seconds": time.perf_counter() - started}


def records_needed(L: int, args) -> dict:
    """Walk the ladder from Cha et al.'s count to the smallest N with F_c ≥ 0.99 at this L."""
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        total = LADDER[-1] + args.test
        path = simulate("ghz", L, povm="pauli6", samples=total, seed=L, device="cpu",
                        out=Path(folder) / f"ghz_L{L}.h5", quiet=True)
        dataset = read_dataset(path)
        test = (total - args.test, total)
        start = min(range(len(LADDER)), key=lambda i: abs(LADDER[i] - CHA_ET_AL.get(L, 6_000)))
        runs: dict[int, dict] = {}
        index = start
        while 0 <= index < len(LADDER):
            run = fidelity_at(dataset, LADDER[index], test, args, Path(folder) / f"{index}.pt")
            runs[index] = run
            print(f"L = {L:3d}  N = {run['n']:6d}  F_c = {run['fidelity']:.5f} ± "
                  f"{run['stderr']:.5f}  ({run['epochs_run']} epochs, best {run['best_epoch']}, "
                  f"{run['seconds']:.0f} s)", flush=True)
            passed = run["fidelity"] >= TARGET
            step = -1 if passed else 1
            if index + step in runs:
                break  # the neighbour on the other side of the threshold is known
            index += step
    passing = [i for i, run in runs.items() if run["fidelity"] >= TARGET]
    at = runs[min(passing)] if passing else runs[max(runs)]
    cha = CHA_ET_AL.get(L)
    needed = at["n"] if passing else None
    return {"L": L, "records_needed": needed if needed else f">{at['n']}",
            "F_c": at["fidelity"], "stderr": at["stderr"], "cha_et_al": cha,
            "ratio": needed / cha if needed and cha else None,
            "runs": [runs[i] for i in sorted(runs)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gru")
    parser.add_argument("--hp", nargs="*", default=["hidden=8", "layers=1"], metavar="NAME=INT",
                        help="model hyperparameters (default: hidden=8 layers=1)")
    parser.add_argument("--L", nargs="+", type=int, default=[10, 20, 40])
    parser.add_argument("--slow", action="store_true", help="also L = 60 and 80")
    parser.add_argument("--test", type=int, default=50_000, help="test records")
    parser.add_argument("--steps", type=int, default=8_000, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-2)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--ema", type=float, default=0.99, help="weight-average decay (0 = off)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and shuffling")
    parser.add_argument("--jobs", type=int, default=2, help="L values trained in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    args.hp = {name: int(value) for name, value in (item.split("=") for item in args.hp)}
    sizes = sorted(set(args.L + ([60, 80] if args.slow else [])))
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        rows = list(pool.map(records_needed, sizes, [args] * len(sizes)))
    print(f"\n{args.model} {args.hp}: records (training + validation) for F_c ≥ {TARGET}")
    table = [{key: value for key, value in row.items() if key != "runs"} for row in rows]
    report(f"sample_efficiency_{args.model}", table,
           {"options": vars(args), "ladder": LADDER, "target": TARGET, "results": rows})


if __name__ == "__main__":
    main()
