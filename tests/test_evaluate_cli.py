"""``evaluate`` and ``qtomo evaluate``: truth as the model, the JSON keys, files, bad input."""

import json
import os

import h5py
import numpy as np
import pytest
import torch

import qtomo.evaluate
from qtomo.cli import main
from qtomo.data import read_dataset, write_dataset
from qtomo.errors import QtomoError
from qtomo.evaluate import evaluate, unseen_rows
from qtomo.models import build, load_checkpoint, save_checkpoint
from qtomo.povm import enumerate_outcomes, get_povm
from qtomo.simulate import simulate
from qtomo.states.exact import tfim_ground_state
from qtomo.states.mps import ghz_mps
from qtomo.train import TrainOptions, fit
from tests.commands import one_line_error, refused, strict_json, tiny_fit

L, N = 4, 4000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    path = simulate("tfim", L, h=0.9, samples=N, seed=3, device="cpu",
                    out=folder / "tfim.h5", quiet=True)
    return read_dataset(path)


@pytest.fixture(scope="module")
def truth(dataset):
    return tfim_ground_state(L, h=0.9).distribution(get_povm("pauli4"))


def write_checkpoint(path, dataset, *, L=L, povm="pauli4", train_rows=(0, 3000)):
    torch.manual_seed(0)
    model = build("gru", L=L, K=4, hidden=8, layers=1)
    data = {"path": str(dataset.path), "n_records": dataset.n_records, "attrs": dataset.attrs,
            "train_rows": list(train_rows), "val_rows": [train_rows[1], dataset.n_records]}
    return save_checkpoint(path, model, povm=povm, data=data)


def test_truth_as_model_exact(dataset, truth):
    report = evaluate(truth, dataset, pauli_strings=["X0 Z1 X3"]).as_dict()
    assert report["kl"]["value"] == 0 and report["kl"]["stderr"] == 0
    assert abs(report["classical_fidelity"]["value"] - 1) < 1e-12
    fidelity = report["quantum_fidelity"]
    assert fidelity["method"] == "exact" and fidelity["physical"]
    assert abs(fidelity["value"] - 1) < 1e-10
    assert report["nll"] == report["entropy"]
    for name in ("X", "Z", "XX", "ZZ", "energy"):
        entry = report["observables"][name]
        assert np.allclose(entry["model"]["value"], entry["reference"], atol=1e-10), name
        data = np.asarray(entry["data"]["value"]) - np.asarray(entry["reference"])
        stderr = np.asarray(entry["data"]["stderr"])
        assert np.all(np.abs(data) <= 4 * stderr + 1e-12), name  # model-free, within 4σ
    string = report["observables"]["strings"]["X0 Z1 X3"]
    assert abs(string["model"]["value"] - string["reference"]) < 1e-10
    assert report["n_test"] == N and report["test_rows"] == [0, N]


def test_truth_as_model_monte_carlo(dataset, truth):
    report = evaluate(truth, dataset, method="monte-carlo", samples=20_000, seed=1).as_dict()
    assert report["kl"]["value"] == 0
    fidelity = report["quantum_fidelity"]
    assert fidelity["method"] == "monte-carlo"
    assert abs(fidelity["value"] - 1) < 4 * fidelity["stderr"]
    energy = report["observables"]["energy"]
    assert abs(energy["model"]["value"] - energy["reference"]) < 4 * energy["model"]["stderr"]
    assert report["observables"]["model_samples"] == 20_000
    assert "density_matrix" not in report


@pytest.mark.parametrize("method", ["exact", "monte-carlo"])
def test_mps_truth_as_model(tmp_path, method):
    """An MPS dataset (no /reference/psi): the fidelity goes through /reference/mps."""
    path = simulate("ghz", 5, povm="pauli6", method="mps", samples=2000, seed=0, device="cpu",
                    out=tmp_path / "ghz.h5", quiet=True)
    dataset = read_dataset(path)
    truth = ghz_mps(5).distribution(get_povm("pauli6"))
    report = evaluate(truth, dataset, method=method, samples=5000, seed=2).as_dict()
    assert abs(report["kl"]["value"]) < 1e-10 and report["kl"]["stderr"] < 1e-10
    fidelity = report["quantum_fidelity"]
    assert fidelity["method"] == method
    assert abs(fidelity["value"] - 1) < max(4 * fidelity["stderr"], 1e-10)
    assert np.allclose(report["observables"]["ZZ"]["reference"], 1.0)


def test_unseen_rows_follow_the_checkpoint(dataset, tmp_path):
    config = load_checkpoint(write_checkpoint(tmp_path / "m.pt", dataset)).config
    assert unseen_rows(dataset, config) == (3000, N)
    assert unseen_rows(dataset, None) == (0, N)
    other = dict(config, data=dict(config["data"], path="elsewhere.h5", n_records=17))
    assert unseen_rows(dataset, other) == (0, N)  # another dataset: every row is unseen
    everything = dict(config, data=dict(config["data"], train_rows=[0, N]))
    with pytest.raises(QtomoError, match="trained on all"):
        unseen_rows(dataset, everything)


def test_cli_writes_table_json_and_plot(dataset, tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "run.pt", dataset)
    history = {"epochs": [{"epoch": e, "train_nll": 6.0 - e / 10, "val_nll": 6.1 - e / 20,
                           "lr": 1e-3, "time_s": 1.0} for e in (1, 2, 3)]}
    (tmp_path / "run.history.json").write_text(json.dumps(history))
    out_json, out_plot = tmp_path / "eval.json", tmp_path / "eval.png"
    status = main(["evaluate", "--model", str(checkpoint), "--data", str(dataset.path),
                   "--json", str(out_json), "--plot", str(out_plot), "--pauli", "Z0 Z3",
                   "--device", "cpu", "--seed", "0"])
    assert status == 0
    table = capsys.readouterr().out
    for label in ("KL(P||Q)", "classical fidelity", "quantum fidelity", "energy <H>", "<Z0 Z3>"):
        assert label in table
    report = json.loads(out_json.read_text())
    for key in ("nll", "kl", "classical_fidelity", "quantum_fidelity", "observables", "n_test",
                "model", "data"):
        assert key in report
    for key in ("nll", "kl", "classical_fidelity", "quantum_fidelity"):
        assert set(report[key]) >= {"value", "stderr"}
    for key in ("X", "Z", "ZZ", "energy"):
        assert set(report["observables"][key]) == {"model", "data", "reference", "z"}
        assert set(report["observables"][key]["model"]) == {"value", "stderr"}
    assert report["n_test"] == N - 3000 and report["test_rows"] == [3000, N]
    assert report["model"]["family"] == "gru" and report["model"]["log_prob"] == "exact"
    assert out_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "eval.json", "eval.png", "run.history.json", "run.pt"]  # no temporary files left


def test_flow_probabilities_are_reported_as_estimates(dataset):
    torch.manual_seed(0)
    flow = build("flow", L=L, K=4)
    report = evaluate(flow, dataset, method="monte-carlo", samples=50, rows=(0, 50)).as_dict()
    assert report["model"]["log_prob"] == "estimate"
    assert any("estimate" in warning for warning in report["warnings"])


@pytest.mark.parametrize("change, message", [
    ({"L": 5}, "L = 5 (data: 4)"),
    ({"povm": "tetra"}, "POVM 'tetra' (data: 'pauli4')"),
])
def test_cli_rejects_a_mismatched_model(dataset, tmp_path, capsys, change, message):
    checkpoint = write_checkpoint(tmp_path / "m.pt", dataset, **change)
    status = main(["evaluate", "--model", str(checkpoint), "--data", str(dataset.path),
                   "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--pauli", "X0 Z9"], "site 9 is out of range for L = 4"),
    (["--pauli", "Q1"], "cannot read 'Q1'"),
    (["--plot", "figure.xyz"], "expected a suffix among"),
])
def test_cli_bad_options_exit_2(dataset, tmp_path, capsys, argv, message):
    checkpoint = write_checkpoint(tmp_path / "m.pt", dataset)
    out_json = tmp_path / "out.json"
    status = main(["evaluate", "--model", str(checkpoint), "--data", str(dataset.path), "--quiet",
                   "--device", "cpu", "--json", str(out_json), *argv])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.startswith("qtomo: error: ")
    assert not out_json.exists()  # nothing written on bad input


def test_data_without_log_prob_gives_no_kl_or_classical_fidelity(dataset, tmp_path, capsys):
    stripped = tmp_path / "stripped.h5"
    stripped.write_bytes(dataset.path.read_bytes())
    with h5py.File(stripped, "r+") as file:
        del file["log_prob"]
    checkpoint = write_checkpoint(tmp_path / "m.pt", dataset)
    status = main(["evaluate", "--model", str(checkpoint), "--data", str(stripped),
                   "--device", "cpu", "--json", str(tmp_path / "e.json")])
    table = capsys.readouterr().out
    rows = [line.split("  ")[0] for line in table.splitlines()]
    assert status == 0 and "NLL = E_P[-ln Q] (nats)" in rows
    assert not [row for row in rows if ("KL" in row or "F_c" in row) and "note" not in row]
    assert "KL(P||Q) and the classical fidelity are left out" in table
    report = json.loads((tmp_path / "e.json").read_text())
    assert "kl" not in report and "classical_fidelity" not in report and "nll" in report


def test_exact_evaluation_above_the_limit_is_refused(tmp_path):
    big = 11
    povm = get_povm("pauli4")
    outcomes = np.zeros((10, big), dtype=np.uint8)
    path = write_dataset(tmp_path / "big.h5", povm=povm,
                         attrs={"state": "product", "L": big, "seed": 0, "method": "mps"},
                         n_records=10, chunks=[(outcomes, np.full(10, -5.0))], reference={})
    model = build("gru", L=big, K=4, hidden=4, layers=1)
    with pytest.raises(QtomoError, match="needs L <= 10"):
        evaluate(model, read_dataset(path), method="exact")


def test_cli_json_to_stdout_has_every_documented_key(dataset, tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "m.pt", dataset)
    status = main(["evaluate", "--model", str(checkpoint), "--data", str(dataset.path),
                   "--json", "-", "--device", "cpu"])
    assert status == 0
    report = json.loads(capsys.readouterr().out)  # stdout holds the JSON alone
    assert set(report["quantum_fidelity"]) >= {"value", "physical", "min_eigenvalue",
                                                "projected"}
    assert set(report["density_matrix"]) >= {"trace", "min_eigenvalue", "purity", "negativity",
                                              "top_eigenvector_fidelity"}
    assert 0 <= report["quantum_fidelity"]["projected"] <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_ensemble_spread_is_the_standard_deviation_over_members(tmp_path):
    """Members with known ⟨Z_i⟩ = cos θ_m (product states, exact sums): spread = std(cos θ_m)."""
    from qtomo.ensemble import evaluate_ensemble
    from qtomo.report import format_ensemble_report
    from qtomo.states.exact import product_state

    L, povm = 3, get_povm("tetra")
    path = simulate("product", L, product_state="0", povm="tetra", samples=2000, seed=0,
                    device="cpu", out=tmp_path / "zero.h5", quiet=True)
    dataset = read_dataset(path)
    angles = np.array([0.1, 0.4, 0.7, 0.2])
    members = [product_state(L, [np.cos(t / 2), np.sin(t / 2)]).distribution(povm)
               for t in angles]
    ensemble = evaluate_ensemble(members, dataset, method="exact")
    report = ensemble.as_dict()
    z_entry = report["observables"]["Z"]
    assert np.allclose(z_entry["model"]["value"], np.cos(angles).mean(), atol=1e-10)
    assert np.allclose(z_entry["model"]["spread"], np.std(np.cos(angles), ddof=1), atol=1e-10)
    assert np.allclose(z_entry["model"]["mc_stderr"], 0.0)  # exact sums: no Monte Carlo error
    # one error bar for the JSON, the table and the figure: spread and MC error in quadrature
    assert np.allclose(z_entry["model"]["stderr"], np.std(np.cos(angles), ddof=1), atol=1e-10)
    fidelity = report["quantum_fidelity"]  # |⟨0|θ⟩|^(2L) = cos^(2L)(θ/2)
    assert abs(fidelity["value"] - np.mean(np.cos(angles / 2) ** (2 * L))) < 1e-10
    assert abs(fidelity["spread"] - np.std(np.cos(angles / 2) ** (2 * L), ddof=1)) < 1e-10
    data = z_entry["data"]
    expected_z = (np.cos(angles).mean() - np.asarray(data["value"])) / np.sqrt(
        np.std(np.cos(angles), ddof=1) ** 2 + np.asarray(data["stderr"]) ** 2)
    assert np.allclose(z_entry["z"], expected_z)
    assert report["ensemble"]["members"] == 4
    assert "ensemble mean" in format_ensemble_report(ensemble)
    combined = ensemble.combined()
    assert np.allclose(combined.observables.model.Z.stderr, z_entry["model"]["stderr"])
    assert np.allclose(combined.as_dict()["observables"]["Z"]["model"]["stderr"],
                       z_entry["model"]["stderr"])


def test_cli_fits_and_evaluates_a_bootstrap_ensemble(dataset, tmp_path, capsys):
    folder = tmp_path / "ensemble"
    status = main(["fit", "--model", "gru", "--hidden", "8", "--layers", "1", "--data",
                   str(dataset.path), "--epochs", "1", "--ensemble", "2", "--bootstrap",
                   "--out", str(folder), "--quiet", "--device", "cpu"])
    assert status == 0
    members = sorted(p.name for p in folder.glob("member*.pt"))
    assert members == ["member00.last.pt", "member00.pt", "member01.last.pt", "member01.pt"]
    assert load_checkpoint(folder / "member01.pt").config["training"]["options"]["seed"] == 1
    out_json = tmp_path / "ensemble.json"
    status = main(["evaluate", "--model", str(folder), "--json", str(out_json), "--device",
                   "cpu", "--plot", str(tmp_path / "ensemble.png")])
    assert status == 0
    assert "ensemble mean" in capsys.readouterr().out
    report = json.loads(out_json.read_text())
    assert report["ensemble"] == {"members": 2, "bootstrap": True,
                                  "paths": [str(folder / "member00.pt"),
                                            str(folder / "member01.pt")]}
    assert report["kl"]["spread"] > 0 and "z" in report["observables"]["energy"]


def test_bootstrap_rows_are_a_seeded_resample(dataset):
    from qtomo.train import TrainOptions, _Rows

    options = TrainOptions()
    rows = [_Rows(dataset, (0, 3000), torch.device("cpu"), options, bootstrap_seed=seed).data
            for seed in (5, 5, 6)]
    assert torch.equal(rows[0], rows[1]) and not torch.equal(rows[0], rows[2])
    original = {tuple(r) for r in dataset.outcomes(0, 3000).tolist()}
    assert {tuple(r) for r in rows[0].tolist()} <= original
    with pytest.raises(QtomoError, match="needs the 3000 training rows in memory"):
        _Rows(dataset, (0, 3000), torch.device("cpu"), TrainOptions(resident_bytes=10),
              bootstrap_seed=0)


# --- moved from the zoo tests ------------------------------------------------------------
class SamplesOnly:
    """The exact distribution of a state, seen only through its samples (as a GAN is)."""

    exact_log_prob = False
    has_log_prob = False
    family = "samples-only"
    povm = None  # a model of the records alone

    def __init__(self, truth):
        self.truth, self.L, self.K = truth, truth.L, truth.K

    def log_prob(self, a):
        raise QtomoError("no log_prob")

    def sample(self, n, generator=None):
        return self.truth.sample(n, generator)


def test_histogram_fidelity_agrees_with_the_exact_one():
    """Q = product of P's one-site marginals, sampled; F_c(P, Q) by enumeration is the truth."""
    from qtomo.metrics import histogram_classical_fidelity
    from qtomo.povm import get_povm
    from qtomo.states.exact import ExactDistribution, tfim_ground_state

    povm = get_povm("pauli4")
    p = tfim_ground_state(4, h=0.5).distribution(povm)
    every = enumerate_outcomes(4, 4)
    marginals = [np.bincount(every[:, i], weights=p.probabilities, minlength=4) for i in range(4)]
    q = np.prod([marginals[i][every[:, i]] for i in range(4)], axis=0)
    exact = np.sum(np.sqrt(p.probabilities * q)) ** 2
    test, log_p = p.sample_with_log_prob(20000, torch.Generator().manual_seed(1))
    drawn = ExactDistribution(povm, q).sample(200000, torch.Generator().manual_seed(2))
    estimate = histogram_classical_fidelity(drawn.numpy(), test.numpy(), log_p.numpy(), 4)
    assert exact < 0.95 and 0 < estimate.stderr < 0.01
    assert abs(estimate.value - exact) < 3 * estimate.stderr


def test_a_model_without_log_prob_is_evaluated_from_samples(tmp_path):
    from qtomo.data import read_dataset
    from qtomo.evaluate import evaluate
    from qtomo.povm import get_povm
    from qtomo.report import format_report
    from qtomo.states.exact import tfim_ground_state

    dataset = read_dataset(simulate("tfim", 4, h=0.9, samples=4000, seed=3, method="exact",
                                    out=tmp_path / "tfim4.h5", quiet=True))
    model = SamplesOnly(tfim_ground_state(4, h=0.9).distribution(get_povm("pauli4")))
    evaluation = evaluate(model, dataset, samples=100000)
    report = evaluation.as_dict()
    assert "nll" not in report and "kl" not in report and "density_matrix" not in report
    fidelity = report["classical_fidelity"]
    assert fidelity["method"] == "histogram" and fidelity["samples"] == 100000
    assert 0.995 < fidelity["value"] <= 1 + 3 * fidelity["stderr"]
    quantum = report["quantum_fidelity"]
    assert quantum["method"] == "monte-carlo" and abs(quantum["value"] - 1) < 4 * quantum["stderr"]
    zz = report["observables"]["ZZ"]
    assert report["observables"]["method"] == "monte-carlo"
    assert np.all(np.abs(np.asarray(zz["model"]["value"]) - zz["reference"])
                  <= 4 * np.asarray(zz["model"]["stderr"]) + 1e-12)
    assert report["model"]["log_prob"] == "none"
    blocks = report["reduced_states"]  # from the model's samples alone
    assert blocks and all(block["method"] == "monte-carlo" for block in blocks)
    # SGS projection biases block fidelities from samples low (docs/evaluate.md "Reduced states of
    # blocks"): the 10^5 exact samples behind the model's blocks beat the 4 000 records of the data
    assert all(block["fidelity"]["value"] > max(0.94, block["data"]["fidelity"]["value"])
               for block in blocks)
    assert any("skipped NLL, KL, the exact ρ" in note for note in report["warnings"])
    text = format_report(evaluation)
    nll_row = next(line for line in text.splitlines() if line.startswith("NLL"))
    assert nll_row.split()[5] == "—" and "note: F_c from a histogram" in text
    with pytest.raises(QtomoError, match="has no log_prob, and exact evaluation sums"):
        evaluate(model, dataset, method="exact")


def test_cli_evaluates_a_gan_from_its_samples(tiny_data, tmp_path, capsys):
    out = tmp_path / "gan.pt"
    assert main(["fit", "--model", "gan", "--data", str(tiny_data), "--out", str(out),
                 "--epochs", "1", "--hidden", "16", "--batch-size", "128", "--quiet",
                 "--device", "cpu"]) == 0
    json_path = tmp_path / "gan.json"
    assert main(["evaluate", "--model", str(out), "--samples", "5000", "--json", str(json_path),
                 "--quiet"]) == 0
    import json

    report = json.loads(json_path.read_text())
    assert "nll" not in report and report["classical_fidelity"]["method"] == "histogram"
    assert main(["evaluate", "--model", str(out), "--method", "exact", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("qtomo: error: the gan model has no log_prob")


@pytest.mark.parametrize("option, name", [("--json", "eval.json"), ("--plot", "eval.png")])
def test_evaluate_into_a_folder_fails_before_the_work(tfim3_gru, tfim3_records, tmp_path,
                                                      monkeypatch, capsys, option, name):
    (tmp_path / name).mkdir()

    def no_work(*args, **kwargs):
        raise AssertionError("evaluated before the output was checked")

    monkeypatch.setattr(qtomo.evaluate, "evaluate", no_work)
    assert main(["evaluate", "--model", str(tfim3_gru[0]), "--data", str(tfim3_records), option,
                 str(tmp_path / name), "--quiet"]) == 2
    one_line_error(capsys, "it is a folder")
    assert list((tmp_path / name).iterdir()) == []


def test_evaluate_json_over_its_dataset_is_refused(ghz3_records, ghz3_gru, capsys):
    folder = ghz3_records.parent
    refused(capsys, folder, ["evaluate", "--model", str(ghz3_gru), "--data", str(ghz3_records),
                             "--json", str(ghz3_records), "--quiet"],
            "it is an input of this command")
    # variant: the run's own .last.pt, reached through a relative path with ..
    relative = os.path.relpath(folder / "sub" / ".." / "m.last.pt")
    refused(capsys, folder, ["evaluate", "--model", str(ghz3_gru), "--json", relative, "--quiet"],
             "m.last.pt", "input")


def test_api_takes_paths_and_checks_rows(ghz3_records, ghz3_gru):
    torch.manual_seed(0)
    result = fit(build("gru", L=3, K=6, hidden=4), str(ghz3_records), TrainOptions(epochs=1),
                 device="cpu", quiet=True)
    assert np.isfinite(result.best_val_nll)
    evaluation = evaluate(str(ghz3_gru), ghz3_records, blocks=(), rows=(0, 100))
    assert evaluation.classical.n_test == 100
    for rows in ((-5, 10), (0, 10**6), (7, 7), (0.0, 10), (0, 2001)):
        with pytest.raises(QtomoError, match="0 <= start < stop <= 2000"):
            evaluate(ghz3_gru, str(ghz3_records), blocks=(), rows=rows)


def test_evaluate_refuses_readout_elements_that_differ_under_one_name(tmp_path, capsys):
    common = ["--state", "ghz", "--L", "2", "--povm", "pauli6", "--samples", "1500", "--quiet"]
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert main(["simulate", *common, "--readout-error", "0.01", "0.02", "--out", str(a)]) == 0
    assert main(["simulate", *common, "--readout-error", "0.05", "0.02", "--out", str(b)]) == 0
    for family in (["--hidden", "4", "--layers", "1"], ["--model", "mps", "--chi", "2",
                                                         "--real", "1", "--refine", "0"]):
        model = tmp_path / f"{family[1]}.pt"
        assert main(["fit", "--data", str(a), "--out", str(model), "--epochs", "1",
                     "--batch-size", "128", "--device", "cpu", "--quiet", *family]) == 0
        refused(capsys, tmp_path, ["evaluate", "--model", str(model), "--data", str(b),
                                    "--json", str(tmp_path / "e.json"), "--quiet"],
                 "model does not match", "other elements")
        assert main(["evaluate", "--model", str(model), "--data", str(a), "--blocks", "none",
                     "--quiet"]) == 0  # the data it was trained on


def test_default_blocks_fit_small_L_and_an_L_mismatch_is_named(tmp_path, capsys):
    two = simulate("ghz", 2, samples=1500, seed=0, out=tmp_path / "two.h5", quiet=True)
    model = tmp_path / "m.pt"
    assert main(["fit", "--data", str(two), "--out", str(model), *tiny_fit(1)]) == 0
    assert main(["evaluate", "--model", str(model), "--json", str(tmp_path / "e.json"),
                 "--quiet"]) == 0
    report = strict_json((tmp_path / "e.json").read_text())
    assert [len(state["sites"]) for state in report["reduced_states"]] == [2]
    one = simulate("product", 1, product_state="0", samples=500, seed=0,
                   out=tmp_path / "one.h5", quiet=True)
    assert main(["evaluate", "--model", str(model), "--data", str(one), "--quiet"]) == 2
    one_line_error(capsys, "model does not match", "L = 2 (data: 1)")
    # variant: a size given explicitly is still checked against L
    assert main(["evaluate", "--model", str(model), "--blocks", "3", "--quiet"]) == 2
    one_line_error(capsys, "block size '3'", "L = 2")
