"""The data-only fidelity and evaluate --target against independent dense calculations."""

import json
import re
from functools import reduce

import numpy as np
import pytest

from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.data_fidelity import data_fidelity
from qtomo.errors import QtomoError
from qtomo.evaluate import evaluate
from qtomo.models import build
from qtomo.models.checkpoint import save_checkpoint
from qtomo.povm import enumerate_outcomes, get_povm
from qtomo.reconstruct import pure_state_overlaps
from qtomo.simulate import simulate
from qtomo.targets import parse_target
from tests.physics import dense_born, dense_tfim

L = 4


def noisy_ghz(p: float) -> tuple[np.ndarray, np.ndarray]:
    """ψ_GHZ and ρ = (1 − p)|GHZ⟩⟨GHZ| + p 1/2^L, for which ⟨ψ|ρ|ψ⟩ = 1 − p + p/2^L."""
    psi = np.zeros(2**L, dtype=complex)
    psi[[0, -1]] = 2**-0.5
    return psi, (1 - p) * np.outer(psi, psi) + p * np.eye(2**L) / 2**L


@pytest.mark.parametrize("povm", ["pauli4", "pauli6", "tetra"])
def test_estimator_is_unbiased_exactly(povm):
    """Σ_a P(a) g(a) over all K^L records equals ⟨ψ|ρ|ψ⟩ (P from explicit Kronecker products)."""
    psi, rho = noisy_ghz(0.3)
    elements = get_povm(povm).elements
    records = enumerate_outcomes(L, elements.shape[0])
    P = dense_born(rho, elements, records)
    g = pure_state_overlaps(records, list(parse_target("ghz", L).mps), get_povm(povm))
    assert abs(P @ g - (1 - 0.3 + 0.3 / 2**L)) < 1e-12


def test_sampled_estimate_and_its_error():
    """Records drawn from the dense Born rule: F̂ within 4 stderr of the truth, and the stderr
    and N_0.01 agree with the exact variance of g."""
    psi, rho = noisy_ghz(0.2)
    povm = get_povm("pauli6")
    records = enumerate_outcomes(L, 6)
    P = dense_born(rho, povm.elements, records)
    rng = np.random.default_rng(11)
    drawn = records[rng.choice(len(P), size=40_000, p=P / P.sum())]
    figure = data_fidelity(np.array_split(drawn, 7), parse_target("ghz", L), povm)
    truth = 1 - 0.2 + 0.2 / 2**L
    assert abs(figure.estimate.value - truth) < 4 * figure.estimate.stderr
    g = pure_state_overlaps(records, list(parse_target("ghz", L).mps), povm)
    variance = P @ g**2 - (P @ g) ** 2
    assert abs(figure.estimate.stderr / np.sqrt(variance / 40_000) - 1) < 0.05
    assert abs(figure.records_for_0_01 / (variance / 1e-4) - 1) < 0.05
    first = data_fidelity(np.array_split(drawn, 7), parse_target("ghz", L), povm,
                          max_records=1000)
    g_first = pure_state_overlaps(drawn[:1000], list(parse_target("ghz", L).mps), povm)
    assert first.n_records == 1000 and abs(first.estimate.value - g_first.mean()) < 1e-12


def test_mixed_target_is_refused(tmp_path):
    _, rho = noisy_ghz(0.2)
    np.save(tmp_path / "rho.npy", rho)
    with pytest.raises(QtomoError, match="needs a pure target"):
        data_fidelity([np.zeros((4, L), int)], parse_target(str(tmp_path / "rho.npy"), L),
                      get_povm("pauli4"))


@pytest.fixture(scope="module")
def tfim_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "tfim.h5"
    return read_dataset(simulate("tfim", L, samples=20_000, out=path, seed=4, quiet=True))


@pytest.mark.parametrize("method", ["exact", "monte-carlo"])
def test_evaluate_with_a_target(tfim_data, method):
    """An mps model holding |+…+⟩: fidelity to product:+ is 1, to the TFIM ground state
    |⟨+…+|ψ⟩|² (dense eigh); the data-only estimate is within 4 stderr of the TFIM's truth."""
    model = build("mps", L=L, K=4, povm="pauli4", chi=2)
    model.set_tensors([np.full((1, 2, 1), 2**-0.5)] * L)
    ground = np.linalg.eigh(dense_tfim(L, 1.0, 1.0))[1][:, 0]
    plus = reduce(np.kron, [np.ones(2) / np.sqrt(2)] * L)
    overlap = abs(plus @ ground) ** 2
    for spec, model_truth, data_truth in (("product:+", 1.0, overlap), ("tfim:h=1", overlap, 1.0)):
        result = evaluate(model, tfim_data, target=spec, method=method, samples=2000, blocks=())
        assert abs(result.fidelity.as_dict()["value"] - model_truth) < 1e-9
        assert result.target == {"spec": spec, "L": L, "pure": True}
        data = result.data_fidelity.estimate
        assert abs(data.value - data_truth) < 4 * data.stderr and data.stderr < 0.1


def test_evaluate_default_target_is_the_reference(tfim_data):
    truth = read_dataset(tfim_data.path)
    model = build("mps", L=L, K=4, povm="pauli4", chi=4)
    result = evaluate(model, truth, blocks=())
    assert result.target["spec"] == "reference" and result.data_fidelity is not None
    with pytest.raises(QtomoError, match="has L = 5"):
        evaluate(model, truth, target=parse_target("ghz", 5), blocks=())


def test_cli_target(tfim_data, tmp_path, capsys):
    model = build("mps", L=L, K=4, povm="pauli4", chi=2)
    path = save_checkpoint(tmp_path / "m.pt", model, povm="pauli4")
    out = tmp_path / "e.json"
    assert main(["evaluate", "--model", str(path), "--data", str(tfim_data.path), "--target",
                 "ghz", "--json", str(out), "--blocks", "none", "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["target"] == {"spec": "ghz", "L": L, "pure": True}
    assert set(report["data_fidelity"]) == {"value", "stderr", "records_for_0.01", "records"}
    assert report["quantum_fidelity"]["method"] == "exact"
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    for spec in ("bell", "product:+-"):
        assert main(["evaluate", "--model", str(path), "--data", str(tfim_data.path),
                     "--target", spec, "--json", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("qtomo: error: ") and "target" in err and err.count("\n") == 1
        assert not bad.exists()


def test_cli_compare_target(tfim_data, tmp_path, capsys):
    """compare --target: both models' fidelities to |+…+⟩ (1 for the model holding it) and the
    data-only column once."""
    paths = []
    for chi, tensors in ((1, [np.full((1, 2, 1), 2**-0.5)] * L), (2, None)):
        model = build("mps", L=L, K=4, povm="pauli4", chi=chi)
        if tensors is not None:
            model.set_tensors(tensors)
        paths.append(save_checkpoint(tmp_path / f"m{chi}.pt", model, povm="pauli4"))
    assert main(["compare", "--model", str(paths[0]), "--model", str(paths[1]), "--data",
                 str(tfim_data.path), "--target", "product:+", "--blocks", "none"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("quantum fidelity"))
    assert re.search(r"built\s+1 \(exact\)\s+0\.\d+ \(exact\)\s+0\.\d+ ± \S+ \(N_0\.01 = ", row)
