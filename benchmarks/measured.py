"""QuCumber's tutorial cases from generated files of the same layout and size, with the default
commands (docs/measured-data.md).

- ``w900``: tutorial 3's 2-qubit W state (|01⟩ + |10⟩)/√2, 100 shots in each of the 9
  settings (900 shots; QuCumber reaches F = 0.9656 in 175 s);
- ``tfim10z``: tutorial 1's TFIM L = 10 (h = 1, open chain) ground state, 10^4 shots in the Z
  basis only (QuCumber's positive RBM: F = 0.9898).
- ``tfim12z``: the TFIM L = 12 ground state (h = 1, open chain), 10^5 shots in the Z basis
  (no published figure; enough records that the size search should keep χ = 4).

Each case writes QuCumber's two text files (samples, bases), runs ``qtomo import qucumber``
(``--allow-biased-bases`` for Z-only), ``qtomo fit --model F`` with the defaults
(:func:`qtomo.recipe.fit_recipe`: on Z-only records mps/lpdo take ``positive=1``; the family
``default`` is a plain ``qtomo fit``'s, :func:`qtomo.recipe.default_family`), and the
default ``qtomo evaluate`` (its wall time is reported); the fidelity ⟨ψ|ρ|ψ⟩ to the generating
state is computed here, independently of ``evaluate`` (contracted from the tensors for mps/lpdo;
for a network ρ = Σ_a Q(a) Q_a where K^L ≤ 4^10, else Monte Carlo over 10^5 model samples).

The family ``qucumber`` (``tfim10z`` only) trains QuCumber's own positive RBM on the same
shots in the same run, where ``qucumber`` imports (``pip install --no-deps qucumber==1.3.3``:
it declares torch < 2.1 but runs on this torch): L hidden units, batches of 100 for both
phases, 10 Gibbs steps, learning rate 0.1 (tutorial 1's 0.01 had reached F = 0.915 after 100
epochs here), in rounds of 5 epochs until F ≥ 0.99 or 200 epochs; ``train_s`` is its training
time without the fidelity checks, ``kept`` the epochs run.

Usage::

    python benchmarks/measured.py [--cases w900 tfim10z] [--families lpdo mps gru default qucumber]
        [--seeds 0 1 2]

Prints a table and writes ``benchmarks/results/measured.json`` (``measured_<families>.json``
for other families than these, ``..._<case>`` with a case other than these).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import report

from qtomo.data import read_dataset
from qtomo.distribution import PhysicalState, enumerable, enumerate_probabilities
from qtomo.evaluate import evaluate
from qtomo.formats import import_records
from qtomo.pauli_records import sample_shots
from qtomo.recipe import default_family, fit_recipe
from qtomo.reconstruct import density_matrix, mps_fidelity
from qtomo.states.exact import tfim_ground_state
from qtomo.states.mps import pure_state_fidelity, vector_to_mps

PEERS = {"w900": 0.9656, "tfim10z": 0.9898, "tfim12z": None}
CASES = ["w900", "tfim10z"]
FAMILIES = ["lpdo", "mps", "gru"]
#: QuCumber's rounds (epochs), its cap and the fidelity that ends it (module docstring)
_QUCUMBER_ROUND, _QUCUMBER_EPOCHS, _QUCUMBER_TARGET = 5, 200, 0.99


def case(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(ψ (2^L,), bases (N, L) letters) of a case."""
    if name == "w900":
        psi = np.array([0, 1, 1, 0]) / np.sqrt(2)
        settings = np.array([[a, b] for a in "XYZ" for b in "XYZ"])
        return psi, np.repeat(settings, 100, axis=0)
    if name == "tfim10z":
        return tfim_ground_state(10).psi, np.full((10_000, 10), "Z")
    if name == "tfim12z":
        return tfim_ground_state(12).psi, np.full((100_000, 12), "Z")
    raise SystemExit(f"unknown case {name}")


def fidelity(model, psi: np.ndarray, povm) -> tuple[float, float]:
    """⟨ψ|ρ|ψ⟩ of the model's state and its standard error: contracted from the tensors, or
    ρ = Σ_a Q(a) Q_a where K^L is enumerable, else Monte Carlo E_Q[⟨ψ|Q_a|ψ⟩] over 10^5
    samples."""
    if isinstance(model, PhysicalState):
        return pure_state_fidelity(vector_to_mps(psi), model.tensors()), 0.0
    L = int(np.log2(len(psi)))
    if enumerable(L, povm.K):
        rho = density_matrix(enumerate_probabilities(model), povm).rho
        return float(np.real(psi.conj() @ rho @ psi)), 0.0
    estimate = mps_fidelity(model, vector_to_mps(psi), povm, samples=100_000,
                            generator=torch.Generator().manual_seed(0), quiet=True)
    return float(estimate.value), float(estimate.stderr)


def shots(name: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ψ, bases, bits (N, L) 0/1) of a case: its shots drawn with ``seed``."""
    psi, bases = case(name)
    return psi, bases, sample_shots(psi, bases, np.random.default_rng(seed))


def qucumber_run(name: str, seed: int) -> dict:
    """QuCumber's positive RBM on the shots :func:`run` draws for ``name`` and ``seed``
    (module docstring for the settings)."""
    try:  # optional: only for this family
        from qucumber.nn_states import PositiveWaveFunction
    except ImportError:
        raise SystemExit("the qucumber family needs QuCumber: pip install --no-deps "
                         "qucumber==1.3.3") from None
    if name != "tfim10z":
        raise SystemExit("the qucumber family runs on tfim10z (a positive RBM on Z shots)")
    psi, _, bits = shots(name, seed)
    torch.manual_seed(seed)
    rbm = PositiveWaveFunction(num_visible=bits.shape[1], num_hidden=bits.shape[1], gpu=False)
    space, data = rbm.generate_hilbert_space(), torch.tensor(bits, dtype=torch.double)
    train_s, epochs, value = 0.0, 0, 0.0
    while epochs < _QUCUMBER_EPOCHS and value < _QUCUMBER_TARGET:
        start = time.perf_counter()
        rbm.fit(data, epochs=_QUCUMBER_ROUND, pos_batch_size=100, neg_batch_size=100, lr=0.1,
                k=10, progbar=False)
        train_s += time.perf_counter() - start
        epochs += _QUCUMBER_ROUND
        amplitude = rbm.amplitude(space).detach().numpy()
        value = float((psi.real @ amplitude) ** 2 / (amplitude @ amplitude))
    return {"case": name, "family": "qucumber", "seed": seed, "N": len(bits), "fidelity": value,
            "stderr": 0.0, "peer": PEERS[name], "kept": f"{epochs} epochs", "train_s": train_s,
            "evaluate_s": None}


def run(name: str, family: str, seed: int, folder: Path) -> dict:
    if family == "qucumber":
        return qucumber_run(name, seed)
    psi, bases, bits = shots(name, seed)
    np.savetxt(folder / "samples.txt", bits.astype(float))
    np.savetxt(folder / "bases.txt", bases, fmt="%s")
    data = import_records("qucumber", [folder / "samples.txt", folder / "bases.txt"],
                          folder / f"{name}_{seed}.h5", allow_biased_bases=True, seed=seed)
    dataset = read_dataset(data)
    chosen = family == "default"
    if chosen:
        family = default_family(dataset)[0]
    torch.manual_seed(seed)
    start = time.perf_counter()
    selection = fit_recipe(family, dataset, {"seed": seed}, out=folder / f"{name}_{family}.pt",
                           device="cpu", quiet=True)
    train_s = time.perf_counter() - start
    model = selection.best.model
    start = time.perf_counter()
    evaluate(model, dataset)
    evaluate_s = time.perf_counter() - start
    value, stderr = fidelity(model, psi, dataset.povm)
    return {"case": name, "family": family + (" (default)" if chosen else ""), "seed": seed,
            "N": dataset.n_records,
            "fidelity": value, "stderr": stderr, "peer": PEERS[name],
            "kept": str(selection.hyperparameters), "train_s": train_s,
            "evaluate_s": evaluate_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=CASES)
    parser.add_argument("--families", nargs="+", default=FAMILIES,
                        help="families, or default: the family a plain qtomo fit chooses")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            for family in args.families:
                for seed in args.seeds:
                    rows.append(run(name, family, seed, Path(tmp)))
                    print(rows[-1], flush=True)
    name = ["measured", *(args.families if args.families != FAMILIES else []),
            *(case for case in args.cases if case not in CASES)]
    report("_".join(name), rows)


if __name__ == "__main__":
    main()
