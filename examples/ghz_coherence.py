"""Why the classical fidelity is not enough: GHZ, a network and ``mps``, and the incoherent
mixture, side by side.

The GHZ state (|0…0⟩ + |1…1⟩)/√2 and the incoherent mixture (|0…0⟩⟨0…0| + |1…1⟩⟨1…1|)/2 give
the same outcome for every record with a Z outcome; only the all-X/Y records carry the phase.
So the mixture, with quantum fidelity ½, has a classical fidelity close to 1
((1 − 0.1464 (2/3)^L)² with pauli6, docs/benchmarks.md "Classical fidelity is not coherence"). This
script fits a ``gru`` and an ``mps`` to the same GHZ records and puts their classical and quantum
fidelities beside the mixture's, all on the same test records.

    python examples/ghz_coherence.py                 # L = 8, 2·10^4 pauli6 records
    python examples/ghz_coherence.py --L 4 --samples 4000 --epochs 3
"""

import argparse
from pathlib import Path

import numpy as np

from qtomo.data import read_dataset
from qtomo.evaluate import evaluate
from qtomo.models import build, load_checkpoint
from qtomo.report import compare
from qtomo.simulate import simulate
from qtomo.states.exact import MixedState
from qtomo.train import TrainOptions, fit


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=8, help="qubits, at most 9 (default 8)")
    parser.add_argument("--samples", type=int, default=20_000, help="records (default 2·10^4)")
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs (default 20)")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/examples"))
    args = parser.parse_args(argv)
    folder = args.out_dir

    dataset = read_dataset(simulate("ghz", args.L, povm="pauli6", samples=args.samples,
                                    out=folder / f"ghz_L{args.L}.h5", quiet=True))
    evaluations = []
    for family, hyperparameters in (("gru", {}), ("mps", {"chi": 2})):
        model = build(family, L=args.L, K=dataset.K, povm=dataset.povm, **hyperparameters)
        options = TrainOptions(**{**model.train_defaults, "epochs": args.epochs})
        result = fit(model, dataset, options, out=folder / f"ghz_L{args.L}_{family}.pt",
                     quiet=True)
        evaluations.append(evaluate(load_checkpoint(result.checkpoint), dataset, blocks=()))

    # the incoherent mixture as a "model": its exact Born distribution, on the same test rows
    D = 2**args.L
    mixture = np.zeros((D, D), dtype=complex)
    mixture[0, 0] = mixture[-1, -1] = 0.5
    evaluations.append(evaluate(MixedState(mixture).distribution(dataset.povm), dataset,
                                rows=evaluations[0].test_rows, blocks=()))
    print(compare(evaluations, ["gru", "mps", "mixture"]))
    F_c = (1 - (2 - np.sqrt(2)) / 4 * (2 / 3) ** args.L) ** 2
    print(f"\nthe mixture's classical fidelity in closed form: {F_c:.6f}; its quantum fidelity: "
          "0.5. A model's F_c says how well it reproduces the records; only the quantum "
          "fidelity says whether it learned the phase.")


if __name__ == "__main__":
    main()
