"""Evaluation of the physical families: everything contracted from the tensors, against dense."""

import json

import numpy as np
import pytest

from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.distribution import PhysicalState
from qtomo.evaluate import evaluate
from qtomo.models import build, save_checkpoint
from qtomo.reconstruct import ContractedFidelity, QuantumFidelity
from qtomo.simulate import simulate
from qtomo.states.exact import spectrum_entropy
from qtomo.states.mps import pauli_expectation, state_references
from tests.physics import X, Y, Z, site_operator
from tests.test_mps_model import dense_rho, randomised


@pytest.fixture(scope="module")
def tfim6(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tfim6.h5"
    return read_dataset(simulate("tfim", 6, samples=2_000, out=path, seed=1, quiet=True))


def dense_expectation(rho, ops: dict) -> float:
    O = np.eye(rho.shape[0], dtype=complex)
    for site, op in ops.items():
        O = O @ site_operator(op, site, 6)
    return float(np.trace(rho @ O).real)


@pytest.mark.parametrize("name, hp", [("mps", dict(chi=3)), ("lpdo", dict(chi=2, kraus=2))])
@pytest.mark.parametrize("method", ["exact", "monte-carlo"])
def test_figures_are_contracted_exactly(tfim6, name, hp, method):
    model = randomised(name, 6, seed=4, **hp)
    assert isinstance(model, PhysicalState)
    result = evaluate(model, tfim6, method=method, pauli_strings=["Y0 Y1 X5", "Z2 X3"])
    rho = dense_rho(model.tensors())
    psi = tfim6.reference["psi"]
    fidelity = np.vdot(psi, rho @ psi).real
    assert abs(result.fidelity.value - fidelity) < 1e-12
    if method == "exact":  # ρ straight from the tensors, positive
        assert isinstance(result.fidelity, QuantumFidelity) and result.fidelity.physical
        np.testing.assert_allclose(result.reconstruction.rho, rho, atol=1e-13)
        assert result.as_dict()["density_matrix"]["min_eigenvalue"] > -1e-12
    else:
        assert isinstance(result.fidelity, ContractedFidelity) and result.reconstruction is None
        assert result.as_dict()["quantum_fidelity"]["method"] == "contraction"
    observables = result.observables.model
    assert observables.n_samples is None and np.all(observables.X.stderr == 0)
    for i in range(6):
        assert abs(observables.X.value[i] - dense_expectation(rho, {i: X})) < 1e-12
    for i in range(1, 6):
        assert abs(observables.ZZ.value[0, i] - dense_expectation(rho, {0: Z, i: Z})) < 1e-12
    assert abs(observables.strings["Y0 Y1 X5"].value
               - dense_expectation(rho, {0: Y, 1: Y, 5: X})) < 1e-12
    H = -sum(dense_expectation(rho, {i: Z, i + 1: Z}) for i in range(5)) - sum(
        dense_expectation(rho, {i: X}) for i in range(6))
    assert abs(observables.energy.value - H) < 1e-11
    if name == "mps":  # Schmidt spectrum of the dense ψ at each cut
        psi_model = np.linalg.eigh(rho)[1][:, -1]
        expected = [spectrum_entropy(np.linalg.svd(psi_model.reshape(2 ** (b + 1), -1),
                                                   compute_uv=False) ** 2) for b in range(5)]
        np.testing.assert_allclose(result.entanglement.model, expected, atol=1e-10)
        entropy = result.as_dict()["entanglement_entropy"]
        np.testing.assert_allclose(entropy["reference"], tfim6.reference["entropy"])
    else:
        assert result.entanglement is None


def test_state_references_need_only_tensors():
    model = randomised("lpdo", 4, seed=2, chi=2, kraus=3)
    tensors = model.tensors()
    rho = dense_rho(tensors)
    refs = state_references(tensors)
    assert "entropy" not in refs
    O = site_operator(X, 1, 4) @ site_operator(X, 3, 4)
    assert abs(refs["XX"][1, 3] - np.trace(rho @ O).real) < 1e-12
    scaled = [2.0 * B for B in tensors]  # pauli_expectation takes any norm
    O = site_operator(Y, 0, 4) @ site_operator(Z, 2, 4)
    assert abs(pauli_expectation(scaled, {0: "Y", 2: "Z"}) - np.trace(rho @ O).real) < 1e-12


def test_cli_evaluate_reports_contracted_figures(tfim6, tmp_path, capsys):
    model = build("mps", L=6, K=4, povm="pauli4", chi=2)
    path = save_checkpoint(tmp_path / "m.pt", model, povm="pauli4")
    assert main(["evaluate", "--model", str(path), "--data", str(tfim6.path), "--method",
                 "monte-carlo", "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "(exact, contracted)" in out and "entanglement S at bond 2|3" in out
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["quantum_fidelity"]["method"] == "contraction"
    assert len(report["entanglement_entropy"]["model"]) == 5
    assert report["observables"]["X"]["model"]["stderr"] == [0.0] * 6
