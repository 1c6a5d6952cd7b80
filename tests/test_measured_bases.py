"""Measured Pauli-basis records with incomplete or biased bases (docs/measured-data.md): the
basis-aware data-only estimators against exact values, refusals with their reasons, the
completeness check at import, warnings carried into evaluate, the positive prior of ``mps`` on
Z-only records, the fair NLL and the recipe's batch on small files."""

import json

import numpy as np
import pytest
import torch

from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.distribution import enumerate_probabilities
from qtomo.evaluate import evaluate
from qtomo.formats import import_records
from qtomo.models.mps import MPSConfig, MPSModel
from qtomo.observables import estimate_observables, parse_pauli_string
from qtomo.pauli_records import (
    MIN_RECORDS,
    BasisCoverage,
    BasisWeightedLogProb,
    basis_observables,
    phases_undetermined,
    sample_shots,
    sign_calibration,
)
from qtomo.povm import enumerate_outcomes, get_povm
from qtomo.readout import readout_povms
from qtomo.recipe import phase_prior, recipe
from qtomo.states.exact import expectation_pauli_string
from qtomo.states.hamiltonians import TFIM
from qtomo.states.mps import vector_to_mps


def records_of(bases, bits):
    return (2 * np.vectorize({"Z": 0, "X": 1, "Y": 2}.get)(bases) + bits).astype(np.uint8)


def w_state(L):
    """Σ_i |0…1_i…0⟩/√L as a 2^L vector (qubit 0 most significant)."""
    psi = np.zeros(2**L)
    psi[[1 << (L - 1 - i) for i in range(L)]] = 1 / np.sqrt(L)
    return psi


def w_mps(L):
    """The W state as a non-negative MPS of bond dimension 2 (bond index: a 1 seen so far)."""
    first = np.zeros((1, 2, 2))
    first[0, 0, 0] = first[0, 1, 1] = 1
    middle = np.zeros((2, 2, 2))
    middle[0, 0, 0] = middle[1, 0, 1] = middle[0, 1, 1] = 1
    last = np.zeros((2, 2, 1))
    last[1, 0, 0] = last[0, 1, 0] = 1
    return [first] + [middle] * (L - 2) + [last]


def write_qucumber(folder, bases, bits):
    """QuCumber's layout: samples (N rows of L bits) and bases (N rows of L letters)."""
    np.savetxt(folder / "samples.txt", bits.astype(float))
    np.savetxt(folder / "bases.txt", bases, fmt="%s")
    return [folder / "samples.txt", folder / "bases.txt"]


@pytest.fixture(scope="module")
def skewed():
    """A random 3-qubit state measured with skewed bases: P(Z, X, Y) = (0.6, 0.3, 0.1) per
    site, independently, 40 000 shots."""
    rng = np.random.default_rng(11)
    psi = rng.normal(size=8) + 1j * rng.normal(size=8)
    psi /= np.linalg.norm(psi)
    bases = rng.choice(list("ZXY"), p=[0.6, 0.3, 0.1], size=(40_000, 3))
    return psi, records_of(bases, sample_shots(psi, bases, rng))


STRINGS = ["X0 Y1 Z2", "Y0 Y2"]
HAMILTONIAN = TFIM(3, 1.0, 1.0, "open")


def z_scores(obs, psi):
    """(value − exact) / stderr of every single-site, pair, string and energy estimate of the
    3-qubit ``psi``: 21 z-scores."""
    z = []
    for i in range(3):
        z.append((obs.X.value[i] - expectation_pauli_string(psi, {i: "X"})) / obs.X.stderr[i])
        z.append((obs.Z.value[i] - expectation_pauli_string(psi, {i: "Z"})) / obs.Z.stderr[i])
        for j in range(i + 1, 3):
            exact = expectation_pauli_string(psi, {i: "Z", j: "Z"})
            z.append((obs.ZZ.value[i, j] - exact) / obs.ZZ.stderr[i, j])
            exact = expectation_pauli_string(psi, {i: "X", j: "X"})
            z.append((obs.XX.value[i, j] - exact) / obs.XX.stderr[i, j])
    for text in STRINGS:
        exact = expectation_pauli_string(psi, parse_pauli_string(text, 3))
        z.append((obs.strings[text].value - exact) / obs.strings[text].stderr)
    exact_energy = sum(c * expectation_pauli_string(psi, s) for c, s in HAMILTONIAN.terms())
    z.append((obs.energy.value - exact_energy) / obs.energy.stderr)
    return np.array(z)


def test_basis_aware_estimates_are_unbiased_on_skewed_bases(skewed):
    psi, records = skewed
    obs, notes = basis_observables(records, 3, hamiltonian=HAMILTONIAN, pauli_strings=STRINGS)
    assert notes == []
    z = z_scores(obs, psi)
    assert np.max(np.abs(z)) < 4.5, np.round(z, 2)  # 21 z-scores, each |z| < 4.5 w.p. > 0.9999
    # the uniform-basis dual frame on the same records is biased far beyond its errors
    dual = estimate_observables(records, get_povm("pauli6"))
    exact_z0 = expectation_pauli_string(psi, {0: "Z"})
    assert abs(dual.Z.value[0] - exact_z0) > 10 * dual.Z.stderr[0]


def test_readout_errors_on_skewed_bases_are_corrected(skewed):
    """Per-qubit flips P(read 1 | 0) = e0, P(read 0 | 1) = e1 on the skewed records: the signs
    corrected by the POVM's calibration, (s − (e1 − e0)) / (1 − e0 − e1), give every estimate
    within its errors; the raw signs are biased far beyond them."""
    psi, records = skewed
    errors = np.array([[0.02, 0.05], [0.10, 0.03], [0.0, 0.08]])
    gain, offset = sign_calibration(readout_povms(errors, 3), 3)
    assert np.allclose(gain, (1 - errors.sum(axis=1))[:, None])
    assert np.allclose(offset, (errors[:, 1] - errors[:, 0])[:, None])
    rng = np.random.default_rng(12)
    bits = records % 2
    flips = rng.random(bits.shape) < np.where(bits == 0, errors[:, 0], errors[:, 1])
    read = (records - bits + (bits ^ flips)).astype(np.uint8)
    obs, notes = basis_observables(read, 3, hamiltonian=HAMILTONIAN, pauli_strings=STRINGS,
                                   calibration=(gain, offset))
    z = z_scores(obs, psi)
    assert notes == [] and np.max(np.abs(z)) < 4.5, np.round(z, 2)
    raw = basis_observables(read, 3)[0]
    exact_z1 = expectation_pauli_string(psi, {1: "Z"})
    assert abs(raw.Z.value[1] - exact_z1) > 10 * raw.Z.stderr[1]
    assert sign_calibration(get_povm("pauli4"), 3) is None


def test_energy_error_includes_the_covariances(skewed):
    """The delta-method stderr of a Pauli sum matches the spread over independent halves."""
    psi, records = skewed
    parts = np.array_split(records, 20)
    values = [basis_observables(part, 3, hamiltonian=HAMILTONIAN)[0].energy.value
              for part in parts]
    predicted = np.mean([basis_observables(part, 3, hamiltonian=HAMILTONIAN)[0].energy.stderr
                         for part in parts])
    assert 0.6 < np.std(values, ddof=1) / predicted < 1.5  # 20 parts: ratio within ±40 %


def test_z_only_records_refuse_x_with_the_reason_and_stay_in_range():
    rng = np.random.default_rng(3)
    psi = w_state(4)
    bases = np.full((2000, 4), "Z")
    records = records_of(bases, sample_shots(psi, bases, rng))
    obs, notes = basis_observables(records, 4, hamiltonian=TFIM(4, 1.0, 1.0, "open"))
    assert np.all(np.isnan(obs.X.value)) and np.all(np.isnan(obs.XX.value[~np.eye(4, dtype=bool)]))
    assert "⟨X_0⟩, ⟨X_1⟩, ⟨X_2⟩, ⟨X_3⟩ not measured: no X outcomes on site 0, 1, 2, 3" in notes
    assert np.isnan(obs.energy.value)
    assert any(note.startswith("the energy not measured: its term X0 is measured by 0") for note
               in notes)
    assert np.all(np.abs(obs.ZZ.value) <= 1) and np.all(np.abs(obs.Z.value) <= 1)
    assert abs(obs.Z.value[0] - 0.5) < 4 * obs.Z.stderr[0]  # ⟨Z_i⟩ = 1 − 2/L for W


def test_too_few_measuring_records_are_refused():
    records = np.zeros((200, 2), dtype=np.uint8)
    records[: MIN_RECORDS - 1, 1] = 2  # site 1 measured in X only MIN_RECORDS − 1 times
    obs, notes = basis_observables(records, 2)
    assert np.isnan(obs.X.value[1]) and np.isnan(obs.X.value[0])
    assert f"fewer than {MIN_RECORDS} X outcomes on site 0, 1" in notes[0]


def test_import_names_what_the_records_cannot_determine(tmp_path, capsys):
    rng = np.random.default_rng(5)
    psi = w_state(2)
    settings = np.array([list("ZZ"), list("XX"), list("YY"), list("XZ"), list("ZX")])  # 5 of 9
    bases = settings[rng.integers(0, 5, size=900)]
    files = write_qucumber(tmp_path, bases, sample_shots(psi, bases, rng))
    out = tmp_path / "t2.h5"
    assert main(["import", "qucumber", *map(str, files), "--out", str(out),
                 "--allow-biased-bases", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "5 of the 3^2 = 9 settings measured; never measured: ZY, XY, YZ, YX" in err
    undetermined = read_dataset(out).attrs["undetermined"]
    assert any("never measured: ZY, XY, YZ, YX" in line for line in undetermined)


def test_coverage_of_complete_records_reports_nothing():
    codes = np.array(np.meshgrid(*[range(3)] * 3, indexing="ij")).reshape(3, -1).T  # all 27
    coverage = BasisCoverage(3)
    coverage.add((2 * codes).astype(np.uint8))
    assert coverage.undetermined() == [] and coverage.n == 27


@pytest.fixture(scope="module")
def z_only_w(tmp_path_factory):
    """QuCumber's Z-only layout for the W state of 4 qubits (1000 shots), imported."""
    folder = tmp_path_factory.mktemp("zonly")
    rng = np.random.default_rng(9)
    bases = np.full((1000, 4), "Z")
    files = write_qucumber(folder, bases, sample_shots(w_state(4), bases, rng))
    with pytest.warns(UserWarning):
        return import_records("qucumber", files, folder / "w.h5", allow_biased_bases=True)


def test_evaluate_carries_the_warnings_and_refuses_unmeasured_values(z_only_w, tmp_path,
                                                                    capsys):
    model = MPSModel(4, 6, MPSConfig(chi=2, positive=1), get_povm("pauli6"))
    model.set_tensors(w_mps(4))  # W has non-negative amplitudes
    evaluation = evaluate(model, read_dataset(z_only_w))
    joined = "\n".join(evaluation.warnings)
    assert "bases are not uniform" in joined and "no X outcomes on site 0, 1, 2, 3" in joined
    assert "⟨X_0⟩, ⟨X_1⟩, ⟨X_2⟩, ⟨X_3⟩ not measured" in joined
    report = evaluation.as_dict()
    assert np.isnan(report["observables"]["X"]["data"]["value"][0])
    assert report["observables"]["X"]["model"]["value"][0] == pytest.approx(0.0, abs=1e-12)
    from qtomo.report import format_report

    assert "not measured" in format_report(evaluation)
    # no dual-frame block estimate from these records: none outside the physical range
    assert report["reduced_states"] and all(state["data"] is None
                                            for state in report["reduced_states"])
    assert "data-only reduced states of blocks are left out" in joined
    # fair NLL: the Z-only bases carry no information, so NLL = −E ln P(bits | Z) (+ smoothing)
    test = read_dataset(z_only_w).outcomes(*evaluation.test_rows)
    bits_entropy = -np.mean(np.log(np.abs(w_state(4)[(test % 2) @ (2 ** np.arange(3, -1, -1))])
                                   ** 2))
    assert evaluation.classical.nll.value == pytest.approx(bits_entropy, abs=0.02)


def test_basis_weighted_model_is_normalised():
    torch.manual_seed(0)
    model = MPSModel(2, 6, MPSConfig(chi=2), get_povm("pauli6"))
    weighted = BasisWeightedLogProb(model, np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    a = torch.from_numpy(enumerate_outcomes(2, 6))
    with torch.no_grad():
        assert float(weighted.log_prob(a).exp().sum()) == pytest.approx(1.0, abs=1e-12)


def test_positive_mps_has_non_negative_amplitudes_and_is_normalised():
    torch.manual_seed(1)
    model = MPSModel(3, 6, MPSConfig(chi=2, positive=1), get_povm("pauli6"))
    assert model.config.real == 1
    assert float(enumerate_probabilities(model).sum()) == pytest.approx(1.0, abs=1e-12)
    from qtomo.states.mps import mps_to_vector

    psi = mps_to_vector(model.tensors())
    psi = psi * np.exp(-1j * np.angle(psi[np.argmax(np.abs(psi))]))  # global phase
    assert np.all(psi.real >= -1e-12) and np.allclose(psi.imag, 0, atol=1e-12)
    negative = vector_to_mps(np.array([1, 0, 0, 0, 0, 0, 0, -1]) / np.sqrt(2))
    with pytest.raises(Exception, match="negative entries"):
        model.set_tensors([-B if i == 0 else B for i, B in enumerate(negative)])


def test_recipe_uses_the_positive_prior_on_z_only_records(z_only_w, tmp_path):
    dataset = read_dataset(z_only_w)
    assert "no X or Y outcomes" in phases_undetermined(dataset)
    chosen, reason = phase_prior("mps", dataset)
    assert chosen == {"positive": 1, "real": 1} and "mps uses positive=1, real=1" in reason
    assert phase_prior("mps", dataset, {"positive": 0, "real": 0}) == (
        {"positive": 0, "real": 0}, None)
    assert phase_prior("gru", dataset) == ({}, None)
    grid = recipe("mps", dataset, hyperparameters=chosen)[1]
    assert "real" not in grid  # no selection of real vs complex on noise


def test_recipe_keeps_eight_steps_per_epoch_on_a_small_file(z_only_w):
    dataset = read_dataset(z_only_w)  # 1000 rows: 900 train
    options = recipe("gru", dataset)[0]
    assert 32 <= options.batch_size <= 900 // 8


def test_fit_repeats_the_dataset_warnings(z_only_w, tmp_path, capsys):
    run = tmp_path / "w.pt"
    assert main(["fit", "--model", "mps", "--chi", "2", "--data", str(z_only_w), "--out",
                 str(run), "--epochs", "1", "--refine", "0", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "bases are not uniform" in err and "no X or Y outcomes" in err
    history = json.loads(run.with_name("w.history.json").read_text())
    assert any("bases are not uniform" in line for line in history["warnings"])


def test_a_network_on_biased_bases_is_flagged(z_only_w):
    from qtomo.models import build

    torch.manual_seed(0)
    evaluation = evaluate(build("gru", L=4, K=6, hidden=8), read_dataset(z_only_w))
    assert any(note.startswith("the gru model learned the records' biased basis distribution")
               for note in evaluation.warnings)


def test_compare_carries_the_warnings_and_compares_fair_nlls(z_only_w, tmp_path, capsys):
    """On Z-only records a network and a physical model both pay ≈ nothing for the bases: the
    ln 3^L gap of the uniform-basis Born rule is gone from the compared NLLs."""
    runs = []
    for family in ("mps", "gru"):
        runs.append(tmp_path / f"{family}.pt")
        assert main(["fit", "--model", family, "--data", str(z_only_w), "--out", str(runs[-1]),
                     "--epochs", "3", "--refine", "0", "--quiet"]) == 0
    capsys.readouterr()
    jsons = [tmp_path / "mps.json", tmp_path / "gru.json"]
    assert main(["compare", "--model", str(runs[0]), "--model", str(runs[1]), "--json",
                 str(jsons[0]), "--json", str(jsons[1]), "--blocks", "none"]) == 0
    table = capsys.readouterr().out
    assert "note (mps.pt): bases are not uniform" in table or "bases are not uniform" in table
    reports = [json.loads(path.read_text()) for path in jsons]
    for report in reports:
        assert any("bases are not uniform" in line for line in report["warnings"])
    nll = [report["nll"]["value"] for report in reports]
    assert abs(nll[0] - nll[1]) < 0.5 * 4 * np.log(3), nll  # not the ln 3^4 = 4.4-nat gap


def test_sampled_shots_follow_the_measured_basis():
    """|+⟩ ⊗ |+i⟩ read in X ⊗ Y gives (0, 0) always; read in Z ⊗ Z each bit is fair (binomial,
    4 standard deviations at n = 4000)."""
    plus, plus_i = np.array([1, 1]) / np.sqrt(2), np.array([1, 1j]) / np.sqrt(2)
    psi = np.kron(plus, plus_i)
    rng = np.random.default_rng(3)
    assert not sample_shots(psi, np.array([["X", "Y"]] * 500), rng).any()
    bits = sample_shots(psi, np.array([["Z", "Z"]] * 4000), rng)
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 4 * 0.5 / np.sqrt(4000))


def test_default_fit_of_a_900_shot_w_state_passes_qucumbers_fidelity(tmp_path, capsys):
    """QuCumber's tutorial W state (|01⟩ + |10⟩)/√2, 100 shots in each of the 9 settings, with
    no --model: the records are few, so the recipe fits the mps, whose contracted fidelity
    passes QuCumber's published 0.9656 (issue target 0.96; docs/measured-data.md)."""
    from qtomo.models import load_checkpoint
    from qtomo.states.mps import pure_state_fidelity

    rng = np.random.default_rng(0)
    psi = w_state(2)
    bases = np.repeat([[a, b] for a in "XYZ" for b in "XYZ"], 100, axis=0)
    files = write_qucumber(tmp_path, bases, sample_shots(psi, bases, rng))
    data = import_records("qucumber", files, tmp_path / "w.h5")
    assert main(["fit", "--data", str(data), "--out", str(tmp_path / "w.pt")]) == 0
    assert "model mps: 900 records, fewer than 10000" in capsys.readouterr().out
    model = load_checkpoint(tmp_path / "w.pt").model
    assert pure_state_fidelity(vector_to_mps(psi), model.tensors()) >= 0.96


@pytest.mark.slow
def test_z_shots_of_tfim_l12_grow_the_positive_state_to_chi_4(tmp_path):
    """TFIM L = 12 (h = 1) ground state, 10^5 Z-basis shots, plain ``qtomo fit --model mps``:
    the positive recipe (full-batch Adam, then L-BFGS, at every size) grows χ = 2 to 4, which
    the records support, and reaches F ≥ 0.9985 (measured 0.9991; Adam epochs before L-BFGS
    gave 0.9986, and three validation checks of full-batch Adam kept χ = 2 at 0.9945)."""
    from qtomo.models import load_checkpoint
    from qtomo.states.exact import tfim_ground_state
    from qtomo.states.mps import pure_state_fidelity

    psi = tfim_ground_state(12).psi
    bases = np.full((100_000, 12), "Z")
    files = write_qucumber(tmp_path, bases, sample_shots(psi, bases, np.random.default_rng(0)))
    with pytest.warns(UserWarning):
        data = import_records("qucumber", files, tmp_path / "z.h5", allow_biased_bases=True)
    assert main(["fit", "--model", "mps", "--data", str(data), "--out", str(tmp_path / "z.pt"),
                 "--quiet"]) == 0
    checkpoint = load_checkpoint(tmp_path / "z.pt")
    assert checkpoint.config["hyperparameters"]["chi"] >= 4
    assert checkpoint.config["training"]["full_batch"]["iterations"] >= 10
    assert pure_state_fidelity(vector_to_mps(psi), checkpoint.model.tensors()) >= 0.9985


def test_bootstrap_replicates_of_a_positive_fit_reach_their_own_maxima(tmp_path):
    """``--ensemble 2 --bootstrap`` on Z-only shots (positive recipe: full-batch Adam, then
    L-BFGS): each replicate's L-BFGS runs to the maximum of its resampled likelihood
    (``converged``), not held at the plain fit's state by the validation rows, so the two
    replicates differ — the finite-data spread is there."""
    from qtomo.recipe import fit_recipe_ensemble
    from qtomo.states.exact import tfim_ground_state
    from qtomo.states.mps import pure_state_fidelity

    psi = tfim_ground_state(6).psi
    bases = np.full((4000, 6), "Z")
    files = write_qucumber(tmp_path, bases, sample_shots(psi, bases, np.random.default_rng(1)))
    with pytest.warns(UserWarning):
        data = read_dataset(import_records("qucumber", files, tmp_path / "z.h5",
                                           allow_biased_bases=True))
    with pytest.warns(UserWarning, match="no X or Y outcomes"):
        members = fit_recipe_ensemble("mps", data, {"bootstrap": True}, members=2,
                                      out=tmp_path / "ens", device="cpu", quiet=True)
    assert [member.refinement.stopped for member in members] == ["converged"] * 2
    fidelities = [pure_state_fidelity(vector_to_mps(psi), member.model.tensors())
                  for member in members]
    assert abs(fidelities[0] - fidelities[1]) > 1e-6 and min(fidelities) > 0.98
