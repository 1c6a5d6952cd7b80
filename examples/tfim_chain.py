"""The critical transverse-field Ising chain at L = 50: simulate, fit an MPS, evaluate.

Journey: 10^5 pauli4 records of the L = 50 ground state (h = J, DMRG reference), the physical
``mps`` family fitted to them, and everything the evaluation contracts from its tensors — the
correlation function ⟨Z_0 Z_r⟩, the energy, the fidelities of the reduced states of 2- and
3-site blocks, each beside the same estimator over the raw records and the exact value.

    python examples/tfim_chain.py                    # L = 50 (tens of minutes on a laptop CPU)
    python examples/tfim_chain.py --L 16 --samples 20000 --epochs 10   # a quick look
"""

import argparse
from pathlib import Path

import numpy as np

from qtomo.data import read_dataset
from qtomo.evaluate import evaluate
from qtomo.models import build, load_checkpoint
from qtomo.plots import plot_evaluation
from qtomo.report import format_report
from qtomo.simulate import simulate
from qtomo.train import TrainOptions, fit


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=50, help="qubits (default 50)")
    parser.add_argument("--samples", type=int, default=100_000, help="records (default 10^5)")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    parser.add_argument("--chi", type=int, default=4, help="bond dimension of the model (4)")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/examples"))
    args = parser.parse_args(argv)
    folder = args.out_dir

    # 1. simulate: above L = 12 the records come from a DMRG ground state (docs/simulate.md "MPS
    # path")
    path = simulate("tfim", args.L, h=1.0, povm="pauli4", samples=args.samples,
                    out=folder / f"tfim_L{args.L}.h5", quiet=True)
    dataset = read_dataset(path)

    # 2. fit: real amplitudes (the TFIM ground state is real), the family's training defaults
    model = build("mps", L=args.L, K=dataset.K, povm=dataset.povm, chi=args.chi, real=1)
    options = TrainOptions(**{**model.train_defaults, "epochs": args.epochs})
    result = fit(model, dataset, options, out=folder / f"tfim_L{args.L}_mps.pt", quiet=True)
    print(f"best of {len(result.history)} epochs: {result.best_epoch}, validation NLL "
          f"{result.best_val_nll:.4f}, "
          f"in {sum(row['time_s'] for row in result.history):.0f} s")

    # 3. evaluate on the records it never saw; every model figure is contracted, not sampled
    evaluation = evaluate(load_checkpoint(result.checkpoint), dataset)
    observables = evaluation.observables
    exact_zz = observables.reference["ZZ"][0]
    print("\n   r   <Z_0 Z_r> exact   model      data only")
    for r in sorted({1, 2, 4, 8, 16, 32, args.L - 1} & set(range(1, args.L))):
        data = observables.data.ZZ[0, r]
        print(f"  {r:2d}   {exact_zz[r]:.5f}         {observables.model.ZZ.value[0, r]:.5f}"
              f"    {data.value:.5f} ± {data.stderr:.5f}")
    energy, data_energy = observables.model.energy.value, observables.data.energy
    print(f"\nenergy per site: exact {observables.reference['energy'] / args.L:.6f}, "
          f"model {energy / args.L:.6f}, data only {data_energy.value / args.L:.4f} ± "
          f"{data_energy.stderr / args.L:.4f}")
    print(f"quantum fidelity |<psi|psi_model>|^2 = {evaluation.fidelity.value:.4f} (contracted)")
    for k in (2, 3):
        blocks = [s for s in evaluation.reduced_states if len(s.sites) == k]
        model_f = np.array([s.model.fidelity.value for s in blocks])
        data_f = np.array([s.data.fidelity.value for s in blocks])
        print(f"{k}-site blocks: fidelity of the model's reduced states mean {model_f.mean():.4f}"
              f" (worst {model_f.min():.4f}); from the raw records {data_f.mean():.4f} "
              f"(worst {data_f.min():.4f})")

    # 4. the full table (model against the raw data, z-scores) and the figure
    print("\n" + format_report(evaluation))
    figure = plot_evaluation(evaluation, folder / f"tfim_L{args.L}_mps.png",
                             history=result.history_path)
    print(f"wrote {figure}")


if __name__ == "__main__":
    main()
