"""A noisy state: an ``lpdo`` (a mixed state by construction) against a network, both judged
by the fidelity to the mixed target.

The TFIM ground state under local depolarizing noise, ρ → (⊗_i D_p)(|ψ⟩⟨ψ|), measured with
pauli4 (docs/simulate.md "Noisy states"). A pure-state ``mps`` cannot represent it; the locally
purified ``lpdo`` can, and stays positive; a ``gru`` learns the record distribution, whose inversion
can have negative eigenvalues. Both are compared with σ by Uhlmann's fidelity
(Tr √(√σ ρ √σ))² on the same test records.

    python examples/noisy_state.py                   # L = 4, p = 0.1, 5·10^4 records
    python examples/noisy_state.py --samples 5000 --epochs 3
"""

import argparse
from pathlib import Path

from qtomo.data import read_dataset
from qtomo.evaluate import evaluate
from qtomo.models import build, load_checkpoint
from qtomo.report import compare
from qtomo.simulate import simulate
from qtomo.train import TrainOptions, fit


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=4, help="qubits, at most 10 (default 4)")
    parser.add_argument("--p", type=float, default=0.1, help="depolarizing probability (0.1)")
    parser.add_argument("--samples", type=int, default=50_000, help="records (default 5·10^4)")
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs (default 20)")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/examples"))
    args = parser.parse_args(argv)
    folder = args.out_dir

    dataset = read_dataset(simulate("tfim", args.L, h=1.0, povm="pauli4", samples=args.samples,
                                    depolarizing=args.p, out=folder / f"noisy_L{args.L}.h5",
                                    quiet=True))
    print(f"target: TFIM L = {args.L} under {dataset.noise}, purity Tr σ² = "
          f"{float(dataset.reference['purity']):.4f}")
    evaluations = []
    for family, hyperparameters in (("lpdo", {"chi": 4, "kraus": 4}), ("gru", {})):
        model = build(family, L=args.L, K=dataset.K, povm=dataset.povm, **hyperparameters)
        options = TrainOptions(**{**model.train_defaults, "epochs": args.epochs})
        result = fit(model, dataset, options, out=folder / f"noisy_L{args.L}_{family}.pt",
                     quiet=True)
        evaluations.append(evaluate(load_checkpoint(result.checkpoint), dataset))
    print(compare(evaluations, ["lpdo", "gru"]))


if __name__ == "__main__":
    main()
