"""Laboratory shots in, a state out: QuCumber-style files with a known readout error, a fit,
an evaluation with no truth, and the records exported for another tool.

The "lab" here is simulated so that the script runs anywhere: Pauli-basis shots of the TFIM
ground state whose read bits flip with P(read 1 | 0) = 2 % and P(read 0 | 1) = 5 %, written in
QuCumber's two-file layout. From there on the script sees only those files and the readout
error, as with an experiment: ``import_records`` stores the POVM actually measured (so the
inversion undoes the readout error, docs/measured-data.md "Measured data"), the model is fitted,
evaluated without any reference (held-out NLL, model against the data-only estimates, ρ's
eigenvalues), and the records are exported as qiskit counts. At the end, and only because the lab
was simulated, the exact values are printed for comparison.

    python examples/lab_data.py                      # L = 6, 2·10^4 shots
    python examples/lab_data.py --L 4 --samples 3000 --epochs 3
"""

import argparse
from pathlib import Path

from qtomo.data import read_dataset
from qtomo.evaluate import evaluate
from qtomo.formats import export_records, import_records
from qtomo.models import build, load_checkpoint
from qtomo.report import format_report
from qtomo.simulate import simulate
from qtomo.states.exact import tfim_ground_state
from qtomo.train import TrainOptions, fit

READOUT_ERROR = (0.02, 0.05)  # P(read 1 | 0), P(read 0 | 1), from the lab's calibration


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=6, help="qubits (default 6)")
    parser.add_argument("--samples", type=int, default=20_000, help="shots (default 2·10^4)")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30)")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/examples"))
    args = parser.parse_args(argv)
    folder = args.out_dir

    # the lab: shots with readout error, in QuCumber's layout (samples file + bases file)
    truth_file = simulate("tfim", args.L, h=1.0, povm="pauli6", samples=args.samples,
                          readout_error=READOUT_ERROR, seed=7, out=folder / "lab_truth.h5",
                          quiet=True)
    samples, bases = export_records("qucumber", truth_file, folder / "lab_samples.txt")
    print(f"lab files: {samples}, {bases}")

    # 1. import, with the calibrated readout error: the dataset stores the POVM measured
    dataset = read_dataset(import_records("qucumber", [samples, bases], folder / "lab.h5",
                                          readout_error=READOUT_ERROR))
    print(f"imported {dataset.n_records} shots of L = {dataset.L} qubits, POVM "
          f"{dataset.povm.name}; exact ln P in the file: {dataset.has_log_prob}")

    # 2. fit a network to the records (build("mps", ..., povm=dataset.povm) fits a physical
    #    state to the same records, readout POVM included)
    model = build("gru", L=dataset.L, K=dataset.K, hidden=32)
    result = fit(model, dataset, TrainOptions(epochs=args.epochs, batch_size=100),
                 out=folder / "lab_gru.pt", quiet=True)

    # 3. evaluate with no truth: held-out NLL, model against the data alone, ρ diagnostics
    evaluation = evaluate(load_checkpoint(result.checkpoint), dataset)
    print(format_report(evaluation))

    # 4. export the (imported) records for another tool
    print("exported " + ", ".join(map(str, export_records(
        "qiskit-counts", dataset, folder / "lab_counts.json"))))

    # only because this lab was simulated: what the numbers should have been
    exact = tfim_ground_state(args.L, h=1.0).references()
    centre = (args.L - 1) // 2
    model = evaluation.observables.model
    print(f"\nexact ⟨X_{centre}⟩ = {exact['X'][centre]:.4f} (model "
          f"{model.X.value[centre]:.4f}); exact ⟨Z_{centre} Z_{centre + 1}⟩ = "
          f"{exact['ZZ'][centre, centre + 1]:.4f} (model "
          f"{model.ZZ.value[centre, centre + 1]:.4f})")


if __name__ == "__main__":
    main()
