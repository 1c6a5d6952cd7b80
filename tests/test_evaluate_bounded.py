"""``evaluate`` finishes at every L and POVM (docs/measured-data.md "Bounded evaluation"): no
default enumerates K^L where it is large, a physical model's blocks are contracted from its
tensors, the default blocks fit small L, and an unphysical ρ is flagged without a reference."""

import json
import time

import numpy as np
import pytest
import torch

from qtomo.blocks import default_block_sizes, parse_block_sizes
from qtomo.cli import main
from qtomo.data import read_dataset, write_dataset
from qtomo.distribution import enumerable
from qtomo.evaluate import evaluate
from qtomo.models import build
from qtomo.models.mps import LPDOConfig, LPDOModel
from qtomo.povm import get_povm
from qtomo.simulate import simulate
from qtomo.states.exact import ExactDistribution
from qtomo.states.mps import block_density_matrix, ghz_mps, state_density_matrix


def test_enumerable_bounds_records_not_qubits():
    assert enumerable(10, 4) and enumerable(7, 6) and enumerable(3, 6)
    assert not enumerable(10, 6) and not enumerable(8, 6) and not enumerable(11, 2)


def test_default_blocks_fit_small_L():
    assert default_block_sizes(1) == () and default_block_sizes(2) == (2,)
    assert parse_block_sizes(None, 2) == (2,) and parse_block_sizes(None, 12) == (2, 3)


@pytest.mark.parametrize("block", [(0, 1), (2,), (1, 2, 3), (4,)])
def test_block_density_matrix_of_an_lpdo_is_the_partial_trace(block):
    torch.manual_seed(4)
    model = LPDOModel(5, 4, LPDOConfig(chi=3, kraus=2), get_povm("pauli4"))
    tensors = model.tensors()
    rho = state_density_matrix(tensors).reshape((2,) * 10)  # independent: dense ρ
    rest = [i for i in range(5) if i not in block]
    letters = "abcdefghij"
    ket, bra = list(letters[:5]), list(letters[5:])
    for i in rest:
        bra[i] = ket[i]
    out = "".join(ket[i] for i in block) + "".join(bra[i] for i in block)
    expected = np.einsum("".join(ket) + "".join(bra) + "->" + out, rho)
    d = 2 ** len(block)
    assert np.allclose(block_density_matrix(tensors, block), expected.reshape(d, d), atol=1e-12)


def test_ten_qubit_pauli6_network_evaluates_by_monte_carlo_in_under_a_minute(tmp_path):
    data = simulate("tfim", 10, povm="pauli6", samples=3000, seed=1, device="cpu",
                    out=tmp_path / "t.h5", quiet=True)
    torch.manual_seed(0)
    model = build("gru", L=10, K=6, hidden=16)
    start = time.perf_counter()
    evaluation = evaluate(model, read_dataset(data), samples=20_000)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, elapsed  # the enumeration of 6^10 records took about an hour
    report = evaluation.as_dict()
    assert report["observables"]["method"] == "monte-carlo"
    assert {state["method"] for state in report["reduced_states"]} == {"monte-carlo"}
    assert [len(state["sites"]) for state in report["reduced_states"]][:1] == [2]


def test_physical_model_blocks_are_contracted_beyond_the_dense_limit(tmp_path):
    data = simulate("ghz", 12, povm="pauli4", samples=2000, seed=2, device="cpu",
                    out=tmp_path / "g.h5", quiet=True)
    model = build("mps", L=12, K=4, povm=get_povm("pauli4"), chi=2)
    model.set_tensors(ghz_mps(12).mps)
    report = evaluate(model, read_dataset(data), samples=2000).as_dict()
    states = report["reduced_states"]
    assert states and {state["method"] for state in states} == {"exact"}
    for state in states:
        assert state["fidelity"]["value"] == pytest.approx(1.0, abs=1e-9)
        assert state["min_eigenvalue"] >= -1e-12


def test_two_qubit_file_evaluates_with_the_default_blocks(tmp_path, capsys):
    data = simulate("ghz", 2, povm="pauli4", samples=400, seed=3, device="cpu",
                    out=tmp_path / "g2.h5", quiet=True)
    run = tmp_path / "g2.pt"
    assert main(["fit", "--model", "gru", "--data", str(data), "--out", str(run), "--epochs",
                 "1", "--quiet"]) == 0
    assert main(["evaluate", "--model", str(run), "--json", str(tmp_path / "e.json"),
                 "--quiet"]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert [state["sites"] for state in report["reduced_states"]] == [[0, 1]]


def test_unphysical_rho_is_flagged_without_a_reference(tmp_path):
    povm = get_povm("pauli4")
    records = np.random.default_rng(0).integers(0, 4, size=(100, 2)).astype(np.uint8)
    path = write_dataset(tmp_path / "m.h5", povm=povm,
                         attrs={"L": 2, "source": "imported:test"}, n_records=100,
                         chunks=[(records, None)], reference={})
    table = np.full(16, 0.5 / 16)
    table[0] += 0.5  # Q(0, 0) ⊗ duals: the dual Q_0 of pauli4 has eigenvalue −2.1
    evaluation = evaluate(ExactDistribution(povm, table), read_dataset(path))
    assert evaluation.fidelity is None and evaluation.reconstruction.min_eigenvalue < -1
    assert any(note.startswith("ρ_model is unphysical: smallest eigenvalue") for note in
               evaluation.warnings)


def test_an_imported_mps_reference_fills_the_reference_column(tmp_path):
    """genmodel files carry only /reference/mps: the observables' reference comes from it."""
    povm = get_povm("pauli4")
    model = build("mps", L=4, K=4, povm=povm, chi=2)
    model.set_tensors(ghz_mps(4).mps)
    records = model.sample(200, torch.Generator().manual_seed(1)).numpy().astype(np.uint8)
    path = write_dataset(tmp_path / "g.h5", povm=povm,
                         attrs={"L": 4, "source": "imported:genmodel"}, n_records=200,
                         chunks=[(records, None)], reference={"mps": ghz_mps(4).mps})
    observables = evaluate(model, read_dataset(path)).as_dict()["observables"]
    assert np.allclose(observables["ZZ"]["reference"], np.ones((4, 4)), atol=1e-12)
    assert np.allclose(observables["X"]["reference"], 0.0, atol=1e-12)
